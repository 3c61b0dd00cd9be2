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

from nomac.sim.phase import Phase, memory_writes


def directed_vectors(layer, rng) -> np.ndarray:
    D, M = layer.in_features, layer.out_features
    weights = layer.integer_weights()
    rows = [np.full(D, -128), np.full(D, 127), np.tile([-128, 127], D)[:D], np.tile([127, -128], D)[:D],
            np.zeros(D)]
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
    rng = np.random.default_rng(seed)
    D = layer.in_features
    in_beats = manifest["streams"]["in"]["beats"]

    def phase(name, layer_now, x, **kw):
        return Phase(name=name, vectors=x, expected=forward(layer_now, x), **kw)

    def random_vectors(n):
        return rng.integers(-128, 128, (n, D)).astype(np.int8)

    phases = [
        phase("throughput", layer, random_vectors(max(8, min(vectors, 64))), measure=True),
        phase("directed", layer, directed_vectors(layer, rng), gap=0.2, backpressure=0.3),
        phase("random", layer, random_vectors(vectors), gap=0.3, backpressure=0.4),
    ]
    if layer.hw.memory == "ram":
        new = replace(layer, **rewritten_arrays(layer, rng))
        x = np.concatenate([directed_vectors(new, rng), random_vectors(max(16, vectors // 4))])
        phases.append(phase("rewritten", new, x, gap=0.3, backpressure=0.4,
                            writes=memory_writes(manifest, new.arrays())))
        phases.append(phase("written back", layer, random_vectors(16), gap=0.1, backpressure=0.1,
                            writes=memory_writes(manifest, layer.arrays())))
    phases.append(phase("misframed", layer, random_vectors(4), last_on_beat=0 if in_beats > 1 else -1,
                        framing_error_after=True))
    return phases


def extreme_bias(layer, rng) -> np.ndarray:
    """A bias for the RAM's hw.bias_bits with both ends of its range planted."""
    limit = 1 << (layer.hw.bias_bits - 1)
    bias = rng.integers(-limit, limit, layer.out_features, dtype=np.int64)
    bias[0], bias[-1] = limit - 1, -limit
    return bias.astype(np.int32)
