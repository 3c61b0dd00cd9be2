"""Run one step of a network unit (hw/network/) in Amaranth's simulator.

The table memory is a list of 64-bit words behind the unit's read port, one cycle of
read latency as the SPRAM and block RAM have (hw/network/unit.py). Inputs are offered
with random gaps on `valid`, outputs taken with random backpressure on `ready`; the
sink checks the stream rule (an offered element stays on offer, unchanged, until it is
taken), `done` must pulse once, on the cycle the last output is taken.
"""
import random

from amaranth.sim import Simulator

from nomac.hw.flat_verilog import flat_rtlil
from nomac.hw.multiplier_count import count_multipliers
from nomac.hw.network.unit import StandaloneUnit, pack_params


def assert_multiplies_on_the_shared_multiplier(unit):
    """`unit` has a port to the network's shared multiplier and no multiplier of its own."""
    assert "multiplier" in unit.signature.members
    assert count_multipliers(flat_rtlil(unit, "unit"), "unit") == 0


def run_step(unit, fields, step, inputs, *, table_base: int = 0, steps: int = 1, **options):
    """Outputs of `steps` runs of `step` over `inputs` (a list of ints, the step's input
    elements), and the cycles of each run: clock edges from the one that takes `start` to
    the one that takes the last output. Returns (outputs of the last run, cycles list);
    `options` as for `run_steps`."""
    outputs, cycles = run_steps(unit, fields, [(step, inputs, table_base)] * steps, **options)
    return outputs[-1], cycles


def run_steps(unit, fields, runs, *, seed: int = 0, gap: float = 0.0, backpressure: float = 0.0,
              timeout_cycles: int = 200_000):
    """Run steps back to back on one unit: `runs` is a list of (step, inputs, table_base).

    Returns (outputs of each run, cycles of each run). Every run's `table_words` are placed
    at its table base (runs must not overlap there); words elsewhere read as a marker
    pattern, so a read outside a step's arrays shows up as wrong outputs. `gap` is the
    chance of an idle input cycle, `backpressure` that of a cycle without `ready`. The unit
    runs alone (`StandaloneUnit`: its own multiplier and requantizer, if it uses the shared ones).
    """
    unit = StandaloneUnit(unit)
    rng = random.Random(seed)
    words = {}
    for step, inputs, table_base in runs:
        assert len(inputs) == step.in_elements, (len(inputs), step.in_elements)
        words.update({table_base + n: word for n, word in enumerate(step.table_words)})
    results = {"cycles": [], "outputs": []}

    async def table_memory(ctx):
        async for _, _, en, addr in ctx.tick().sample(unit.table.en, unit.table.addr):
            if en:
                ctx.set(unit.table.data, words.get(addr, 0xA5A5_5A5A_A5A5_5A5A))

    async def control(ctx):
        for step, _, _ in runs:
            ctx.set(unit.params.as_value(), pack_params(fields, step.params))
            ctx.set(unit.start, 1)
            await ctx.tick()
            ctx.set(unit.start, 0)
            cycles = 0
            while True:
                _, _, done = await ctx.tick().sample(unit.done)
                cycles += 1
                if done:
                    break
                assert cycles < timeout_cycles, f"no done within {timeout_cycles} cycles"
            results["cycles"].append(cycles)
            for _ in range(rng.randrange(3)):
                await ctx.tick()

    async def source(ctx):
        for _, inputs, _ in runs:
            for value in inputs:
                while gap and rng.random() < gap:
                    ctx.set(unit.i.valid, 0)
                    await ctx.tick()
                ctx.set(unit.i.payload, int(value))
                ctx.set(unit.i.valid, 1)
                await ctx.tick().until(unit.i.ready)
            ctx.set(unit.i.valid, 0)

    async def sink(ctx):
        for step, _, _ in runs:
            outputs, offered = [], None
            while len(outputs) < step.out_elements:
                ready = not (backpressure and rng.random() < backpressure)
                ctx.set(unit.o.ready, ready)
                _, _, valid, payload, done = await ctx.tick().sample(unit.o.valid, unit.o.payload, unit.done)
                value = int(payload)
                if offered is not None:
                    assert valid, f"output {len(outputs)}: {offered} withdrawn before it was taken"
                    assert value == offered, f"output {len(outputs)}: changed from {offered} to {value}"
                offered = value if valid and not ready else None
                if valid and ready:
                    outputs.append(value)
                    assert done == (len(outputs) == step.out_elements), \
                        f"done = {done} when output {len(outputs)} of {step.out_elements} was taken"
                else:
                    assert not done, f"done without an output taken, after {len(outputs)} outputs"
            ctx.set(unit.o.ready, 0)
            results["outputs"].append(outputs)

    sim = Simulator(unit)
    sim.add_clock(1e-6)
    sim.add_process(table_memory)
    sim.add_testbench(control)
    sim.add_testbench(source, background=True)
    sim.add_testbench(sink, background=True)
    sim.run()
    return results["outputs"], results["cycles"]
