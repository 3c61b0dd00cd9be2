"""Test phases for an `add` engine, golden `nomac.model.int_ops.add_forward`.

What an add gets wrong is the rounding and the clamp, and which word of a meets which
beat of b; so besides -128/127 everywhere, the alternations and a and b of opposite
extremes, the directed rows pick (a, b) pairs whose sum a * mult_a + b * mult_b is an
exact tie (an odd multiple of 2^(shift-1), of either sign) or rounds to the edges of
saturation (127, 128, -128, -129), one kind a row, then all kinds mixed across the lanes.
"""
import numpy as np

from nomac.model.fixed_point import rshift_round
from nomac.model.int_ops import add_forward
from nomac.sim.phase import extreme_inputs, phase_plan

__all__ = ["add_phases", "rounding_targets"]

INT8_VALUES = np.arange(-128, 128)


def rounding_targets(sums: np.ndarray, shift: int) -> list[np.ndarray]:
    """Masks over `sums` (integers before rshift_round and sat8): a positive tie, a negative
    tie, and a rounded value of 127, 128, -128, -129 (either side of each clamp)."""
    sums = np.asarray(sums, dtype=np.int64)
    tie = (sums & ((1 << shift) - 1)) == (1 << shift >> 1) if shift else np.zeros(sums.shape, dtype=bool)
    rounded = rshift_round(sums, shift)
    return [tie & (sums > 0), tie & (sums < 0), *(rounded == edge for edge in (127, 128, -128, -129))]


def directed_vectors(layer, rng) -> np.ndarray:
    E = layer.features
    a, b = np.meshgrid(INT8_VALUES, INT8_VALUES, indexing="ij")
    pairs = np.stack([a.ravel(), b.ravel()], axis=1)
    rows = extreme_inputs(2 * E)
    rows += [np.repeat([-128, 127], E), np.repeat([127, -128], E)]
    chosen = []
    for hits in rounding_targets(pairs[:, 0] * layer.mult_a + pairs[:, 1] * layer.mult_b, layer.shift):
        candidates = pairs[hits]
        if len(candidates):
            picked = candidates[rng.integers(0, len(candidates), E)]
            rows.append(np.concatenate([picked[:, 0], picked[:, 1]]))
            chosen.append(picked[0])
    if chosen:
        mixed = np.array(chosen)[np.arange(E) % len(chosen)]
        rows.append(np.concatenate([mixed[:, 0], mixed[:, 1]]))
    return np.array(rows, dtype=np.int64).astype(np.int8)


def add_phases(layer, manifest: dict, vectors: int, seed: int):
    return phase_plan(layer, manifest, vectors, seed, forward=add_forward, directed_vectors=directed_vectors)
