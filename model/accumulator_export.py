"""From a float layer to the integer output rule of docs/spec.md section 2, for kinds whose
accumulator unit is fixed by their weights (`shift`, `dense`).

A `shift` or `dense` accumulator counts a unit u = input_scale * (weight unit): the
weights alone set it, unlike a `lut` layer whose tables absorb any scale. So the int8
output scale is u * 2^out_shift, a power-of-two multiple of u, and exporting means
choosing that out_shift and expressing the bias in units of u.
"""
import math

import numpy as np

from nomac.base.errors import ConfigError
from nomac.model.fixed_point import INT8_MAX, INT8_MIN, rshift_round

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
MAX_OUT_SHIFT = 62     # the largest out_shift a config may carry


def check_scale(where: str, field: str, scale):
    """A scale is a finite number > 0 (not a bool)."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating, np.integer)) \
            or not math.isfinite(scale) or scale <= 0:
        raise ConfigError(where, field, scale, "must be a finite number > 0")


def round_half_up(values) -> np.ndarray:
    """floor(v + 0.5): the rounding rule of docs/spec.md section 2, for floats."""
    return np.floor(np.asarray(values, dtype=np.float64) + 0.5)


def bias_in_units(where: str, bias: np.ndarray, unit: float) -> np.ndarray:
    """int32 round_half_up(bias / unit), or a ConfigError naming the entry that does not fit."""
    scaled = round_half_up(np.asarray(bias, dtype=np.float64) / unit)
    bad = np.flatnonzero((scaled < INT32_MIN) | (scaled > INT32_MAX))
    if bad.size:
        m = int(bad[0])
        raise ConfigError(where, f"bias[{m}]", float(bias[m]),
                          f"is {scaled[m]:.0f} accumulator units of {unit:.6g}, outside int32; "
                          f"use a larger input_scale")
    return scaled.astype(np.int32)


def choose_out_shift(where: str, unit: float, output_scale: float | None, calibration_acc) -> int:
    """The out_shift of a layer whose accumulator counts `unit`.

    With `output_scale`: the smallest s >= 0 with unit * 2^s >= output_scale, so no
    output that fits output_scale saturates. Without: the smallest s >= 0 for which
    no accumulator of the calibration set saturates, i.e. every
    rshift_round(acc, s) lies in [-128, 127].
    """
    if output_scale is not None:
        check_scale(where, "output_scale", output_scale)
        shift = 0
        while shift < MAX_OUT_SHIFT and unit * 2.0 ** shift < output_scale * (1 - 1e-12):
            shift += 1
        return shift
    if calibration_acc is None:
        raise ConfigError(where, "output_scale", None, "give output_scale or calibration inputs to choose it")
    acc = np.asarray(calibration_acc, dtype=np.int64)
    for shift in range(MAX_OUT_SHIFT + 1):
        rounded = rshift_round(acc, shift)
        if acc.size == 0 or (rounded.min() >= INT8_MIN and rounded.max() <= INT8_MAX):
            return shift
    raise ConfigError(where, "calibration", f"max |acc| = {int(np.abs(acc).max())}",
                      f"no out_shift up to {MAX_OUT_SHIFT} brings it into int8")
