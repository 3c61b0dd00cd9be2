"""The `gelu` unit: y = table[x + 128] per element (docs/spec.md sections 13.4 and 16).

The step's table is 32 words of eight int8 entries at `table_base`: entry n in byte
n % 8 of word n // 8. One element a cycle: the read of its word is the one pipeline
stage, and while the output is stalled the read port holds its word. One counter, of
the inputs still to come, serves both ends: once it is 0 the output held is the step's
last, so `done` needs no second count.
"""
from amaranth import Module, Signal
from amaranth.lib import wiring

from nomac.hw.network.unit import Field, LimitError, UnitSignature, UnitStep, params_layout, words_of_bytes

__all__ = ["FIELDS", "GeluUnit", "gelu_step"]

FIELDS = (Field("elements", 16), Field("table_base", 16))


def gelu_step(layer, rows: int, table_base: int, limits) -> UnitStep:
    """`rows` rows of the layer's features: one lookup an element, at most tokens * features
    of the limits in a step (the unit's counter is that wide)."""
    elements = rows * layer.features
    if elements > limits.tokens * limits.features:
        raise LimitError(layer.name, "elements", elements, limits.tokens * limits.features)
    return UnitStep({"elements": elements, "table_base": table_base}, words_of_bytes(layer.table),
                    elements, elements, elements, "T*E")


class GeluUnit(wiring.Component):
    """One table lookup a cycle; see the module docstring."""

    def __init__(self, limits):
        self.limits = limits
        super().__init__(UnitSignature(params_layout(FIELDS), limits))

    def elaborate(self, platform):
        m = Module()
        p = self.params
        to_take = Signal(range(self.limits.tokens * self.limits.features + 1))   # inputs still to come
        held_valid = Signal()           # the read port holds an output element
        lane = Signal(3)
        advance = ~held_valid | self.o.ready
        taken = self.i.valid & self.i.ready
        index = self.i.payload.as_unsigned() ^ 0x80
        m.d.comb += [self.i.ready.eq((to_take != 0) & advance),
                     self.table.addr.eq(p.table_base + index[3:]),
                     self.table.en.eq(taken),
                     self.o.valid.eq(held_valid),
                     self.o.payload.eq(self.table.data.word_select(lane, 8)),
                     self.done.eq(self.o.valid & self.o.ready & (to_take == 0))]
        with m.If(advance):
            m.d.sync += held_valid.eq(taken)
            with m.If(taken):
                m.d.sync += lane.eq(index[:3])
        with m.If(self.start):
            m.d.sync += to_take.eq(p.elements)
        with m.Elif(taken):
            m.d.sync += to_take.eq(to_take - 1)
        return m
