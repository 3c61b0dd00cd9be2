"""hw/constant_multiply.py on Amaranth's simulator against Python's exact value * constant.

The constants are the edges of a shift-and-add: 0, 1, powers of two, their
neighbours (2^k - 1 has a -1 digit at the bottom, 2^k + 1 two far apart digits),
2^31 - 1 (the largest multiplier a config holds), the alternating 0x5555... and
0xAAAA... (the most non-zero digits), and the bundled attention's score_mult and
out_mult; the values are each width's extremes and their neighbours.
"""
import random

import pytest
from amaranth import Module, Signal
from amaranth.back import rtlil
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from nomac.hw.constant_multiply import constant_multiply, signed_digits
from nomac.hw.widths import signed_bits

CONSTANTS = sorted({0, 1, 2, 3, 5, 6, 7, 11, 22244, 20480, (1 << 31) - 1, 0x55555555, 0x2AAAAAAA, 0x5555, 0xAAAA,
                    *(c for k in (4, 8, 15, 16, 30) for c in ((1 << k) - 1, 1 << k, (1 << k) + 1))})
SHAPES = [unsigned(1), unsigned(8), unsigned(16), signed(1), signed(8), signed(19)]


def values_of(shape, rng: random.Random) -> list[int]:
    lo, hi = (-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed else (0, (1 << shape.width) - 1)
    edges = {lo, lo + 1, hi - 1, hi, 0, 1, -1}
    return sorted({v for v in edges if lo <= v <= hi} | {rng.randint(lo, hi) for _ in range(8)})


def evaluate(shape, constant: int, values: list[int]) -> tuple[list[int], object]:
    """constant_multiply(x, constant) for each x (read through a wide signal) and its shape."""
    x = Signal(shape)
    product = constant_multiply(x, constant)
    m = Module()
    out = Signal(signed(72))
    m.d.comb += out.eq(product)
    results = []

    async def testbench(ctx):
        for v in values:
            ctx.set(x, v)
            results.append(ctx.get(out))

    simulator = Simulator(m)
    simulator.add_testbench(testbench)
    simulator.run()
    return results, product.shape()


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_the_product_is_exact_at_every_edge(shape):
    rng = random.Random(shape.width * 2 + shape.signed)
    for constant in CONSTANTS:
        values = values_of(shape, rng)
        results, product_shape = evaluate(shape, constant, values)
        assert results == [v * constant for v in values], f"constant {constant}"
        assert product_shape.signed == (shape.signed and constant > 0)
        if constant:
            n = shape.width
            span = ((-(1 << (n - 1))) * constant, ((1 << (n - 1)) - 1) * constant) if shape.signed \
                else (0, ((1 << n) - 1) * constant)
            assert product_shape.width == (signed_bits(*span) if shape.signed else span[1].bit_length())


def test_the_digits_are_the_non_adjacent_form():
    for constant in [*CONSTANTS, *random.Random(3).sample(range(1 << 31), 200)]:
        digits = signed_digits(constant)
        assert sum(d << k for k, d in digits) == constant
        assert all(d in (-1, 1) for _, d in digits)
        assert all(k2 - k1 >= 2 for (k1, _), (k2, _) in zip(digits, digits[1:]))
    assert len(signed_digits(0x55555555)) == 16 and len(signed_digits((1 << 31) - 1)) == 2


def test_no_multiplier_reaches_the_netlist():
    """A `$mul` cell is what yosys maps onto a DSP block; shift-and-add leaves none."""
    m = Module()
    x, y = Signal(signed(19)), Signal(signed(64))
    m.d.comb += y.eq(constant_multiply(x, 22244) + constant_multiply(x, 0x55555555))
    assert "$mul" not in rtlil.convert(m, ports=[x, y])


def test_a_negative_constant_is_refused():
    with pytest.raises(ValueError, match="constant = -3: must be an integer >= 0"):
        constant_multiply(Signal(8), -3)
