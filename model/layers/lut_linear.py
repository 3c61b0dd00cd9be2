"""LUTLinear: the float side of the `lut` kind, a product-quantized stand-in for nn.Linear.

W x = sum_c W_c x_c, where x_c is the c-th of C subvectors of x and W_c the matching
columns of W. Replace each x_c by the nearest of K prototypes P[c, k] and every product
W_c P[c, k] can be computed once, ahead of time, into a table T[c, k]; the layer then
costs C encodings and C table reads, and no multiplier. This is the scheme of
MADDNESS (Blalock & Guttag, "Multiplying Matrices Without Multiplying", ICML 2021),
PECAN (Ran et al., "PECAN: A Product-Quantized Content Addressable Memory Network",
DATE 2023) and LUT-NN (Tang et al., "LUT-NN: Empower Efficient Neural Network Inference
with Centroid Learning and Table Lookup", MobiCom 2023).

The three encoders of docs/spec.md section 7 are fitted on calibration inputs:
- `l2`: k-means per codebook (k-means++ seeding, Lloyd iterations), as in LUT-NN's
  initialisation and classic product quantization.
- `l1`: k-medians per codebook (L1 assignment, coordinate-wise median centres), the
  distance PECAN-D uses so that the encoder needs adders and comparators only.
- `tree`: the MADDNESS greedy hash tree (Algorithms 1-2 of the paper); prototypes are
  the bucket means (MADDNESS's optional ridge-regression refinement is not done).

`LUTLinear.export` turns the float layer into the integer LutLayer of docs/spec.md section 7.
Training (soft assignment with a temperature and a straight-through estimator, as in
LUT-NN and PECAN) is not implemented; prototypes and tables are nn.Parameters and the
hard encoding is the one method `encode`, so that a soft encoder can replace it later.
"""
import itertools
import math
from fractions import Fraction

import numpy as np
import torch
from torch import nn

from nomac.base.errors import ConfigError
from nomac.model.accumulator_export import INT32_MAX, INT32_MIN, MAX_OUT_SHIFT, check_scale, round_half_up
from nomac.model.config import DESCRIPTIVE_LAYER_KEYS
from nomac.model.field_rules import require_choice, require_int, require_power_of_two
from nomac.model.fixed_point import INT8_MAX, INT8_MIN
from nomac.model.layers.activations import as_float64, quantize_activations
from nomac.model.lut_spec import ENCODERS, MIN_TABLE_BITS, OUTPUTS, TABLE_BITS, LutLayer, table_entry_range

__all__ = ["fit_kmeans", "fit_hash_tree", "LUTLinear", "tree_thresholds", "tables_from_weight"]

_CHUNK = 4096          # vectors per step of a distance computation, to bound temporaries


def fit_kmeans(points, centroids: int, *, metric: str = "l2", rng: np.random.Generator,
               iterations: int = 100) -> np.ndarray:
    """K centres [K, V] for points [N, V]: k-means (metric "l2") or k-medians ("l1").

    Seeding is k-means++ (Arthur & Vassilvitskii, SODA 2007): each new centre is drawn
    with probability proportional to the distance to the nearest chosen one (squared L2
    for l2, L1 for l1). Lloyd iterations then alternate assignment (ties to the smallest
    k, as the encoder breaks them) and update (mean for l2, coordinate-wise median for
    l1) until the assignment stops changing. An empty cluster is moved to the point
    worst served by its centre, so no prototype is wasted while points are unequal.
    Deterministic for a given rng state: float64 numpy, no BLAS reductions.
    """
    points = np.asarray(points, dtype=np.float64)
    require_choice("fit_kmeans", "metric", metric, ("l2", "l1"))
    require_int("fit_kmeans", "centroids", centroids, lo=1)
    if points.ndim != 2 or len(points) == 0:
        raise ValueError(f"fit_kmeans: points shape {list(points.shape)}: must be [N >= 1, V]")
    centres = _seed_centres(points, centroids, metric, rng)
    assignment = None
    for _ in range(iterations):
        distance = _distances(points, centres, metric)
        new = distance.argmin(axis=1)
        if assignment is not None and np.array_equal(new, assignment):
            break
        assignment = new
        for k in np.unique(assignment):
            members = points[assignment == k]
            centres[k] = members.mean(axis=0) if metric == "l2" else np.median(members, axis=0)
        nearest = distance[np.arange(len(points)), assignment]
        for k in np.setdiff1d(np.arange(centroids), assignment):
            worst = int(nearest.argmax())
            if nearest[worst] == 0:
                break          # every point sits on a centre: nothing left to gain
            centres[k], nearest[worst] = points[worst], 0.0
    return centres


def fit_hash_tree(points, centroids: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MADDNESS greedy hash tree for one codebook: (split_dims [L], thresholds [K-1], prototypes [K, V]).

    Blalock & Guttag 2021, Algorithms 1-2. Level l splits every bucket of the level on
    ONE dimension j (shared, so hardware compares a single input element per level);
    each bucket gets its own threshold. j minimises the summed squared error (over all
    V dimensions, around each child's mean) of the children, each bucket being split at
    its own best threshold; ties go to the smallest j. A threshold is the midpoint of
    the two neighbouring distinct values around the best cut (ties to the lowest cut),
    and a point goes right (bit 1) when x[j] > threshold. Heap order: node i of level l
    is at index 2^l - 1 + i, its children are 2i and 2i + 1 on level l + 1.

    A bucket that cannot be split on j (empty, or constant along j) keeps its loss
    unsplit and gets as threshold its reference point's value along j, so that all of
    its points go left. A bucket's reference point is its mean, or for an empty bucket
    its nearest non-empty ancestor's mean; leaf prototypes are the leaves' reference
    points, so an input that falls in an empty leaf still gets a sensible prototype.
    MADDNESS evaluates only a heuristic subset of dimensions; subvectors are short
    here, so every dimension is tried.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or len(points) == 0:
        raise ValueError(f"fit_hash_tree: points shape {list(points.shape)}: must be [N >= 1, V]")
    V, levels = points.shape[1], centroids.bit_length() - 1
    buckets = [np.arange(len(points))]
    references = [points.mean(axis=0)]
    split_dims = np.zeros(levels, dtype=np.int64)
    thresholds = np.zeros(centroids - 1, dtype=np.float64)
    for level in range(levels):
        best_loss, best_dim, best_cuts = math.inf, 0, None
        for dim in range(V):
            cuts = [_best_cut(points[bucket], dim) for bucket in buckets]
            loss = sum(loss for loss, _ in cuts)
            if loss < best_loss:
                best_loss, best_dim, best_cuts = loss, dim, cuts
        split_dims[level] = best_dim
        children, child_references = [], []
        for node, (bucket, reference, (_, cut)) in enumerate(zip(buckets, references, best_cuts)):
            threshold = reference[best_dim] if cut is None else cut
            thresholds[(1 << level) - 1 + node] = threshold
            right = points[bucket, best_dim] > threshold
            for child in (bucket[~right], bucket[right]):
                children.append(child)
                child_references.append(points[child].mean(axis=0) if len(child) else reference)
        buckets, references = children, child_references
    return split_dims, thresholds, np.stack(references)


class LUTLinear(nn.Module):
    """y = bias + sum_c T[c, code_c(x), :]: a drop-in for nn.Linear ([..., D] -> [..., M]).

    Build one from a trained layer with `LUTLinear.from_linear`; `export` gives the
    integer layer for hardware. Parameters: `prototypes` [C, K, V] (for a tree the leaf
    means the tables were built from; encoding uses `split_dims` and `thresholds`),
    `tables` [C, K, M], `bias` [M] or None. Tree split_dims [C, L] and thresholds
    [C, K-1] (heap order) are buffers: they are chosen, not learned by gradient.
    """

    def __init__(self, in_features: int, out_features: int, codebooks: int, centroids: int,
                 encoder: str = "l2", bias: bool = True, device=None, dtype=None, table_bits: int = TABLE_BITS):
        super().__init__()
        where = "LUTLinear"
        # the bits of an exported table entry (docs/spec.md section 7.1): the float tables are not limited
        self.table_bits = require_int(where, "table_bits", table_bits, lo=MIN_TABLE_BITS, hi=TABLE_BITS)
        D = require_int(where, "in_features", in_features, lo=1)
        M = require_int(where, "out_features", out_features, lo=1)
        C = require_int(where, "codebooks", codebooks, lo=1)
        if D % C:
            raise ConfigError(where, "codebooks", C, f"must divide in_features ({D})")
        K = require_power_of_two(where, "centroids", centroids, lo=2, hi=256)
        self.encoder = require_choice(where, "encoder", encoder, ENCODERS)
        self.in_features, self.out_features, self.codebooks, self.centroids = D, M, C, K
        factory = {"device": device, "dtype": dtype}
        self.prototypes = nn.Parameter(torch.zeros(C, K, D // C, **factory))
        self.tables = nn.Parameter(torch.zeros(C, K, M, **factory))
        self.bias = nn.Parameter(torch.zeros(M, **factory)) if bias else None
        if encoder == "tree":
            self.register_buffer("split_dims", torch.zeros(C, self.levels, dtype=torch.long, device=device))
            self.register_buffer("thresholds", torch.zeros(C, K - 1, **factory))
        else:
            self.split_dims = self.thresholds = None

    @property
    def subvector_len(self) -> int:
        return self.in_features // self.codebooks

    @property
    def levels(self) -> int:
        return self.centroids.bit_length() - 1

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"codebooks={self.codebooks}, centroids={self.centroids}, encoder={self.encoder!r}, "
                f"bias={self.bias is not None}" + (f", table_bits={self.table_bits}" if self.table_bits != TABLE_BITS
                                                   else ""))

    @classmethod
    def from_linear(cls, linear: nn.Linear, calibration, codebooks: int, centroids: int,
                    encoder: str = "l2", seed: int = 0, iterations: int = 100) -> "LUTLinear":
        """Fit the encoder on calibration inputs [..., D] of `linear`, then fold W into tables.

        T[c, k, m] = sum_v P[c, k, v] * W[m, c*V + v]; the float bias is kept as is.
        Codebooks are fitted in order from one numpy Generator seeded with `seed`
        (the tree fit uses no randomness).
        """
        lut = cls(linear.in_features, linear.out_features, codebooks, centroids, encoder,
                  bias=linear.bias is not None, device=linear.weight.device, dtype=linear.weight.dtype)
        C, K, V = lut.codebooks, lut.centroids, lut.subvector_len
        inputs = as_float64(calibration)
        if inputs.shape[-1] != lut.in_features or inputs.size == 0:
            raise ValueError(f"LUTLinear.from_linear: calibration shape {list(inputs.shape)}: "
                             f"must be [N >= 1, {lut.in_features}]")
        inputs = inputs.reshape(-1, lut.in_features)
        rng = np.random.default_rng(seed)
        prototypes = np.empty((C, K, V))
        split_dims, thresholds = np.zeros((C, lut.levels), dtype=np.int64), np.zeros((C, K - 1))
        for c in range(C):
            points = inputs[:, c * V:(c + 1) * V]
            if encoder == "tree":
                split_dims[c], thresholds[c], prototypes[c] = fit_hash_tree(points, K)
            else:
                prototypes[c] = fit_kmeans(points, K, metric=encoder, rng=rng, iterations=iterations)
        weight = linear.weight.detach().to("cpu", torch.float64).numpy()
        with torch.no_grad():
            lut.prototypes.copy_(torch.from_numpy(prototypes))
            lut.tables.copy_(torch.from_numpy(tables_from_weight(prototypes, weight)))
            if lut.bias is not None:
                lut.bias.copy_(linear.bias.detach())
            if encoder == "tree":
                lut.split_dims.copy_(torch.from_numpy(split_dims))
                lut.thresholds.copy_(torch.from_numpy(thresholds))
        return lut

    def encode(self, x) -> torch.Tensor:
        """Codes [..., C] (int64): nearest prototype (l2/l1, ties to the smallest k) or tree leaf."""
        x = torch.as_tensor(x, dtype=self.tables.dtype, device=self.tables.device)
        if x.shape[-1] != self.in_features:
            raise ValueError(f"LUTLinear.encode: input shape {list(x.shape)}: "
                             f"last dimension must be in_features ({self.in_features})")
        lead, C, V = x.shape[:-1], self.codebooks, self.subvector_len
        sub = x.reshape(-1, C, V)
        with torch.no_grad():
            if self.encoder == "tree":
                books = torch.arange(C, device=x.device)
                node = torch.zeros(sub.shape[0], C, dtype=torch.long, device=x.device)
                for level in range(self.levels):
                    value = sub[:, books, self.split_dims[:, level]]                # [N, C]
                    threshold = self.thresholds[books[None, :], (1 << level) - 1 + node]
                    node = 2 * node + (value > threshold).long()
                codes = node
            else:
                codes = torch.cat([self._nearest(part) for part in sub.split(_CHUNK)]) \
                    if sub.shape[0] else sub.new_zeros(0, C, dtype=torch.long)
        return codes.reshape(*lead, C)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """bias + sum_c tables[c, codes[..., c], :]: the accumulate step, [..., C] -> [..., M]."""
        books = torch.arange(self.codebooks, device=codes.device)
        y = self.tables[books, codes].sum(dim=-2)
        return y if self.bias is None else y + self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lookup(self.encode(x))

    def reconstruct(self, x) -> torch.Tensor:
        """The input as the layer sees it, [..., D]: every subvector replaced by its prototype."""
        codes = self.encode(x)
        books = torch.arange(self.codebooks, device=codes.device)
        return self.prototypes.detach()[books, codes].flatten(-2)

    def export(self, name: str, input_scale: float, output_scale: float | None = None,
               calibration=None, *, output: str = "int8", hw: dict | None = None,
               description: str | None = None) -> LutLayer:
        """The integer layer of docs/spec.md section 7 for int8 inputs x_int = quantize_activations(x, input_scale).

        - prototypes: int8, quantized with the input scale (the encoder compares them
          with x_int); tree thresholds: `tree_thresholds`, which keeps every decision
          of the float tree on the int8 input grid.
        - tables: int8 in units s_t = output_scale / 2^out_shift, where out_shift is the
          largest shift (<= 62) that keeps every rounded table entry in table_bits bits
          (table_entry_range) and the bias in int32; bias: int32 round(bias / s_t).
          Rounding is half up. Entries narrower than int8 that do not fit even at out_shift
          0 saturate to their range; int8 ones are an error instead.
        So acc * s_t approximates the float output y, and sat8(rshift_round(acc,
        out_shift)) approximates y / output_scale.
        - output_scale: if not given, max|y| / 127 over the float outputs on
          `calibration`, raised to max|T| / (largest entry) if a table entry would not fit
          even at out_shift 0.
        input_scale and output_scale are stored as descriptive fields of the layer.
        """
        where = f"LUTLinear.export: layer '{name}'"
        check_scale(where, "input_scale", input_scale)
        output = require_choice(where, "output", output, OUTPUTS)
        tables = self.tables.detach().to("cpu", torch.float64).numpy()
        bias = np.zeros(self.out_features) if self.bias is None else \
            self.bias.detach().to("cpu", torch.float64).numpy()
        table_peak = float(np.abs(tables).max())
        entry_lo, entry_hi = table_entry_range(self.table_bits)
        if output_scale is None:
            if calibration is None:
                raise ConfigError(where, "output_scale", None, "give output_scale or calibration inputs to choose it")
            with torch.no_grad():
                peak = float(self(calibration).abs().max())
            output_scale = max(peak / INT8_MAX, table_peak / entry_hi)
        check_scale(where, "output_scale", output_scale)

        entries_fit, bias_fits = self.table_fit(tables, bias, output_scale)
        if not bias_fits or (self.table_bits == TABLE_BITS and not entries_fit):
            raise ConfigError(where, "output_scale", output_scale,
                              f"too small: a table entry of {table_peak:.6g} (or the bias) does not fit "
                              f"int8 (int32) even at out_shift 0; use at least {table_peak / INT8_MAX:.6g}")
        out_shift = self.table_out_shift(tables, bias, output_scale)
        unit = output_scale / 2 ** out_shift
        # narrower entries saturate where even out_shift 0 cannot hold them (as activations do)
        arrays = {"tables": np.clip(round_half_up(tables / unit), entry_lo, entry_hi).astype(np.int8),
                  "bias": round_half_up(bias / unit).astype(np.int32)}
        if self.encoder == "tree":
            thresholds = self.thresholds.detach().to("cpu", torch.float64).numpy()
            arrays["split_dims"] = self.split_dims.detach().cpu().numpy().astype(np.int32)
            arrays["thresholds"], arrays["tables"] = tree_thresholds(thresholds, arrays["tables"], input_scale)
        else:
            arrays["prototypes"] = quantize_activations(self.prototypes.detach(), input_scale)
        params = {"name": name, "kind": LutLayer.kind, "in_features": self.in_features,
                  "out_features": self.out_features, "codebooks": self.codebooks,
                  "centroids": self.centroids, "encoder": self.encoder, "out_shift": out_shift,
                  "output": output, "input_scale": float(input_scale), "output_scale": float(output_scale)}
        if self.table_bits != TABLE_BITS:
            params["table_bits"] = self.table_bits
        if description is not None:
            params["description"] = description
        if hw is not None:
            params["hw"] = dict(hw)
        return LutLayer.from_json(where, params, arrays, DESCRIPTIVE_LAYER_KEYS)

    def table_fit(self, tables: np.ndarray, bias: np.ndarray, unit: float) -> tuple[bool, bool]:
        """(every round_half_up(tables / unit) in table_bits bits, every round_half_up(bias / unit)
        in int32), for float64 tables and bias."""
        entry_lo, entry_hi = table_entry_range(self.table_bits)
        t, b = round_half_up(tables / unit), round_half_up(bias / unit)
        return bool(t.min() >= entry_lo and t.max() <= entry_hi), bool(b.min() >= INT32_MIN and b.max() <= INT32_MAX)

    def table_out_shift(self, tables: np.ndarray, bias: np.ndarray, output_scale: float) -> int:
        """export's out_shift: the largest shift (<= 62) at whose unit output_scale / 2^shift
        the entries and the bias fit (`table_fit`); 0 when even 0 does not hold them."""
        shift = 0
        while shift < MAX_OUT_SHIFT and all(self.table_fit(tables, bias, output_scale / 2 ** (shift + 1))):
            shift += 1
        return shift

    def _nearest(self, sub: torch.Tensor) -> torch.Tensor:
        diff = sub[:, :, None, :] - self.prototypes[None]                           # [n, C, K, V]
        distance = (diff * diff if self.encoder == "l2" else diff.abs()).sum(dim=-1)
        return distance.argmin(dim=-1)                                               # first minimum wins


def tree_thresholds(thresholds: np.ndarray, tables: np.ndarray,
                    input_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """int8 thresholds [C, K-1] for float ones theta, and the int8 tables [C, K, M] that go with them.

    The tree's bit (docs/spec.md section 7) is x_int > t. For every int8 x_int,
    x_int * input_scale > theta holds exactly when x_int > floor(theta / input_scale),
    so t is that floor, computed in exact rational arithmetic (a float division can
    round theta / input_scale up onto an integer and flip the inputs on it). At the
    ends of the int8 range:
    - theta / input_scale >= 127: no int8 input goes right, and t = 127 says exactly
      that (x_int > 127 never holds).
    - theta / input_scale < -128: every int8 input goes right, which no int8 t can say
      (x_int > -128 is false for x_int = -128). The node's left subtree is then
      unreachable, so its thresholds and leaf tables are overwritten with a copy of
      the right subtree's and t = -128: the input -128 goes left into the copy and
      reads the same table rows as every other input. Every int8 input then reads the
      rows the float tree picks for x_int * input_scale; only the code of an input with
      -128 on that split dimension differs from `encode`'s (it names the left copy of
      the leaf). Nodes are visited top-down, so a copied subtree is fixed like any other.
    """
    C, K = tables.shape[:2]
    levels = K.bit_length() - 1
    steps = np.array([[_threshold_in_steps(float(theta), input_scale) for theta in row] for row in thresholds],
                     dtype=np.int64)
    tables = tables.copy()
    for c, level in itertools.product(range(C), range(levels)):
        for node in range(1 << level):
            if steps[c, (1 << level) - 1 + node] >= INT8_MIN:
                continue
            for below in range(level + 1, levels + 1):      # the two subtrees, level by level, then their leaves
                width = 1 << (below - level - 1)
                start = 2 * node * width                    # the left subtree's first node on this level
                row = steps[c, (1 << below) - 1:] if below < levels else tables[c]
                row[start:start + width] = row[start + width:start + 2 * width]
            steps[c, (1 << level) - 1 + node] = INT8_MIN
    return steps.astype(np.int8), tables


def _threshold_in_steps(theta: float, input_scale: float) -> int:
    """floor(theta / input_scale) exactly; 127 if that is 127 or more, INT8_MIN - 1 if below -128.

    The range tests are exact in floats (multiplying by +-2^7 does not round);
    a NaN threshold sends no input right, as in the float tree, so it gives 127 too.
    """
    if not theta < (INT8_MAX + 1) * input_scale:
        return INT8_MAX
    if theta < INT8_MIN * input_scale:
        return INT8_MIN - 1
    return math.floor(Fraction(theta) / Fraction(input_scale))


def tables_from_weight(prototypes: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """T[c, k, m] = sum_v P[c, k, v] * W[m, c*V + v]: prototypes [C, K, V], weight [M, D] -> [C, K, M]."""
    C, K, V = prototypes.shape
    columns = weight.reshape(weight.shape[0], C, V).transpose(1, 2, 0)             # [C, V, M]
    return np.einsum("ckv,cvm->ckm", prototypes, columns)


def _seed_centres(points: np.ndarray, centroids: int, metric: str, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding; once every point is a centre, further centres repeat random points."""
    centres = np.empty((centroids, points.shape[1]))
    centres[0] = points[rng.integers(len(points))]
    nearest = _distances(points, centres[:1], metric)[:, 0]
    for k in range(1, centroids):
        cumulative = np.cumsum(nearest)
        if cumulative[-1] > 0:
            # the first index whose cumulative weight exceeds u: it has a positive weight
            index = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
        else:
            index = int(rng.integers(len(points)))
        centres[k] = points[index]
        nearest = np.minimum(nearest, _distances(points, centres[k:k + 1], metric)[:, 0])
    return centres


def _distances(points: np.ndarray, centres: np.ndarray, metric: str) -> np.ndarray:
    """[N, K] squared L2 (metric l2) or L1 distances."""
    out = np.empty((len(points), len(centres)))
    for start in range(0, len(points), _CHUNK):
        diff = points[start:start + _CHUNK, None, :] - centres[None]
        out[start:start + _CHUNK] = (diff * diff if metric == "l2" else np.abs(diff)).sum(axis=-1)
    return out


def _best_cut(rows: np.ndarray, dim: int) -> tuple[float, float | None]:
    """(loss, threshold) of the best split of a bucket along dim; threshold None if none exists.

    The loss of a cut is the SSE of the two sides around their own means, summed over
    every dimension; prefix sums over the rows sorted along dim give all cuts at once.
    """
    n = len(rows)
    if n == 0:
        return 0.0, None
    order = np.argsort(rows[:, dim], kind="stable")
    values = rows[order, dim]
    rows = rows[order] - rows.mean(axis=0)   # centring keeps the prefix-sum SSE accurate
    count = np.arange(1, n + 1, dtype=np.float64)[:, None]
    prefix, prefix_sq = np.cumsum(rows, axis=0), np.cumsum(rows * rows, axis=0)
    left = (prefix_sq - prefix * prefix / count).sum(axis=1)                      # rows 0..i
    right_sum, right_sq = prefix[-1] - prefix[:-1], prefix_sq[-1] - prefix_sq[:-1]
    right = (right_sq - right_sum * right_sum / (n - count[:-1])).sum(axis=1)     # rows i+1..n-1
    loss = np.where(values[:-1] < values[1:], left[:-1] + right, np.inf)         # cuts between distinct values
    if not np.isfinite(loss).any():
        return float(left[-1]), None
    cut = int(loss.argmin())
    return float(loss[cut]), float((values[cut] + values[cut + 1]) / 2)

