"""Integer golden model of the `shift` kind (docs/spec.md section 8), vectorized over a batch.

Written from the text of docs/spec.md alone; it shares no code with the generator, so that the
two can catch each other's mistakes.
"""
import numpy as np

from nomac.model.fixed_point import requantize
from nomac.model.shift_spec import ShiftLayer


def shift_accumulate(layer: ShiftLayer, x: np.ndarray) -> np.ndarray:
    """acc[n, m] = bias[m] + sum_d sign[m, d] * (x[n, d] << (shift[m, d] - p0)), as int64.

    x << k is x * 2^k for a two's complement x, so the sum is one integer matrix product
    with the weights sign * 2^(shift - p0), every one exact.
    """
    x = np.asarray(x, dtype=np.int64)
    weights = layer.sign.astype(np.int64) * (np.int64(1) << (layer.shift.astype(np.int64) - layer.shift_min))
    return layer.bias.astype(np.int64)[None, :] + x @ weights.T


def shift_forward(layer: ShiftLayer, x: np.ndarray) -> np.ndarray:
    """int8 [N, M] outputs (or int64 accumulators when the layer's output is "acc")."""
    return requantize(shift_accumulate(layer, x), layer.out_shift, layer.output)
