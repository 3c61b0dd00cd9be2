"""Accumulator widths derived from a layer's arrays (docs/spec.md sections 2 and 6.4: never wrap).

The widths cover every partial sum the datapath holds, not just the final one: a
partial sum can leave the range of the final sums (a large table entry cancelled by
a later one), so the bound runs over all prefixes of the accumulation order.
"""
import numpy as np


def signed_bits(lo: int, hi: int) -> int:
    """The fewest bits of a two's complement number holding every value in [lo, hi]."""
    bits = 1
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits


def prefix_sum_range(start_lo: np.ndarray, start_hi: np.ndarray,
                     term_lo: np.ndarray, term_hi: np.ndarray) -> tuple[int, int]:
    """Extremes of start + sum of the first p terms, over every p and every output.

    start_*: [M] bounds of the initial value (the bias); term_*: [T, M] bounds of
    the terms in the order the hardware adds them.
    """
    lo = np.asarray(start_lo, dtype=object) + np.vstack([np.zeros_like(term_lo[:1]),
                                                          np.cumsum(np.asarray(term_lo, dtype=object), axis=0)])
    hi = np.asarray(start_hi, dtype=object) + np.vstack([np.zeros_like(term_hi[:1]),
                                                          np.cumsum(np.asarray(term_hi, dtype=object), axis=0)])
    return int(lo.min()), int(hi.max())


def lut_accumulator_bits(layer) -> int:
    """Width of acc = bias + sum_c tables[c, code_c, :], accumulated in codebook order.

    ROM: from the arrays themselves. RAM: any table entry of table_bits bits and any bias
    that fits hw.bias_bits can be loaded later, so the bound is over those ranges.
    """
    C, M = layer.codebooks, layer.out_features
    if layer.hw.memory == "ram":
        limit, entry = 1 << (layer.hw.bias_bits - 1), 1 << (layer.table_bits - 1)
        start_lo, start_hi = np.full(M, -limit), np.full(M, limit - 1)
        term_lo, term_hi = np.full((C, M), -entry), np.full((C, M), entry - 1)
    else:
        start_lo = start_hi = layer.bias.astype(np.int64)
        term_lo = layer.tables.min(axis=1).astype(np.int64)   # [C, M]
        term_hi = layer.tables.max(axis=1).astype(np.int64)
    return signed_bits(*prefix_sum_range(start_lo, start_hi, term_lo, term_hi))


def bias_memory_bits(layer) -> int:
    """Width of a layer's bias memory (any kind): hw.bias_bits for RAM, the values' own width for ROM."""
    if layer.hw.memory == "ram":
        return layer.hw.bias_bits
    return signed_bits(int(layer.bias.min()), int(layer.bias.max()))
