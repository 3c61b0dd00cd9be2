"""Integer emulation for quantization-aware training: the float TinyViT's forward pass
takes, at every quantization point, the value the exported integer layer computes.

At each point the layer is built from the model's current parameters exactly as
`export_vit` builds it (same builders, same scales), run by its golden forward on the
point's int8 inputs, and its output (times its scale) replaces the float value in the
forward pass while the gradient flows through the float operator (straight-through),
as integer-only quantization-aware training does (I-ViT, Li & Gu, ICCV 2023, section 3).
lut layers in quantization-aware mode already compute their exported accumulators, so
only their output rounding is applied; a butterfly chain's intermediate scales come from
the fixed calibration inputs it carries (`calibration_inputs`), which export uses too.

Scales follow export_vit: an operator's output has its calibrated scale; a dense or shift
layer's output has its export's effective scale, recomputed from the current weights.
"""
import numpy as np
import torch

from nomac.model.fixed_point import rshift_round, sat8
from nomac.model.golden import FORWARD
from nomac.model.vit.export import (attention_layer, embed_layer, export_matrix, gelu_layer, layernorm_layer,
                                    residual_layer)

__all__ = ["IntegerEmulation"]


class IntegerEmulation:
    def __init__(self, model, scales: dict, input_scale: float):
        self.model, self.scales, self.input_scale = model, dict(scales), float(input_scale)
        self.current = {"patches": self.input_scale}

    def scale_of(self, name: str) -> float:
        return self.current.get(name, self.scales.get(name))

    def __call__(self, name: str, kind: str, value: torch.Tensor, sources: list, source_names, module):
        """The exact value at this point (a tensor shaped like `value`), or None to fake-quantize."""
        in_scales = [self.scale_of(n) for n in source_names]
        if kind in ("select", "input"):
            self.current[name] = in_scales[0] if in_scales else self.input_scale
            return None
        out_scale = self.scales.get(name)
        if kind == "matrix":
            if hasattr(module, "set_quantization") and module.quantization is not None and name != "head":
                self.current[name] = out_scale
                return _lut_output(module, value, out_scale)
            if hasattr(module, "set_quantization"):         # a lut head: its accumulators
                self.current[name] = out_scale
                return None if module.training else _lut_accumulators(module, value)
            output = "acc" if name == "head" else "int8"
            layer = export_matrix(module, name, in_scales[0], out_scale, getattr(module, "calibration_inputs", None),
                                  output=output)
            out_scale = float(layer.extra["output_scale"])
            if output == "acc":
                out_scale /= 2 ** layer.out_shift
        elif kind == "layernorm":
            layer = layernorm_layer(module, name, in_scales[0], out_scale)
        elif kind == "embed":
            layer = embed_layer(self.model, in_scales[0], out_scale)
        elif kind == "attention":
            layer = attention_layer(name, self.model.shape, in_scales[0], out_scale)
        elif kind == "gelu":
            layer = gelu_layer(name, value.shape[-1], in_scales[0], out_scale)
        elif kind == "add":
            layer = residual_layer(name, source_names, in_scales, out_scale, value.shape[-1])
        else:
            raise ValueError(f"integer emulation: point {name!r} has unknown kind {kind!r}")
        self.current[name] = out_scale
        ints = [_int8_rows(t, s, layer.in_features) for t, s in zip(sources, in_scales)]
        exact = np.asarray(FORWARD[layer.kind](layer, *ints), dtype=np.float64) * out_scale
        return torch.from_numpy(exact).to(value.dtype).reshape(value.shape)


def _accumulators(lut, value: torch.Tensor) -> tuple[np.ndarray, float]:
    """(acc, unit) of a quantization-aware lut layer's float output, acc = round(value / unit):
    the output is acc * unit up to float rounding, far below one unit."""
    unit = lut.table_unit(lut.current_tables(), lut.bias)
    return np.floor(value.detach().double().numpy() / unit + 0.5).astype(np.int64), unit


def _lut_output(lut, value: torch.Tensor, out_scale: float) -> torch.Tensor:
    """A quantization-aware lut layer's int8 output: sat8(rshift_round(acc, out_shift))."""
    acc, unit = _accumulators(lut, value)
    out_shift = int(round(np.log2(out_scale / unit)))
    exact = sat8(rshift_round(acc, out_shift)).astype(np.float64) * out_scale
    return torch.from_numpy(exact).to(value.dtype)


def _lut_accumulators(lut, value: torch.Tensor) -> torch.Tensor:
    """A quantization-aware lut head's logits as acc * unit exactly: only exactly equal logits
    tie as the integer ones do (predictions take the first maximum). Evaluation only: in
    training the rounding would change nothing but the last bits of the loss (the gradient
    is straight-through), and with them the bytes of every run already made."""
    acc, unit = _accumulators(lut, value)
    return torch.from_numpy(acc * unit).to(value.dtype)


def _int8_rows(t: torch.Tensor, scale: float, width: int) -> np.ndarray:
    """The int8 values a (grid-valued) tensor stands for, as rows of `width`."""
    values = np.floor(t.detach().double().numpy() / scale + 0.5)
    return np.clip(values, -128, 127).astype(np.int8).reshape(-1, width)
