"""The `add` unit: y = sat8(rshift_round(x * mult_a + second, shift)) elementwise, with the
second term either b * mult_b (the residual of docs/spec.md section 13.6, an `add` step) or
an int32 offset from the table (the class token and position embedding of section 13.2, an
`embed` step, made by embed_unit.embed_step). The two kinds share the unit (and its number)
because they share its datapath: one multiply, one add; `embed` in the parameters says which.

An add step reads, per row, a's E elements and then b's E (the network reader interleaves
the two operands that way) and writes E. Both operands arrive one element a cycle on
the same stream, so one runtime multiplier (int8 x 16-bit unsigned) serves both: an
element of a is multiplied by mult_a as it arrives and its product kept in a buffer
of limits.model_features + 1 words (block RAM, column e at word E - e); an element of
b is multiplied by mult_b as it arrives, and the product of the matching a is read
from the buffer beside it.
Keeping a itself (8 bits instead of 24) would need both products at b's time: a second
multiplier, or two cycles per element of b.

An embed step writes T rows of E, the class token's first: it takes no input (x' = 0),
every later output takes one element of the patches; the product x' * mult_a meets the
offset, two to a 64-bit table word, read from `offset_base` up as the output is issued.

Two lock-step stages advance together while the output is free (the hw/operators/add.py
and embed.py pipelines, with the constants made parameters): the product (beside the
buffer's registered read of a's product, or the table word of the offset), then the sum,
which leaves with the step's shift for the engine's one requantizer. An element of a's
product is written to the buffer in the cycle it is multiplied, so with E = 1 the b
element right behind its a already finds it. Timetable, without stalls (clock edges
counted from `start`'s as 0): input element (or class token output) k is issued at edge
k + 1, and its output, if it has one, taken 2 edges after it, so the last (`done`) at
edge 2*rows*E + 2 (add) or T*E + 2 (embed).
"""
from amaranth import Module, Mux, Signal
from amaranth.hdl import signed
from amaranth.lib import data, wiring

from nomac.hw.buffer_memory import BufferMemory
from nomac.hw.matrix_vector_engine import INT8_HI, INT8_LO
from nomac.hw.network.unit import TABLE_WORD_BITS, Field, LimitError, UnitSignature, UnitStep, params_layout
from nomac.hw.widths import signed_bits

__all__ = ["FIELDS", "MULT_LIMIT", "OFFSET_BITS", "OFFSETS_PER_WORD", "AddUnit", "add_step"]

FIELDS = (Field("rows", 16), Field("features", 16), Field("mult_a", 16), Field("mult_b", 16), Field("shift", 6),
          Field("embed", 1), Field("offset_base", 16))

MULT_LIMIT = (1 << 16) - 1           # the multiplier fields' range (unsigned 16 bits)
OFFSET_BITS = 32                     # an embed step's int32 offsets, two to a table word
OFFSETS_PER_WORD = TABLE_WORD_BITS // OFFSET_BITS
OFFSET_LO, OFFSET_HI = -(1 << (OFFSET_BITS - 1)), (1 << (OFFSET_BITS - 1)) - 1
PRODUCT_BITS = signed_bits(INT8_LO * MULT_LIMIT, INT8_HI * MULT_LIMIT)
SUM_BITS = signed_bits(INT8_LO * MULT_LIMIT + OFFSET_LO, INT8_HI * MULT_LIMIT + OFFSET_HI)  # holds add's too


def add_step(layer, rows: int, table_base: int, limits) -> UnitStep:
    """`rows` rows of a then b: one multiply per input element on the one multiplier.
    The add has no arrays, so `table_base` is unused."""
    for what, value, limit in (("rows", rows, limits.tokens), ("features", layer.features, limits.model_features),
                               ("mult_a", layer.mult_a, MULT_LIMIT), ("mult_b", layer.mult_b, MULT_LIMIT)):
        if value > limit:
            raise LimitError(layer.name, what, value, limit)
    elements = rows * layer.features
    params = {"rows": rows, "features": layer.features, "mult_a": layer.mult_a, "mult_b": layer.mult_b,
              "shift": layer.shift, "embed": 0, "offset_base": 0}
    return UnitStep(params, [], 2 * elements, elements, 2 * elements, "2*T*E")


class AddUnit(wiring.Component):
    """One element issued a cycle, one multiplier; see the module docstring."""

    def __init__(self, limits):
        self.limits = limits
        super().__init__(UnitSignature(params_layout(FIELDS), limits, multiplier=True, acc_bits=SUM_BITS))

    def elaborate(self, platform):
        m = Module()
        p = self.params
        # An element of a writes its product as it is multiplied and b's reads it E cycles
        # later at the earliest, so no read that matters is of the word being written.
        m.submodules.a_products = a_products = BufferMemory(shape=signed(PRODUCT_BITS),
                                                            depth=self.limits.model_features + 1)
        write, read = a_products.write, a_products.read

        # The issue side: which element of which row comes next (rows and columns count down
        # to 1, so that a count's end is a comparison with 1; a column is the buffer's word),
        # and the word of its offset.
        E = p.features[:self.limits.model_features.bit_length()]     # the steps refuse E > model_features
        rows_left = Signal(range(self.limits.tokens + 1))
        column = Signal(range(self.limits.model_features + 1))
        second_half = Signal()                          # add: the element is b's; embed: past the class token
        offset_word = Signal.like(self.table.addr)
        offset_lane = Signal()
        gives_output = p.embed | second_half            # (and ends a row of the step at its row's end)
        class_token = p.embed & ~second_half            # takes no input
        row_end = column == 1
        final = gives_output & row_end & (rows_left == 1)   # the step's last element
        sum_valid, sum_last = Signal(), Signal()
        advance = ~sum_valid | self.o.ready
        m.d.comb += self.i.ready.eq((rows_left != 0) & advance & ~class_token)
        issue = (rows_left != 0) & advance & (class_token | self.i.valid)
        m.d.comb += [self.table.addr.eq(offset_word), self.table.en.eq(issue & p.embed)]
        with m.If(self.start):
            m.d.sync += [rows_left.eq(p.rows), column.eq(E), second_half.eq(0), offset_word.eq(p.offset_base),
                         offset_lane.eq(0)]
        with m.Elif(issue):
            m.d.sync += [column.eq(Mux(row_end, E, column - 1)), offset_lane.eq(~offset_lane)]
            with m.If(offset_lane):
                m.d.sync += offset_word.eq(offset_word + 1)
            with m.If(row_end):
                m.d.sync += second_half.eq(p.embed | ~second_half)
                with m.If(gives_output):
                    m.d.sync += rows_left.eq(rows_left - 1)

        # Stage 1: the element's product on the one multiplier; a's goes to the buffer at once,
        # b's is registered beside a's product of its column, read from the buffer, and an
        # output of embed beside its offset's word.
        product_valid, product_last, product_lane = Signal(), Signal(), Signal()
        product = Signal(signed(PRODUCT_BITS), reset_less=True)     # the multiplier's own output register
        # mult_b: b's multiplier, or the class token's (an embed step's mult_b is 0, so x' = 0
        # whatever the stream holds).
        m.d.comb += [self.multiplier.a.eq(self.i.payload),
                     self.multiplier.b.eq(Mux(second_half ^ p.embed, p.mult_b, p.mult_a)),
                     write.addr.eq(column), write.data.eq(self.multiplier.p), write.en.eq(issue & ~gives_output),
                     read.addr.eq(column), read.en.eq(advance)]
        with m.If(advance):
            m.d.sync += [product_valid.eq(issue & gives_output), product_last.eq(issue & final),
                         product_lane.eq(offset_lane), product.eq(self.multiplier.p)]

        # Stage 2: x * mult_a + (b * mult_b or the offset), to be requantized by the engine.
        offsets = data.ArrayLayout(signed(OFFSET_BITS), OFFSETS_PER_WORD)(self.table.data)
        total = Signal(signed(SUM_BITS), reset_less=True)
        with m.If(advance):
            m.d.sync += [sum_valid.eq(product_valid), sum_last.eq(product_last),
                         total.eq(product + Mux(p.embed, offsets[product_lane], read.data))]
        m.d.comb += [self.o.valid.eq(sum_valid), self.o.payload.acc.eq(total), self.o.payload.shift.eq(p.shift),
                     self.o.payload.raw.eq(0), self.done.eq(self.o.valid & self.o.ready & sum_last)]
        return m
