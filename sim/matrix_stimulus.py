"""Test phases shared by the matrix-vector engines (`shift`, `dense`).

Directed cases come first, aimed at what such an engine gets wrong: inputs at -128
and 127 against the largest weights (for `shift`: the largest shifts, where a term
is widest), inputs chosen from a row's weight signs to drive that output to its
largest and smallest accumulator (saturation on both sides), zero inputs against
zero weights, and one nonzero input at a time (a term in every lane position). Then
random vectors with random input gaps and output backpressure, RAM rewrites with
planted extremes, and a misframed phase (`last` on the wrong beat). Expected values
always come from the kind's golden model.
"""
from dataclasses import replace

import numpy as np

from nomac.sim.phase import Phase, extreme_inputs, phase_plan

__all__ = ["directed_vectors", "matrix_phases"]


def directed_vectors(layer, rng) -> np.ndarray:
    D, M = layer.in_features, layer.out_features
    weights = layer.integer_weights()
    rows = extreme_inputs(D)
    for d in rng.choice(D, size=min(D, 8), replace=False):          # one nonzero input: one term alone
        for value in (-128, 127):
            row = np.zeros(D)
            row[d] = value
            rows.append(row)
    for m in rng.choice(M, size=min(M, 6), replace=False):          # an output at its extremes
        positive = weights[m] > 0
        rows.append(np.where(positive, 127, -128))                   # largest accumulator
        rows.append(np.where(positive, -128, 127))                   # smallest accumulator
    largest = np.abs(weights).max(axis=0)                            # -128 where some weight is largest
    rows.append(np.where(largest == largest.max(), -128, rng.integers(-128, 128, D)))
    for _ in range(4):                                               # sparse: mostly zero, a few extremes
        row = np.zeros(D)
        picks = rng.choice(D, size=max(1, D // 4), replace=False)
        row[picks] = rng.choice([-128, 127, -1, 1], size=len(picks))
        rows.append(row)
    return np.array(rows, dtype=np.int64).astype(np.int8)


def matrix_phases(layer, manifest: dict, vectors: int, seed: int, forward, rewritten_arrays) -> list[Phase]:
    """The phases for one engine; `forward` is the kind's golden, `rewritten_arrays(layer, rng)`
    new contents for every RAM array (used when the layer's memory is "ram")."""
    def rewritten(layer, rng):
        return replace(layer, **rewritten_arrays(layer, rng))

    return phase_plan(layer, manifest, vectors, seed, forward=forward, directed_vectors=directed_vectors,
                      rewritten=rewritten if layer.hw.memory == "ram" else None)
