"""DeButLinear: the float side of the `butterfly` kind, a DeBut chain standing in for nn.Linear.

A dense M x D weight W is replaced by a product F_{n-1} ... F_1 F_0 of sparse factors
(Lin et al., "Deformable Butterfly: A Highly Structured and Sparse Linear Transform",
NeurIPS 2021). Factor k = [p, q, r, s, t] has s nonzeros per row, stored as a [p, s]
weight in the layout of docs/spec.md section 11 (entry [row, j] multiplies input column
b*s*t + j*t + k of that row), so the forward pass gathers s inputs per output and
never builds a dense p x q matrix.

`DeButLinear.from_linear` initialises a chain from a trained weight by alternating
least squares, as the DeBut authors do: with every other factor fixed, W ~ A F_k C is
linear in F_k's nonzeros, so each factor in turn gets its exact least-squares
solution; a sweep visits the factors from the output side to the input side, the
next sweep back. Each step can only lower the error, so it falls monotonically; the
relative error after each sweep is kept in `als_errors`. With calibration inputs X
the error is measured on the layer's outputs, ||(W - P) X^T||_F, instead of on the
weight itself (the same solver with the input covariance as a weight).

`DeButLinear.export` gives the integer layer of docs/spec.md section 11: per factor int8 weights or
powers of two (`shift`, the multiplier-free option of docs/spec.md section 8) and an out_shift
chosen from the activations of the calibration data.
"""
import math

import numpy as np
import torch
from torch import nn

from nomac.base.errors import ConfigError
from nomac.model.accumulator_export import INT32_MAX, INT32_MIN, MAX_OUT_SHIFT, check_scale, round_half_up
from nomac.model.butterfly_spec import (OUTPUTS, SHIFT_MIN_LIMIT, WEIGHTS, ButterflyLayer, check_chain,
                                        nonzero_columns)
from nomac.model.config import DESCRIPTIVE_LAYER_KEYS
from nomac.model.field_rules import require_choice, require_int
from nomac.model.fixed_point import INT8_MAX
from nomac.model.layers.activations import as_float64

__all__ = ["DeButLinear", "als_fit", "equalize"]


class DeButLinear(nn.Module):
    """y = F_{n-1}(... F_0(x)) + bias: a drop-in for nn.Linear ([..., D] -> [..., M]).

    `chain` lists factor shapes [p, q, r, s, t], input side first. `factors[k]` is the
    nn.Parameter [p_k, s_k] of factor k's nonzeros; `columns{k}` (a buffer) holds
    their input columns. `density` ("warn", "refuse", "ignore") says what to do with
    a chain whose product has structural zeros.
    """

    def __init__(self, in_features: int, out_features: int, chain, bias: bool = True,
                 density: str = "warn", device=None, dtype=None):
        super().__init__()
        where = "DeButLinear"
        self.in_features = require_int(where, "in_features", in_features, lo=1)
        self.out_features = require_int(where, "out_features", out_features, lo=1)
        self.chain = check_chain(where, chain, in_features, out_features, density=density)
        factory = {"device": device, "dtype": dtype}
        self.factors = nn.ParameterList()
        for k, shape in enumerate(self.chain):
            p, q, r, s, t = shape
            self.factors.append(nn.Parameter(torch.randn(p, s, **factory) / math.sqrt(s)))
            self.register_buffer(f"columns{k}", torch.from_numpy(nonzero_columns(shape)).to(device))
        self.bias = nn.Parameter(torch.zeros(out_features, **factory)) if bias else None
        self.als_errors: list[float] = []

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"chain={[list(s) for s in self.chain]}, bias={self.bias is not None}")

    def columns(self, k: int) -> torch.Tensor:
        return getattr(self, f"columns{k}")

    def factor_forward(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """[..., q_k] -> [..., p_k]: each output sums its s gathered inputs times their weights."""
        return (x[..., self.columns(k)] * self.factors[k]).sum(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"DeButLinear: input shape {list(x.shape)}: last dimension must be "
                             f"in_features ({self.in_features})")
        for k in range(len(self.chain)):
            x = self.factor_forward(k, x)
        return x if self.bias is None else x + self.bias

    def factor_matrix(self, k: int) -> torch.Tensor:
        """Factor k as a dense [p, q] matrix (for inspection and tests, not the forward pass)."""
        p, q = self.chain[k][:2]
        dense = torch.zeros(p, q, dtype=self.factors[k].dtype, device=self.factors[k].device)
        rows = torch.arange(p, device=dense.device)[:, None].expand_as(self.columns(k))
        return dense.index_put((rows, self.columns(k)), self.factors[k].detach())

    def dense_weight(self) -> torch.Tensor:
        """The product F_{n-1} ... F_0 as an [M, D] matrix."""
        weight = self.factor_matrix(0)
        for k in range(1, len(self.chain)):
            weight = self.factor_matrix(k) @ weight
        return weight

    def parameter_count(self) -> int:
        """Weights and bias: sum of p*s over factors (+ M with a bias); nn.Linear has M*D (+ M)."""
        return sum(p * s for p, q, r, s, t in self.chain) + (self.out_features if self.bias is not None else 0)

    def multiply_count(self) -> int:
        """Multiplications per input vector: sum of p*s over factors (nn.Linear: M*D)."""
        return sum(p * s for p, q, r, s, t in self.chain)

    @classmethod
    def from_linear(cls, linear: nn.Linear, chain, sweeps: int = 5, calibration=None, *, seed: int = 0,
                    density: str = "warn") -> "DeButLinear":
        """A chain fitted to `linear.weight` by alternating least squares (`als_errors` per sweep),
        then equalized (`equalize`) so that every factor quantizes well on its own."""
        debut = cls(linear.in_features, linear.out_features, chain, bias=linear.bias is not None,
                    density=density, device=linear.weight.device, dtype=linear.weight.dtype)
        weight = linear.weight.detach().to("cpu", torch.float64).numpy()
        covariance = None
        if calibration is not None:
            x = as_float64(calibration)
            if x.shape[-1] != linear.in_features or x.size == 0:
                raise ValueError(f"DeButLinear.from_linear: calibration shape {list(x.shape)}: "
                                 f"must be [N >= 1, {linear.in_features}]")
            x = x.reshape(-1, linear.in_features)
            covariance = x.T @ x
        values, errors = als_fit(weight, debut.chain, sweeps, covariance=covariance,
                                 rng=np.random.default_rng(seed))
        values = equalize(values, debut.chain)
        with torch.no_grad():
            for parameter, value in zip(debut.factors, values):
                parameter.copy_(torch.from_numpy(value))
            if debut.bias is not None:
                debut.bias.copy_(linear.bias.detach())
        debut.als_errors = errors
        return debut

    def export(self, name: str, input_scale: float, output_scale: float | None = None, calibration=None, *,
               output: str = "int8", hw: dict | None = None, description: str | None = None,
               weights="int8", shift_range: int = 7) -> ButterflyLayer:
        """The integer layer of docs/spec.md section 11 for int8 inputs x_int = quantize_activations(x, input_scale).

        Factor k reads int8 activations of scale s_k (s_0 = input_scale) and writes int8
        activations of scale s_{k+1}: max|y_k| / 127 over the float chain's activations
        on `calibration` (the last one is output_scale when given). Its integer
        multipliers m (w, or sign * 2^(shift - shift_min)) are in units
        u_k = s_{k+1} / (s_k * 2^out_shift), so that acc * s_k * u_k ~ y_k and
        rshift_round(acc, out_shift) ~ y_k / s_{k+1}:
        - weights "int8": w = round(F / u_k), with the largest out_shift (<= 62) that keeps
          every w in int8;
        - weights "shift": shift_min = -shift_range, shift_max = 0, and each weight the
          nearest of 0 and +-2^e * u_k for e in 0..shift_range; out_shift is the largest
          that keeps the largest weight within 2^shift_range * u_k.
        If a factor's weights do not fit even at out_shift 0, s_{k+1} is raised until
        they do. The float bias goes to the last factor, in its accumulator units
        (int32); the other factors have zero bias. `weights` is one choice or a list
        with one per factor. Rounding is half up, as everywhere in nomac.
        """
        where = f"DeButLinear.export: layer '{name}'"
        check_scale(where, "input_scale", input_scale)
        output = require_choice(where, "output", output, OUTPUTS)
        n = len(self.chain)
        kinds = list(weights) if isinstance(weights, (list, tuple)) else [weights] * n
        if len(kinds) != n:
            raise ConfigError(where, "weights", weights, f"must be one choice or a list of {n} (one per factor)")
        kinds = [require_choice(where, f"weights[{k}]", kind, WEIGHTS) for k, kind in enumerate(kinds)]
        shift_range = require_int(where, "shift_range", shift_range, lo=0, hi=-SHIFT_MIN_LIMIT)
        if calibration is None:
            raise ConfigError(where, "calibration", None, "needed: the per-factor scales and out_shifts "
                                                          "come from the activations of calibration inputs")
        x = torch.as_tensor(as_float64(calibration)).reshape(-1, self.in_features)
        bias = None if self.bias is None else self.bias.detach().to("cpu", torch.float64).numpy()
        scales, factors_json, arrays = [float(input_scale)], [], {}
        with torch.no_grad():
            activation = x.to(self.factors[0].dtype)
            for k, shape in enumerate(self.chain):
                activation = self.factor_forward(k, activation)
                last = k == n - 1
                peak = activation if not last or bias is None else activation + self.bias
                floats = self.factors[k].detach().to("cpu", torch.float64).numpy()
                if last and output_scale is not None:
                    check_scale(where, "output_scale", output_scale)
                    scale_out = float(output_scale)
                else:
                    scale_out = max(float(peak.abs().max()), 1e-30) / INT8_MAX
                factor_json, factor_arrays, scale_out = _quantize_factor(
                    where, k, floats, scales[-1], scale_out, kinds[k], shift_range,
                    bias if last else None, fixed_scale=last and output_scale is not None)
                scales.append(scale_out)
                factors_json.append({"shape": list(shape), **factor_json})
                arrays.update(factor_arrays)
        params = {"name": name, "kind": ButterflyLayer.kind, "in_features": self.in_features,
                  "out_features": self.out_features, "factors": factors_json, "output": output,
                  "input_scale": float(input_scale), "output_scale": scales[-1]}
        if description is not None:
            params["description"] = description
        if hw is not None:
            params["hw"] = dict(hw)
        return ButterflyLayer.from_json(where, params, arrays, DESCRIPTIVE_LAYER_KEYS)


def _quantize_factor(where, k, floats, scale_in, scale_out, kind, shift_range, bias, fixed_scale):
    """(factor JSON, arrays, output scale actually used) for one factor; see DeButLinear.export."""
    p = floats.shape[0]
    peak = float(np.abs(floats).max())
    limit = INT8_MAX if kind == "int8" else float(1 << shift_range)

    def unit(shift):
        return scale_out / (scale_in * 2.0 ** shift)

    def fits(shift):
        if peak / unit(shift) > limit + (0.5 if kind == "int8" else 0.0):
            return False
        if bias is None:
            return True
        b = round_half_up(bias / (scale_in * unit(shift)))
        return bool(b.min() >= INT32_MIN and b.max() <= INT32_MAX)

    if not fits(0):
        if fixed_scale:
            raise ConfigError(where, "output_scale", scale_out,
                              f"too small: factor {k}'s largest weight {peak:.6g} does not fit its "
                              f"{kind} range even at out_shift 0; use at least {peak * scale_in / limit:.6g}")
        scale_out = peak * scale_in / limit * (1 + 1e-12)
    out_shift = 0
    while out_shift < MAX_OUT_SHIFT and fits(out_shift + 1):
        out_shift += 1
    u = unit(out_shift)
    bias_int = np.zeros(p, dtype=np.int32) if bias is None else \
        round_half_up(bias / (scale_in * u)).astype(np.int32)
    if kind == "int8":
        return ({"weights": "int8", "out_shift": out_shift},
                {f"w{k}": np.clip(round_half_up(floats / u), -128, 127).astype(np.int8), f"bias{k}": bias_int},
                scale_out)
    magnitude = np.abs(floats) / u
    exponents = np.clip(np.floor(np.log2(np.maximum(magnitude, 2.0 ** -60))), 0, shift_range)
    # nearest of 2^e and 2^(e+1) (clamped), and 0 below 1/2
    upper = np.minimum(exponents + 1, shift_range)
    exponents = np.where(np.abs(2.0 ** upper - magnitude) < np.abs(magnitude - 2.0 ** exponents), upper, exponents)
    sign = np.where(magnitude < 0.5, 0, np.sign(floats)).astype(np.int8)
    shift = np.where(sign == 0, -shift_range, exponents - shift_range).astype(np.int8)
    return ({"weights": "shift", "out_shift": out_shift, "shift_min": -shift_range, "shift_max": 0},
            {f"sign{k}": sign, f"shift{k}": shift, f"bias{k}": bias_int}, scale_out)


def als_fit(weight: np.ndarray, chain, sweeps: int, *, covariance: np.ndarray | None = None,
            rng: np.random.Generator, initial=None) -> tuple[list[np.ndarray], list[float]]:
    """Factor values [p_k, s_k] with W ~ F_{n-1} ... F_0, and the relative error after each sweep.

    Factors start from `initial` or seeded N(0, 1/s) values. Step k solves, for factor
    k's nonzeros, min ||(W - A F_k C) X^T||_F with A = F_{n-1}..F_{k+1} and
    C = F_{k-1}..F_0 (X^T X = `covariance`, the identity when None). The normal
    equations G f = b have G[(a, j), (b, j')] = (A^T A)[a, b] (C S C^T)[col(a, j), col(b, j')]
    and b[(a, j)] = (A^T W S C^T)[a, col(a, j)]; they are solved by least squares
    (SVD), which gives the exact minimiser even when G is singular. Sweep 0 goes from
    the output side (factor n-1) to the input side, sweep 1 back, and so on.
    """
    weight = np.asarray(weight, dtype=np.float64)
    sweeps = require_int("als_fit", "sweeps", sweeps, lo=0)
    n = len(chain)
    columns = [nonzero_columns(shape) for shape in chain]
    values = [np.array(v, dtype=np.float64) for v in initial] if initial is not None else \
        [rng.standard_normal((shape[0], shape[3])) / math.sqrt(shape[3]) for shape in chain]
    S = np.eye(weight.shape[1]) if covariance is None else np.asarray(covariance, dtype=np.float64)

    def dense(k):
        p, q = chain[k][:2]
        matrix = np.zeros((p, q))
        matrix[np.arange(p)[:, None], columns[k]] = values[k]
        return matrix

    def product(indices, size):
        result = np.eye(size)
        for k in indices:
            result = dense(k) @ result
        return result

    def relative_error():
        difference = weight - product(range(n), weight.shape[1])
        return math.sqrt(max(np.einsum("md,de,me->", difference, S, difference), 0.0)
                         / np.einsum("md,de,me->", weight, S, weight))

    errors = []
    for sweep in range(sweeps):
        for k in (range(n - 1, -1, -1) if sweep % 2 == 0 else range(n)):
            p, q = chain[k][:2]
            A = product(range(k + 1, n), p)                  # [M, p]
            C = product(range(k), weight.shape[1])            # [q, D]
            left, right = A.T @ A, C @ S @ C.T                 # [p, p], [q, q]
            target = A.T @ weight @ S @ C.T                    # [p, q]
            rows = np.repeat(np.arange(p), columns[k].shape[1])
            cols = columns[k].ravel()
            gram = left[rows[:, None], rows[None, :]] * right[cols[:, None], cols[None, :]]
            solution = np.linalg.lstsq(gram, target[rows, cols], rcond=None)[0]
            values[k] = solution.reshape(p, -1)
        errors.append(relative_error())
    return values, errors


def equalize(values: list[np.ndarray], chain, rounds: int = 4) -> list[np.ndarray]:
    """Rescale the factors without changing their product, so that each quantizes well.

    ALS leaves the scale between neighbouring factors arbitrary: row i of F_k may be
    multiplied by d_i if column i of F_{k+1} is divided by it. Cross-layer
    equalization (Nagel et al., "Data-Free Quantization Through Weight Equalization
    and Bias Correction", ICCV 2019) picks d_i = sqrt(c_i / r_i), with r_i the largest
    |weight| of that row and c_i of that column, so both end up equal to sqrt(r_i c_i).
    A few rounds over the chain settle the ranges.
    """
    values = [np.array(v, dtype=np.float64) for v in values]
    columns = [nonzero_columns(shape) for shape in chain]
    for _ in range(rounds):
        for k in range(len(chain) - 1):
            row_peak = np.abs(values[k]).max(axis=1)                         # [p_k]
            column_peak = np.zeros(chain[k][0])
            np.maximum.at(column_peak, columns[k + 1].ravel(), np.abs(values[k + 1]).ravel())
            usable = (row_peak > 0) & (column_peak > 0)
            scale = np.ones_like(row_peak)
            scale[usable] = np.sqrt(column_peak[usable] / row_peak[usable])
            values[k] *= scale[:, None]
            values[k + 1] /= scale[columns[k + 1]]
    return values
