"""Run a compiled layer program on the network engine (hw/network/network_engine.py) in
Amaranth's simulator through its engine ports, as a board's command handler does: load
the table memory, stream input vectors in and output vectors out, read each step's
cycles from the step_cycles memory. `gap` is the chance of an idle input cycle,
`backpressure` that of an output cycle without `ready`."""
import random

import numpy as np
from amaranth.sim import Simulator

from nomac.hw.engine import memory_ports


def run_program(engine, program, inputs, timeout_cycles: int = 2_000_000, *, seed: int = 0, gap: float = 0.0,
                backpressure: float = 0.0):
    """Outputs (as the golden's rows) and per-step cycles of each input row of `inputs` [N, width]."""
    rng = random.Random(seed)
    results = {"outputs": [], "cycles": []}
    tables_write, _ = memory_ports(engine, engine.memories[0])
    _, cycles_read = memory_ports(engine, engine.memories[1])

    async def host(ctx):
        for addr, word in enumerate(program.table_words):
            ctx.set(tables_write.addr, addr)
            ctx.set(tables_write.data, word)
            ctx.set(tables_write.en, 1)
            await ctx.tick()
        ctx.set(tables_write.en, 0)
        for row in np.asarray(inputs, dtype=np.int8):
            values = row.tolist()
            for index, value in enumerate(values):
                while rng.random() < gap:
                    ctx.set(engine.i.valid, 0)
                    await ctx.tick()
                ctx.set(engine.i.payload, {"data": [value], "last": index == len(values) - 1})
                ctx.set(engine.i.valid, 1)
                await ctx.tick().until(engine.i.ready)
            ctx.set(engine.i.valid, 0)
            data, waited = bytearray(), 0
            while len(data) < engine.out_elements:
                ready = rng.random() >= backpressure
                ctx.set(engine.o.ready, ready)
                _, _, valid, payload = await ctx.tick().sample(engine.o.valid, engine.o.payload)
                valid = valid and ready
                waited += 1
                assert waited < timeout_cycles, f"no output within {timeout_cycles} cycles"
                if valid:
                    data.append(payload.data[0] & 0xFF)
                    assert payload.last == (len(data) == engine.out_elements)
            ctx.set(engine.o.ready, 0)
            results["outputs"].append(program.decode_output(data))
            step_cycles = []
            for step in range(len(program.steps)):
                ctx.set(cycles_read.addr, step)
                ctx.set(cycles_read.en, 1)
                await ctx.tick()
                step_cycles.append(ctx.get(cycles_read.data))
            ctx.set(cycles_read.en, 0)
            results["cycles"].append(step_cycles)
        assert not ctx.get(engine.framing_error)

    sim = Simulator(engine)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.run()
    return np.stack(results["outputs"]), results["cycles"]
