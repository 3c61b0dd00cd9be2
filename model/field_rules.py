"""The checks every layer kind runs on its config section, each raising a ConfigError
that names the place, the field, the value and the rule (docs/spec.md section 4).

`HardwareSection` reads a layer's "hw" section with these checks, and holds the
choices several kinds share (stream lanes, bias_bits), so each is checked and worded once.
"""
import math
import operator
from collections.abc import Iterable, Mapping

import numpy as np

from nomac.base.errors import ConfigError

__all__ = ["HardwareSection", "reject_unknown", "require_array", "require_bool", "require_choice", "require_int",
           "require_power_of_two", "require_real", "require_values_in"]


def require_int(where: str, field: str, value, *, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(where, field, value, "must be an integer")
    value = int(value)
    if lo is not None and value < lo:
        raise ConfigError(where, field, value, f"must be >= {lo}")
    if hi is not None and value > hi:
        raise ConfigError(where, field, value, f"must be <= {hi}")
    return value


def require_real(where: str, field: str, value, *, lo: float | None = None, hi: float | None = None,
                 above: float | None = None, below: float | None = None) -> float:
    """A finite number (an integer or a float, not a boolean) as a float, within [lo, hi]
    and (above, below), each bound only where given."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(where, field, value, "must be a number")
    number = float(value) if abs(value) < 1e300 else math.inf     # also NaN, which fails the next test
    if not math.isfinite(number):
        raise ConfigError(where, field, value, "must be finite")
    bounds = [(bound, sign, holds) for bound, sign, holds in
              ((lo, ">=", operator.ge), (above, ">", operator.gt), (hi, "<=", operator.le), (below, "<", operator.lt))
              if bound is not None]
    if not all(holds(number, bound) for bound, _, holds in bounds):
        raise ConfigError(where, field, value,
                          "must be a number " + " and ".join(f"{sign} {bound}" for bound, sign, _ in bounds))
    return number


def require_power_of_two(where: str, field: str, value: int, *, lo: int, hi: int) -> int:
    value = require_int(where, field, value)
    if not (lo <= value <= hi) or value & (value - 1):
        raise ConfigError(where, field, value, f"must be a power of two in {lo}..{hi}")
    return value


def require_choice(where: str, field: str, value, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(where, field, value, f"must be one of {', '.join(map(repr, choices))}")
    return value


def require_bool(where: str, field: str, value) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(where, field, value, "must be true or false")
    return value


def reject_unknown(where: str, what: str, given: Iterable[str], known: Iterable[str]):
    known = tuple(known)
    for key in given:
        if key not in known:
            raise ConfigError(where, what, key, f"unknown; known {what}s are {', '.join(known)}")


def require_array(where: str, arrays: Mapping[str, np.ndarray], name: str, dtype, shape: tuple) -> np.ndarray:
    """Return arrays[name], read-only, after checking presence, exact dtype and shape.

    `dtype` is one numpy dtype, or the string "integer" for any integer dtype.
    """
    field = f"array '{name}'"
    if name not in arrays:
        raise ConfigError(where, field, None, f"missing; the layer needs it with shape {list(shape)}")
    array = np.asarray(arrays[name])
    if dtype == "integer":
        if not np.issubdtype(array.dtype, np.integer):
            raise ConfigError(where, f"{field} dtype", str(array.dtype), "must be an integer dtype")
    elif array.dtype != np.dtype(dtype):
        raise ConfigError(where, f"{field} dtype", str(array.dtype), f"must be {np.dtype(dtype)}")
    if array.shape != tuple(shape):
        raise ConfigError(where, f"{field} shape", list(array.shape), f"must be {list(shape)}")
    array = np.array(array, copy=True)
    array.flags.writeable = False
    return array


def require_values_in(where: str, name: str, array: np.ndarray, lo: int, hi: int, rule: str):
    """Every element of an integer array lies in [lo, hi]; the first offender is named."""
    bad = np.argwhere((array < lo) | (array > hi))
    if bad.size:
        index = tuple(int(i) for i in bad[0])
        raise ConfigError(where, f"array '{name}'{list(index)}", int(array[index]), rule)


class HardwareSection:
    """A layer's "hw" section being checked: each choice is read with its default and its rule,
    and named "hw.<key>" in errors. Keys outside `keys` are refused at once."""

    def __init__(self, where: str, given: Mapping, keys: Iterable[str]):
        reject_unknown(where, "hw key", given, keys)
        self.where, self.given = where, given

    def integer(self, key: str, default: int, *, lo: int | None = None, hi: int | None = None) -> int:
        return require_int(self.where, f"hw.{key}", self.given.get(key, default), lo=lo, hi=hi)

    def power_of_two(self, key: str, default: int, *, lo: int, hi: int) -> int:
        return require_power_of_two(self.where, f"hw.{key}", self.given.get(key, default), lo=lo, hi=hi)

    def choice(self, key: str, default: str, choices: Iterable[str]) -> str:
        return require_choice(self.where, f"hw.{key}", self.given.get(key, default), choices)

    def boolean(self, key: str, default: bool) -> bool:
        return require_bool(self.where, f"hw.{key}", self.given.get(key, default))

    def stream_lanes(self, in_features: int, out_features: int, cycles: int) -> tuple[int, int]:
        """hw.in_lanes and hw.out_lanes, elements per beat on the input and output streams: by
        default just enough to keep up with an engine that takes `cycles` per vector."""
        return (self.integer("in_lanes", -(-in_features // cycles), lo=1, hi=in_features),
                self.integer("out_lanes", -(-out_features // cycles), lo=1, hi=out_features))

    def bias_bits(self, ram_biases: Mapping[str, np.ndarray], held_in: str = "memory 'ram'") -> int:
        """hw.bias_bits, the width of a RAM bias memory (default 32), which every bias held in RAM
        (`ram_biases`, by array name) must fit; 0 when none is, and then it may not be given
        (it only applies to `held_in`)."""
        if not ram_biases:
            if "bias_bits" in self.given:
                raise ConfigError(self.where, "hw.bias_bits", self.given["bias_bits"],
                                  f"only applies to {held_in}; ROM widths come from the arrays")
            return 0
        bits = self.integer("bias_bits", 32, lo=2, hi=32)
        limit = 1 << (bits - 1)
        for name, bias in ram_biases.items():
            require_values_in(self.where, name, bias, -limit, limit - 1,
                              f"must fit the {bits}-bit bias memory (hw.bias_bits)")
        return bits
