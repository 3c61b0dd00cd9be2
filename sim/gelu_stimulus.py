"""Test phases for a `gelu` engine, golden `nomac.model.int_ops.gelu_forward`: every one of
the 256 table entries in every lane position, then random rows; with RAM, a rewritten
table whose entries are all different from the layer's (-x - 1) and extremes."""
from dataclasses import replace

import numpy as np

from nomac.model.int_ops import gelu_forward
from nomac.sim.phase import extreme_inputs, phase_plan

__all__ = ["gelu_phases"]


def directed_vectors(layer, rng) -> np.ndarray:
    E = layer.features
    every = np.arange(-128, 128)
    rows = extreme_inputs(E)
    for start in range(0, 256 + E, E):                   # all 256 inputs, shifted through the lanes
        rows.append(np.roll(every, -start)[np.arange(E) % 256])
    return np.array(rows, dtype=np.int64).astype(np.int8)


def rewritten(layer, rng):
    table = (-1 - layer.table.astype(np.int64)).astype(np.int8)      # a different entry everywhere
    table[0], table[255] = 127, -128
    return replace(layer, table=table)


def gelu_phases(layer, manifest: dict, vectors: int, seed: int):
    return phase_plan(layer, manifest, vectors, seed, forward=gelu_forward, directed_vectors=directed_vectors,
                      rewritten=rewritten if layer.hw.memory == "ram" else None)
