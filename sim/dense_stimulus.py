"""Test phases for a `dense` engine (shared plan: `sim/matrix_stimulus.py`), golden from
`nomac.model.dense_golden`. RAM rewrites plant rows of 127 and of -128 (the largest
products of both signs, -128 * -128 = 16384 included) and a row of zeros."""
import numpy as np

from nomac.model.dense_golden import dense_forward
from nomac.sim.matrix_stimulus import matrix_phases
from nomac.sim.phase import extreme_bias

__all__ = ["dense_phases", "rewritten_arrays"]


def rewritten_arrays(layer, rng) -> dict[str, np.ndarray]:
    M, D = layer.out_features, layer.in_features
    weights = rng.integers(-128, 128, (M, D))
    weights[0], weights[-1] = 127, -128
    if M > 2:
        weights[M // 2] = 0
    return {"weights": weights.astype(np.int8), "bias": extreme_bias(layer.hw.bias_bits, M, rng)}


def dense_phases(layer, manifest: dict, vectors: int, seed: int):
    return matrix_phases(layer, manifest, vectors, seed, dense_forward, rewritten_arrays)
