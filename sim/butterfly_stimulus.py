"""Test phases for a `butterfly` engine: directed edge cases first, then random traffic.

Edge cases aim at the rules of docs/spec.md section 11 an implementation gets wrong: inputs at
-128/127 and alternating, inputs that drive chosen outputs of the first factor to
their largest and smallest sums (so the factor saturates, and the int8 it hands on
is clamped), a single extreme element per vector (each column's path through the
chain), and, for RAM factors, every weight, sign, shift and bias rewritten between
vectors (extremes planted) and written back. Expected values always come from the
golden model (`nomac.model.butterfly_golden`).
"""
import numpy as np

from nomac.model.butterfly_golden import butterfly_forward, factor_multipliers
from nomac.model.butterfly_spec import nonzero_columns
from nomac.sim.phase import Phase, memory_writes


def directed_vectors(layer, rng) -> np.ndarray:
    D = layer.in_features
    rows = [np.full(D, -128), np.full(D, 127), np.tile([-128, 127], D)[:D], np.tile([127, -128], D)[:D],
            np.zeros(D), np.tile([1, -1], D)[:D]]
    for d in rng.choice(D, size=min(D, 8), replace=False):            # one extreme element each
        for value in (127, -128):
            row = np.zeros(D)
            row[d] = value
            rows.append(row)
    first = layer.factors[0]
    multipliers, columns = factor_multipliers(first), nonzero_columns(first.shape)
    for row_index in rng.choice(first.p, size=min(first.p, 6), replace=False):   # largest / smallest sums
        for direction in (1, -1):
            row = rng.integers(-128, 128, D)
            signs = np.sign(multipliers[row_index]) * direction
            row[columns[row_index]] = np.where(signs >= 0, 127, -128)
            rows.append(row)
    return np.array(rows, dtype=np.int64).clip(-128, 127).astype(np.int8)


def rewritten_arrays(layer, rng) -> dict[str, np.ndarray]:
    """New contents for the arrays of every RAM factor, extremes planted."""
    arrays = {}
    limit = 1 << (layer.hw.bias_bits - 1) if layer.hw.bias_bits else 0
    for k, (factor, memory) in enumerate(zip(layer.factors, layer.hw.memory)):
        if memory != "ram":
            continue
        p, s = factor.p, factor.s
        if factor.weights == "int8":
            w = rng.integers(-128, 128, (p, s)).astype(np.int8)
            w[0, :], w[-1, :] = 127, -128
            arrays[f"w{k}"] = w
        else:
            sign = rng.integers(-1, 2, (p, s)).astype(np.int8)
            shift = rng.integers(factor.shift_min, factor.shift_max + 1, (p, s)).astype(np.int8)
            sign[0, :], shift[0, :] = -1, factor.shift_max
            sign[-1, :], shift[-1, :] = 1, factor.shift_max
            arrays[f"sign{k}"], arrays[f"shift{k}"] = sign, shift
        bias = rng.integers(-limit, limit, p, dtype=np.int64)
        bias[0], bias[-1] = limit - 1, -limit
        arrays[f"bias{k}"] = bias.astype(np.int32)
    return arrays


def butterfly_phases(layer, manifest: dict, vectors: int, seed: int) -> list[Phase]:
    rng = np.random.default_rng(seed)
    D = layer.in_features
    in_beats = manifest["streams"]["in"]["beats"]

    def phase(name, layer_now, x, **kw):
        return Phase(name=name, vectors=x, expected=butterfly_forward(layer_now, x), **kw)

    def random_vectors(n):
        return rng.integers(-128, 128, (n, D)).astype(np.int8)

    phases = [
        phase("throughput", layer, random_vectors(max(8, min(vectors, 64))), measure=True),
        phase("directed", layer, directed_vectors(layer, rng), gap=0.2, backpressure=0.3),
        phase("random", layer, random_vectors(vectors), gap=0.3, backpressure=0.4),
    ]
    if "ram" in layer.hw.memory:
        new = layer.with_arrays(rewritten_arrays(layer, rng))
        x = np.concatenate([directed_vectors(new, rng), random_vectors(max(16, vectors // 4))])
        phases.append(phase("rewritten", new, x, gap=0.3, backpressure=0.4,
                            writes=memory_writes(manifest, new.arrays())))
        phases.append(phase("written back", layer, random_vectors(16), gap=0.1, backpressure=0.1,
                            writes=memory_writes(manifest, layer.arrays())))
    phases.append(phase("misframed", layer, random_vectors(4), last_on_beat=0 if in_beats > 1 else -1,
                        framing_error_after=True))
    return phases
