"""The `patches` engine: a row-major image reordered into patches (docs/spec.md section 13.1).

Only reordering, one element a cycle (hw.lanes is 1). The first patch row needs
image rows 0..p-1 before its first pixel can leave, so the buffer is a *strip* of p
image rows, not a whole image: a ping-pong of two strips of p*W int8 in one block
RAM. The input fills one strip in arrival order while the other is read out in
patch order; a strip is H/p times smaller than an image, and the latency is one
strip, not one image.

The read address walks patch order with constant steps (H, W and p are constants,
no multiplier): +1 along a patch row, +(W - p + 1) to the next row of the patch,
+(1 - (p - 1) * W) to the next patch of the strip, and at the end of a strip the
start of the other one. The RAM's registered read is the only pipeline stage; while
the output is stalled the read port holds its data (`en` = advance), as in gelu.
"""
from amaranth import Module, Mux, Signal
from amaranth.hdl import signed
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from nomac.hw.engine import LAYER_PARAMETER
from nomac.hw.matrix_vector_engine import BLOCK_RAM
from nomac.hw.operators.operator_engine import OperatorEngine
from nomac.hw.vector_stream import vector_stream

__all__ = ["PatchesCore", "PatchesEngine"]


class PatchesCore(wiring.Component):
    """One pixel in a cycle in arrival order, one out a cycle in patch order, through two strip buffers."""

    acc_bits = 8
    max_in_flight = 2                 # a vector's last strip read while the next one's first strip fills
    in_lanes = out_lanes = 1
    memories = []                     # the strip buffer holds data, not a config array
    cycles_per_vector_bound_rule = "H*W"

    def __init__(self, layer):
        self.layer = layer
        super().__init__({"i": In(vector_stream(1, signed(8))), "o": Out(vector_stream(1, signed(8)))})

    @property
    def cycles_per_vector(self) -> int:
        return self.layer.height * self.layer.width

    cycles_per_vector_bound = property(lambda self: self.cycles_per_vector,
                                       doc="H*W: one pixel written and one read a cycle")

    def elaborate(self, platform):
        m = Module()
        H, W, p = self.layer.height, self.layer.width, self.layer.patch
        strip = p * W
        m.submodules.strips = strips = memory.Memory(shape=signed(8), depth=2 * strip, init=[], attrs=BLOCK_RAM)
        write, read = strips.write_port(), strips.read_port()
        full = [Signal(name="full0"), Signal(name="full1")]    # strip b holds p complete image rows

        # Write side: arrival order, strip 0 then strip 1, round and round.
        write_addr = Signal(range(2 * strip))
        write_strip = Signal()
        write_ends_strip = (write_addr == strip - 1) | (write_addr == 2 * strip - 1)
        m.d.comb += [self.i.ready.eq(~Mux(write_strip, full[1], full[0])),
                     write.addr.eq(write_addr), write.data.eq(self.i.payload.data[0]),
                     write.en.eq(self.i.valid & self.i.ready)]
        with m.If(write.en):
            m.d.sync += write_addr.eq(Mux(write_addr == 2 * strip - 1, 0, write_addr + 1))
            with m.If(write_ends_strip):
                m.d.sync += write_strip.eq(~write_strip)
                for b in range(2):
                    with m.If(write_strip == b):
                        m.d.sync += full[b].eq(1)

        # Read side: pixel (i, j) of patch c of strip r, in patch order.
        j, i, c, r = Signal(range(p)), Signal(range(p)), Signal(range(W // p)), Signal(range(H // p))
        read_addr = Signal(range(2 * strip))
        read_strip = Signal()
        strip_done = (j == p - 1) & (i == p - 1) & (c == W // p - 1)
        held_valid, held_last = Signal(), Signal()
        advance = ~held_valid | self.o.ready
        ready_strip = Mux(read_strip, full[1], full[0])
        take = advance & ready_strip
        m.d.comb += [read.addr.eq(read_addr), read.en.eq(advance)]
        with m.If(advance):
            m.d.sync += [held_valid.eq(ready_strip), held_last.eq(strip_done & (r == H // p - 1))]
        with m.If(take):
            m.d.sync += j.eq(Mux(j == p - 1, 0, j + 1))
            with m.If(j != p - 1):
                m.d.sync += read_addr.eq(read_addr + 1)
            with m.Elif(i != p - 1):
                m.d.sync += [i.eq(i + 1), read_addr.eq(read_addr + (W - p + 1))]
            with m.Elif(c != W // p - 1):
                m.d.sync += [i.eq(0), c.eq(c + 1), read_addr.eq(read_addr + (1 - (p - 1) * W))]
            with m.Else():
                m.d.sync += [i.eq(0), c.eq(0), r.eq(Mux(r == H // p - 1, 0, r + 1)),
                             read_addr.eq(Mux(read_strip, 0, strip)), read_strip.eq(~read_strip)]
                for b in range(2):
                    with m.If(read_strip == b):
                        m.d.sync += full[b].eq(0)
        m.d.comb += [self.o.payload.data[0].eq(read.data), self.o.valid.eq(held_valid),
                     self.o.payload.last.eq(held_last)]
        return m


class PatchesEngine(OperatorEngine):
    __doc__ = OperatorEngine.doc_template.format(
        description="A `patches` layer: one pixel a cycle through a ping-pong buffer of two p-row strips.",
        parameters=LAYER_PARAMETER.format(layer="PatchesLayer"), rule=': "H*W"', attributes="")
    Core = PatchesCore
