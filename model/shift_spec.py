"""The `shift` layer kind (docs/spec.md section 8): power-of-two weights, as in DeepShift.

Elhoushi et al., "DeepShift: Towards Multiplication-Less Neural Networks" (CVPR
Workshops 2021): every weight is sign * 2^shift with a ternary sign and an integer
shift, so a product becomes a shift and a conditional negation. Here the shift lies
in [shift_min, shift_max] = [p0, p1] (p0 <= p1 <= 0) and the accumulator counts units
of 2^p0, so every term sign * (x << (shift - p0)) is exact (docs/spec.md section 8). This module
only describes and validates a layer; the golden model, the float modules and the
generator live in their own files.
"""
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from nomac.base.errors import ConfigError
from nomac.model.field_rules import require_array, require_int, require_values_in
from nomac.model.matrix_layer import MatrixLayer

MIN_SHIFT = -32   # the smallest shift_min (as for butterfly shift factors): terms span 8 + 32 bits
MIN_SHIFT_RULE = (f"shift_min must be >= {MIN_SHIFT}: shift weights are at most 6 bits, "
                  f"2^{MIN_SHIFT} .. 2^0")


@dataclass(frozen=True, eq=False, kw_only=True)
class ShiftLayer(MatrixLayer):
    """A validated `shift` layer: weight[m, d] = sign[m, d] * 2^shift[m, d]."""
    kind: ClassVar[str] = "shift"
    PARAMS: ClassVar[tuple[str, ...]] = ("in_features", "out_features", "shift_min", "shift_max",
                                         "out_shift", "output")
    ARRAYS: ClassVar[tuple[str, ...]] = ("sign", "shift", "bias")
    shift_min: int
    shift_max: int
    sign: np.ndarray      # int8 [M, D] in {-1, 0, +1}
    shift: np.ndarray     # int8 [M, D] in [shift_min, shift_max]

    @property
    def shift_span(self) -> int:
        """p1 - p0: the largest left shift a term needs."""
        return self.shift_max - self.shift_min

    def integer_weights(self) -> np.ndarray:
        """sign * 2^(shift - p0) as int64 [M, D]: each weight in accumulator units of 2^p0."""
        return self.sign.astype(np.int64) << (self.shift.astype(np.int64) - self.shift_min)

    @classmethod
    def _check(cls, where, params, arrays, D, M):
        p0 = require_int(where, "shift_min", params["shift_min"], hi=0)
        if p0 < MIN_SHIFT:
            raise ConfigError(where, "shift_min", p0, f"{MIN_SHIFT_RULE}; export with shift_min >= {MIN_SHIFT} "
                              f"(weights below 2^{MIN_SHIFT} rounded to 2^{MIN_SHIFT} or to zero)")
        p1 = require_int(where, "shift_max", params["shift_max"], hi=0)
        if p1 < p0:
            raise ConfigError(where, "shift_max", p1, f"must be >= shift_min ({p0})")
        sign = require_array(where, arrays, "sign", np.int8, (M, D))
        require_values_in(where, "sign", sign, -1, 1, "a sign is -1, 0 or +1")
        shift = require_array(where, arrays, "shift", np.int8, (M, D))
        require_values_in(where, "shift", shift, p0, p1, f"must lie in [shift_min, shift_max] = [{p0}, {p1}]")
        return {"shift_min": p0, "shift_max": p1}, {"sign": sign, "shift": shift}
