"""End-to-end training of LUTLinear: differentiable prototype assignment (the seed method).

LUT-NN (Tang et al., "LUT-NN: Empower Efficient Neural Network Inference with Centroid
Learning and Table Lookup", MobiCom 2023, section 3) and PECAN (Ran et al., DATE 2023)
make the nearest-prototype encoding trainable:

- soft assignment a_soft[c, k] = softmax_k(-d(x_c, P[c, k]) * tau), with d the
  encoder's distance (squared L2 or L1; `soft_distance` may name the other one, as the
  seed code softens L1 distances) and tau a learned inverse temperature (stored as
  log tau, so it stays positive), times `tau_scale`, the factor a temperature schedule
  sets each epoch (1 unless the training's `tau_anneal` says otherwise);
- straight-through estimator: the forward pass uses the hard one-hot assignment
  (exactly what the integer encoder computes), the backward pass the soft one's
  gradient: a = hard + a_soft - a_soft.detach();
- y = bias + sum_c a[c] @ T[c]: the tables T (learn="tables", PECAN) or, as in LUT-NN,
  the weights W with T[c, k] = P[c, k] . W_c (learn="weight"; folded into the tables
  for export) are learned with the prototypes and tau, by the model's loss (with
  distillation from the float teacher when the training loop is given one).
  learn="weight+tables" learns both: T = P . W + R with a learned correction R
  (zero at the start). P . W has rank V in each codebook, so it can only be the linear
  layer on the nearest prototype; R lets a table entry hold any value, as PECAN's do,
  while W keeps the linear input gradient below available.
- the gradient reaching the input x: through the soft assignment (input_gradient="soft",
  as LUT-NN), or, with learned weights, the one of the linear layer x W^T that the tables
  approximate (input_gradient="linear"; the soft assignment then trains only the
  prototypes and tau). The forward value is the same either way.

Quantization-aware mode (`set_quantization(input_scale, output_scale)`): the forward
pass then uses the prototypes rounded to the int8 input grid and the tables and bias
rounded to the units export will give them (both with straight-through gradients),
and encodes on the integer grid, so that the module computes what its exported `lut`
layer computes; export writes exactly those integers.

k-means (LUTLinear.from_linear) is the initialisation, and also the baseline this
training must beat. A `tree` encoder has no distances to soften: its tables and bias
are trained through the hard assignment, its thresholds stay as fitted.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nomac.model.field_rules import require_choice
from nomac.model.fixed_point import INT8_MAX, INT8_MIN
from nomac.model.layers.lut_linear import LUTLinear
from nomac.model.lut_spec import TABLE_BITS, table_entry_range

__all__ = ["LEARN", "INPUT_GRADIENTS", "SOFT_DISTANCES", "subvector_distances", "TrainableLUTLinear"]

LEARN = ("tables", "weight", "weight+tables")
INPUT_GRADIENTS = ("soft", "linear")
SOFT_DISTANCES = ("encoder", "l2", "l1")     # the soft assignment's distance: the encoder's, or this one


def subvector_distances(sub: torch.Tensor, prototypes: torch.Tensor, encoder: str) -> torch.Tensor:
    """[n, C, K] distances of subvectors [n, C, V] to prototypes [C, K, V]: squared L2 as
    |x|^2 - 2 x.p + |p|^2 (a batched matrix product: no [n, C, K, V] difference tensor,
    which made training several times slower; exact on integer inputs in float64), or L1."""
    if encoder == "l2":
        return ((sub * sub).sum(-1)[:, :, None] - 2 * torch.einsum("ncv,ckv->nck", sub, prototypes)
                + (prototypes * prototypes).sum(-1)[None])
    return (sub[:, :, None, :] - prototypes[None]).abs().sum(dim=-1)


class TrainableLUTLinear(LUTLinear):
    """A LUTLinear with a differentiable training mode; in eval mode (and for export) it is
    exactly the LUTLinear its parameters describe."""

    def __init__(self, in_features: int, out_features: int, codebooks: int, centroids: int,
                 encoder: str = "l2", bias: bool = True, device=None, dtype=None, learn: str = "tables",
                 input_gradient: str = "soft", soft_distance: str = "encoder", table_bits: int = TABLE_BITS):
        super().__init__(in_features, out_features, codebooks, centroids, encoder, bias, device, dtype, table_bits)
        self.learn = require_choice("TrainableLUTLinear", "learn", learn, LEARN)
        self.input_gradient = require_choice("TrainableLUTLinear", "input_gradient", input_gradient,
                                             INPUT_GRADIENTS)
        self.soft_distance = require_choice("TrainableLUTLinear", "soft_distance", soft_distance, SOFT_DISTANCES)
        if input_gradient == "linear" and learn == "tables":
            raise ValueError(f"TrainableLUTLinear: input_gradient = 'linear' with learn = {learn!r}: "
                             f"the linear input gradient needs learned weights (learn = 'weight' or 'weight+tables')")
        if encoder == "tree" and soft_distance != "encoder":
            raise ValueError(f"TrainableLUTLinear: soft_distance = {soft_distance!r} with encoder = 'tree': a tree "
                             f"encoder has no distances to soften")
        self.log_tau = nn.Parameter(torch.zeros((), device=device, dtype=dtype))
        self.tau_scale = 1.0       # the temperature schedule's factor (training sets it each epoch)
        self.bypass = False        # progressive replacement: compute as the float Linear x W^T + b for now
        self.quantization: tuple[float, float] | None = None     # (input_scale, output_scale)
        if learn != "tables":
            self.weight = nn.Parameter(torch.zeros(out_features, in_features, device=device, dtype=dtype))
            self.tables.requires_grad_(False)     # derived from prototypes and weight
        if learn == "weight+tables":
            self.table_correction = nn.Parameter(torch.zeros_like(self.tables))

    @classmethod
    def from_linear(cls, linear: nn.Linear, calibration, codebooks: int, centroids: int,
                    encoder: str = "l2", seed: int = 0, iterations: int = 100,
                    learn: str = "tables", input_gradient: str = "soft",
                    soft_distance: str = "encoder", table_bits: int = TABLE_BITS) -> "TrainableLUTLinear":
        """k-means (or tree) initialisation as LUTLinear.from_linear, then tau from the calibration
        distances (the soft assignment's): 1 / the median distance to the nearest prototype (so the
        soft assignment starts neither uniform nor hard)."""
        fitted = LUTLinear.from_linear(linear, calibration, codebooks, centroids, encoder, seed, iterations)
        lut = cls(linear.in_features, linear.out_features, codebooks, centroids, encoder,
                  bias=linear.bias is not None, device=linear.weight.device, dtype=linear.weight.dtype,
                  learn=learn, input_gradient=input_gradient, soft_distance=soft_distance, table_bits=table_bits)
        state = fitted.state_dict()
        missing = lut.load_state_dict(state, strict=False).missing_keys
        assert set(missing) <= {"log_tau", "weight", "table_correction"}, missing
        with torch.no_grad():
            if learn != "tables":
                lut.weight.copy_(linear.weight.detach())
            if encoder != "tree":
                x = torch.as_tensor(np.asarray(calibration, dtype=np.float64).reshape(-1, lut.in_features),
                                    dtype=lut.tables.dtype)
                nearest = lut.distances(x[:4096], metric=lut.soft_metric).min(dim=-1).values
                lut.log_tau.fill_(-math.log(max(float(nearest.median()), 1e-6)))
        return lut

    @property
    def tau(self) -> torch.Tensor:
        return self.log_tau.exp()

    @property
    def soft_metric(self) -> str:
        """The distance the soft assignment softens: the encoder's, unless soft_distance names one."""
        return self.encoder if self.soft_distance == "encoder" else self.soft_distance

    def distances(self, x: torch.Tensor, prototypes: torch.Tensor | None = None,
                  metric: str | None = None) -> torch.Tensor:
        """[n, C, K] squared L2 (l2) or L1 (l1) distances of each subvector to each prototype
        (by default the encoder's metric)."""
        prototypes = self.prototypes if prototypes is None else prototypes
        return subvector_distances(x.reshape(-1, self.codebooks, self.subvector_len), prototypes,
                                   metric or self.encoder)

    def soft_assignment(self, distance: torch.Tensor) -> torch.Tensor:
        """softmax_k(-d tau) of the soft metric's distances, tau scaled by the schedule's factor."""
        return torch.softmax(-distance * (self.tau * self.tau_scale), dim=-1)

    def current_tables(self) -> torch.Tensor:
        if self.learn == "tables":
            return self.tables
        C, V = self.codebooks, self.subvector_len
        columns = self.weight.reshape(self.out_features, C, V).permute(1, 2, 0)      # [C, V, M]
        tables = torch.einsum("ckv,cvm->ckm", self.prototypes, columns)
        return tables + self.table_correction if self.learn == "weight+tables" else tables

    def assignment(self, x: torch.Tensor) -> torch.Tensor:
        """[n, C, K]: hard one-hot in value, soft-assignment gradient (straight-through)."""
        if self.encoder == "tree":
            return F.one_hot(self.encode(x).reshape(-1, self.codebooks), self.centroids).to(x.dtype)
        source = self.soft_source(x)
        distance = self.distances(source)
        soft = self.soft_assignment(distance if self.soft_metric == self.encoder
                                    else self.distances(source, metric=self.soft_metric))
        hard = F.one_hot(distance.argmin(dim=-1), self.centroids).to(soft.dtype)   # first minimum wins
        return hard + soft - soft.detach()

    def soft_source(self, x: torch.Tensor) -> torch.Tensor:
        """The input the soft assignment sees: x, or x without its gradient when the input
        gradient is the linear layer's (`linear_input_gradient`)."""
        return x.detach() if self.input_gradient == "linear" else x

    def linear_input_gradient(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """y unchanged in value; with input_gradient="linear" its gradient to x is that of x W^T."""
        if self.input_gradient != "linear":
            return y
        proxy = x.reshape(-1, self.in_features) @ self.weight.detach().t()
        return y + proxy - proxy.detach()

    def set_quantization(self, input_scale: float | None, output_scale: float | None = None):
        """Compute as the exported layer for these scales (None: plain float again)."""
        self.quantization = None if input_scale is None else (float(input_scale), float(output_scale))

    def table_unit(self, tables: torch.Tensor, bias: torch.Tensor | None) -> float:
        """output_scale / 2^out_shift with LUTLinear.export's out_shift (`table_out_shift`; narrow
        entries that do not fit even at out_shift 0 then saturate, as export's do)."""
        output_scale = self.quantization[1]
        t = tables.detach().double().numpy()
        b = np.zeros(1) if bias is None else bias.detach().double().numpy()
        return output_scale / 2 ** self.table_out_shift(t, b, output_scale)

    def quantized_parameters(self):
        """(prototypes, tables, bias) as the exported layer has them, straight-through."""
        input_scale, _ = self.quantization
        tables, bias = self.current_tables(), self.bias
        prototypes = self.prototypes + (torch.clamp(torch.floor(self.prototypes / input_scale + 0.5),
                                                    INT8_MIN, INT8_MAX) * input_scale - self.prototypes).detach()
        unit = self.table_unit(tables, bias)
        entry_lo, entry_hi = table_entry_range(self.table_bits)
        tables = tables + (torch.clamp(torch.floor(tables / unit + 0.5), entry_lo, entry_hi) * unit - tables).detach()
        if bias is not None:
            bias = bias + (torch.floor(bias / unit + 0.5) * unit - bias).detach()
        return prototypes, tables, bias

    def quantized_forward(self, x: torch.Tensor) -> torch.Tensor:
        prototypes, tables, bias = self.quantized_parameters()
        lead = x.shape[:-1]
        if self.encoder == "tree":
            assignment = F.one_hot(self.encode(x).reshape(-1, self.codebooks), self.centroids).to(x.dtype)
        else:
            # hard codes on the integer grid, ties to the smallest k, as the golden: every term of
            # the distances is an integer below 2^53, exact in float64
            input_scale = self.quantization[0]
            sub = torch.floor(x.detach().double() / input_scale + 0.5).clamp(INT8_MIN, INT8_MAX)
            grid = torch.floor(prototypes.detach().double() / input_scale + 0.5)
            distance = subvector_distances(sub.reshape(-1, self.codebooks, self.subvector_len), grid, self.encoder)
            hard = F.one_hot(distance.argmin(dim=-1), self.centroids).to(x.dtype)
            if self.training:
                soft = self.soft_assignment(self.distances(self.soft_source(x), prototypes, self.soft_metric))
                assignment = hard + soft - soft.detach()
            else:
                assignment = hard
        y = torch.einsum("nck,ckm->nm", assignment, tables)
        if bias is not None:
            y = y + bias
        if self.training:
            y = self.linear_input_gradient(x, y)
        return y.reshape(*lead, self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bypass:
            return F.linear(x, self.weight, self.bias)
        if self.quantization is not None:
            return self.quantized_forward(x)
        if not self.training:
            self.fold()
            return super().forward(x)
        if x.shape[-1] != self.in_features:
            raise ValueError(f"TrainableLUTLinear: input shape {list(x.shape)}: "
                             f"last dimension must be in_features ({self.in_features})")
        lead = x.shape[:-1]
        y = torch.einsum("nck,ckm->nm", self.assignment(x), self.current_tables())
        if self.bias is not None:
            y = y + self.bias
        return self.linear_input_gradient(x, y).reshape(*lead, self.out_features)

    def fold(self):
        """With learned weights: write T = P . W (+ R) into the tables (what eval and export use)."""
        if self.learn != "tables":
            with torch.no_grad():
                self.tables.copy_(self.current_tables())

    def export(self, *args, **kwargs):
        """LUTLinear.export (after folding learned weights into the tables). Its rounding of
        prototypes (quantize_activations) and tables (largest out_shift that fits) is the one
        `quantized_parameters` applies, so for the same scales the integers are the ones the
        quantization-aware forward pass computed with; the float parameters stay as they are."""
        self.fold()
        return super().export(*args, **kwargs)

