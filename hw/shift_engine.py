"""The `shift` engine: a DeepShift layer (docs/spec.md section 8) in gates, with no multiplier at all.

Each weight is sign * 2^shift, so a term is the input, negated when the sign is -1,
zeroed when it is 0, and shifted left by shift - p0 (docs/spec.md section 8: the accumulator
counts units of 2^p0, so every term is exact). The streaming, buffering and
accumulation are the matrix-vector skeleton's (`hw/matrix_vector_engine.py`); this
file is only the term: a sign select and a barrel shifter of p1 - p0 places.
"""
from amaranth import Mux, Signal
from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from nomac.hw.matrix_vector_engine import MatrixVectorEngine, weight_memory

__all__ = ["SIGN_BITS", "ShiftTerms", "ShiftEngine"]

SIGN_BITS = 2   # -1, 0, +1 as two's complement lanes: 0b11, 0b00, 0b01


class ShiftTerms:
    """Terms sign * (x << (shift - p0)) from two memories of U*T entries a word.

    `sign`: 2-bit two's complement lanes. `shift`: unsigned lanes of
    bits(p1 - p0) bits holding shift - p0 (the manifest's layout `offset` is p0), so
    the stored value is the shift amount itself. The negation -x (9 bits) is computed
    once per input and shared by the U units (an operand, registered with `pipeline`,
    which keeps its carry chain out of the shifters' path); each term selects x, -x or
    0 and shifts it. A RAM shift word above p1 - p0 (never a valid layer) shifts by p1 - p0, and a
    sign lane of 0b10 counts as -1, so no loaded word can make a term wider than the
    accumulator allows.
    """

    def __init__(self, layer):
        self.layer = layer
        self.span = layer.shift_span
        self.amount_bits = max(1, self.span.bit_length())
        self.sign = weight_memory(layer, "sign", layer.sign, SIGN_BITS, True)
        self.shift = weight_memory(layer, "shift", layer.shift, self.amount_bits, False, offset=layer.shift_min)
        self.memories = [self.sign, self.shift]

    def weight_bounds(self):
        if self.layer.hw.memory == "ram":
            return -(1 << self.span), 1 << self.span
        weights = self.layer.integer_weights()
        return weights, weights

    def operands(self, m, x):
        """x[0..T-1], then -x[0..T-1] (9 bits: -(-128) = 128)."""
        negated = []
        for t, value in enumerate(x):
            negation = Signal(signed(9), name=f"negated_{t}")
            m.d.comb += negation.eq(-value)
            negated.append(negation)
        return [*x, *negated]

    def terms(self, m, words, operands):
        U, T = self.layer.hw.lanes, self.layer.hw.terms_per_cycle
        x, negated = operands[:T], operands[T:]
        signs = data.ArrayLayout(signed(SIGN_BITS), U * T)(words[0])
        amounts = data.ArrayLayout(unsigned(self.amount_bits), U * T)(words[1])
        width = 9 + self.span
        rows = []
        for u in range(U):
            row = []
            for t in range(T):
                lane = u * T + t
                sign, amount = signs[lane], amounts[lane]
                chosen = Mux(sign == 0, 0, Mux(sign[-1], negated[t], x[t]))
                if (1 << self.amount_bits) - 1 > self.span:
                    amount = Mux(amount > self.span, self.span, amount)
                term = Signal(signed(width), name=f"shifted_{u}_{t}")
                m.d.comb += term.eq(chosen.as_signed() << amount if self.span else chosen)
                row.append(term)
            rows.append(row)
        return rows


class ShiftEngine(MatrixVectorEngine):
    """A whole `shift` layer: the matrix-vector skeleton with sign-and-shift terms."""
    TermUnit = ShiftTerms
