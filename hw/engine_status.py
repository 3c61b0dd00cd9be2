"""The status outputs every engine has besides its streams: `idle` and `framing_error`.

`idle` is high when no vector is inside the engine (the only time a host may use
the RAM ports); vectors are counted in on their first input beat and out on their
last output beat. `framing_error` is sticky until reset: an input beat's `last`
disagreed with the beat count (the input gearbox's `misframed`).
"""
from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

MAX_IN_FLIGHT = 15   # far above what an engine's stage buffers can hold; sizes the counter


class EngineStatus(wiring.Component):
    """Counts vectors in flight from the engine's handshakes.

    in_fire: an input beat is taken this cycle; out_final: the final output beat of a
    vector is taken this cycle; misframed: the input gearbox saw a misplaced `last`.
    """
    idle: Out(1)
    framing_error: Out(1)
    in_fire: In(1)
    out_final: In(1)
    misframed: In(1)

    def __init__(self, in_beats: int, max_in_flight: int = MAX_IN_FLIGHT):
        if not isinstance(in_beats, int) or in_beats < 1:
            raise ValueError(f"EngineStatus: in_beats = {in_beats!r}: must be a positive integer")
        self.in_beats, self.max_in_flight = in_beats, max(MAX_IN_FLIGHT, max_in_flight)
        super().__init__()

    @classmethod
    def attach(cls, m: Module, engine: wiring.Component, in_beats: int, misframed,
               max_in_flight: int = MAX_IN_FLIGHT) -> "EngineStatus":
        """Add one to `m`, watching `engine.i` and `engine.o`, driving `engine.idle` and `engine.framing_error`.

        An engine that can hold more than MAX_IN_FLIGHT vectors (a long pipeline of
        small ones) says how many, so the counter never wraps.
        """
        m.submodules.status = status = cls(in_beats, max_in_flight)
        m.d.comb += [status.in_fire.eq(engine.i.valid & engine.i.ready),
                     status.out_final.eq(engine.o.valid & engine.o.ready & engine.o.payload.last),
                     status.misframed.eq(misframed),
                     engine.idle.eq(status.idle),
                     engine.framing_error.eq(status.framing_error)]
        return status

    def elaborate(self, platform):
        m = Module()
        with m.If(self.misframed):
            m.d.sync += self.framing_error.eq(1)
        in_beat = Signal(range(self.in_beats))
        with m.If(self.in_fire):
            m.d.sync += in_beat.eq(Mux(in_beat == self.in_beats - 1, 0, in_beat + 1))
        entered = self.in_fire & (in_beat == 0)
        in_flight = Signal(range(self.max_in_flight + 1))
        m.d.sync += in_flight.eq(in_flight + entered - self.out_final)
        m.d.comb += self.idle.eq((in_flight == 0) & ~entered)
        return m
