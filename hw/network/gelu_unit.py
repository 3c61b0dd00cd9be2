"""The `gelu` unit: y = table[x + 128] per element (docs/spec.md sections 13.4 and 16).

The step's table is 32 words of eight int8 entries at `table_base`: entry n in byte
n % 8 of word n // 8. One element a cycle: the read of its word is the one pipeline
stage, and while the output is stalled the read port holds its word.
"""
from amaranth import Module, Signal
from amaranth.lib import wiring

from nomac.hw.network.unit import Field, UnitSignature, UnitStep, params_layout, words_of_bytes

__all__ = ["FIELDS", "GeluUnit", "gelu_step"]

FIELDS = (Field("elements", 16), Field("table_base", 16))


def gelu_step(layer, rows: int, table_base: int, limits) -> UnitStep:
    """`rows` rows of the layer's features: one lookup an element."""
    elements = rows * layer.features
    return UnitStep({"elements": elements, "table_base": table_base}, words_of_bytes(layer.table),
                    elements, elements, elements, "T*E")


class GeluUnit(wiring.Component):
    """One table lookup a cycle; see the module docstring."""

    def __init__(self, limits):
        super().__init__(UnitSignature(params_layout(FIELDS), limits))

    def elaborate(self, platform):
        m = Module()
        p = self.params
        to_take = Signal(16)            # inputs still to come
        remaining = Signal(16)          # outputs still to be taken
        held_valid = Signal()           # the read port holds an output element
        lane = Signal(3)
        advance = ~held_valid | self.o.ready
        index = self.i.payload.as_unsigned() ^ 0x80
        m.d.comb += [self.i.ready.eq((to_take != 0) & advance),
                     self.table.addr.eq(p.table_base + index[3:]),
                     self.table.en.eq(self.i.valid & self.i.ready),
                     self.o.valid.eq(held_valid),
                     self.o.payload.eq(self.table.data.word_select(lane, 8))]
        with m.If(advance):
            m.d.sync += held_valid.eq(self.i.valid & self.i.ready)
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += lane.eq(index[:3])
        with m.If(self.start):
            m.d.sync += [to_take.eq(p.elements), remaining.eq(p.elements)]
        with m.Else():
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += to_take.eq(to_take - 1)
            with m.If(self.o.valid & self.o.ready):
                m.d.sync += remaining.eq(remaining - 1)
        m.d.comb += self.done.eq(self.o.valid & self.o.ready & (remaining == 1))
        return m
