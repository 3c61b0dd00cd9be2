"""Test phases for a `shift` engine (shared plan: `sim/matrix_stimulus.py`), golden from
`nomac.model.shift_golden`. RAM rewrites plant the largest shift with both signs on
whole rows, a row of zero signs, and shifts at both ends of [shift_min, shift_max]."""
import numpy as np

from nomac.model.shift_golden import shift_forward
from nomac.sim.matrix_stimulus import matrix_phases
from nomac.sim.phase import extreme_bias

__all__ = ["rewritten_arrays", "shift_phases"]


def rewritten_arrays(layer, rng) -> dict[str, np.ndarray]:
    M, D, p0, p1 = layer.out_features, layer.in_features, layer.shift_min, layer.shift_max
    sign = rng.integers(-1, 2, (M, D))
    shift = rng.integers(p0, p1 + 1, (M, D))
    sign[0], shift[0] = 1, p1                       # the widest terms, all positive
    sign[-1], shift[-1] = -1, p1                    # and all negative
    if M > 2:
        sign[M // 2] = 0                            # an output that is its bias alone
    shift[:, 0] = p0
    return {"sign": sign.astype(np.int8), "shift": shift.astype(np.int8), "bias": extreme_bias(layer.hw.bias_bits, M, rng)}


def shift_phases(layer, manifest: dict, vectors: int, seed: int):
    return matrix_phases(layer, manifest, vectors, seed, shift_forward, rewritten_arrays)
