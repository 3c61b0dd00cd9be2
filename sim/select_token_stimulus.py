"""Test phases for a `select_token` engine, golden `nomac.model.int_ops.select_token_forward`.

The engine goes wrong by taking the wrong token, or the right one shifted by a
lane, so the directed rows name what they hold: position codes (element k = (k % 256)
- 128, then its complement, which differs everywhere) and their permutations, token
codes (every element of token t is t - 128, for up to 256 tokens), and the token
alone at one extreme with the rest of the sequence at the other; before them,
-128/127 everywhere and the alternations.
"""
import numpy as np

from nomac.model.int_ops import select_token_forward
from nomac.sim.phase import extreme_inputs, phase_plan, position_codes

__all__ = ["select_token_phases"]


def directed_vectors(layer, rng) -> np.ndarray:
    T, E = layer.tokens, layer.features
    rows = extreme_inputs(T * E) + position_codes(T * E)
    rows += [rng.permutation(rows[5]) for _ in range(3)]
    token = np.repeat(np.arange(T), E)
    if T <= 256:
        rows.append(token - 128)
    rows += [np.where(token == layer.index, 127, -128), np.where(token == layer.index, -128, 127)]
    return np.array(rows, dtype=np.int64).astype(np.int8)


def select_token_phases(layer, manifest: dict, vectors: int, seed: int):
    return phase_plan(layer, manifest, vectors, seed, forward=select_token_forward,
                      directed_vectors=directed_vectors)
