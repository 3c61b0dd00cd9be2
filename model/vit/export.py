"""A (compressed) float TinyViT -> one whole-model config: every matrix a hardware layer
(`dense`, `lut`, `shift` or `butterfly`, whatever the model holds), every other step an
operator layer (model/operator_layers.py), wired as model/dataflow.py describes.

Activation scales are calibrated on float activations: the scale of every tensor is
max|v| / 127 over the calibration images (no clipping), unless given (quantization-aware
training fixes them first, from the float teacher). A hardware layer's int8 output
then has its export's effective output scale (a `dense`/`shift` export rounds it up to a
power-of-two multiple of its accumulator unit), and the next step rescales from that.
Every constant of an operator is derived here from the float model and these scales;
the integer arithmetic that uses them is model/int_ops.py.
"""
import math

import numpy as np
import torch
from torch import nn

from nomac.base.errors import NomacError
from nomac.model.accumulator_export import INT32_MAX, round_half_up
from nomac.model.config import DESCRIPTIVE_LAYER_KEYS, Config, make_config
from nomac.model.fixed_point import INT8_MAX
from nomac.model.int_ops import PROB_BITS
from nomac.model.operator_layers import (EXP_ONE, AddLayer, AttentionLayer, EmbedLayer, GeluLayer,
                                         LayerNormLayer, PatchesLayer, SelectTokenLayer)
from nomac.model.vit.tiny_vit import TinyViT

__all__ = ["MULT_BITS", "NORM_BITS", "NORM_WEIGHT_MAX", "EXP_STEP", "common_dyadic", "record_tensors", "tensor_scales",
           "export_matrix", "export_vit", "residual", "layernorm_layer", "embed_layer", "attention_layer", "gelu_layer",
           "residual_layer", "gelu_table", "operator"]

MULT_BITS = 15          # dyadic multipliers: 15 significant bits
NORM_BITS = 7           # LayerNorm's normalized value in units of 2^-7
NORM_WEIGHT_MAX = (1 << 15) - 1
EXP_STEP = 1 / 24       # the softmax table's step in (scaled) logits: 255 steps cover 10.6

def common_dyadic(ratios, max_shift: int = 40) -> tuple:
    """Dyadic rescaling, mult_i / 2^shift ~ ratio_i with one shared shift: the largest
    shift <= max_shift keeping every mult_i = round_half_up(ratio_i * 2^shift) below 2^15.
    Returns (mult_0, ..., mult_n, shift)."""
    ratios = [float(r) for r in ratios]
    if not all(r >= 0 and math.isfinite(r) for r in ratios):
        raise NomacError(f"dyadic rescaling: ratios {ratios}: must be finite and >= 0")
    shift = 0
    while shift < max_shift and all(round_half_up(r * 2.0 ** (shift + 1)) < (1 << MULT_BITS) for r in ratios):
        shift += 1
    mults = [int(round_half_up(r * 2.0 ** shift)) for r in ratios]
    if max(mults) > INT32_MAX:
        raise NomacError(f"dyadic rescaling: ratios {ratios}: too large for an int32 multiplier")
    return (*mults, shift)


def record_tensors(model: TinyViT, x_float: np.ndarray) -> dict[str, np.ndarray]:
    """The float model's tensor at every quantization point, on calibration images."""
    record = {}
    model.eval()
    with torch.no_grad():
        model(torch.as_tensor(x_float), record=record)
    return {name: value.double().numpy() for name, value in record.items()}


def tensor_scales(record: dict[str, np.ndarray]) -> dict[str, float]:
    """max|v| / 127 for every recorded tensor."""
    return {name: max(float(np.abs(v).max()), 1e-12) / INT8_MAX for name, v in record.items()}


def export_matrix(module: nn.Module, name: str, input_scale: float, output_scale: float,
                  calibration: np.ndarray | None = None, output: str = "int8"):
    """The hardware layer of one float matrix module (nn.Linear -> `dense`, LUTLinear -> `lut`,
    ShiftLinearQ/PS -> `shift`, DeButLinear -> `butterfly`)."""
    if type(module) is nn.Linear:
        from nomac.model.layers.dense_linear import export_dense
        return export_dense(module, name, input_scale, output_scale, output=output)
    if not hasattr(module, "export"):
        raise NomacError(f"layer '{name}': {type(module).__name__} has no integer export")
    return module.export(name, input_scale, output_scale, calibration, output=output)


def export_vit(model: TinyViT, calibration_images: np.ndarray, input_scale: float, *,
               description: str | None = None, head_output: str = "acc", scales: dict | None = None) -> Config:
    """The whole-model config of `model` for int8 images x_int (float images x_int * input_scale).

    `scales` (tensor name -> scale) fixes the activation scales, e.g. those the model was
    trained with in quantization-aware mode; by default they are calibrated here."""
    s = model.shape
    record = record_tensors(model, calibration_images)
    scale = dict(scales) if scales is not None else tensor_scales(record)
    reads = {written: read for read, written in s.linear_points().values()}
    layers = [operator(PatchesLayer, "patches", height=s.height, width=s.width, patch=s.patch,
                       extra={"input_scale": input_scale, "output_scale": input_scale})]

    def matrix(module, name, scale_in, output="int8"):
        inputs = getattr(module, "calibration_inputs", None)
        if inputs is None:
            inputs = record[reads[name]].reshape(-1, module.in_features)
        layer = export_matrix(module, name, scale_in, scale[name], inputs, output=output)
        layers.append(layer)
        return float(layer.extra.get("output_scale", scale[name]))

    def describe(scale_in, scale_out):
        return {"input_scale": float(scale_in), "output_scale": float(scale_out)}

    def layernorm(norm: nn.LayerNorm, name: str, scale_in: float) -> float:
        layers.append(layernorm_layer(norm, name, scale_in, scale[name]))
        return scale[name]

    s_patch = matrix(model.patch_embed, "patch_embed", input_scale)
    s_x = scale["embed"]
    layers.append(embed_layer(model, s_patch, s_x))
    for i, block in enumerate(model.blocks):
        p = f"b{i}"
        s_ln1 = layernorm(block.norm1, f"{p}_ln1", s_x)
        s_qkv = matrix(block.qkv, f"{p}_qkv", s_ln1)
        s_attn = scale[f"{p}_attn"]
        layers.append(attention_layer(f"{p}_attn", s, s_qkv, s_attn))
        s_proj = matrix(block.proj, f"{p}_proj", s_attn)
        s_x = residual(layers, f"{p}_add1", ("embed" if i == 0 else f"b{i - 1}_add2", f"{p}_proj"),
                       (s_x, s_proj), scale[f"{p}_add1"], s.dim)
        s_ln2 = layernorm(block.norm2, f"{p}_ln2", s_x)
        s_fc1 = matrix(block.fc1, f"{p}_fc1", s_ln2)
        s_gelu = scale[f"{p}_gelu"]
        layers.append(gelu_layer(f"{p}_gelu", s.mlp, s_fc1, s_gelu))
        s_fc2 = matrix(block.fc2, f"{p}_fc2", s_gelu)
        s_x = residual(layers, f"{p}_add2", (f"{p}_add1", f"{p}_fc2"), (s_x, s_fc2), scale[f"{p}_add2"], s.dim)
    layers.append(operator(SelectTokenLayer, "cls", extra=describe(s_x, s_x), tokens=s.tokens,
                           features=s.dim, index=0))
    s_norm = layernorm(model.norm, "norm", s_x)
    matrix(model.head, "head", s_norm, output=head_output)
    extra = {"input_scale": float(input_scale)}
    if description:
        extra["description"] = description
    return make_config(layers, **extra)


def residual(layers, name, inputs, scales_in, scale_out, features) -> float:
    layers.append(residual_layer(name, inputs, scales_in, scale_out, features))
    return scale_out


# ---- one operator layer from the float model's parameters and the scales around it ----------
# (export_vit builds the config with these; integer_emulation.py builds the same layers
# during quantization-aware training)

def _describe(scale_in, scale_out) -> dict:
    return {"input_scale": float(scale_in), "output_scale": float(scale_out)}


def layernorm_layer(norm: nn.LayerNorm, name: str, scale_in: float, scale_out: float) -> LayerNormLayer:
    gamma = norm.weight.detach().double().numpy()
    beta = norm.bias.detach().double().numpy()
    out_shift = 0
    while out_shift < 40 and _fits_norm(gamma, beta, scale_out, out_shift + 1):
        out_shift += 1
    weight = round_half_up(gamma * 2.0 ** (out_shift - NORM_BITS) / scale_out).astype(np.int16)
    bias = round_half_up(beta * 2.0 ** out_shift / scale_out).astype(np.int32)
    return operator(LayerNormLayer, name, {"weight": weight, "bias": bias}, _describe(scale_in, scale_out),
                    features=len(gamma), norm_bits=NORM_BITS, out_shift=out_shift)


def embed_layer(model: TinyViT, scale_in: float, scale_out: float) -> EmbedLayer:
    s = model.shape
    pos = model.pos_embed.detach().double().numpy().copy()
    pos[0] += model.cls_token.detach().double().numpy()
    mult, shift = common_dyadic([scale_in / scale_out], max_shift=23)
    offset = round_half_up(pos / scale_out * 2.0 ** shift).astype(np.int32)
    return operator(EmbedLayer, "embed", {"offset": offset}, _describe(scale_in, scale_out),
                    tokens=s.tokens, features=s.dim, mult=mult, shift=shift)


def attention_layer(name: str, shape, scale_in: float, scale_out: float) -> AttentionLayer:
    score_mult, score_shift = common_dyadic([scale_in * scale_in / math.sqrt(shape.head_dim) / EXP_STEP])
    out_mult, out_shift = common_dyadic([scale_in / 2 ** PROB_BITS / scale_out])
    exp_table = round_half_up(EXP_ONE * np.exp(-np.arange(256) * EXP_STEP)).astype(np.int32)
    return operator(AttentionLayer, name, {"exp_table": exp_table}, _describe(scale_in, scale_out),
                    tokens=shape.tokens, features=shape.dim, heads=shape.heads, score_mult=score_mult,
                    score_shift=score_shift, out_mult=out_mult, out_shift=out_shift)


def gelu_layer(name: str, features: int, scale_in: float, scale_out: float) -> GeluLayer:
    return operator(GeluLayer, name, {"table": gelu_table(scale_in, scale_out)}, _describe(scale_in, scale_out),
                    features=features)


def residual_layer(name: str, inputs, scales_in, scale_out: float, features: int) -> AddLayer:
    mult_a, mult_b, shift = common_dyadic([scales_in[0] / scale_out, scales_in[1] / scale_out])
    return operator(AddLayer, name, extra={"output_scale": float(scale_out)}, features=features,
                    inputs=list(inputs), mult_a=mult_a, mult_b=mult_b, shift=shift)


def gelu_table(scale_in: float, scale_out: float) -> np.ndarray:
    """table[i] = sat8(round_half_up(gelu((i - 128) * scale_in) / scale_out)), gelu(x) = x * Phi(x)."""
    x = (np.arange(256) - 128) * scale_in
    gelu = np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])
    return np.clip(round_half_up(gelu / scale_out), -128, 127).astype(np.int8)


def _fits_norm(gamma, beta, s_out, out_shift) -> bool:
    w = round_half_up(gamma * 2.0 ** (out_shift - NORM_BITS) / s_out)
    b = round_half_up(beta * 2.0 ** out_shift / s_out)
    return bool(np.abs(w).max() <= NORM_WEIGHT_MAX and np.abs(b).max() <= INT32_MAX)


def operator(cls, name: str, arrays: dict | None = None, extra: dict | None = None, **params):
    """An operator layer built through its validation, like a loaded one."""
    params = {key: list(value) if isinstance(value, tuple) else value for key, value in params.items()}
    return cls.from_json(f"export_vit: layer '{name}'", {"name": name, "kind": cls.kind, **params, **(extra or {})},
                         arrays or {}, DESCRIPTIVE_LAYER_KEYS)
