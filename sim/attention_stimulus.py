"""Test phases for an `attention` engine, golden `nomac.model.int_ops.attention_forward`.

A vector is a whole sequence (T tokens of q | k | v). The directed sequences aim at
each intermediate's extremes: the largest |s| and |c| (everything -128 or 127), rows
of equal scores (q = 0, or every key the same: equal p, and the largest Z = T *
exp_table[0]), deltas far beyond the table (t saturates at 255), one key dominating
(p capped at 255) first or last in the row, outputs saturating both ways, and small
values whose deltas walk through the whole table. With RAM, a rewritten exp_table
with entry 0 = 1 (the smallest Z), entries of 2^15 (larger than entry 0: the
non-maximal keys dominate) and zeros.
"""
from dataclasses import replace

import numpy as np

from nomac.model.int_ops import attention_forward
from nomac.sim.phase import extreme_inputs, phase_plan

__all__ = ["attention_phases"]

EXP_ONE = 1 << 15


def sequence(q, k, v) -> np.ndarray:
    """One input vector from [T, E] arrays of q, k and v (broadcast from scalars or rows)."""
    return np.concatenate([q, k, v], axis=1).reshape(-1)


def directed_vectors(layer, rng) -> np.ndarray:
    T, E = layer.tokens, layer.features
    shape = (T, E)

    def full(value):
        return np.full(shape, value)

    def random(lo=-128, hi=127):
        return rng.integers(lo, hi + 1, shape)

    one_key = full(-128)                  # key 0 matches q = 127 best by far, the others worst
    one_key[0] = 127
    last_key = full(-128)
    last_key[-1] = 127
    alternating_keys = np.where(np.arange(T)[:, None] % 2 == 0, 127, -128) + np.zeros(shape, dtype=np.int64)
    same_keys = np.tile(random()[:1], (T, 1))
    rows = extreme_inputs(3 * T * E)
    rows += [
        sequence(full(0), random(), full(127)),            # equal scores, largest positive c
        sequence(full(0), random(), full(-128)),           # equal scores, most negative c
        sequence(random(), same_keys, random()),           # equal scores from identical keys
        sequence(full(127), alternating_keys, random()),   # deltas far beyond the table
        sequence(full(127), one_key, full(127)),           # p = 255 cap, saturates high
        sequence(full(127), one_key, full(-128)),          # p = 255 cap, saturates low
        sequence(full(-128), -1 - last_key, random()),     # the maximum found last
        sequence(full(127), last_key, alternating_keys),
        sequence(random(-8, 8), random(-8, 8), random()),  # small deltas: the table's middle
        sequence(random(-2, 2), random(), random()),
    ]
    return np.array(rows, dtype=np.int64).astype(np.int8)


def rewritten(layer, rng):
    table = rng.integers(0, EXP_ONE + 1, 256)
    table[0] = 1
    table[1::5] = EXP_ONE
    table[2::5] = 0
    table[255] = EXP_ONE
    return replace(layer, exp_table=table.astype(np.int32))


def attention_phases(layer, manifest: dict, vectors: int, seed: int):
    return phase_plan(layer, manifest, vectors, seed, forward=attention_forward, directed_vectors=directed_vectors,
                      rewritten=rewritten if layer.hw.memory == "ram" else None)
