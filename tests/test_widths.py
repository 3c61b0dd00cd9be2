"""hw/widths.py: accumulator widths (docs/spec.md section 6.4: bias plus every prefix, never wrap).

Expected widths are worked out by hand in the comments, or by enumerating every
code of a tiny layer; tests/test_verilog.py checks the RAM bounds through the manifest.
"""
import itertools

import numpy as np
import pytest

from lut_cases import LutCase
from nomac.hw.widths import bias_memory_bits, lut_accumulator_bits, prefix_sum_range, signed_bits


@pytest.mark.parametrize("lo, hi, bits", [
    (0, 0, 1), (-1, -1, 1), (-1, 0, 1),       # 1 bit holds -1..0
    (0, 1, 2), (-2, 1, 2), (-3, 0, 3),        # 2 bits hold -2..1
    (-128, 127, 8), (-129, 127, 9), (-128, 128, 9),
    (-(1 << 31), (1 << 31) - 1, 32), (0, 1 << 31, 33)])
def test_signed_bits(lo, hi, bits):
    assert signed_bits(lo, hi) == bits


def test_prefix_sums_reach_past_the_final_sums():
    # One output, start 0, terms +100 then -100: prefixes 0, 100, 0. A second output
    # starts at -5 and adds [-3, 2] then [0, 0]: prefixes down to -8.
    start_lo, start_hi = np.array([0, -5]), np.array([0, -5])
    term_lo = np.array([[100, -3], [-100, 0]])
    term_hi = np.array([[100, 2], [-100, 0]])
    assert prefix_sum_range(start_lo, start_hi, term_lo, term_hi) == (-8, 100)


@pytest.mark.parametrize("case", [LutCase("tree", 3, 4, 3, 4), LutCase("tree", 4, 3, 2, 8, seed=3),
                                  LutCase("tree", 2, 2, 1, 2, seed=5)], ids=lambda case: case.id)
def test_rom_width_holds_every_prefix_of_every_code_combination(case):
    layer = case.config().layers[0]
    tables, bias = layer.tables.astype(np.int64), layer.bias.astype(np.int64)
    prefixes = [bias]
    for codes in itertools.product(range(layer.centroids), repeat=layer.codebooks):
        acc = bias.copy()
        for c, k in enumerate(codes):
            acc = acc + tables[c, k]
            prefixes.append(acc)
    prefixes = np.array(prefixes)
    assert lut_accumulator_bits(layer) == signed_bits(int(prefixes.min()), int(prefixes.max()))


def test_bias_memory_lanes():
    # ROM: the values' own signed width; RAM: hw.bias_bits, whatever the values.
    rom = LutCase("tree", 4, 6, 2, 4).config().layers[0]
    assert bias_memory_bits(rom) == signed_bits(int(rom.bias.min()), int(rom.bias.max()))
    ram = LutCase("tree", 4, 6, 2, 4, {"memory": "ram", "bias_bits": 14}).config().layers[0]
    assert bias_memory_bits(ram) == 14
