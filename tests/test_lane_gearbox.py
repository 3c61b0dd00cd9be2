# amaranth: UnusedElaboratable=no
"""hw/lane_gearbox.py on Amaranth's simulator: vectors re-beaten from in_lanes to out_lanes.

Expected beats come from docs/spec.md section 3 (`vector_beats`): lane i of beat b is
element b*lanes + i, the final beat's unused lanes are 0, `last` on the final beat.
"""
import random

import pytest
from amaranth.hdl import signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from amaranth_streams import final_beats, intervals, receive, send, simulate, stream_beats, stream_through
from nomac.hw.lane_gearbox import LaneGearbox
from nomac.hw.vector_stream import beats_per_vector, vector_stream

# (elements, in_lanes, out_lanes): one element, wires only (same lanes dividing the
# vector), same lanes not dividing it, one lane on either side, lanes not dividing
# the vector on both sides, and lanes wider than the vector.
SHAPES = [(1, 1, 1), (4, 4, 4), (6, 2, 2), (5, 2, 2), (5, 1, 5), (5, 5, 1), (7, 3, 2), (7, 2, 3),
          (12, 5, 3), (6, 4, 3), (3, 5, 2), (2, 1, 4)]
WIRES_ONLY = [(1, 1, 1), (4, 4, 4), (6, 2, 2)]


def shape_id(shape):
    return "E{}-in{}-out{}".format(*shape)


def vectors_of(elements: int, count: int, rng: random.Random, lo: int = -128, hi: int = 127):
    """Random vectors, the first two holding the extremes of the element range."""
    vectors = [[lo] * elements, [hi] * elements]
    return vectors + [[rng.randint(lo, hi) for _ in range(elements)] for _ in range(count - 2)]


def numbered_vectors(elements: int, count: int):
    """Every element distinct (within int8), so a dropped, repeated or swapped element shows."""
    return [[(n * elements + e) % 256 - 128 for e in range(elements)] for n in range(count)]


def test_rejects_non_positive_sizes():
    for args, name in (((0, 1, 1), "elements = 0"), ((4, -1, 1), "in_lanes = -1"), ((4, 1, 1.5), "out_lanes = 1.5")):
        with pytest.raises(ValueError, match=f"LaneGearbox: {name}: must be a positive integer"):
            LaneGearbox(*args, signed(8))


def test_signature():
    gearbox = LaneGearbox(7, 3, 2, signed(8))
    assert gearbox.signature.members == wiring.SignatureMembers({
        "i": In(vector_stream(3, signed(8))),
        "o": Out(vector_stream(2, signed(8))),
        "misframed": Out(1),
    })


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_full_rate_rebeats_every_element_once(shape):
    E, A, B = shape
    vectors = numbered_vectors(E, 4)
    gearbox = LaneGearbox(E, A, B, signed(8))
    taken = stream_through(gearbox, stream_beats(vectors, A), 4 * beats_per_vector(E, B))
    assert taken == stream_beats(vectors, B)


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_steady_state_interval_is_the_slower_side(shape):
    """With the input always valid and the output always ready, the slower side moves a
    beat every cycle: one vector per max(in beats, out beats) cycles."""
    E, A, B = shape
    gearbox = LaneGearbox(E, A, B, signed(8))
    finished = []
    stream_through(gearbox, stream_beats(numbered_vectors(E, 6), A), 6 * beats_per_vector(E, B),
                   background=[final_beats(gearbox.o, finished)])
    interval = max(beats_per_vector(E, A), beats_per_vector(E, B))
    assert intervals(finished) == [interval] * 4


@pytest.mark.parametrize("shape", WIRES_ONLY, ids=shape_id)
def test_same_beats_on_both_sides_is_wires(shape):
    """Without a buffer a beat passes in the cycle it arrives and ready is the output's ready."""
    E, A, B = shape
    gearbox = LaneGearbox(E, A, B, signed(8))
    beats = stream_beats(numbered_vectors(E, 2), A)

    async def testbench(ctx):
        for data, last in beats:
            ctx.set(gearbox.i.payload, {"data": list(data), "last": last})
            ctx.set(gearbox.i.valid, 1)
            for ready in (0, 1):
                ctx.set(gearbox.o.ready, ready)
                assert ctx.get(gearbox.i.ready) == ready
            assert ctx.get(gearbox.o.valid) == 1
            out = ctx.get(gearbox.o.payload)
            assert (tuple(out.data), out.last) == (data, last)
            await ctx.tick()

    simulate(gearbox, testbench)


@pytest.mark.parametrize("shape", [s for s in SHAPES if s not in WIRES_ONLY], ids=shape_id)
def test_handshakes_come_from_registers(shape):
    """i.ready does not follow o.ready, nor o.valid i.valid, within a cycle (so chained
    gearboxes add no combinational path), whatever the state the random traffic leaves."""
    E, A, B = shape
    gearbox = LaneGearbox(E, A, B, signed(8))
    rng = random.Random(3)

    async def testbench(ctx):
        ctx.set(gearbox.i.payload, {"data": [0] * A, "last": 0})
        for _ in range(40):
            seen = set()
            for valid in (0, 1):
                for ready in (0, 1):
                    ctx.set(gearbox.i.valid, valid)
                    ctx.set(gearbox.o.ready, ready)
                    seen.add((ctx.get(gearbox.i.ready), ctx.get(gearbox.o.valid)))
            assert len(seen) == 1
            ctx.set(gearbox.i.valid, rng.random() < 0.6)
            ctx.set(gearbox.o.ready, rng.random() < 0.6)
            await ctx.tick()

    simulate(gearbox, testbench)


@pytest.mark.parametrize("shape", [(7, 3, 2), (6, 2, 2)], ids=shape_id)
def test_misframed_pulses_on_the_wrong_beats_and_framing_follows_the_count(shape):
    """Vector 0 carries `last` on its first beat and not on its final one: `misframed`
    pulses with exactly those two beats; the output is framed by the count regardless."""
    E, A, B = shape
    vectors = numbered_vectors(E, 2)
    beats = stream_beats(vectors, A)
    in_beats = beats_per_vector(E, A)
    beats[0] = (beats[0][0], 1)
    beats[in_beats - 1] = (beats[in_beats - 1][0], 0)
    gearbox = LaneGearbox(E, A, B, signed(8))
    flags = []                # `misframed` at each input transfer; it must be low without one

    async def watch(ctx):
        async for _, _, valid, ready, misframed in ctx.tick().sample(gearbox.i.valid, gearbox.i.ready,
                                                                     gearbox.misframed):
            if valid and ready:
                flags.append(misframed)
            else:
                assert not misframed

    taken = stream_through(gearbox, beats, 2 * beats_per_vector(E, B), background=[watch])
    assert taken == stream_beats(vectors, B)
    assert flags == [1] + [0] * (in_beats - 2) + [1] + [0] * in_beats


@pytest.mark.parametrize("shape", [(7, 3, 2), (5, 1, 5)], ids=shape_id)
def test_output_held_and_input_stalled_under_backpressure(shape):
    """With ready low for 30 cycles the first output beat stays offered, unchanged, the
    input stalls once the buffer is full, and after that every element arrives once."""
    E, A, B = shape
    vectors = numbered_vectors(E, 5)
    gearbox = LaneGearbox(E, A, B, signed(8))
    taken = []

    async def source(ctx):
        await send(ctx, gearbox.i, stream_beats(vectors, A))

    async def sink(ctx):
        ctx.set(gearbox.o.ready, 0)
        offered = None
        for _ in range(30):
            _, _, valid, payload, in_ready = await ctx.tick().sample(gearbox.o.valid, gearbox.o.payload,
                                                                     gearbox.i.ready)
            if offered is not None:
                assert valid and (tuple(payload.data), payload.last) == offered
            elif valid:
                offered = (tuple(payload.data), payload.last)
        assert offered == stream_beats(vectors, B)[0]
        assert not in_ready
        taken.extend(await receive(ctx, gearbox.o, 5 * beats_per_vector(E, B)))

    simulate(gearbox, source, sink)
    assert taken == stream_beats(vectors, B)


@pytest.mark.parametrize("shape, element", [*((shape, signed(8)) for shape in SHAPES),
                                            ((5, 2, 2), unsigned(3)), ((5, 2, 3), unsigned(1)),
                                            ((9, 2, 4), signed(20))],
                         ids=lambda v: shape_id(v) if isinstance(v, tuple) else str(v))
def test_random_traffic(shape, element):
    """Random gaps on valid and random backpressure on ready, fixed seed: every beat exact."""
    E, A, B = shape
    lo, hi = (-(1 << (element.width - 1)), (1 << (element.width - 1)) - 1) if element.signed \
        else (0, (1 << element.width) - 1)
    vectors = vectors_of(E, 40, random.Random(7), lo, hi)
    gearbox = LaneGearbox(E, A, B, element)
    taken = stream_through(gearbox, stream_beats(vectors, A), 40 * beats_per_vector(E, B),
                           seed=11, gap=0.3, backpressure=0.5)
    assert taken == stream_beats(vectors, B)
