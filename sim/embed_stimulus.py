"""Test phases for an `embed` engine, golden `nomac.model.int_ops.embed_forward`.

An embed goes wrong in its rounding and clamp, in which offset meets which element,
and in the class-token rows that take no input. Besides -128/127 everywhere and the
alternations, the directed rows choose per element an x whose x * mult + offset is an
exact tie of either sign or rounds to an edge of saturation (127, 128, -128, -129),
one kind a row. `planted_offsets` makes offsets with the extremes built in (int32's
ends, ties and clamp edges with x' = 0, i.e. in the class-token row); the RAM phase
loads such offsets.
"""
from dataclasses import replace

import numpy as np

from nomac.model.int_ops import embed_forward
from nomac.sim.add_stimulus import INT8_VALUES, rounding_targets
from nomac.sim.phase import extreme_inputs, phase_plan

__all__ = ["embed_phases", "planted_offsets"]

INT32_LO, INT32_HI = -(1 << 31), (1 << 31) - 1


def planted_offsets(tokens: int, features: int, shift: int, rng, limit: int = 1 << 31) -> np.ndarray:
    """int32 [T, E] offsets in [-limit, limit): mostly of the size that rounds into int8's range,
    some anywhere; from the first element on, the values that are ties and clamp edges by
    themselves, and the range's two ends at the first and the last element."""
    lo, hi = max(-limit, INT32_LO), min(limit - 1, INT32_HI)
    near = min(limit, 1 << min(shift + 8, 31))
    offset = np.where(rng.random((tokens, features)) < 0.25, rng.integers(lo, hi, (tokens, features), endpoint=True),
                      rng.integers(-near, near, (tokens, features))).ravel()
    half = 1 << shift >> 1
    edges = [(value << shift) + d for value in (0, 127, 128, -128, -129) for d in (-half, 0, half)]
    planted = [hi] + [v for v in dict.fromkeys(edges) if lo <= v <= hi] + [lo]
    count = min(len(planted) - 1, offset.size - 1)
    offset[:count] = planted[:count]
    offset[-1] = lo
    return offset.reshape(tokens, features).astype(np.int32)


def directed_vectors(layer, rng) -> np.ndarray:
    T, E = layer.tokens, layer.features
    rows = extreme_inputs((T - 1) * E)
    sums = INT8_VALUES * layer.mult + layer.offset[1:].astype(np.int64)[..., None]      # [T-1, E, 256]
    for hits in rounding_targets(sums, layer.shift):
        if hits.any():
            choice = np.argmax(hits + rng.random(hits.shape), axis=-1)   # a random hit, else any value
            rows.append(INT8_VALUES[choice].ravel())
    return np.array(rows, dtype=np.int64).astype(np.int8)


def rewritten(layer, rng):
    return replace(layer, offset=planted_offsets(layer.tokens, layer.features, layer.shift, rng))


def embed_phases(layer, manifest: dict, vectors: int, seed: int):
    return phase_plan(layer, manifest, vectors, seed, forward=embed_forward, directed_vectors=directed_vectors,
                      rewritten=rewritten if layer.hw.memory == "ram" else None)
