"""The int8 activation format every float layer exports for (docs/spec.md section 7).

A layer's integer inputs are x_int = quantize_activations(x, input_scale), with one
symmetric scale per layer input; every kind's `export` takes that scale, and the
examples and the ViT export choose it with `activation_scale`.
"""
import math

import numpy as np
import torch

from nomac.model.accumulator_export import check_scale, round_half_up
from nomac.model.fixed_point import INT8_MAX, INT8_MIN

__all__ = ["activation_scale", "quantize_activations", "as_float64"]


def activation_scale(x) -> float:
    """max|x| / 127: the symmetric int8 scale that just covers every value of x."""
    peak = float(np.abs(as_float64(x)).max())
    if not peak > 0 or not math.isfinite(peak):
        raise ValueError(f"activation_scale: max|x| = {peak}: must be finite and > 0")
    return peak / INT8_MAX


def quantize_activations(x, scale: float) -> np.ndarray:
    """int8 x_int = clamp(round(x / scale), -128, 127), the input format of docs/spec.md section 7.

    Rounds half up (floor(v + 0.5)), the same rule as docs/spec.md section 2's rshift_round,
    so one rounding rule holds everywhere in nomac. Prototypes are quantized with it too.
    """
    check_scale("quantize_activations", "scale", scale)
    return np.clip(round_half_up(as_float64(x) / scale), INT8_MIN, INT8_MAX).astype(np.int8)


def as_float64(x) -> np.ndarray:
    """x (a tensor on any device, an array or a nested list) as a float64 numpy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)
