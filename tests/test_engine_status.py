# amaranth: UnusedElaboratable=no
"""hw/engine_status.py on Amaranth's simulator: `idle` and the sticky `framing_error`.

Definitions (docs/spec.md section 6.2): a vector enters with its first input beat and
leaves with its last output beat; `idle` is high when no vector is inside.
`framing_error` is set by the input gearbox's `misframed` and stays set until reset.
The harness below is only the status logic: the testbench plays both streams.
"""
import pytest
from amaranth import ClockDomain, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from amaranth_streams import simulate
from nomac.hw.engine_status import MAX_IN_FLIGHT, drive_status
from nomac.hw.vector_stream import vector_stream


class StatusHarness(wiring.Component):
    """An engine's ports with nothing inside but `drive_status`; `misframed` is an input."""

    def __init__(self, in_beats: int, max_in_flight: int = MAX_IN_FLIGHT):
        self.in_beats, self.max_in_flight = in_beats, max_in_flight
        super().__init__({"i": In(vector_stream(2, 8)), "o": Out(vector_stream(2, 8)),
                          "idle": Out(1), "framing_error": Out(1), "misframed": In(1)})

    def elaborate(self, platform):
        m = Module()
        drive_status(m, self, self.in_beats, self.misframed, self.max_in_flight)
        return m


# What the testbench drives in one cycle (anything not named is low): an input beat
# that transfers, one offered but not taken, a ready input with nothing offered, and
# the same for output beats, final or not.
IN, IN_OFFERED, IN_READY = {"i": (1, 1)}, {"i": (1, 0)}, {"i": (0, 1)}
OUT, LAST_OUT = {"o": (1, 1)}, {"o": (1, 1), "last": 1}
LAST_OFFERED, LAST_READY = {"o": (1, 0), "last": 1}, {"o": (0, 1), "last": 1}
NOTHING = {}


def drive(ctx, dut, cycle: dict):
    """Set both streams' valid and ready and the output's `last` for one cycle."""
    (i_valid, i_ready), (o_valid, o_ready) = cycle.get("i", (0, 0)), cycle.get("o", (0, 0))
    for signal, value in ((dut.i.valid, i_valid), (dut.i.ready, i_ready), (dut.o.valid, o_valid),
                          (dut.o.ready, o_ready), (dut.o.payload.last, cycle.get("last", 0))):
        ctx.set(signal, value)


def idle_trace(in_beats: int, cycles, max_in_flight: int = MAX_IN_FLIGHT) -> list[int]:
    """`idle` during each of `cycles` (dicts as above), then after the last one."""
    dut = StatusHarness(in_beats, max_in_flight)
    trace = []

    async def testbench(ctx):
        for cycle in cycles:
            drive(ctx, dut, cycle)
            trace.append(ctx.get(dut.idle))
            await ctx.tick()
        trace.append(ctx.get(dut.idle))

    simulate(dut, testbench)
    return trace


def test_rejects_non_positive_beats():
    for beats in (0, -2, 1.0):
        with pytest.raises(ValueError, match=rf"drive_status: in_beats = {beats!r}: must be a positive integer"):
            drive_status(Module(), None, beats, None)


def test_idle_from_first_input_beat_to_last_output_beat():
    """Low from the cycle the vector's first beat enters; high again after its last beat left."""
    assert idle_trace(3, [NOTHING, IN, IN, IN, OUT, LAST_OUT]) == [1, 0, 0, 0, 0, 0, 1]


def test_beats_without_a_transfer_do_not_count():
    assert idle_trace(2, [IN_OFFERED, IN_READY, IN, IN, LAST_OFFERED, LAST_READY, LAST_OUT]) == \
        [1, 1, 0, 0, 0, 0, 0, 1]


def test_only_the_first_of_a_vectors_beats_enters():
    """Two input beats a vector: four beats are two vectors, so two last beats empty the engine."""
    assert idle_trace(2, [IN] * 4 + [LAST_OUT] * 2) == [0] * 6 + [1]


def test_a_vector_entering_as_another_leaves_keeps_the_engine_busy():
    assert idle_trace(1, [IN, {**IN, **LAST_OUT}, LAST_OUT]) == [0, 0, 0, 1]


@pytest.mark.parametrize("max_in_flight", [MAX_IN_FLIGHT, 40])
def test_counts_as_many_vectors_as_the_engine_can_hold(max_in_flight):
    assert idle_trace(1, [IN] * max_in_flight + [LAST_OUT] * max_in_flight, max_in_flight) == \
        [0] * (2 * max_in_flight) + [1]


def test_framing_error_is_sticky_until_reset():
    dut = StatusHarness(in_beats=2)
    top = Module()
    top.domains.sync = sync = ClockDomain()
    top.submodules.dut = dut

    async def testbench(ctx):
        await ctx.tick().repeat(3)
        assert ctx.get(dut.framing_error) == 0
        ctx.set(dut.misframed, 1)
        assert ctx.get(dut.framing_error) == 0               # registered: set by the edge after
        await ctx.tick()
        ctx.set(dut.misframed, 0)
        assert ctx.get(dut.framing_error) == 1
        for cycle in (IN, IN, LAST_OUT, NOTHING):            # a whole vector in and out, then idle
            drive(ctx, dut, cycle)
            await ctx.tick()
        await ctx.tick().repeat(20)
        assert (ctx.get(dut.idle), ctx.get(dut.framing_error)) == (1, 1)
        ctx.set(sync.rst, 1)
        await ctx.tick()
        ctx.set(sync.rst, 0)
        assert ctx.get(dut.framing_error) == 0

    simulate(top, testbench)
