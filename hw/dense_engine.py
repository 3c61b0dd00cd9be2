"""The `dense` engine: the int8 multiply-accumulate baseline, one product per term.

Same streams, lanes, buffering and accumulation as the `shift` engine (the
matrix-vector skeleton, `hw/matrix_vector_engine.py`); only the term differs: an
8 x 8-bit signed product, which synthesis maps to DSP blocks where the device has
them (iCE40UP5K: 8 SB_MAC16; ECP5-85F: 156 MULT18X18D), so lanes * terms_per_cycle
products a cycle need that many DSPs.
"""
from amaranth.hdl import signed
from amaranth.lib import data

from nomac.hw.matrix_vector_engine import INT8_HI, INT8_LO, MatrixVectorEngine, weight_memory

__all__ = ["DenseTerms", "DenseEngine"]


class DenseTerms:
    """Terms weights[m, d] * x[d] from one memory of U*T int8 entries a word."""

    def __init__(self, layer):
        self.layer = layer
        self.weights = weight_memory(layer, "weights", layer.weights, 8, True)
        self.memories = [self.weights]

    def weight_bounds(self):
        if self.layer.hw.memory == "ram":
            return INT8_LO, INT8_HI
        weights = self.layer.integer_weights()
        return weights, weights

    def operands(self, m, x):
        return list(x)

    def terms(self, m, words, x):
        U, T = self.layer.hw.lanes, self.layer.hw.terms_per_cycle
        weights = data.ArrayLayout(signed(8), U * T)(words[0])
        return [[weights[u * T + t] * x[t] for t in range(T)] for u in range(U)]


class DenseEngine(MatrixVectorEngine):
    """A whole `dense` layer: the matrix-vector skeleton with int8 products."""
    TermUnit = DenseTerms
