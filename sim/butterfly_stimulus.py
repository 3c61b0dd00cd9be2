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
from nomac.sim.phase import Phase, extreme_bias, extreme_inputs, phase_plan

__all__ = ["butterfly_phases", "directed_vectors", "rewritten_arrays"]


def directed_vectors(layer, rng) -> np.ndarray:
    D = layer.in_features
    rows = [*extreme_inputs(D), np.tile([1, -1], D)[:D]]
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
        arrays[f"bias{k}"] = extreme_bias(layer.hw.bias_bits, p, rng)
    return arrays


def butterfly_phases(layer, manifest: dict, vectors: int, seed: int) -> list[Phase]:
    return phase_plan(layer, manifest, vectors, seed, forward=butterfly_forward, directed_vectors=directed_vectors,
                      rewritten=_rewritten_layer if "ram" in layer.hw.memory else None)


def _rewritten_layer(layer, rng):
    return layer.with_arrays(rewritten_arrays(layer, rng))
