"""DeepShift layers: drop-ins for nn.Linear whose weights are sign * 2^shift.

Elhoushi et al., "DeepShift: Towards Multiplication-Less Neural Networks" (CVPR
Workshops 2021; reference code github.com/mostafaelhoushi/DeepShift, pytorch/deepshift):

- DeepShift-Q (`ShiftLinearQ`) keeps float weights W and rounds them to powers of two
  in every forward pass: sign(W) * 2^round(log2|W|) (the reference computes
  torch.round(log|W| / log 2) in the weight's precision), the shift clamped to
  [-(2^(b-1) - 1), 0] for b-bit weights (the code clamps |W| to [2^p0, 2^p1] first,
  which is the same). Gradients go straight through the rounding to W
  (straight-through estimator).
- DeepShift-PS (`ShiftLinearPS`) learns the shift P and a sign S directly: the
  weight is 2^round(P) * sign(round(S)), with P clamped to [-(2^(b-1) - 2), 0] (one
  code of the b bits is spent on the zero of the ternary sign) and S to [-1, 1];
  round and sign pass gradients straight through, and the product passes dL/dW to S
  unscaled (the reference's `unsym_grad_mul`), while P gets dL/dW * sign * 2^P * ln 2.

`convert_to_shift(model, filter=...)` swaps nn.Linear layers for either (as the
reference's `convert_to_shift` does, with convert_weights for PS).

Where nomac differs from the reference, on purpose:
- Rounding to a power of two: nomac takes the power nearest |W| in the log domain
  exactly (`round_to_power_of_two`). The reference's float32 logarithm rounds weights
  within a few float steps of a half-point 2^(p+1/2) onto p + 1/2, and torch.round's
  ties to even then sends those on one side to the farther power (the float32 0.70710677
  < 2^-1/2 gives 2^0, not 2^-1).
- Activations: the reference rounds activations to 16.16 fixed point inside the
  layer; these modules compute in float, and `export` quantizes activations to int8
  (`quantize_activations`, round half up) as every nomac kind does. The integer layer
  then differs from the float one only by that rounding (bound in `export`).
- Arithmetic: the reference's kernels shift the fixed-point input right by -shift
  and truncate; nomac's `shift` kind (docs/spec.md section 8) shifts left by shift - p0 into an
  accumulator counting units of 2^p0, so no term loses bits.
- Float weights of ShiftLinearQ are clamped into the representable magnitudes only
  during training forward passes (the reference clamps on every call).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nomac.base.errors import ConfigError
from nomac.model.accumulator_export import bias_in_units, check_scale, choose_out_shift
from nomac.model.config import DESCRIPTIVE_LAYER_KEYS
from nomac.model.field_rules import require_choice, require_int
from nomac.model.layers.activations import quantize_activations
from nomac.model.matrix_layer import OUTPUTS
from nomac.model.shift_spec import MIN_SHIFT, MIN_SHIFT_RULE, ShiftLayer

__all__ = ["VARIANTS", "SQRT_HALF", "q_shift_range", "ps_shift_range", "round_to_power_of_two", "straight_through",
           "ShiftLinearQ", "ShiftLinearPS", "convert_to_shift"]

VARIANTS = ("Q", "PS")
SQRT_HALF = math.sqrt(0.5)   # the float64 just above 2^-1/2: f > 2^-1/2 iff f >= SQRT_HALF


def q_shift_range(weight_bits: int) -> tuple[int, int]:
    """DeepShift-Q's shifts at b-bit weights: [-(2^(b-1) - 1), 0]."""
    return -((1 << (weight_bits - 1)) - 1), 0


def ps_shift_range(weight_bits: int) -> tuple[int, int]:
    """DeepShift-PS's shifts at b-bit weights: [-(2^(b-1) - 2), 0] (a ternary sign takes a code)."""
    return -((1 << (weight_bits - 1)) - 2), 0


def round_to_power_of_two(weight: torch.Tensor, shift_min: int, shift_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(sign, shift) of DeepShift-Q: sign(w) and clamp(floor(log2|w| + 1/2), p0, p1), exactly.

    The shift is the power of two nearest |w| in the log domain, decided exactly rather
    than from a rounded log2 (see the module docstring): with |w| = f * 2^e, f in [1/2, 1)
    (frexp of the weight in float64, exact for every float dtype), the nearest power is
    2^e when f >= 2^-1/2, else 2^(e-1). A weight exactly on a half-point 2^(p+1/2)
    would go up to 2^(p+1) (round half up, nomac's one rounding rule, docs/spec.md
    section 2); none exists, since 2^(p+1/2) is irrational, so every float has one
    nearest power.
    Comparing f with math.sqrt(0.5) is exact: that float64 is the first float above the
    irrational 2^-1/2, so f >= it exactly when f > 2^-1/2. A zero weight keeps sign 0
    (its shift is p0). Both are returned as int64 tensors. The forward pass and
    `export` both take their weights from here, so the exported layer is the trained one.
    """
    with torch.no_grad():
        magnitude = weight.abs().to(torch.float64)
        fraction, exponent = torch.frexp(magnitude)
        shift = exponent.long() - 1 + (fraction >= SQRT_HALF).long()
        shift = torch.where(magnitude == 0, shift_min, shift).clamp(shift_min, shift_max)
        return torch.sign(weight).long(), shift


class _Straight(torch.autograd.Function):
    """y = f(x) forward, dy/dx = 1 backward: the straight-through estimator."""

    @staticmethod
    def forward(ctx, x, value):
        return value

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def straight_through(x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    return _Straight.apply(x, value.detach())


class _SignTimesMagnitude(torch.autograd.Function):
    """sign * magnitude, passing dL/dW * sign to the magnitude and dL/dW unscaled to the sign
    (DeepShift's UnsymmetricGradMulFunction)."""

    @staticmethod
    def forward(ctx, magnitude, sign):
        ctx.save_for_backward(sign)
        return magnitude * sign

    @staticmethod
    def backward(ctx, grad):
        (sign,) = ctx.saved_tensors
        return grad * sign, grad


class _ShiftLinear(nn.Module):
    """What both DeepShift variants share: the shift range, `sign_and_shift`, `export`."""

    def __init__(self, in_features: int, out_features: int, weight_bits: int, shift_range, bias: bool,
                 device, dtype):
        super().__init__()
        where = type(self).__name__
        self.in_features = require_int(where, "in_features", in_features, lo=1)
        self.out_features = require_int(where, "out_features", out_features, lo=1)
        self.weight_bits = require_int(where, "weight_bits", weight_bits, lo=2)
        self.shift_min, self.shift_max = shift_range(self.weight_bits)
        if self.shift_min < MIN_SHIFT:
            raise ConfigError(where, "weight_bits", self.weight_bits,
                              f"gives shifts down to {self.shift_min}, but {MIN_SHIFT_RULE}; "
                              f"use weight_bits <= 6")
        self.bias = nn.Parameter(torch.zeros(out_features, device=device, dtype=dtype)) if bias else None

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"weight_bits={self.weight_bits}, shifts=[{self.shift_min}, {self.shift_max}], "
                f"bias={self.bias is not None}")

    def sign_and_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The integer weights as (sign in {-1, 0, 1}, shift in [shift_min, shift_max]), int64 [M, D]."""
        raise NotImplementedError

    def power_of_two_weight(self) -> torch.Tensor:
        """sign * 2^shift [M, D], the weights the forward pass uses (without gradient)."""
        sign, shift = self.sign_and_shift()
        dtype = next(self.parameters()).dtype
        return sign.to(dtype) * torch.pow(2.0, shift.to(dtype))

    def export(self, name: str, input_scale: float, output_scale: float | None = None, calibration=None, *,
               output: str = "int8", hw: dict | None = None, description: str | None = None) -> ShiftLayer:
        """The integer `shift` layer (docs/spec.md section 8) for int8 inputs x_int = quantize_activations(x, input_scale).

        - shift range: the module's [shift_min, shift_max]; sign and shift as in
          `sign_and_shift` (a zero weight gets shift_min).
        - The accumulator counts u = input_scale * 2^shift_min; bias = round_half_up(b / u)
          as int32 (docs/spec.md section 8: bias in units of 2^p0).
        - out_shift: the smallest that keeps every accumulator of `calibration` (float
          inputs [N, D]) out of saturation, or with `output_scale` the smallest with
          u * 2^out_shift >= output_scale (`choose_out_shift`). The layer stores the
          effective output_scale u * 2^out_shift and input_scale as descriptive fields.

        Bound: for an input x with |x| <= 127.5 * input_scale (no clipping), the integer
        accumulator satisfies |acc[m] * u - y[m]| <= input_scale / 2 * sum_d |w[m, d]| + u / 2,
        where y is this module's float output and w its power-of-two weights: every weight
        and term is exact, only x and the bias were rounded. The int8 output adds at most
        output_scale / 2 unless it saturates.
        """
        where = f"{type(self).__name__}.export: layer '{name}'"
        check_scale(where, "input_scale", input_scale)
        output = require_choice(where, "output", output, OUTPUTS)
        sign, shift = (t.cpu().numpy() for t in self.sign_and_shift())
        shift = np.where(sign == 0, self.shift_min, shift)
        unit = float(input_scale) * 2.0 ** self.shift_min
        bias = np.zeros(self.out_features) if self.bias is None else \
            self.bias.detach().to("cpu", torch.float64).numpy()
        bias_int = bias_in_units(where, bias, unit)
        acc = None
        if calibration is not None and output_scale is None:
            x = quantize_activations(calibration, input_scale).reshape(-1, self.in_features).astype(np.int64)
            acc = bias_int.astype(np.int64) + x @ (sign.astype(np.int64) << (shift - self.shift_min)).T
        out_shift = choose_out_shift(where, unit, output_scale, acc)
        params = {"name": name, "kind": ShiftLayer.kind, "in_features": self.in_features,
                  "out_features": self.out_features, "shift_min": self.shift_min, "shift_max": self.shift_max,
                  "out_shift": out_shift, "output": output, "input_scale": float(input_scale),
                  "output_scale": unit * 2.0 ** out_shift}
        if description is not None:
            params["description"] = description
        if hw is not None:
            params["hw"] = dict(hw)
        arrays = {"sign": sign.astype(np.int8), "shift": shift.astype(np.int8), "bias": bias_int}
        return ShiftLayer.from_json(where, params, arrays, DESCRIPTIVE_LAYER_KEYS)


class ShiftLinearQ(_ShiftLinear):
    """DeepShift-Q: float weights, rounded to sign * 2^shift in the forward pass.

    y = x @ (sign(W) * 2^clamp(round(log2|W|), p0, 0))^T + b, gradients straight
    through the rounding to W. `weight_bits` b gives p0 = -(2^(b-1) - 1) (5 bits: -15).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, weight_bits: int = 5,
                 device=None, dtype=None):
        super().__init__(in_features, out_features, weight_bits, q_shift_range, bias, device, dtype)
        self.weight = nn.Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))   # nn.Linear's initialisation

    @classmethod
    def from_linear(cls, linear: nn.Linear, weight_bits: int = 5) -> "ShiftLinearQ":
        """A DeepShift-Q layer starting from a trained nn.Linear's weight and bias (copied)."""
        q = cls(linear.in_features, linear.out_features, linear.bias is not None, weight_bits,
                device=linear.weight.device, dtype=linear.weight.dtype)
        with torch.no_grad():
            q.weight.copy_(linear.weight)
            if linear.bias is not None:
                q.bias.copy_(linear.bias)
        return q

    def sign_and_shift(self):
        return round_to_power_of_two(self.weight, self.shift_min, self.shift_max)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():   # as the reference: keep |W| in [2^p0, 2^p1], zeros stay zero
                magnitude = self.weight.abs().clamp(2.0 ** self.shift_min, 2.0 ** self.shift_max)
                self.weight.copy_(torch.sign(self.weight) * magnitude)
        weight = straight_through(self.weight, self.power_of_two_weight())
        return F.linear(x, weight, self.bias)


class ShiftLinearPS(_ShiftLinear):
    """DeepShift-PS: the shift P and sign S are the parameters; W = 2^round(P) * sign(round(S)).

    `weight_bits` b gives P in [-(2^(b-1) - 2), 0] (5 bits: -14) and a ternary sign.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, weight_bits: int = 5,
                 device=None, dtype=None):
        super().__init__(in_features, out_features, weight_bits, ps_shift_range, bias, device, dtype)
        factory = {"device": device, "dtype": dtype}
        self.shift = nn.Parameter(torch.empty(out_features, in_features, **factory))
        self.sign = nn.Parameter(torch.empty(out_features, in_features, **factory))
        with torch.no_grad():    # the reference's reset_parameters
            self.shift.uniform_(self.shift_min, self.shift_max)
            self.sign.uniform_(-1, 1)

    @classmethod
    def from_linear(cls, linear: nn.Linear, weight_bits: int = 5) -> "ShiftLinearPS":
        """Start from a trained nn.Linear: P = round(log2|W|) (clamped), S = sign(W), bias copied."""
        ps = cls(linear.in_features, linear.out_features, linear.bias is not None, weight_bits,
                 device=linear.weight.device, dtype=linear.weight.dtype)
        sign, shift = round_to_power_of_two(linear.weight, ps.shift_min, ps.shift_max)
        with torch.no_grad():
            ps.shift.copy_(shift)
            ps.sign.copy_(sign)
            if linear.bias is not None:
                ps.bias.copy_(linear.bias)
        return ps

    def sign_and_shift(self):
        with torch.no_grad():
            sign = torch.sign(torch.round(self.sign.clamp(-1, 1)))
            shift = torch.round(self.shift.clamp(self.shift_min, self.shift_max))
            return sign.long(), shift.long()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.shift.clamp_(self.shift_min, self.shift_max)
                self.sign.clamp_(-1, 1)
        sign, shift = self.sign_and_shift()
        shift = straight_through(self.shift, shift.to(self.shift.dtype))
        sign = straight_through(self.sign, sign.to(self.sign.dtype))
        weight = _SignTimesMagnitude.apply(torch.pow(2.0, shift), sign)
        return F.linear(x, weight, self.bias)


def convert_to_shift(model: nn.Module, filter=None, *, variant: str = "Q", weight_bits: int = 5) -> nn.Module:
    """Replace, in place, every nn.Linear of `model` that `filter(name, linear)` accepts.

    `name` is the layer's qualified name ("blocks.0.mlp.fc1"); no filter converts all.
    variant "Q" gives ShiftLinearQ, "PS" ShiftLinearPS, each started from the trained
    weights (`from_linear`). Only exact nn.Linear instances are converted (not
    subclasses, as in the reference). `model` itself may be an nn.Linear: the converted
    layer is then returned. Returns the model.
    """
    require_choice("convert_to_shift", "variant", variant, VARIANTS)
    cls = ShiftLinearQ if variant == "Q" else ShiftLinearPS

    def accepts(name, module):
        return type(module) is nn.Linear and (filter is None or filter(name, module))

    if accepts("", model):
        return cls.from_linear(model, weight_bits)
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            qualified = f"{name}.{child_name}" if name else child_name
            if accepts(qualified, child):
                setattr(module, child_name, cls.from_linear(child, weight_bits))
    return model
