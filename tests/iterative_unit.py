"""Drive an iterative unit (start, an operand in, done and a result out, e.g. hw/operators/isqrt.py
and reciprocal.py) on Amaranth's simulator: one operation after another."""
from amaranth.sim import Simulator


def run_unit(unit, operand, result, values: list[int]) -> list[tuple[int, int]]:
    """(result, cycles from the start cycle to the done cycle) of each value put on `operand`."""
    results = []

    async def bench(ctx):
        for value in values:
            ctx.set(operand, value)
            ctx.set(unit.start, 1)
            await ctx.tick()
            ctx.set(unit.start, 0)
            cycles = 0
            while True:
                cycles += 1
                _, _, done, answer = await ctx.tick().sample(unit.done, result)
                if done:
                    results.append((answer, cycles))
                    break

    simulator = Simulator(unit)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    return results
