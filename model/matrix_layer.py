"""What the matrix-vector kinds (`shift`, `dense`) share: parameters, loading, "hw" choices.

Both kinds compute acc[m] = bias[m] + sum_d term(m, d) over a full [M, D] weight
matrix and give sat8(rshift_round(acc, out_shift)) or acc (docs/spec.md section 2); only the
term differs (a signed shift of the input, or an int8 product). So they share the
parameters in_features, out_features, out_shift, output, one "hw" section, and the
engine organisation: `lanes` output units run in parallel, each consuming
`terms_per_cycle` inputs a cycle, which bounds a vector at
ceil(D * M / (lanes * terms_per_cycle)) cycles.
"""
from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np

from nomac.base.errors import ConfigError
from nomac.model.field_rules import HardwareSection, reject_unknown, require_array, require_choice, require_int

OUTPUTS = ("int8", "acc")
MEMORIES = ("rom", "ram")
DEFAULT_LANES = 2            # outputs computed in parallel, as the lut kind's default table_reads
DEFAULT_TERMS_PER_CYCLE = 4  # so 8 terms a cycle: the 8 DSP blocks of an iCE40UP5K for `dense`


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class MatrixHardware:
    """Hardware choices that leave the arithmetic unchanged (the layer's "hw" section).

    in_lanes / out_lanes: elements per beat on the input / output stream.
    lanes (U): output units computing in parallel; unit u of group g computes output
        g * U + u, so a vector takes ceil(M / U) groups.
    terms_per_cycle (T): inputs each unit consumes per cycle; a group takes
        ceil(D / T) cycles, a vector ceil(M / U) * ceil(D / T).
    memory: "rom" bakes the arrays into the bitstream; "ram" adds host write and
        read-back ports so weights and bias can be loaded at run time.
    pipeline: register the operands and weights of a cycle, its terms and its
        adder-tree sums, and the final sums before rounding (shorter paths, four more
        cycles of latency).
    bias_bits: width of the bias memory with "ram" (a loaded bias must fit in it);
        with "rom" the widths come from the arrays themselves.
    """
    in_lanes: int
    out_lanes: int
    lanes: int
    terms_per_cycle: int
    memory: str
    pipeline: bool
    bias_bits: int

    KEYS: ClassVar[tuple[str, ...]] = ("in_lanes", "out_lanes", "lanes", "terms_per_cycle", "memory",
                                       "pipeline", "bias_bits")

    def groups(self, out_features: int) -> int:
        return ceil_div(out_features, self.lanes)

    def steps(self, in_features: int) -> int:
        return ceil_div(in_features, self.terms_per_cycle)


def resolve_matrix_hardware(layer, where: str, given: dict) -> MatrixHardware:
    """Validate a `shift` or `dense` layer's "hw" section and fill in balanced defaults.

    Defaults: lanes = min(M, 2), terms_per_cycle = min(D, 4); the streams get just
    enough lanes to keep up with the ceil(M / lanes) * ceil(D / terms_per_cycle)
    cycles of the loop.
    """
    hw = HardwareSection(where, given, MatrixHardware.KEYS)
    D, M = layer.in_features, layer.out_features
    lanes = hw.integer("lanes", min(M, DEFAULT_LANES), lo=1, hi=M)
    terms = hw.integer("terms_per_cycle", min(D, DEFAULT_TERMS_PER_CYCLE), lo=1, hi=D)
    in_lanes, out_lanes = hw.stream_lanes(D, M, ceil_div(M, lanes) * ceil_div(D, terms))
    memory = hw.choice("memory", "rom", MEMORIES)
    pipeline = hw.boolean("pipeline", True)
    bias_bits = hw.bias_bits({"bias": layer.bias} if memory == "ram" else {})
    return MatrixHardware(in_lanes=in_lanes, out_lanes=out_lanes, lanes=lanes, terms_per_cycle=terms,
                          memory=memory, pipeline=pipeline, bias_bits=bias_bits)


@dataclass(frozen=True, eq=False, kw_only=True)
class MatrixLayer:
    """A validated matrix-vector layer; subclasses add the kind, its parameters and arrays.

    Arrays are read-only numpy arrays of the dtypes in docs/spec.md sections 8 and 9. Subclasses set `kind`,
    `PARAMS` (all parameters in saved order), `ARRAYS` (array names) and implement
    `_check(where, params, arrays, D, M) -> (parameters, arrays)` for what is their own
    (`bias` int32 [M] is checked here).
    """
    kind: ClassVar[str]
    PARAMS: ClassVar[tuple[str, ...]]
    ARRAYS: ClassVar[tuple[str, ...]]
    name: str
    in_features: int
    out_features: int
    out_shift: int
    output: str
    bias: np.ndarray                              # int32 [M]
    hw_given: dict = field(default_factory=dict)  # the "hw" section as written; saved back as is
    hw: MatrixHardware = field(default=None)      # hw_given with defaults filled in
    extra: dict = field(default_factory=dict)     # descriptive fields kept verbatim (scales, notes)

    def params_json(self) -> dict:
        """The layer's JSON object, as saved (without arrays)."""
        params = {"name": self.name, "kind": self.kind,
                  **{key: getattr(self, key) for key in self.PARAMS}, **self.extra}
        if self.hw_given:
            params["hw"] = dict(self.hw_given)
        return params

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.ARRAYS}

    @property
    def hw_keys(self) -> tuple[str, ...]:
        """The hardware choices this layer has (the keys of its "hw" section)."""
        return type(self.hw).KEYS

    def with_hw(self, overrides: dict, where: str):
        """The same layer with some hardware choices replaced (and defaults re-derived)."""
        given = {**self.hw_given, **overrides}
        hw = resolve_matrix_hardware(self, where, given)
        return replace(self, hw_given={key: getattr(hw, key) for key in given}, hw=hw)

    @classmethod
    def from_json(cls, where: str, params: dict, arrays: dict[str, np.ndarray], extra_keys: tuple[str, ...] = ()):
        reject_unknown(where, "field", params, ("name", "kind", "hw", *cls.PARAMS, *extra_keys))
        needed = [key for key in cls.PARAMS if key != "output"]
        for key in needed:
            if key not in params:
                raise ConfigError(where, key, None, f"missing; a {cls.kind} layer needs {', '.join(needed)}")
        D = require_int(where, "in_features", params["in_features"], lo=1)
        M = require_int(where, "out_features", params["out_features"], lo=1)
        out_shift = require_int(where, "out_shift", params["out_shift"], lo=0, hi=62)
        output = require_choice(where, "output", params.get("output", "int8"), OUTPUTS)
        reject_unknown(where, "array", arrays, cls.ARRAYS)
        own_params, own_arrays = cls._check(where, params, arrays, D, M)
        own_arrays["bias"] = require_array(where, arrays, "bias", np.int32, (M,))
        extra = {key: params[key] for key in extra_keys if key in params}
        layer = cls(name=params["name"], in_features=D, out_features=M, out_shift=out_shift, output=output,
                    extra=extra, **own_params, **own_arrays)
        hw = params.get("hw", {})
        if not isinstance(hw, dict):
            raise ConfigError(where, "hw", hw, "must be an object of hardware choices")
        return layer.with_hw(hw, where)

    @classmethod
    def _check(cls, where: str, params: dict, arrays: dict, D: int, M: int) -> tuple[dict, dict]:
        raise NotImplementedError
