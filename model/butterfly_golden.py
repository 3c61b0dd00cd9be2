"""Integer golden model of the `butterfly` kind (docs/spec.md section 11), vectorized over a batch.

Written from the text of docs/spec.md alone; it shares no code with the generator. A factor
[p, q, r, s, t] is seen as its blocks: the input [N, q] is viewed as [N, n_b, s, t]
(block b, column group j, diagonal position k) and the weights [p, s] as
[n_b, r, t, s] (block b, row group i, diagonal position k, term j), so that output
b*r*t + i*t + k = bias + sum_j w[., j] * x[b*s*t + j*t + k].
"""
import numpy as np

from nomac.model.butterfly_spec import ButterflyFactor, ButterflyLayer
from nomac.model.fixed_point import requantize


def factor_multipliers(factor: ButterflyFactor) -> np.ndarray:
    """int64 [p, s]: w for an int8 factor; sign * 2^(shift - shift_min) for a shift factor,
    so that every term is an exact integer in units of 2^shift_min (docs/spec.md section 8)."""
    if factor.weights == "int8":
        return factor.w.astype(np.int64)
    return factor.sign.astype(np.int64) * (np.int64(1) << (factor.shift.astype(np.int64) - factor.shift_min))


def factor_accumulate(factor: ButterflyFactor, x: np.ndarray) -> np.ndarray:
    """acc [N, p] (int64) of one factor for inputs x [N, q]."""
    p, q, r, s, t = factor.shape
    blocks = q // (s * t)
    x = np.asarray(x, dtype=np.int64).reshape(-1, blocks, s, t)                   # [N, b, j, k]
    weights = factor_multipliers(factor).reshape(blocks, r, t, s)                 # [b, i, k, j]
    acc = np.einsum("bikj,nbjk->nbik", weights, x)                                # [N, b, i, k]
    return acc.reshape(-1, p) + factor.bias.astype(np.int64)[None, :]


def butterfly_forward(layer: ButterflyLayer, x: np.ndarray, return_intermediates: bool = False):
    """int8 [N, M] outputs (int64 accumulators of the last factor when the output is "acc").

    Every factor but the last gives sat8(rshift_round(acc, out_shift)) to the next; the
    last does too unless the layer's output is "acc". With return_intermediates, the
    list of every factor's output (the last one as returned) comes back instead.
    """
    outputs = []
    for index, factor in enumerate(layer.factors):
        acc = factor_accumulate(factor, x)
        last = index == len(layer.factors) - 1
        x = requantize(acc, factor.out_shift, layer.output if last else "int8")
        outputs.append(x)
    return outputs if return_intermediates else x
