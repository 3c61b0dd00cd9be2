"""Integer golden model of the `dense` kind (docs/spec.md section 9), vectorized over a batch.

Written from the specification alone; it shares no code with the generator.
"""
import numpy as np

from nomac.model.dense_spec import DenseLayer
from nomac.model.fixed_point import requantize


def dense_accumulate(layer: DenseLayer, x: np.ndarray) -> np.ndarray:
    """acc[n, m] = bias[m] + sum_d weights[m, d] * x[n, d], as int64."""
    x = np.asarray(x, dtype=np.int64)
    return layer.bias.astype(np.int64)[None, :] + x @ layer.weights.astype(np.int64).T


def dense_forward(layer: DenseLayer, x: np.ndarray) -> np.ndarray:
    """int8 [N, M] outputs (or int64 accumulators when the layer's output is "acc")."""
    return requantize(dense_accumulate(layer, x), layer.out_shift, layer.output)
