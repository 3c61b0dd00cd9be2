"""Integer rounding and saturation of docs/spec.md section 2, on whole numpy arrays.

These are the golden definitions; the generators implement the same rules in
gates without importing them.
"""
import numpy as np

INT8_MIN, INT8_MAX = -128, 127


def rshift_round(a: np.ndarray, shift: int) -> np.ndarray:
    """floor((a + 2^(s-1)) / 2^s): round half up (towards +inf); identity for s = 0."""
    a = np.asarray(a, dtype=np.int64)
    if shift < 0:
        raise ValueError(f"rshift_round: shift = {shift}: must be >= 0")
    if shift == 0:
        return a.copy()
    return np.floor_divide(a + (1 << (shift - 1)), 1 << shift)


def sat8(a: np.ndarray) -> np.ndarray:
    """Clamp to the int8 range [-128, 127]."""
    return np.clip(np.asarray(a, dtype=np.int64), INT8_MIN, INT8_MAX).astype(np.int8)


def requantize(acc: np.ndarray, out_shift: int, output: str) -> np.ndarray:
    """A layer's output: sat8(rshift_round(acc, out_shift)), or the raw accumulator for "acc"."""
    if output == "acc":
        return np.asarray(acc, dtype=np.int64)
    return sat8(rshift_round(acc, out_shift))
