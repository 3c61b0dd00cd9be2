"""Synthetic `shift` and `dense` layers for the hardware tests, with the edge cases built in.

Random arrays rarely reach the extremes, so every case plants them: a row of the
largest weights of one sign and a row of the other (for `shift`: sign +1 / -1 at
shift_max, the widest terms), a row of zero weights (its output is its bias), shifts
at shift_min, and a small out_shift so outputs saturate on both sides.
"""
from dataclasses import dataclass, field

import numpy as np

from nomac.model.config import make_config
from nomac.model.dense_spec import DenseLayer
from nomac.model.shift_spec import ShiftLayer


@dataclass(frozen=True)
class MatrixCase:
    kind: str                 # "shift" or "dense"
    D: int
    M: int
    hw: dict = field(default_factory=dict)
    shifts: tuple = (-6, 0)   # (shift_min, shift_max) of a shift layer
    output: str = "int8"
    out_shift: int = 6
    seed: int = 0

    @property
    def id(self) -> str:
        hw = "-".join(f"{k}{v}" for k, v in sorted(self.hw.items()))
        shifts = f"-p{self.shifts[0]}..{self.shifts[1]}" if self.kind == "shift" else ""
        return f"{self.kind}-D{self.D}-M{self.M}{shifts}-{self.output}-{hw or 'default'}"

    def layer(self):
        rng = np.random.default_rng(self.seed)
        D, M = self.D, self.M
        params = {"name": "fc", "kind": self.kind, "in_features": D, "out_features": M,
                  "out_shift": self.out_shift, "output": self.output, "hw": dict(self.hw)}
        limit = min(3000, 1 << (self.hw.get("bias_bits", 32) - 1))     # a RAM's bias must fit hw.bias_bits
        bias = rng.integers(-limit, limit, M).astype(np.int32)
        if self.kind == "shift":
            p0, p1 = self.shifts
            sign = rng.integers(-1, 2, (M, D))
            shift = rng.integers(p0, p1 + 1, (M, D))
            sign[0], shift[0] = 1, p1
            sign[-1], shift[-1] = -1, p1
            if M > 2:
                sign[M // 2] = 0
            shift[:, -1] = p0
            params.update(shift_min=p0, shift_max=p1)
            arrays = {"sign": sign.astype(np.int8), "shift": shift.astype(np.int8), "bias": bias}
            return ShiftLayer.from_json(self.id, params, arrays)
        weights = rng.integers(-128, 128, (M, D))
        weights[0], weights[-1] = 127, -128
        if M > 2:
            weights[M // 2] = 0
        return DenseLayer.from_json(self.id, params, {"weights": weights.astype(np.int8), "bias": bias})

    def config(self):
        return make_config([self.layer()])




def slow_cases(kind: str, shifts=(-6, 0)) -> list:
    """The slow matrix of a kind: D=12, M=7 at one, several and all lanes and terms per cycle,
    ROM and RAM, pipelined with int8 output and unpipelined with acc output."""
    lane_choices = ({"in_lanes": 1, "out_lanes": 1, "lanes": 1, "terms_per_cycle": 1},
                    {"in_lanes": 5, "out_lanes": 3, "lanes": 2, "terms_per_cycle": 5},
                    {"in_lanes": 12, "out_lanes": 7, "lanes": 7, "terms_per_cycle": 12})
    return [MatrixCase(kind, 12, 7, {**lanes, "memory": memory, "pipeline": pipeline}, shifts=shifts, output=output)
            for lanes in lane_choices for memory in ("rom", "ram")
            for pipeline, output in ((True, "int8"), (False, "acc"))]
