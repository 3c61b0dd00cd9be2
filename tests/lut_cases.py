"""Synthetic `lut` layers for the hardware tests, with the edge cases built in.

Random arrays alone rarely tie or saturate, so every case plants them: duplicated
prototypes (any input nearest to one ties with the other; the smaller k must win),
prototypes and thresholds at -128 and 127, a table row of the largest entry and one of
the smallest (127 and -128 for int8 tables), and a small out_shift so outputs saturate on both sides.
"""
from dataclasses import dataclass, field

import numpy as np

from nomac.model.config import make_config
from nomac.model.lut_spec import TABLE_BITS, LutLayer, table_entry_range


@dataclass(frozen=True)
class LutCase:
    encoder: str
    D: int
    M: int
    C: int
    K: int
    hw: dict = field(default_factory=dict)
    output: str = "int8"
    out_shift: int = 2
    seed: int = 0
    table_bits: int = TABLE_BITS

    @property
    def id(self) -> str:
        hw = "-".join(f"{k}{v}" for k, v in sorted(self.hw.items()))
        bits = "" if self.table_bits == TABLE_BITS else f"-t{self.table_bits}"
        return f"{self.encoder}-D{self.D}-M{self.M}-C{self.C}-K{self.K}-{self.output}{bits}-{hw or 'default'}"

    def config(self):
        rng = np.random.default_rng(self.seed)
        D, M, C, K = self.D, self.M, self.C, self.K
        V, L = D // C, K.bit_length() - 1
        lo, hi = table_entry_range(self.table_bits)
        tables = rng.integers(lo, hi + 1, (C, K, M)).astype(np.int8)
        tables[0, K - 1, :] = hi
        tables[C - 1, 0, :] = lo
        arrays = {"tables": tables, "bias": rng.integers(-3000, 3000, M).astype(np.int32)}
        if self.encoder == "tree":
            arrays["split_dims"] = rng.integers(0, V, (C, L)).astype(np.int32)
            thresholds = rng.integers(-100, 100, (C, K - 1)).astype(np.int8)
            thresholds[0, -1], thresholds[C - 1, 0] = 127, -128
            arrays["thresholds"] = thresholds
        else:
            prototypes = rng.integers(-128, 128, (C, K, V)).astype(np.int8)
            prototypes[:, K - 1] = prototypes[:, 0]
            prototypes[0, 0, 0], prototypes[C - 1, K // 2, V - 1] = 127, -128
            arrays["prototypes"] = prototypes
        params = {"name": "fc", "kind": "lut", "in_features": D, "out_features": M, "codebooks": C,
                  "centroids": K, "encoder": self.encoder, "out_shift": self.out_shift,
                  "output": self.output, "table_bits": self.table_bits, "hw": dict(self.hw)}
        return make_config([LutLayer.from_json(self.id, params, arrays)])
