"""Test phases for a `patches` engine, golden `nomac.model.int_ops.patches_forward`.

A reordering goes wrong by putting an element in the wrong place, or by reading a
strip buffer before it is refilled, so the directed rows name their positions:
element k = (k % 256) - 128 (and, past 256 elements, a row of k // 256), each
followed by its complement, which differs everywhere (a stale element shows), then
random permutations of the codes and single hot pixels at the first, middle and
last position; before them, -128/127 everywhere and the alternations.
"""
import numpy as np

from nomac.model.int_ops import patches_forward
from nomac.sim.phase import extreme_inputs, phase_plan, position_codes

__all__ = ["patches_phases"]


def directed_vectors(layer, rng) -> np.ndarray:
    D = layer.in_features
    rows = extreme_inputs(D) + position_codes(D)
    rows += [rng.permutation(rows[5]) for _ in range(3)]
    for hot in sorted({0, D // 2, D - 1}):
        row = np.full(D, -128)
        row[hot] = 127
        rows.append(row)
    return np.array(rows, dtype=np.int64).astype(np.int8)


def patches_phases(layer, manifest: dict, vectors: int, seed: int):
    return phase_plan(layer, manifest, vectors, seed, forward=patches_forward, directed_vectors=directed_vectors)
