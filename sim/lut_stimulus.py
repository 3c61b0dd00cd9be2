"""Test phases for a `lut` engine: directed edge cases first, then random traffic.

Edge cases are aimed at the rules of docs/spec.md section 7 that an implementation gets wrong:
ties between prototypes (the smallest k must win), inputs at -128/127, tree
thresholds hit exactly (equal goes left), outputs driven into saturation, and, for
RAM memories, every array rewritten between vectors and written back. Expected
values always come from the golden model (`nomac.model.lut_golden`).
"""
from dataclasses import replace

import numpy as np

from nomac.model.lut_golden import lut_forward
from nomac.model.lut_spec import table_entry_range
from nomac.sim.phase import Phase, extreme_bias, extreme_inputs, phase_plan

__all__ = ["directed_vectors", "lut_phases", "rewritten_arrays"]


def _distances(layer, sub: np.ndarray, c: int) -> np.ndarray:
    diff = sub[None, :].astype(np.int64) - layer.prototypes[c].astype(np.int64)
    return (diff * diff).sum(-1) if layer.encoder == "l2" else np.abs(diff).sum(-1)


def _tie_subvector(layer, c: int, rng) -> np.ndarray | None:
    """A subvector whose nearest prototypes are at least two, or None if none was found."""
    K = layer.centroids
    for _ in range(64):
        a, b = rng.choice(K, size=2, replace=False)
        middle = (layer.prototypes[c, a].astype(np.int64) + layer.prototypes[c, b]) / 2
        candidate = np.clip(np.floor(middle + rng.integers(0, 2, middle.shape) * 0.5), -128, 127)
        distances = _distances(layer, candidate, c)
        if np.count_nonzero(distances == distances.min()) >= 2:
            return candidate.astype(np.int8)
    return None


def _tree_path_subvector(layer, c: int, leaf: int, rng) -> np.ndarray:
    """A subvector steered towards `leaf`: each level's element set to go the leaf's way."""
    V, L = layer.subvector_len, layer.levels
    sub = rng.integers(-128, 128, V)
    node = 0
    for level in range(L):
        bit = (leaf >> (L - 1 - level)) & 1
        threshold = int(layer.thresholds[c, (1 << level) - 1 + node])
        sub[layer.split_dims[c, level]] = min(threshold + 1, 127) if bit else threshold
        node = 2 * node + bit
    return sub.astype(np.int8)


def _exact_threshold_subvector(layer, c: int, rng) -> np.ndarray:
    """A subvector whose element equals the threshold it meets at a random level."""
    V, L = layer.subvector_len, layer.levels
    sub = rng.integers(-128, 128, V).astype(np.int64)
    target = rng.integers(L)
    node = 0
    for level in range(L):
        dim = layer.split_dims[c, level]
        threshold = int(layer.thresholds[c, (1 << level) - 1 + node])
        if level == target:
            sub[dim] = threshold
        node = 2 * node + int(sub[dim] > threshold)
    return sub.astype(np.int8)


def _subvector_for_code(layer, c: int, k: int, rng) -> np.ndarray:
    if layer.encoder == "tree":
        return _tree_path_subvector(layer, c, k, rng)
    return layer.prototypes[c, k].copy()


def directed_vectors(layer, rng) -> np.ndarray:
    D, C, V, M = layer.in_features, layer.codebooks, layer.subvector_len, layer.out_features
    rows = extreme_inputs(D)
    for d in rng.choice(D, size=min(D, 8), replace=False):          # one extreme element each
        row = np.full(D, -128)
        row[d] = 127
        rows.append(row)
    for _ in range(8):                                                 # ties / thresholds hit exactly
        row = rng.integers(-128, 128, D)
        for c in range(C):
            sub = _exact_threshold_subvector(layer, c, rng) if layer.encoder == "tree" \
                else _tie_subvector(layer, c, rng)
            if sub is not None:
                row[c * V:(c + 1) * V] = sub
        rows.append(row)
    tables = layer.tables.astype(np.int64)
    for m in rng.choice(M, size=min(M, 4), replace=False):            # largest and smallest outputs
        for pick in (np.argmax, np.argmin):
            row = np.concatenate([_subvector_for_code(layer, c, int(pick(tables[c, :, m])), rng)
                                  for c in range(C)])
            rows.append(row)
    for _ in range(4):                                                 # every code reachable: random codes
        codes = rng.integers(layer.centroids, size=C)
        rows.append(np.concatenate([_subvector_for_code(layer, c, int(codes[c]), rng) for c in range(C)]))
    return np.array(rows, dtype=np.int64).clip(-128, 127).astype(np.int8)


def rewritten_arrays(layer, rng) -> dict[str, np.ndarray]:
    """New contents for every RAM array, with extremes and ties placed on purpose."""
    C, K, M, V, L = layer.codebooks, layer.centroids, layer.out_features, layer.subvector_len, layer.levels
    lo, hi = table_entry_range(layer.table_bits)
    tables = rng.integers(lo, hi + 1, (C, K, M)).astype(np.int8)
    tables[0, 0, :] = hi
    tables[C - 1, K - 1, :] = lo
    arrays = {"tables": tables, "bias": extreme_bias(layer.hw.bias_bits, M, rng)}
    if layer.encoder == "tree":
        arrays["split_dims"] = rng.integers(0, V, (C, L)).astype(np.int32)
        thresholds = rng.integers(-128, 128, (C, K - 1)).astype(np.int8)
        thresholds[0, 0], thresholds[C - 1, 0] = 127, -128
        arrays["thresholds"] = thresholds
    else:
        prototypes = rng.integers(-128, 128, (C, K, V)).astype(np.int8)
        prototypes[:, K - 1] = prototypes[:, 0]                         # duplicates: ties by construction
        prototypes[0, 0] = 127
        arrays["prototypes"] = prototypes
    return arrays


def lut_phases(layer, manifest: dict, vectors: int, seed: int) -> list[Phase]:
    return phase_plan(layer, manifest, vectors, seed, forward=lut_forward, directed_vectors=directed_vectors,
                      rewritten=_rewritten_layer if layer.hw.memory == "ram" else None)


def _rewritten_layer(layer, rng):
    return replace(layer, **rewritten_arrays(layer, rng))
