# amaranth: UnusedElaboratable=no
"""hw/operators/isqrt.py on Amaranth's simulator against Python's exact math.isqrt."""
import math

import pytest

from iterative_unit import run_unit
from nomac.hw.operators.isqrt import Isqrt


def radicands(bits: int) -> list[int]:
    """0, 1, 2, 3, the perfect squares near every power of two and their neighbours, the
    powers of two and their neighbours, and the largest radicands."""
    top = (1 << bits) - 1
    squares = [(s + e) ** 2 + f for b in range(-(-bits // 2) + 1) for s in [1 << b] for e in (-1, 0, 1)
               for f in (-1, 0, 1)]
    near_powers = [(1 << b) + e for b in range(bits) for e in (-1, 0, 1)]
    largest_root = math.isqrt(top)
    return sorted({n for n in [0, 1, 2, 3, top, top - 1, largest_root ** 2, largest_root ** 2 - 1,
                               *squares, *near_powers] if 0 <= n <= top})


def run(unit: Isqrt, values: list[int]) -> list[tuple[int, int]]:
    return run_unit(unit, unit.radicand, unit.root, values)


@pytest.mark.parametrize("radicand_bits, bits_per_cycle", [(1, 1), (2, 1), (7, 1), (7, 2), (16, 2), (38, 1),
                                                           (38, 2), (37, 2), (39, 3)])
def test_isqrt_is_the_exact_floor_at_every_edge(radicand_bits, bits_per_cycle):
    unit = Isqrt(radicand_bits, bits_per_cycle)
    values = radicands(radicand_bits)
    results = run(unit, values)
    assert [r for r, _ in results] == [math.isqrt(n) for n in values]
    assert {cycles for _, cycles in results} == {unit.cycles}
    assert unit.cycles == 1 + -(-(-(-radicand_bits // 2)) // bits_per_cycle)


def test_isqrt_of_every_small_radicand():
    unit = Isqrt(10, 2)
    values = list(range(1 << 10))
    assert [r for r, _ in run(unit, values)] == [math.isqrt(n) for n in values]


def test_isqrt_refuses_a_bad_width():
    with pytest.raises(ValueError, match="bits_per_cycle = 0: must be a positive integer"):
        Isqrt(8, 0)
