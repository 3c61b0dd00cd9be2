"""Run a compiled layer program on the network engine (hw/network/network_engine.py) in
Amaranth's simulator, through the host ports the board uses: load the table memory,
then per input write it, start, wait for done, read the output and each step's cycles."""
import numpy as np
from amaranth.sim import Simulator


def run_program(engine, program, inputs, timeout_cycles: int = 2_000_000):
    """Outputs (as the golden's rows) and per-step cycles for int8 rows `inputs` [N, width]."""
    results = {"outputs": [], "cycles": []}

    async def host(ctx):
        for addr, word in enumerate(program.table_words):
            ctx.set(engine.table_write.addr, addr)
            ctx.set(engine.table_write.data, word)
            ctx.set(engine.table_write.en, 1)
            await ctx.tick()
        ctx.set(engine.table_write.en, 0)
        for row in np.asarray(inputs, dtype=np.int8):
            for offset, value in enumerate(row.tolist()):
                ctx.set(engine.activation_write.addr, program.input.base + offset)
                ctx.set(engine.activation_write.data, value & 0xFF)
                ctx.set(engine.activation_write.en, 1)
                await ctx.tick()
            ctx.set(engine.activation_write.en, 0)
            ctx.set(engine.start, 1)
            await ctx.tick()
            ctx.set(engine.start, 0)
            waited = 0
            while not (await ctx.tick().sample(engine.done))[2]:
                waited += 1
                assert waited < timeout_cycles, f"no done within {timeout_cycles} cycles, at step {ctx.get(engine.step)}"
            data = bytearray()
            for offset in range(program.output.size):
                ctx.set(engine.activation_read.addr, program.output.base + offset)
                ctx.set(engine.activation_read.en, 1)
                await ctx.tick()
                data.append(ctx.get(engine.activation_read.data))
            ctx.set(engine.activation_read.en, 0)
            results["outputs"].append(program.decode_output(data))
            step_cycles = []
            for step in range(len(program.steps)):
                ctx.set(engine.cycles_read.addr, step)
                ctx.set(engine.cycles_read.en, 1)
                await ctx.tick()
                step_cycles.append(ctx.get(engine.cycles_read.data))
            ctx.set(engine.cycles_read.en, 0)
            results["cycles"].append(step_cycles)

    sim = Simulator(engine)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.run()
    return np.stack(results["outputs"]), results["cycles"]
