"""hw/requantize.py in gates on Amaranth's simulator: the output rule and the adder tree.

Expected values are docs/spec.md section 2 written out in Python integers:
rshift_round(a, s) = floor((a + 2^(s-1)) / 2^s) for s >= 1, a for s = 0; sat8 clamps
to [-128, 127].
"""
import random

import pytest
from amaranth import Module, Signal
from amaranth.hdl import signed
from amaranth.sim import Simulator

from nomac.hw.requantize import balanced_sum, requantize


def output_rule(a: int, s: int) -> int:
    rounded = a if s == 0 else (a + (1 << (s - 1))) // (1 << s)
    return min(127, max(-128, rounded))


def evaluate(inputs: list[Signal], expression, cases) -> list[int]:
    """The expression's value (read through a wide signal, so nothing is cut off) for each
    tuple of input values in `cases`."""
    m = Module()
    out = Signal(signed(64))
    m.d.comb += out.eq(expression)
    values = []

    async def testbench(ctx):
        for case in cases:
            for signal, value in zip(inputs, case):
                ctx.set(signal, value)
            values.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(testbench)
    sim.run()
    return values


def test_the_spec_examples():
    acc = Signal(signed(4))
    assert evaluate([acc], requantize(acc, 1), [(-3,), (3,)]) == [-1, 2]


@pytest.mark.parametrize("shift", [0, 1, 2, 3, 9, 10, 12])
def test_every_10_bit_accumulator(shift):
    acc = Signal(signed(10))
    values = range(-512, 512)
    assert evaluate([acc], requantize(acc, shift), [(a,) for a in values]) == [output_rule(a, shift) for a in values]


def test_halves_round_up_on_a_wide_accumulator():
    """Around every rounding and saturation boundary of a 40-bit accumulator shifted by 30."""
    acc, s = Signal(signed(40)), 30
    half, one = 1 << (s - 1), 1 << s
    values = [edge + d for edge in (0, half, -half, 127 * one + half, -128 * one - half, -(1 << 39), (1 << 39) - 1)
              for d in (-1, 0, 1) if -(1 << 39) <= edge + d < (1 << 39)]
    assert evaluate([acc], requantize(acc, s), [(a,) for a in values]) == [output_rule(a, s) for a in values]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 7, 8, 9])
def test_balanced_sum_is_the_sum(count):
    terms = [Signal(signed(8), name=f"t{i}") for i in range(count)]
    rng = random.Random(count)
    cases = [tuple([-128] * count), tuple([127] * count)]
    cases += [tuple(rng.randint(-128, 127) for _ in range(count)) for _ in range(50)]
    assert evaluate(terms, balanced_sum(terms), cases) == [sum(case) for case in cases]
