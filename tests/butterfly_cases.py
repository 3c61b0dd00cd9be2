"""Synthetic `butterfly` layers for the hardware tests, with the edge cases built in.

Random weights alone rarely saturate or hit rounding ties, so every case plants them:
a row of +127 and one of -128 weights (a shift factor: its largest shift with both
signs), biases near the int32 ends they may reach, and small out_shifts, so that
intermediate factors saturate on both sides (docs/spec.md section 11: each factor's output is int8).
"""
import warnings
from dataclasses import dataclass, field

import numpy as np

from nomac.model.butterfly_spec import ButterflyLayer, SparseChainWarning
from nomac.model.config import make_config


@dataclass(frozen=True)
class ButterflyCase:
    name: str
    chain: tuple                       # factor shapes, input side first
    weights: tuple = ()                # per factor "int8" / "shift" (default all int8)
    hw: dict = field(default_factory=dict)
    output: str = "int8"
    out_shift: int = 6
    seed: int = 0

    @property
    def id(self) -> str:
        hw = "-".join(f"{k}{v}" for k, v in sorted(self.hw.items())).replace(" ", "")
        kinds = "".join("s" if kind == "shift" else "i" for kind in self.weights) or "i"
        return f"{self.name}-{kinds}-{self.output}-{hw or 'default'}"

    def layer(self) -> ButterflyLayer:
        rng = np.random.default_rng(self.seed)
        kinds = self.weights or ("int8",) * len(self.chain)
        factors, arrays = [], {}
        for k, (shape, kind) in enumerate(zip(self.chain, kinds)):
            p, q, r, s, t = shape
            factor = {"shape": list(shape), "weights": kind, "out_shift": self.out_shift}
            if kind == "int8":
                w = rng.integers(-128, 128, (p, s)).astype(np.int8)
                w[0, :] = 127
                w[-1, :] = -128
                arrays[f"w{k}"] = w
            else:
                factor.update(shift_min=-5, shift_max=0)
                sign = rng.integers(-1, 2, (p, s)).astype(np.int8)
                shift = rng.integers(-5, 1, (p, s)).astype(np.int8)
                sign[0, :], shift[0, :] = 1, 0
                sign[-1, :], shift[-1, :] = -1, 0
                arrays[f"sign{k}"], arrays[f"shift{k}"] = sign, shift
                factor["out_shift"] = max(0, self.out_shift - 1)
            bias = rng.integers(-2000, 2000, p).astype(np.int32)
            arrays[f"bias{k}"] = bias
            factors.append(factor)
        params = {"name": "fc", "kind": "butterfly", "in_features": self.chain[0][1],
                  "out_features": self.chain[-1][0], "factors": factors, "output": self.output,
                  "hw": dict(self.hw)}
        with warnings.catch_warnings():       # sparse chains are valid and tested on purpose
            warnings.simplefilter("ignore", SparseChainWarning)
            return ButterflyLayer.from_json(self.id, params, arrays)

    def config(self):
        return make_config([self.layer()])
