"""The `embed` unit: class token and position embedding (docs/spec.md sections 13.2 and 16),
y[t, e] = sat8(rshift_round(x'[t, e] * mult + offset[t, e], shift)) with x'[0] = 0 and
x'[t] = x[t-1], mult and shift step parameters.

A step reads (T-1)*E elements and writes T*E, one output a cycle in row-major order
(t, e). The class token's E outputs take no input (x' = 0), so they leave right after
`start`; every later output takes one input element. The offsets are int32 [T, E] in
the table memory at `offset_base`, two to a 64-bit word: offset[t, e] is lane n % 2
(bits 32 * (n % 2) up) of word n // 2, n = t*E + e. Each output reads its offset's
word as it is issued; the word arrives the next cycle beside the product.

Three lock-step stages advance together while the output is free (the hw/operators/
embed.py pipeline, with the constants made parameters): x' * mult on the one runtime
multiplier beside the offset's word (the table's read data holds during a stall, as
no read is issued), the sum, then the requantized result. Timetable, without stalls
(clock edges counted from `start`'s as 0): output n (from 0) is issued, taking its
input and reading its word, at edge n + 1 and taken at edge n + 4, so `done` comes at
edge T*E + 3.
"""
from amaranth import Module, Mux, Signal
from amaranth.hdl import signed
from amaranth.lib import data, wiring

from nomac.hw.matrix_vector_engine import INT8_HI, INT8_LO
from nomac.hw.network.requantize import requantize_runtime
from nomac.hw.network.unit import (TABLE_WORD_BITS, Field, LimitError, UnitSignature, UnitStep, pack_words,
                                   params_layout)
from nomac.hw.widths import signed_bits

__all__ = ["FIELDS", "EmbedUnit", "embed_step"]

FIELDS = (Field("tokens", 16), Field("features", 16), Field("mult", 16), Field("shift", 6),
          Field("offset_base", 16))

MULT_LIMIT = (1 << 16) - 1           # the mult field's range (unsigned 16 bits)
OFFSET_BITS = 32                     # int32 offsets, two to a table word
OFFSETS_PER_WORD = TABLE_WORD_BITS // OFFSET_BITS
OFFSET_LO, OFFSET_HI = -(1 << (OFFSET_BITS - 1)), (1 << (OFFSET_BITS - 1)) - 1
PRODUCT_BITS = signed_bits(INT8_LO * MULT_LIMIT, INT8_HI * MULT_LIMIT)
SUM_BITS = signed_bits(INT8_LO * MULT_LIMIT + OFFSET_LO, INT8_HI * MULT_LIMIT + OFFSET_HI)


def embed_step(layer, rows: int, table_base: int, limits) -> UnitStep:
    """The layer's T tokens from its T-1 patch embeddings: one multiply per output element,
    the offsets at `table_base`. The layer's T fixes the step, so `rows` is unused."""
    elements = layer.tokens * layer.features
    words = -(-elements // OFFSETS_PER_WORD)
    for what, value, limit in (("tokens", layer.tokens, limits.tokens),
                               ("features", layer.features, limits.model_features),
                               ("mult", layer.mult, MULT_LIMIT),
                               ("offset table end", table_base + words, limits.table_words)):
        if value > limit:
            raise LimitError(layer.name, what, value, limit)
    params = {"tokens": layer.tokens, "features": layer.features, "mult": layer.mult, "shift": layer.shift,
              "offset_base": table_base}
    return UnitStep(params, pack_words(layer.offset.reshape(-1), OFFSET_BITS), elements - layer.features,
                    elements, elements, "T*E")


class EmbedUnit(wiring.Component):
    """One output element a cycle, one multiplier; see the module docstring."""

    def __init__(self, limits):
        self.limits = limits
        super().__init__(UnitSignature(params_layout(FIELDS), limits, multiplier=True))

    def elaborate(self, platform):
        m = Module()
        p = self.params

        # The issue side: which output element comes next (tokens and columns count down to 1,
        # so that a count's end is a comparison with 1), and the word of its offset.
        issuing = Signal()                              # outputs of the step are still to be issued
        class_token = Signal()                          # the element is the class token's
        rows_left = Signal(range(self.limits.tokens + 1))   # tokens from this one on
        column = Signal(range(self.limits.model_features + 1))
        E = p.features[:len(column)]                    # embed_step refuses E > model_features
        offset_word = Signal.like(self.table.addr)
        offset_lane = Signal()
        row_end = column == 1
        final = row_end & (rows_left == 1)
        y_valid, y_last = Signal(), Signal()
        advance = ~y_valid | self.o.ready
        m.d.comb += self.i.ready.eq(issuing & advance & ~class_token)
        issue = issuing & advance & (class_token | self.i.valid)
        m.d.comb += [self.table.addr.eq(offset_word), self.table.en.eq(issue)]
        with m.If(self.start):
            m.d.sync += [issuing.eq(1), class_token.eq(1), rows_left.eq(p.tokens), column.eq(E),
                         offset_word.eq(p.offset_base), offset_lane.eq(0)]
        with m.Elif(issue):
            m.d.sync += [column.eq(Mux(row_end, E, column - 1)), offset_lane.eq(~offset_lane)]
            with m.If(row_end):
                m.d.sync += [rows_left.eq(rows_left - 1), class_token.eq(0)]
            with m.If(offset_lane):
                m.d.sync += offset_word.eq(offset_word + 1)
            with m.If(final):
                m.d.sync += issuing.eq(0)

        # Stage 1: x' * mult on the one multiplier, beside the word of the offset.
        product_valid, product_last, product_lane = Signal(), Signal(), Signal()
        product = Signal(signed(PRODUCT_BITS), reset_less=True)     # the multiplier's own output register
        m.d.comb += [self.multiplier.a.eq(Mux(class_token, 0, self.i.payload)), self.multiplier.b.eq(p.mult)]
        with m.If(advance):
            m.d.sync += [product_valid.eq(issue), product_last.eq(issue & final), product_lane.eq(offset_lane),
                         product.eq(self.multiplier.p)]

        # Stage 2: x' * mult + offset.
        offsets = data.ArrayLayout(signed(OFFSET_BITS), OFFSETS_PER_WORD)(self.table.data)
        sum_valid, sum_last = Signal(), Signal()
        total = Signal(signed(SUM_BITS), reset_less=True)
        with m.If(advance):
            m.d.sync += [sum_valid.eq(product_valid), sum_last.eq(product_last),
                         total.eq(product + offsets[product_lane])]

        # Stage 3: the requantized sum.
        y = Signal(signed(8))
        with m.If(advance):
            m.d.sync += [y_valid.eq(sum_valid), y_last.eq(sum_last), y.eq(requantize_runtime(total, p.shift))]
        m.d.comb += [self.o.valid.eq(y_valid), self.o.payload.eq(y),
                     self.done.eq(self.o.valid & self.o.ready & y_last)]
        return m
