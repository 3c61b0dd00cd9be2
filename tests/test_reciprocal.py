# amaranth: UnusedElaboratable=no
"""hw/operators/reciprocal.py on Amaranth's simulator against Python's exact 2^N // d."""
import pytest

from iterative_unit import run_unit
from nomac.hw.operators.reciprocal import Reciprocal


def divisors(bits: int) -> list[int]:
    """1, 2, 3, the powers of two and their neighbours, and the largest divisor."""
    top = (1 << bits) - 1
    near_powers = [p + e for b in range(bits) for p in [1 << b] for e in (-1, 0, 1)]
    return sorted({d for d in [1, 2, 3, top, top - 1, *near_powers] if 1 <= d <= top})


def run(unit: Reciprocal, values: list[int]) -> list[tuple[int, int]]:
    return run_unit(unit, unit.divisor, unit.quotient, values)


@pytest.mark.parametrize("divisor_bits, numerator_bits, bits_per_cycle",
                         [(8, 8, 1), (28, 32, 1), (28, 32, 2), (26, 32, 3), (33, 32, 4), (1, 5, 1)])
def test_reciprocal_is_the_exact_floor_at_every_edge(divisor_bits, numerator_bits, bits_per_cycle):
    unit = Reciprocal(divisor_bits, numerator_bits, bits_per_cycle)
    values = divisors(divisor_bits)
    results = run(unit, values)
    assert [q for q, _ in results] == [(1 << numerator_bits) // d for d in values]
    assert {cycles for _, cycles in results} == {unit.cycles}
    assert unit.cycles == 1 + -(-(numerator_bits + 1) // bits_per_cycle)


@pytest.mark.parametrize("quotient_bits, bits_per_cycle", [(18, 1), (18, 2), (23, 3), (5, 1), (32, 1), (32, 3)])
def test_a_known_quotient_width_takes_only_its_steps(quotient_bits, bits_per_cycle):
    """Q quotient bits for divisors above 2^(32 - Q): from the smallest such divisor to the largest."""
    unit = Reciprocal(28, 32, bits_per_cycle, quotient_bits)
    low = (1 << (32 - quotient_bits)) + 1
    values = sorted({d for d in (low, low + 1, 2 * low, 3 << max(0, 31 - quotient_bits), (1 << 28) - 1, *divisors(28))
                     if low <= d < 1 << 28})
    results = run(unit, values)
    assert [q for q, _ in results] == [(1 << 32) // d for d in values]
    assert {cycles for _, cycles in results} == {unit.cycles} == {1 + -(-quotient_bits // bits_per_cycle)}
    assert unit.cycles == Reciprocal.cycles_for(bits_per_cycle, quotient_bits)


def test_reciprocal_refuses_a_bad_width():
    with pytest.raises(ValueError, match="bits_per_cycle = 0: must be a positive integer"):
        Reciprocal(8, 32, 0)
    with pytest.raises(ValueError, match="quotient_bits = 34: must be at most numerator_bits \\+ 1 \\(33\\)"):
        Reciprocal(8, 32, 1, 34)
