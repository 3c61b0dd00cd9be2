"""Latency of an engine, measured on the design itself with Amaranth's simulator.

The latency of a streaming engine depends on how its stages overlap (gearbox fill,
encoder and accumulate loops, pipeline registers), which is easy to get subtly
wrong on paper. So the generator runs the design once: one vector of zeros at full
rate in, ready always high out, and counts the cycles from the first input beat to
the final output beat. The cocotb testbench measures the same quantity in Icarus or
Verilator and reports both.
"""
from amaranth.sim import Simulator

from nomac.hw.vector_stream import beats_per_vector


def measure_latency(engine, in_elements: int, limit: int = 1_000_000) -> int:
    in_beats = beats_per_vector(in_elements, len(engine.i.payload.data))
    result = {}

    async def bench(ctx):
        ctx.set(engine.o.ready, 1)
        ctx.set(engine.i.valid, 1)
        ctx.set(engine.i.payload.last, in_beats == 1)
        sent, cycle, first = 0, 0, None
        while cycle < limit:
            _, _, in_ready, out_valid, out_last = await ctx.tick().sample(
                engine.i.ready, engine.o.valid, engine.o.payload.last)
            if sent < in_beats and in_ready:
                first = cycle if first is None else first
                sent += 1
                ctx.set(engine.i.valid, sent < in_beats)
                ctx.set(engine.i.payload.last, sent == in_beats - 1)
            if out_valid and out_last:
                result["latency"] = cycle - first
                return
            cycle += 1
        raise RuntimeError(f"no output within {limit} cycles")

    simulator = Simulator(engine)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    return result["latency"]
