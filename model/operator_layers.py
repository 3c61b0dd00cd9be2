"""The operator layer kinds of a whole-model config: everything of the integer ViT that
is not a matrix with weights (docs/spec.md section 13, "Integer ViT operators").

`patches`, `embed` (class token + position embedding), `layernorm`, `gelu`,
`attention` (Q K^T, softmax, A V), `add` (residual) and `select_token` describe and
validate an operator as the hardware kinds describe a layer: a frozen dataclass with
`from_json`, `params_json`, `arrays` and `with_hw`. Their arithmetic is in
model/int_ops.py; how a whole config runs as a dataflow is in model/dataflow.py.

Every operator maps rows of `in_features` int8 values to rows of `out_features`
(a token-wise operator, like a hardware layer, applies to each token of a sequence).
Each has an "hw" section of its own (`OperatorHardware`, docs/spec.md section 13.9):
stream lanes, datapath lanes and, for a kind with arrays, ROM or RAM memories; the
generators are in hw/operators/.
"""
from dataclasses import dataclass, field, fields, replace
from typing import ClassVar

import numpy as np

from nomac.base.errors import ConfigError
from nomac.model.field_rules import HardwareSection, reject_unknown, require_array, require_int, require_values_in

MAX_MULT = (1 << 31) - 1     # dyadic multipliers are non-negative int32
MAX_SHIFT = 62
EXP_ONE = 1 << 15            # exp_table entries lie in [0, 2^15]
EXP_ENTRIES = 256
MAX_NORM_FEATURES = 1024     # keeps LayerNorm's Q * 4^G inside int64 (see int_ops.layernorm)
MAX_NORM_BITS = 8


def _int(lo=None, hi=None):
    return lambda where, key, value: require_int(where, key, value, lo=lo, hi=hi)


def _names(where, key, value):
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(where, key, value, "must be a list of two layer names (or \"input\")")
    return tuple(value)


MEMORIES = ("rom", "ram")
NO_MEMORY = "none"           # hw.memory of a kind without arrays


@dataclass(frozen=True)
class OperatorHardware:
    """Hardware choices of an operator, which never change its arithmetic (docs/spec.md section 13.9).

    in_lanes / out_lanes: elements per beat on the input / output stream.
    lanes: elements the datapath handles per cycle (attention: the multipliers working
        in parallel on a dot product); 1 for the reordering kinds.
    memory: "rom" bakes the kind's arrays into the bitstream, "ram" gives each a host
        write and read-back port; "none" for a kind without arrays.
    """
    in_lanes: int
    out_lanes: int
    lanes: int
    memory: str

    KEYS: ClassVar[tuple[str, ...]] = ("in_lanes", "out_lanes", "lanes", "memory")


@dataclass(frozen=True, eq=False)
class OperatorLayer:
    """Shared machinery; a kind lists its parameters (PARAMS: name -> check), its arrays
    (`array_rules`: name -> (dtype, shape, (lo, hi, rule) or None)) and how its datapath
    lanes may be chosen (`lanes_rule`)."""
    kind: ClassVar[str] = ""
    PARAMS: ClassVar[dict] = {}
    output: ClassVar[str] = "int8"

    name: str

    @classmethod
    def array_rules(cls, p: dict) -> dict:
        return {}

    @classmethod
    def check(cls, where: str, p: dict):
        """Rules between parameters (each kind adds its own)."""

    def lanes_rule(self) -> tuple[int, int, int | None]:
        """(default, largest, divisor) of hw.lanes: lanes must divide `divisor` (None: any
        lanes up to the largest); (1, 1, None) fixes it at 1."""
        return 1, self.out_features, None

    def default_stream_lanes(self, lanes: int) -> int:
        """The default of hw.in_lanes and hw.out_lanes: as wide as the datapath."""
        return lanes

    @property
    def in_features(self) -> int:
        raise NotImplementedError

    @property
    def out_features(self) -> int:
        raise NotImplementedError

    @classmethod
    def from_json(cls, where: str, params: dict, arrays: dict, extra_keys: tuple[str, ...] = ()):
        reject_unknown(where, "field", params, ("name", "kind", "hw", *cls.PARAMS, *extra_keys))
        values = {}
        for key, check in cls.PARAMS.items():
            if key not in params:
                raise ConfigError(where, key, None, f"missing; a {cls.kind} layer needs {', '.join(cls.PARAMS)}")
            values[key] = check(where, key, params[key])
        cls.check(where, values)
        rules = cls.array_rules(values)
        reject_unknown(where, "array", arrays, tuple(rules))
        for name, (dtype, shape, limits) in rules.items():
            values[name] = require_array(where, arrays, name, dtype, shape)
            if limits is not None:
                require_values_in(where, name, values[name], *limits)
        extra = {key: params[key] for key in extra_keys if key in params}
        layer = cls(name=params["name"], **values, extra=extra)
        hw = params.get("hw", {})
        if not isinstance(hw, dict):
            raise ConfigError(where, "hw", hw, "must be an object of hardware choices")
        return layer.with_hw(hw, where, replace_given=True)

    def params_json(self) -> dict:
        params = {"name": self.name, "kind": self.kind}
        for key in self.PARAMS:
            value = getattr(self, key)
            params[key] = list(value) if isinstance(value, tuple) else value
        params.update(self.extra)
        if self.hw_given:
            params["hw"] = dict(self.hw_given)
        return params

    def arrays(self) -> dict[str, np.ndarray]:
        array_names = [f.name for f in fields(self) if isinstance(getattr(self, f.name), np.ndarray)]
        return {name: getattr(self, name) for name in array_names}

    def with_hw(self, overrides: dict, where: str, replace_given: bool = False):
        """The same layer with some hardware choices replaced (defaults re-derived); an
        override of a choice the kind does not have is refused, as for hardware layers."""
        given = dict(overrides) if replace_given else {**self.hw_given, **overrides}
        section = HardwareSection(where, given, OperatorHardware.KEYS)
        default, largest, divisor = self.lanes_rule()
        if largest == 1 and "lanes" in given:
            raise ConfigError(where, "hw.lanes", given["lanes"],
                              f"a {self.kind} layer moves one element a cycle; only in_lanes and out_lanes apply")
        lanes = section.integer("lanes", default, lo=1, hi=largest)
        if divisor is not None and divisor % lanes:
            raise ConfigError(where, "hw.lanes", lanes, f"must divide {divisor} ({self.lanes_divides})")
        stream = self.default_stream_lanes(lanes)
        in_lanes = section.integer("in_lanes", min(stream, self.stream_in_features), lo=1, hi=self.stream_in_features)
        out_lanes = section.integer("out_lanes", min(stream, self.out_features), lo=1, hi=self.out_features)
        if self.arrays():
            memory = section.choice("memory", "rom", MEMORIES)
        elif "memory" in given:
            raise ConfigError(where, "hw.memory", given["memory"], f"a {self.kind} layer has no arrays to hold")
        else:
            memory = NO_MEMORY
        hw = OperatorHardware(in_lanes=in_lanes, out_lanes=out_lanes, lanes=lanes, memory=memory)
        return replace(self, hw_given={key: getattr(hw, key) for key in given}, hw=hw)

    lanes_divides: ClassVar[str] = "features"

    @property
    def hw_keys(self) -> tuple[str, ...]:
        """The hardware choices this layer has: no `lanes` for a reordering kind, no `memory`
        without arrays."""
        fixed_lanes = self.lanes_rule()[1] == 1
        return tuple(key for key in OperatorHardware.KEYS
                     if not (key == "lanes" and fixed_lanes or key == "memory" and not self.arrays()))

    @property
    def stream_in_features(self) -> int:
        """Elements of one input vector of the layer's engine (in_features; an add reads a and b)."""
        return self.in_features


@dataclass(frozen=True, eq=False)
class PatchesLayer(OperatorLayer):
    """[H*W] row-major image -> the (H/p)*(W/p) patches in row-major order, each p*p pixels row-major."""
    kind: ClassVar[str] = "patches"
    PARAMS: ClassVar[dict] = {"height": _int(1, 4096), "width": _int(1, 4096), "patch": _int(1, 256)}
    height: int = 0
    width: int = 0
    patch: int = 0
    extra: dict = field(default_factory=dict)
    hw_given: dict = field(default_factory=dict)          # the "hw" section as written; saved back as is
    hw: OperatorHardware = None                           # hw_given with defaults filled in

    @classmethod
    def check(cls, where, p):
        if p["height"] % p["patch"] or p["width"] % p["patch"]:
            raise ConfigError(where, "patch", p["patch"], f"must divide height ({p['height']}) and width ({p['width']})")

    in_features = property(lambda self: self.height * self.width)
    out_features = property(lambda self: self.height * self.width)

    def lanes_rule(self):
        return 1, 1, None

    def default_stream_lanes(self, lanes):
        return 1


@dataclass(frozen=True, eq=False)
class EmbedLayer(OperatorLayer):
    """Class token + position embedding: T-1 patch embeddings in, T tokens out (token 0 the class token).
    y[t, e] = sat8(rshift_round(mult * x'[t, e] + offset[t, e], shift)), x'[0] = 0, x'[t] = x[t-1]."""
    kind: ClassVar[str] = "embed"
    PARAMS: ClassVar[dict] = {"tokens": _int(2, 65536), "features": _int(1, 65536),
                              "mult": _int(0, MAX_MULT), "shift": _int(0, MAX_SHIFT)}
    tokens: int = 0
    features: int = 0
    mult: int = 0
    shift: int = 0
    offset: np.ndarray = None          # int32 [T, E]
    extra: dict = field(default_factory=dict)
    hw_given: dict = field(default_factory=dict)          # the "hw" section as written; saved back as is
    hw: OperatorHardware = None                           # hw_given with defaults filled in

    @classmethod
    def array_rules(cls, p):
        return {"offset": (np.int32, (p["tokens"], p["features"]), None)}

    in_features = property(lambda self: (self.tokens - 1) * self.features)
    out_features = property(lambda self: self.tokens * self.features)

    def lanes_rule(self):
        return 1, self.features, self.features


@dataclass(frozen=True, eq=False)
class LayerNormLayer(OperatorLayer):
    """Integer LayerNorm over a token's `features` values (int_ops.layernorm)."""
    kind: ClassVar[str] = "layernorm"
    PARAMS: ClassVar[dict] = {"features": _int(2, MAX_NORM_FEATURES), "norm_bits": _int(1, MAX_NORM_BITS),
                              "out_shift": _int(0, MAX_SHIFT)}
    features: int = 0
    norm_bits: int = 0
    out_shift: int = 0
    weight: np.ndarray = None          # int16 [E]
    bias: np.ndarray = None            # int32 [E]
    extra: dict = field(default_factory=dict)
    hw_given: dict = field(default_factory=dict)          # the "hw" section as written; saved back as is
    hw: OperatorHardware = None                           # hw_given with defaults filled in

    @classmethod
    def array_rules(cls, p):
        E = p["features"]
        return {"weight": (np.int16, (E,), None), "bias": (np.int32, (E,), None)}

    in_features = property(lambda self: self.features)
    out_features = property(lambda self: self.features)

    def lanes_rule(self):
        return 1, self.features, self.features


@dataclass(frozen=True, eq=False)
class GeluLayer(OperatorLayer):
    """An int8 -> int8 function as a 256-entry table: y = table[x + 128]."""
    kind: ClassVar[str] = "gelu"
    PARAMS: ClassVar[dict] = {"features": _int(1, 1 << 20)}
    features: int = 0
    table: np.ndarray = None           # int8 [256]
    extra: dict = field(default_factory=dict)
    hw_given: dict = field(default_factory=dict)          # the "hw" section as written; saved back as is
    hw: OperatorHardware = None                           # hw_given with defaults filled in

    @classmethod
    def array_rules(cls, p):
        return {"table": (np.int8, (256,), None)}

    in_features = property(lambda self: self.features)
    out_features = property(lambda self: self.features)


@dataclass(frozen=True, eq=False)
class AttentionLayer(OperatorLayer):
    """Multi-head self-attention on int8 [T, 3E] rows of q | k | v (int_ops.attention)."""
    kind: ClassVar[str] = "attention"
    PARAMS: ClassVar[dict] = {"tokens": _int(1, 4096), "features": _int(1, 4096), "heads": _int(1, 4096),
                              "score_mult": _int(0, MAX_MULT), "score_shift": _int(0, MAX_SHIFT),
                              "out_mult": _int(0, MAX_MULT), "out_shift": _int(0, MAX_SHIFT)}
    tokens: int = 0
    features: int = 0
    heads: int = 0
    score_mult: int = 0
    score_shift: int = 0
    out_mult: int = 0
    out_shift: int = 0
    exp_table: np.ndarray = None       # int32 [256] in [0, 2^15], exp_table[0] >= 1
    extra: dict = field(default_factory=dict)
    hw_given: dict = field(default_factory=dict)          # the "hw" section as written; saved back as is
    hw: OperatorHardware = None                           # hw_given with defaults filled in

    @classmethod
    def check(cls, where, p):
        if p["features"] % p["heads"]:
            raise ConfigError(where, "heads", p["heads"], f"must divide features ({p['features']})")

    @classmethod
    def array_rules(cls, p):
        return {"exp_table": (np.int32, (EXP_ENTRIES,), (0, EXP_ONE, f"exp table entries lie in 0..{EXP_ONE}"))}

    @classmethod
    def from_json(cls, where, params, arrays, extra_keys=()):
        layer = super().from_json(where, params, arrays, extra_keys)
        if layer.exp_table[0] < 1:
            raise ConfigError(where, "array 'exp_table'[0]", int(layer.exp_table[0]),
                              "must be >= 1 (the largest score's weight; it keeps the softmax sum > 0)")
        return layer

    in_features = property(lambda self: self.tokens * 3 * self.features)
    out_features = property(lambda self: self.tokens * self.features)
    lanes_divides: ClassVar[str] = "head_dim = features / heads"

    @property
    def head_dim(self) -> int:
        return self.features // self.heads

    def lanes_rule(self):
        """lanes: multipliers on one dot product (over head_dim); by default as many as divide it, up to 4
        (the iCE40UP5K's 8 DSP blocks then hold the products and the probability's multiply)."""
        return max(u for u in range(1, min(self.head_dim, 4) + 1) if self.head_dim % u == 0), \
            self.head_dim, self.head_dim

    def default_stream_lanes(self, lanes):
        return 1


@dataclass(frozen=True, eq=False)
class AddLayer(OperatorLayer):
    """Residual add of two named int8 inputs: y = sat8(rshift_round(a * mult_a + b * mult_b, shift)).

    Its engine reads one vector of 2E elements, a's E then b's. So does the layer when
    both its inputs are "input" (a config whose only layer is an add): in_features is 2E then."""
    kind: ClassVar[str] = "add"
    PARAMS: ClassVar[dict] = {"features": _int(1, 1 << 20), "inputs": _names,
                              "mult_a": _int(0, MAX_MULT), "mult_b": _int(0, MAX_MULT), "shift": _int(0, MAX_SHIFT)}
    features: int = 0
    inputs: tuple = ()
    mult_a: int = 0
    mult_b: int = 0
    shift: int = 0
    extra: dict = field(default_factory=dict)
    hw_given: dict = field(default_factory=dict)          # the "hw" section as written; saved back as is
    hw: OperatorHardware = None                           # hw_given with defaults filled in

    @property
    def pair_input(self) -> bool:
        """Both operands come from the model input, as one row of a then b."""
        return self.inputs == ("input", "input")

    in_features = property(lambda self: 2 * self.features if self.pair_input else self.features)
    out_features = property(lambda self: self.features)
    stream_in_features = property(lambda self: 2 * self.features)


@dataclass(frozen=True, eq=False)
class SelectTokenLayer(OperatorLayer):
    """One token of a sequence: [T, E] -> [E] (the class token is index 0)."""
    kind: ClassVar[str] = "select_token"
    PARAMS: ClassVar[dict] = {"tokens": _int(1, 65536), "features": _int(1, 65536), "index": _int(0)}
    tokens: int = 0
    features: int = 0
    index: int = 0
    extra: dict = field(default_factory=dict)
    hw_given: dict = field(default_factory=dict)          # the "hw" section as written; saved back as is
    hw: OperatorHardware = None                           # hw_given with defaults filled in

    @classmethod
    def check(cls, where, p):
        if p["index"] >= p["tokens"]:
            raise ConfigError(where, "index", p["index"], f"must be below tokens ({p['tokens']})")

    in_features = property(lambda self: self.tokens * self.features)
    out_features = property(lambda self: self.features)

    def lanes_rule(self):
        return 1, 1, None

    def default_stream_lanes(self, lanes):
        return 1


OPERATOR_KINDS = {cls.kind: cls for cls in (PatchesLayer, EmbedLayer, LayerNormLayer, GeluLayer,
                                             AttentionLayer, AddLayer, SelectTokenLayer)}
