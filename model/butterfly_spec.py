"""The `butterfly` layer kind (docs/spec.md section 11): Deformable Butterfly (DeBut) factor chains.

DeBut (Lin et al., "Deformable Butterfly: A Highly Structured and Sparse Linear
Transform", NeurIPS 2021) replaces a dense M x D weight by a product of sparse
factors. Factor [p, q, r, s, t] maps q inputs to p outputs; it is block diagonal with
q / (s*t) blocks, each an r x s grid of t x t diagonal matrices, so every output has
exactly s nonzeros. A chain lists its factors input side first, as the authors'
`rshapes` do. This module validates factors and chains (one error per broken rule),
gives their support masks and the density of their product, and describes a
validated layer with its hardware choices. The golden model, the float module and
the generator live in their own files.
"""
import warnings
from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np

from nomac.base.errors import ConfigError
from nomac.model.field_rules import (HardwareSection, reject_unknown, require_array, require_choice, require_int,
                                     require_values_in)

WEIGHTS = ("int8", "shift")
OUTPUTS = ("int8", "acc")
MEMORIES = ("rom", "ram")
DENSITY_POLICIES = ("warn", "refuse", "ignore")
SHAPE_NAMES = ("p", "q", "r", "s", "t")
SHIFT_MIN_LIMIT = -32        # the most negative shift_min a factor may have (terms stay < 2^40)
FACTOR_KEYS = ("shape", "weights", "out_shift", "shift_min", "shift_max")


class SparseChainWarning(UserWarning):
    """A valid chain whose product has structural zeros (no path of nonzeros reaches them)."""


# ---- factors and chains -------------------------------------------------------------

# The density check multiplies support matrices of p x D entries: this bounds its memory (a
# chain of 2048 x 2048 factors is far beyond any FPGA here, and its check takes about a second).
MAX_SUPPORT_ENTRIES = 1 << 22


def check_factor_shape(where: str, shape) -> tuple[int, int, int, int, int]:
    """[p, q, r, s, t] as five positive integers obeying docs/spec.md section 11; one error per rule."""
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__") or len(shape) != 5:
        raise ConfigError(where, "shape", shape, "must be a list of five integers [p, q, r, s, t]")
    p, q, r, s, t = (require_int(where, f"shape[{i}] ({name})", value, lo=1)
                     for i, (name, value) in enumerate(zip(SHAPE_NAMES, shape)))
    _check_support_size(where, [p, q, r, s, t], p, q)
    if q % (s * t):
        raise ConfigError(where, "shape", [p, q, r, s, t],
                          f"q = {q} must be a multiple of s*t = {s * t} (the factor has q/(s*t) blocks "
                          f"of s*t columns)")
    blocks = q // (s * t)
    if p != blocks * r * t:
        raise ConfigError(where, "shape", [p, q, r, s, t],
                          f"p = {p} must equal (q/(s*t))*r*t = {blocks}*{r}*{t} = {blocks * r * t} "
                          f"(each of the {blocks} blocks has r*t rows)")
    return p, q, r, s, t


def check_chain(where: str, shapes, in_features: int | None = None, out_features: int | None = None,
                density: str = "warn") -> tuple[tuple[int, ...], ...]:
    """Validate a chain (input side first): each factor, the sizes between them, the ends.

    density: "warn" issues a SparseChainWarning when the product has structural zeros,
    "refuse" raises a ConfigError instead, "ignore" does neither.
    """
    require_choice(where, "density", density, DENSITY_POLICIES)
    if isinstance(shapes, (str, bytes)) or not hasattr(shapes, "__len__") or len(shapes) == 0:
        raise ConfigError(where, "factors", shapes, "must be a non-empty list of factors")
    chain = tuple(check_factor_shape(f"{where}: factors[{k}]", shape) for k, shape in enumerate(shapes))
    for k, shape in enumerate(chain):
        _check_support_size(f"{where}: factors[{k}]", list(shape), shape[0], chain[0][1])
    for k in range(1, len(chain)):
        if chain[k][1] != chain[k - 1][0]:
            raise ConfigError(f"{where}: factors[{k}]", "shape", list(chain[k]),
                              f"q = {chain[k][1]} must equal the previous factor's p = {chain[k - 1][0]} "
                              f"(its outputs are this factor's inputs)")
    if in_features is not None and chain[0][1] != in_features:
        raise ConfigError(f"{where}: factors[0]", "shape", list(chain[0]),
                          f"q = {chain[0][1]} must equal in_features = {in_features} (factor 0 takes the input)")
    if out_features is not None and chain[-1][0] != out_features:
        raise ConfigError(f"{where}: factors[{len(chain) - 1}]", "shape", list(chain[-1]),
                          f"p = {chain[-1][0]} must equal out_features = {out_features} "
                          f"(the last factor gives the output)")
    if density != "ignore":
        fraction = chain_density(chain)
        if fraction < 1:
            text = (f"the product of the supports has {1 - fraction:.1%} structural zeros "
                    f"(no path of nonzeros reaches them, so no weights can represent them)")
            if density == "refuse":
                raise ConfigError(where, "factors", [list(s) for s in chain], f"is not dense: {text}")
            warnings.warn(SparseChainWarning(f"{where}: chain {[list(s) for s in chain]}: {text}"), stacklevel=2)
    return chain


def _check_support_size(where: str, shape: list, rows: int, columns: int):
    if rows * columns > MAX_SUPPORT_ENTRIES:
        raise ConfigError(where, "shape", shape, f"its support reaches {rows} x {columns} = {rows * columns} "
                                                 f"entries; at most {MAX_SUPPORT_ENTRIES} (2^22) are checked")


def nonzero_columns(shape) -> np.ndarray:
    """int64 [p, s]: the column of entry [row, j] of a factor's weights (docs/spec.md section 11).

    Row b*r*t + i*t + k has its s nonzeros in columns b*s*t + j*t + k, j = 0..s-1.
    """
    p, q, r, s, t = shape
    rows = np.arange(p)
    block, lane = rows // (r * t), rows % t
    return block[:, None] * (s * t) + np.arange(s)[None, :] * t + lane[:, None]


def support_mask(shape) -> np.ndarray:
    """bool [p, q]: True where the factor may be nonzero."""
    p, q = shape[0], shape[1]
    mask = np.zeros((p, q), dtype=bool)
    mask[np.arange(p)[:, None], nonzero_columns(shape)] = True
    return mask


def chain_support(shapes) -> np.ndarray:
    """bool [M, D]: the entries of the chain's product that some path of nonzeros reaches."""
    reach = support_mask(shapes[0]).astype(np.float64)
    for shape in shapes[1:]:
        reach = np.minimum(support_mask(shape).astype(np.float64) @ reach, 1.0)
    return reach > 0


def chain_density(shapes) -> float:
    """Fraction of the product's entries that are not structural zeros."""
    return float(chain_support(shapes).mean())


def chain_parameters(shapes) -> int:
    """Weights in the chain: sum of p*s (= q*r) over its factors (biases not counted)."""
    return sum(p * s for p, q, r, s, t in shapes)


# ---- the layer ----------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class ButterflyFactor:
    """One validated factor: its shape, weight kind, rounding and arrays."""
    shape: tuple                              # (p, q, r, s, t)
    weights: str                              # "int8" or "shift"
    out_shift: int
    bias: np.ndarray                          # int32 [p], in units of the factor's accumulator
    w: np.ndarray | None = None               # int8 [p, s]          (weights "int8")
    sign: np.ndarray | None = None            # int8 [p, s] in -1..1  (weights "shift")
    shift: np.ndarray | None = None           # int8 [p, s] in [shift_min, shift_max]
    shift_min: int | None = None
    shift_max: int | None = None

    p = property(lambda self: self.shape[0])
    q = property(lambda self: self.shape[1])
    r = property(lambda self: self.shape[2])
    s = property(lambda self: self.shape[3])
    t = property(lambda self: self.shape[4])

    @property
    def blocks(self) -> int:
        return self.q // (self.s * self.t)

    def params_json(self) -> dict:
        params = {"shape": list(self.shape), "weights": self.weights, "out_shift": self.out_shift}
        if self.weights == "shift":
            params.update(shift_min=self.shift_min, shift_max=self.shift_max)
        return params

    def arrays(self, k: int) -> dict[str, np.ndarray]:
        if self.weights == "int8":
            return {f"w{k}": self.w, f"bias{k}": self.bias}
        return {f"sign{k}": self.sign, f"shift{k}": self.shift, f"bias{k}": self.bias}

    def multipliers(self) -> np.ndarray:
        """int64 [p, s]: the integer each input is multiplied by (w, or sign * 2^(shift - shift_min))."""
        if self.weights == "int8":
            return self.w.astype(np.int64)
        return self.sign.astype(np.int64) << (self.shift.astype(np.int64) - self.shift_min)


def _factor_from_json(where: str, k: int, params, arrays: dict) -> ButterflyFactor:
    if not isinstance(params, dict):
        raise ConfigError(where, "factor", params, "must be an object with shape, weights and out_shift")
    reject_unknown(where, "factor field", params, FACTOR_KEYS)
    for key in ("shape", "weights", "out_shift"):
        if key not in params:
            raise ConfigError(where, key, None, "missing; a factor needs shape, weights and out_shift")
    shape = check_factor_shape(where, params["shape"])
    p, q, r, s, t = shape
    weights = require_choice(where, "weights", params["weights"], WEIGHTS)
    out_shift = require_int(where, "out_shift", params["out_shift"], lo=0, hi=62)
    bias = require_array(where, arrays, f"bias{k}", np.int32, (p,))
    if weights == "int8":
        for key in ("shift_min", "shift_max"):
            if key in params:
                raise ConfigError(where, key, params[key], "only a factor with weights 'shift' has it")
        return ButterflyFactor(shape=shape, weights=weights, out_shift=out_shift, bias=bias,
                               w=require_array(where, arrays, f"w{k}", np.int8, (p, s)))
    for key in ("shift_min", "shift_max"):
        if key not in params:
            raise ConfigError(where, key, None, "missing; a factor with weights 'shift' needs shift_min and shift_max")
    shift_min = require_int(where, "shift_min", params["shift_min"], lo=SHIFT_MIN_LIMIT, hi=0)
    shift_max = require_int(where, "shift_max", params["shift_max"], lo=shift_min, hi=0)
    sign = require_array(where, arrays, f"sign{k}", np.int8, (p, s))
    require_values_in(where, f"sign{k}", sign, -1, 1, "a sign is -1, 0 or +1")
    shift = require_array(where, arrays, f"shift{k}", np.int8, (p, s))
    require_values_in(where, f"shift{k}", shift, shift_min, shift_max,
                      f"must lie in [shift_min, shift_max] = [{shift_min}, {shift_max}]")
    return ButterflyFactor(shape=shape, weights=weights, out_shift=out_shift, bias=bias, sign=sign,
                           shift=shift, shift_min=shift_min, shift_max=shift_max)


@dataclass(frozen=True)
class ButterflyHardware:
    """Hardware choices that leave the arithmetic unchanged (the layer's "hw" section).

    in_lanes / out_lanes: int8 elements per beat on the engine's input / output stream.
    lanes: per factor, the terms computed per cycle by its stage (multipliers or shift
        units). A stage computes u outputs at a time, v of the s terms of each per
        cycle: lanes = u*v with v dividing s and u dividing t or u = t*m with m
        dividing r (see `lane_split`). The stage then takes p*s / lanes cycles per
        vector, which is the bound.
    memory: per factor, "rom" (weights and bias baked in) or "ram" (host write and
        read-back ports).
    bias_bits: width of a RAM bias memory (a loaded bias must fit); 0 without RAM.
    """
    in_lanes: int
    out_lanes: int
    lanes: tuple
    memory: tuple
    bias_bits: int

    KEYS: ClassVar[tuple[str, ...]] = ("in_lanes", "out_lanes", "lanes", "memory", "bias_bits")


def lane_split(shape, lanes: int) -> tuple[int, int] | None:
    """(u, v): outputs per cycle and terms per output per cycle for `lanes` term units, or None.

    v divides s; u divides t, or u = t*m with m dividing r, so that the u outputs of a
    cycle read aligned input words of one block. The largest valid v is chosen.
    """
    p, q, r, s, t = shape
    for v in sorted((d for d in range(1, s + 1) if s % d == 0), reverse=True):
        if lanes % v:
            continue
        if _outputs_ok(r, t, lanes // v):
            return lanes // v, v
    return None


def _outputs_ok(r: int, t: int, u: int) -> bool:
    return (u <= t and t % u == 0) or (u % t == 0 and r % (u // t) == 0)


def valid_lanes(shape) -> list[int]:
    """Every lanes value `lane_split` accepts for a factor."""
    p, q, r, s, t = shape
    return sorted({u * v for v in range(1, s + 1) if s % v == 0
                   for u in range(1, r * t + 1) if _outputs_ok(r, t, u)})


def _per_factor(where: str, key: str, value, count: int, check) -> tuple:
    """One value for every factor, or a list (JSON) / comma-separated string (command line) of them."""
    if isinstance(value, str) and "," in value:
        value = [part.strip() for part in value.split(",")]
        value = [int(v) if v.lstrip("-").isdigit() else v for v in value]
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise ConfigError(where, f"hw.{key}", value, f"must have one entry per factor ({count})")
        return tuple(check(f"hw.{key}[{k}]", v, k) for k, v in enumerate(value))
    return tuple(check(f"hw.{key}", value, k) for k in range(count))


def resolve_hardware(layer: "ButterflyLayer", where: str, given: dict) -> ButterflyHardware:
    """Validate the "hw" section; defaults: lanes = s per factor (one output per cycle),
    ROM memories, and stream lanes just wide enough for the slowest stage."""
    hw = HardwareSection(where, given, ButterflyHardware.KEYS)
    factors = layer.factors
    n = len(factors)

    def check_lanes(field_name, value, k):
        value = require_int(where, field_name, value, lo=1)
        if lane_split(factors[k].shape, value) is None:
            raise ConfigError(where, field_name, value,
                              f"factor {k} {list(factors[k].shape)}: lanes must be one of "
                              f"{valid_lanes(factors[k].shape)} (u*v with v dividing s, u dividing t "
                              f"or u = t*m with m dividing r)")
        return value

    lanes = _per_factor(where, "lanes", given.get("lanes", [f.s for f in factors]), n, check_lanes)
    memory = _per_factor(where, "memory", given.get("memory", "rom"), n,
                         lambda name, value, k: require_choice(where, name, value, MEMORIES))
    cycles = max(f.p * f.s // l for f, l in zip(factors, lanes))
    in_lanes, out_lanes = hw.stream_lanes(layer.in_features, layer.out_features, cycles)
    bias_bits = hw.bias_bits({f"bias{k}": factor.bias for k, (factor, kind) in enumerate(zip(factors, memory))
                              if kind == "ram"}, held_in="factors with memory 'ram'")
    return ButterflyHardware(in_lanes=in_lanes, out_lanes=out_lanes, lanes=lanes, memory=memory,
                             bias_bits=bias_bits)


@dataclass(frozen=True, eq=False)
class ButterflyLayer:
    """A validated `butterfly` layer: a chain of factors, each requantized to int8 for the next."""
    kind: ClassVar[str] = "butterfly"
    PARAMS: ClassVar[tuple[str, ...]] = ("in_features", "out_features", "factors", "output")
    name: str
    in_features: int
    out_features: int
    output: str
    factors: tuple                                # ButterflyFactor, input side first
    hw_given: dict = field(default_factory=dict)
    hw: ButterflyHardware = field(default=None)
    extra: dict = field(default_factory=dict)

    @property
    def shapes(self) -> tuple:
        return tuple(f.shape for f in self.factors)

    def params_json(self) -> dict:
        params = {"name": self.name, "kind": self.kind, "in_features": self.in_features,
                  "out_features": self.out_features, "factors": [f.params_json() for f in self.factors],
                  "output": self.output, **self.extra}
        if self.hw_given:
            params["hw"] = dict(self.hw_given)
        return params

    def arrays(self) -> dict[str, np.ndarray]:
        arrays = {}
        for k, factor in enumerate(self.factors):
            arrays.update(factor.arrays(k))
        return arrays

    @property
    def hw_keys(self) -> tuple[str, ...]:
        """The hardware choices this layer has (the keys of its "hw" section)."""
        return type(self.hw).KEYS

    def with_hw(self, overrides: dict, where: str) -> "ButterflyLayer":
        given = {**self.hw_given, **overrides}
        hw = resolve_hardware(self, where, given)
        kept = {key: list(getattr(hw, key)) if isinstance(getattr(hw, key), tuple) else getattr(hw, key)
                for key in given}
        return replace(self, hw_given=kept, hw=hw)

    def with_arrays(self, arrays: dict[str, np.ndarray]) -> "ButterflyLayer":
        """The same layer with some factor arrays replaced (e.g. RAM contents rewritten)."""
        factors = []
        for k, factor in enumerate(self.factors):
            changes = {name: arrays[f"{name}{k}"] for name in ("w", "sign", "shift", "bias") if f"{name}{k}" in arrays}
            factors.append(replace(factor, **changes))
        return replace(self, factors=tuple(factors))

    @classmethod
    def from_json(cls, where: str, params: dict, arrays: dict[str, np.ndarray],
                  extra_keys: tuple[str, ...] = ()) -> "ButterflyLayer":
        known = ("name", "kind", "hw", *cls.PARAMS, *extra_keys)
        reject_unknown(where, "field", params, known)
        for key in ("in_features", "out_features", "factors"):
            if key not in params:
                raise ConfigError(where, key, None, "missing; a butterfly layer needs in_features, "
                                                    "out_features and factors")
        D = require_int(where, "in_features", params["in_features"], lo=1)
        M = require_int(where, "out_features", params["out_features"], lo=1)
        output = require_choice(where, "output", params.get("output", "int8"), OUTPUTS)
        factors_json = params["factors"]
        if not isinstance(factors_json, list) or not factors_json:
            raise ConfigError(where, "factors", factors_json, "must be a non-empty list of factor objects")
        factors = tuple(_factor_from_json(f"{where}: factors[{k}]", k, f, arrays)
                        for k, f in enumerate(factors_json))
        check_chain(where, [f.shape for f in factors], D, M)
        expected = set()
        for k, factor in enumerate(factors):
            expected.update(factor.arrays(k))
        reject_unknown(where, "array", arrays, sorted(expected))
        extra = {key: params[key] for key in extra_keys if key in params}
        layer = cls(name=params["name"], in_features=D, out_features=M, output=output, factors=factors,
                    extra=extra)
        hw = params.get("hw", {})
        if not isinstance(hw, dict):
            raise ConfigError(where, "hw", hw, "must be an object of hardware choices")
        return layer.with_hw(hw, where)
