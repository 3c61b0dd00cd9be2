"""Integer golden model of the `lut` kind (docs/spec.md section 7), vectorized over a batch.

Written from the text of docs/spec.md alone; it shares no code with the generator, so that the
two can catch each other's mistakes.
"""
import numpy as np

from nomac.model.fixed_point import requantize
from nomac.model.lut_spec import LutLayer

_CHUNK = 512  # vectors per step of the l1/l2 encoder, to bound the [N, C, K, V] temporary


def lut_encode(layer: LutLayer, x: np.ndarray) -> np.ndarray:
    """Codes [N, C] (int64): nearest prototype (l2, l1; ties to the smallest k) or tree leaf."""
    x = np.asarray(x, dtype=np.int64)
    N, C, V = x.shape[0], layer.codebooks, layer.subvector_len
    sub = x.reshape(N, C, V)
    if layer.encoder == "tree":
        codebook = np.arange(C)[None, :]
        node = np.zeros((N, C), dtype=np.int64)
        for level in range(layer.levels):
            value = sub[:, np.arange(C), layer.split_dims[:, level]]           # [N, C]
            threshold = layer.thresholds[codebook, (1 << level) - 1 + node]    # [N, C]
            node = 2 * node + (value > threshold)
        return node
    prototypes = layer.prototypes.astype(np.int64)[None]                      # [1, C, K, V]
    codes = np.empty((N, C), dtype=np.int64)
    for start in range(0, N, _CHUNK):
        diff = sub[start:start + _CHUNK, :, None, :] - prototypes             # [n, C, K, V]
        distance = (diff * diff if layer.encoder == "l2" else np.abs(diff)).sum(axis=-1)
        codes[start:start + _CHUNK] = distance.argmin(axis=-1)                # first minimum wins
    return codes


def lut_accumulate(layer: LutLayer, codes: np.ndarray) -> np.ndarray:
    """acc[n, m] = bias[m] + sum_c tables[c, code[n, c], m], as int64."""
    rows = layer.tables.astype(np.int64)[np.arange(layer.codebooks)[None, :], codes]  # [N, C, M]
    return layer.bias.astype(np.int64)[None, :] + rows.sum(axis=1)


def lut_forward(layer: LutLayer, x: np.ndarray) -> np.ndarray:
    """int8 [N, M] outputs (or int64 accumulators when the layer's output is "acc")."""
    return requantize(lut_accumulate(layer, lut_encode(layer, x)), layer.out_shift, layer.output)
