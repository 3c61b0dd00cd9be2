"""The `add` unit: the residual y = sat8(rshift_round(a * mult_a + b * mult_b, shift))
(docs/spec.md sections 13.6 and 16), with mult_a, mult_b and shift step parameters.

A step reads, per row, a's E elements and then b's E (the network reader interleaves
the two operands that way) and writes E. Both operands arrive one element a cycle on
the same stream, so one runtime multiplier (int8 x 16-bit unsigned) serves both: an
element of a is multiplied by mult_a as it arrives and its product kept in a buffer
of limits.model_features + 1 words (block RAM, column e at word E - e); an element of
b is multiplied by mult_b as it arrives, and the product of the matching a is read
from the buffer beside it.
Keeping a itself (8 bits instead of 24) would need both products at b's time: a second
multiplier, or two cycles per element of b.

Three lock-step stages advance together while the output is free (the hw/operators/
add.py pipeline, with the constants made parameters): the product (the buffer's
registered read of a's product beside it), the sum of the two products, then the
requantized result (the runtime requantizer of hw/network/requantize.py). An element
of a's product is written to the buffer in the cycle it is multiplied, so with E = 1 the
b element right behind its a already finds it. Timetable, without stalls (clock edges counted from `start`'s
as 0): input element k (from 0) is taken at edge k + 1, and the output made from an
element of b is taken 3 edges after it, so the last (`done`) at edge 2*rows*E + 3.
"""
from amaranth import Module, Mux, Signal
from amaranth.hdl import signed
from amaranth.lib import memory, wiring

from nomac.hw.matrix_vector_engine import INT8_HI, INT8_LO
from nomac.hw.network.requantize import requantize_runtime
from nomac.hw.network.unit import Field, LimitError, UnitSignature, UnitStep, params_layout
from nomac.hw.widths import signed_bits

__all__ = ["FIELDS", "AddUnit", "add_step"]

FIELDS = (Field("rows", 16), Field("features", 16), Field("mult_a", 16), Field("mult_b", 16), Field("shift", 6))

MULT_LIMIT = (1 << 16) - 1           # the multiplier fields' range (unsigned 16 bits)
PRODUCT_BITS = signed_bits(INT8_LO * MULT_LIMIT, INT8_HI * MULT_LIMIT)
SUM_BITS = signed_bits(2 * INT8_LO * MULT_LIMIT, 2 * INT8_HI * MULT_LIMIT)


def add_step(layer, rows: int, table_base: int, limits) -> UnitStep:
    """`rows` rows of a then b: one multiply per input element on the one multiplier.
    The add has no arrays, so `table_base` is unused."""
    for what, value, limit in (("rows", rows, limits.tokens), ("features", layer.features, limits.model_features),
                               ("mult_a", layer.mult_a, MULT_LIMIT), ("mult_b", layer.mult_b, MULT_LIMIT)):
        if value > limit:
            raise LimitError(layer.name, what, value, limit)
    elements = rows * layer.features
    params = {"rows": rows, "features": layer.features, "mult_a": layer.mult_a, "mult_b": layer.mult_b,
              "shift": layer.shift}
    return UnitStep(params, [], 2 * elements, elements, 2 * elements, "2*T*E")


class AddUnit(wiring.Component):
    """One element in a cycle, one multiplier; see the module docstring."""

    def __init__(self, limits):
        self.limits = limits
        super().__init__(UnitSignature(params_layout(FIELDS), limits, multiplier=True))

    def elaborate(self, platform):
        m = Module()
        p = self.params
        # An element of a writes its product as it is multiplied and b's reads it E cycles
        # later at the earliest, so no read that matters is of the word being written: a
        # collision may be left undefined (`no_rw_check`), and with the read register our own,
        # behind an asynchronous read, the block RAM needs no logic for it.
        m.submodules.a_products = a_products = memory.Memory(shape=signed(PRODUCT_BITS),
                                                             depth=self.limits.model_features + 1, init=[],
                                                             attrs={"no_rw_check": 1})
        write, read = a_products.write_port(), a_products.read_port(domain="comb")

        # The input side: which element of which row comes next; columns count down from E to
        # 1 (a count's end is a comparison with 1), the buffer's word of each.
        E = p.features[:self.limits.model_features.bit_length()]     # add_step refuses E > model_features
        rows_left = Signal(range(self.limits.tokens + 1))
        column = Signal(range(self.limits.model_features + 1))
        on_b = Signal()                                 # the element is b's (else a's)
        row_end = column == 1
        final = on_b & row_end & (rows_left == 1)       # the step's last input element
        y_valid, y_last = Signal(), Signal()
        advance = ~y_valid | self.o.ready
        m.d.comb += self.i.ready.eq((rows_left != 0) & advance)
        taken = self.i.valid & self.i.ready
        with m.If(self.start):
            m.d.sync += [rows_left.eq(p.rows), column.eq(E), on_b.eq(0)]
        with m.Elif(taken):
            m.d.sync += column.eq(Mux(row_end, E, column - 1))
            with m.If(row_end):
                m.d.sync += on_b.eq(~on_b)
                with m.If(on_b):
                    m.d.sync += rows_left.eq(rows_left - 1)

        # Stage 1: the element's product on the one multiplier; a's goes to the buffer at once,
        # b's is registered beside a's product of its column, read from the buffer.
        product_valid, product_last = Signal(), Signal()
        product = Signal(signed(PRODUCT_BITS), reset_less=True)     # the multiplier's own output register
        a_product = Signal(signed(PRODUCT_BITS), reset_less=True)   # the buffer's read register
        m.d.comb += [self.multiplier.a.eq(self.i.payload), self.multiplier.b.eq(Mux(on_b, p.mult_b, p.mult_a)),
                     write.addr.eq(column), write.data.eq(self.multiplier.p), write.en.eq(taken & ~on_b),
                     read.addr.eq(column)]
        with m.If(advance):
            m.d.sync += [product_valid.eq(taken & on_b), product_last.eq(taken & final),
                         product.eq(self.multiplier.p), a_product.eq(read.data)]

        # Stage 2: a * mult_a + b * mult_b.
        sum_valid, sum_last = Signal(), Signal()
        total = Signal(signed(SUM_BITS), reset_less=True)
        with m.If(advance):
            m.d.sync += [sum_valid.eq(product_valid), sum_last.eq(product_last), total.eq(product + a_product)]

        # Stage 3: the requantized sum.
        y = Signal(signed(8))
        with m.If(advance):
            m.d.sync += [y_valid.eq(sum_valid), y_last.eq(sum_last), y.eq(requantize_runtime(total, p.shift))]
        m.d.comb += [self.o.valid.eq(y_valid), self.o.payload.eq(y),
                     self.done.eq(self.o.valid & self.o.ready & y_last)]
        return m
