"""Drive and watch vector streams (hw/vector_stream.py) in Amaranth's simulator.

The unit tests' counterpart of sim/drivers.py, which drives the generated Verilog
under cocotb. A beat is `(data, last)` with `data` a tuple of lane values. `send`
offers beats with random gaps on `valid`; `receive` takes them with random
backpressure on `ready` and checks, on every clock edge, the rule of docs/spec.md
section 3 that only a sink can see: a beat on offer stays on offer, unchanged,
until it is taken. Where `last` belongs and which lanes are zero is the test's
business: it compares whole beats with `vector_beats` of the expected vectors.

As in Amaranth's own testbenches, inputs are set with `ctx.set` between edges and
the values an edge saw are read with `ctx.tick().sample(...)`.
"""
import random

from amaranth.sim import Simulator


def vector_beats(vector, lanes: int) -> list[tuple[tuple[int, ...], int]]:
    """One vector as docs/spec.md section 3 beats it: lane i of beat b holds element
    b * lanes + i, the final beat's unused lanes are 0, `last` is on the final beat only."""
    vector = [int(v) for v in vector]
    count = -(-len(vector) // lanes)
    beats = []
    for b in range(count):
        data = vector[b * lanes:(b + 1) * lanes]
        beats.append((tuple(data + [0] * (lanes - len(data))), int(b == count - 1)))
    return beats


def stream_beats(vectors, lanes: int) -> list[tuple[tuple[int, ...], int]]:
    """The beats of several vectors in a row."""
    return [beat for vector in vectors for beat in vector_beats(vector, lanes)]


async def send(ctx, stream, beats, rng: random.Random | None = None, gap: float = 0.0):
    """Offer each beat until it is taken; `gap` is the chance of an idle cycle before a beat."""
    for data, last in beats:
        while gap and rng.random() < gap:
            ctx.set(stream.valid, 0)
            await ctx.tick()
        ctx.set(stream.payload, {"data": list(data), "last": last})
        ctx.set(stream.valid, 1)
        await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def receive(ctx, stream, count: int, rng: random.Random | None = None, backpressure: float = 0.0,
                  timeout_cycles: int = 1000) -> list[tuple[tuple[int, ...], int]]:
    """Take `count` beats; `backpressure` is the chance `ready` is low in a cycle.

    Fails when a beat offered while `ready` was low is withdrawn or changed before it
    is taken, or when no beat arrives for `timeout_cycles` cycles.
    """
    beats, offered, waited = [], None, 0
    while len(beats) < count:
        ready = not (backpressure and rng.random() < backpressure)
        ctx.set(stream.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
        beat = (tuple(payload.data), payload.last)
        if offered is not None:
            assert valid, f"beat {len(beats)}: {offered} withdrawn before it was taken"
            assert beat == offered, f"beat {len(beats)}: changed from {offered} to {beat} while ready was low"
        offered = beat if valid and not ready else None
        if valid and ready:
            beats.append(beat)
            waited = 0
        else:
            waited += 1
            assert waited <= timeout_cycles, f"no beat for {timeout_cycles} cycles after {len(beats)} of {count}"
    ctx.set(stream.ready, 0)
    return beats


def final_beats(stream, cycles: list):
    """A background testbench appending to `cycles` the cycle of each transfer of a final beat."""
    async def watch(ctx):
        cycle = 0
        async for _, _, valid, ready, last in ctx.tick().sample(stream.valid, stream.ready, stream.payload.last):
            if valid and ready and last:
                cycles.append(cycle)
            cycle += 1
    return watch


def intervals(cycles: list, skip: int = 1) -> list:
    """Cycles between successive entries of `cycles`, after the first `skip` (the pipeline filling)."""
    return [b - a for a, b in zip(cycles[skip:], cycles[skip + 1:])]


def simulate(dut, *testbenches, background=()):
    """Run `testbenches` on `dut` with a clock until all have returned; `background`
    testbenches (monitors that loop forever) stop with them."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for testbench in testbenches:
        sim.add_testbench(testbench)
    for testbench in background:
        sim.add_testbench(testbench, background=True)
    sim.run()


def stream_through(dut, beats, out_count: int, seed: int = 0, gap: float = 0.0, backpressure: float = 0.0,
                   background=(), quiet_cycles: int = 20) -> list[tuple[tuple[int, ...], int]]:
    """Send `beats` into `dut.i` while taking `out_count` beats from `dut.o`; the beats taken.

    Fails if another beat follows within `quiet_cycles` cycles (a duplicated beat at
    the end would otherwise go unseen). Source and sink draw from their own generators
    (seeds `seed` and `seed + 1`), so the gaps do not change with the backpressure.
    """
    taken = []

    async def source(ctx):
        await send(ctx, dut.i, beats, random.Random(seed), gap)

    async def sink(ctx):
        taken.extend(await receive(ctx, dut.o, out_count, random.Random(seed + 1), backpressure))
        ctx.set(dut.o.ready, 1)
        for _ in range(quiet_cycles):
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            assert not valid, f"a beat after the {out_count} expected"

    simulate(dut, source, sink, background=background)
    return taken
