"""The `dense` layer kind: int8 weights and int32 bias, the multiply-accumulate baseline.

Every claim nomac makes about multiplier-free engines is measured against this: the
same matrix-vector product with the same int8 activations and output rule
(docs/spec.md section 2), but with ordinary int8 weights, so that each term is a product.
acc[m] = bias[m] + sum_d weights[m, d] * x[d] (docs/spec.md section 9).
"""
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from nomac.model.field_rules import require_array
from nomac.model.matrix_layer import MatrixLayer


@dataclass(frozen=True, eq=False, kw_only=True)
class DenseLayer(MatrixLayer):
    """A validated `dense` layer."""
    kind: ClassVar[str] = "dense"
    PARAMS: ClassVar[tuple[str, ...]] = ("in_features", "out_features", "out_shift", "output")
    ARRAYS: ClassVar[tuple[str, ...]] = ("weights", "bias")
    weights: np.ndarray   # int8 [M, D]

    def integer_weights(self) -> np.ndarray:
        """The weights as int64 [M, D] (each term is weight * x in accumulator units)."""
        return self.weights.astype(np.int64)

    @classmethod
    def _check(cls, where, params, arrays, D, M):
        return {}, {"weights": require_array(where, arrays, "weights", np.int8, (M, D))}
