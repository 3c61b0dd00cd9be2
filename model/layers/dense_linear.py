"""`export_dense`: a trained nn.Linear as an int8 `dense` layer, the multiply-accumulate baseline.

Symmetric per-tensor int8 weights, the usual post-training quantization of a linear
layer (as in Jacob et al., "Quantization and Training of Neural Networks for
Efficient Integer-Arithmetic-Only Inference", CVPR 2018, without zero points):
s_w = max|W| / 127, weights = round_half_up(W / s_w); activations are int8 with the
same `quantize_activations` as every nomac kind.
"""
import numpy as np
import torch
from torch import nn

from nomac.model.accumulator_export import bias_in_units, check_scale, choose_out_shift, round_half_up
from nomac.model.config import DESCRIPTIVE_LAYER_KEYS
from nomac.model.dense_spec import DenseLayer
from nomac.model.field_rules import require_choice
from nomac.model.fixed_point import INT8_MAX
from nomac.model.layers.activations import quantize_activations
from nomac.model.matrix_layer import OUTPUTS

__all__ = ["weight_scale", "export_dense"]


def weight_scale(weight: np.ndarray) -> float:
    """max|W| / 127 (1.0 for an all-zero W, whose int8 weights are zero at any scale)."""
    peak = float(np.abs(weight).max()) if weight.size else 0.0
    return peak / INT8_MAX if peak > 0 else 1.0


def export_dense(linear: nn.Linear, name: str, input_scale: float, output_scale: float | None = None,
                 calibration=None, *, output: str = "int8", hw: dict | None = None,
                 description: str | None = None) -> DenseLayer:
    """The integer `dense` layer for int8 inputs x_int = quantize_activations(x, input_scale).

    - weights: int8 round_half_up(W / s_w), s_w = max|W| / 127, so every weight lies
      in [-127, 127] and is off by at most s_w / 2.
    - The accumulator counts u = input_scale * s_w; bias = round_half_up(b / u), int32.
    - out_shift: the smallest that keeps every accumulator of `calibration` (float
      inputs [N, D]) out of saturation, or with `output_scale` the smallest with
      u * 2^out_shift >= output_scale (`choose_out_shift`). The layer stores
      input_scale and the effective output_scale u * 2^out_shift as descriptive fields.

    Bound: for |x| <= 127.5 * input_scale, |acc[m] * u - (W_q x + b)[m]| <= input_scale / 2
    * sum_d |W_q[m, d]| + u / 2 with W_q = s_w * weights, the dequantized weights.
    """
    where = f"export_dense: layer '{name}'"
    check_scale(where, "input_scale", input_scale)
    output = require_choice(where, "output", output, OUTPUTS)
    weight = linear.weight.detach().to("cpu", torch.float64).numpy()
    scale = weight_scale(weight)
    weights = np.clip(round_half_up(weight / scale), -INT8_MAX, INT8_MAX).astype(np.int8)
    unit = float(input_scale) * scale
    bias = np.zeros(linear.out_features) if linear.bias is None else \
        linear.bias.detach().to("cpu", torch.float64).numpy()
    bias_int = bias_in_units(where, bias, unit)
    acc = None
    if calibration is not None and output_scale is None:
        x = quantize_activations(calibration, input_scale).reshape(-1, linear.in_features).astype(np.int64)
        acc = bias_int.astype(np.int64) + x @ weights.astype(np.int64).T
    out_shift = choose_out_shift(where, unit, output_scale, acc)
    params = {"name": name, "kind": DenseLayer.kind, "in_features": linear.in_features,
              "out_features": linear.out_features, "out_shift": out_shift, "output": output,
              "input_scale": float(input_scale), "output_scale": unit * 2.0 ** out_shift}
    if description is not None:
        params["description"] = description
    if hw is not None:
        params["hw"] = dict(hw)
    return DenseLayer.from_json(where, params, {"weights": weights, "bias": bias_int}, DESCRIPTIVE_LAYER_KEYS)
