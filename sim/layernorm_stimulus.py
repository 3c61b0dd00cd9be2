"""Test phases for a `layernorm` engine, golden `nomac.model.int_ops.layernorm_forward`.

Directed rows aim at what the datapath can get wrong: rows of one value (variance 0,
r = 0: the output is the rounded bias), one element off the rest by 1 (the smallest
non-zero variance: the largest reciprocal) or by 255 (the largest |normalized value|),
-128/127 alternations and halves (the largest variance, the widest square root),
and rows picked from random candidates whose outputs saturate both ways or whose
roundings are exact ties (d * inv, n * weight + bias at 2^(s-1) mod 2^s) or one below.
With RAM, the rewritten weights include -32768 and 32767, the biases the int32 ends,
and biases that put rows of one value and the outlier row on rounding ties.
"""
from dataclasses import replace

import numpy as np

from nomac.model.int_ops import RECIP_BITS, isqrt, layernorm_forward, rshift_round
from nomac.sim.phase import extreme_inputs, phase_plan

__all__ = ["layernorm_phases"]

CONSTANTS = (-128, -127, -1, 0, 1, 77, 126, 127)
CANDIDATE_ELEMENTS = 1 << 21           # random candidates searched, in elements (rows * E)
PICKED = 3                             # rows kept per kind of pick


def _normalized(layer, x) -> tuple[np.ndarray, np.ndarray]:
    """d * inv per element and its rounding n (int64), step by step as docs/spec.md 13.3."""
    x = np.asarray(x, dtype=np.int64)
    E, G = layer.features, layer.norm_bits
    d = E * x - x.sum(axis=-1, keepdims=True)
    r = isqrt(((d * d).sum(axis=-1, keepdims=True) << (2 * G)) // E)
    product = d * np.where(r > 0, (1 << RECIP_BITS) // np.maximum(r, 1), 0)
    return product, rshift_round(product, RECIP_BITS - 2 * G)


def _near_tie(values, shift: int) -> np.ndarray:
    """Per row: some element is at a rounding tie of rshift_round(., shift) or one below."""
    if shift == 0:
        return np.zeros(len(values), dtype=bool)
    residue = values & ((1 << shift) - 1)
    half = 1 << (shift - 1)
    return ((residue == half) | (residue == half - 1)).any(axis=-1)


def _outlier_rows(E: int) -> list[np.ndarray]:
    rows = []
    for position in sorted({0, E // 2, E - 1}):
        for base, other in ((-128, 127), (127, -128), (0, 1), (5, 4), (-77, 100)):
            row = np.full(E, base)
            row[position] = other
            rows.append(row)
    return rows


def _picked_rows(layer, rng) -> list[np.ndarray]:
    """Random rows (uniform, and a few values repeated) whose outputs saturate both ways
    or whose roundings are near ties."""
    E = layer.features
    count = max(64, CANDIDATE_ELEMENTS // E) // 2
    uniform = rng.integers(-128, 128, (count, E))
    palettes = rng.integers(-128, 128, (count, 3))                 # rows of three values, repeated
    few_values = np.take_along_axis(palettes, rng.integers(0, 3, (count, E)), axis=1)
    candidates = np.concatenate([uniform, few_values])
    product, n = _normalized(layer, candidates)
    acc = n * layer.weight.astype(np.int64) + layer.bias.astype(np.int64)
    y = layernorm_forward(layer, candidates)
    picks = [(y == 127).any(axis=-1) & (y == -128).any(axis=-1),
             _near_tie(product, RECIP_BITS - 2 * layer.norm_bits),
             _near_tie(acc, layer.out_shift)]
    return [candidates[i] for chosen in picks for i in np.flatnonzero(chosen)[:PICKED]]


def directed_vectors(layer, rng) -> np.ndarray:
    E = layer.features
    rows = extreme_inputs(E)
    rows += [np.full(E, value) for value in CONSTANTS]
    rows += _outlier_rows(E)
    half = np.where(np.arange(E) < E // 2, -128, 127)
    rows += [half, -1 - half, np.round(np.linspace(-128, 127, E))]
    rows += _picked_rows(layer, rng)
    return np.array(rows, dtype=np.int64).astype(np.int8)


def rewritten(layer, rng):
    """New weights and biases with the extremes planted; rows of one value give
    y = sat8(rshift_round(bias)), so biases at 2^(s-1) mod 2^s (and one below) are exact
    ties there, and biases cancelling n * weight put the first outlier row on ties too."""
    E, s = layer.features, layer.out_shift
    weight = rng.integers(-(1 << 15), 1 << 15, E)
    planted_weights = [-(1 << 15), (1 << 15) - 1, 0, 1][:E]
    weight[:len(planted_weights)] = planted_weights
    bias = rng.integers(-(1 << 31), 1 << 31, E)
    bias[0], bias[-1] = (1 << 31) - 1, -(1 << 31)
    if s >= 1:                             # ties that int32 biases can reach (none for s > 32)
        _, n = _normalized(layer, _outlier_rows(E)[0][None])
        for e in range(1, E - 1):
            target = (1 << (s - 1)) + (e % 5 - 2) * (1 << s) - (e % 2)
            planted = target - (0 if e % 3 == 0 else int(n[0, e]) * int(weight[e]))
            if -(1 << 31) <= planted < (1 << 31):
                bias[e] = planted
    return replace(layer, weight=weight.astype(np.int16), bias=bias.astype(np.int32))


def layernorm_phases(layer, manifest: dict, vectors: int, seed: int):
    return phase_plan(layer, manifest, vectors, seed, forward=layernorm_forward, directed_vectors=directed_vectors,
                      rewritten=rewritten if layer.hw.memory == "ram" else None)
