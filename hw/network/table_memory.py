"""The table memory of the network engine as a component, so a board can put it in the
memory its device has (an iCE40UP5K's SPRAM, which the bitstream cannot initialise)
while simulation and other devices use block RAM (docs/spec.md section 16).

One read port (the sequencer's and the units', or the host's while idle) and one write
port (the host's). A read of `addr` at an edge with `en` high puts the word on `data`
from the next cycle until the next read.
"""
from amaranth import Module
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In

from nomac.hw.network.unit import TABLE_WORD_BITS, TableReadSignature

__all__ = ["TableMemorySignature", "TableMemory"]


class TableMemorySignature(wiring.Signature):
    """Members: `read` (addr, en in; data out, seen from the memory), `write` (addr, data, en in)."""

    def __init__(self, addr_bits: int):
        super().__init__({"read": In(TableReadSignature(addr_bits)),
                          "write": In(memory.WritePort.Signature(addr_width=addr_bits, shape=TABLE_WORD_BITS))})


class TableMemory(wiring.Component):
    """`depth` words of block RAM (Amaranth's lib.memory)."""

    def __init__(self, depth: int):
        self.depth = depth
        super().__init__(TableMemorySignature(max(1, (depth - 1).bit_length())))

    def elaborate(self, platform):
        m = Module()
        m.submodules.words = words = memory.Memory(shape=TABLE_WORD_BITS, depth=self.depth, init=[])
        write, read = words.write_port(), words.read_port()
        m.d.comb += [write.addr.eq(self.write.addr), write.data.eq(self.write.data), write.en.eq(self.write.en)]
        m.d.comb += [read.addr.eq(self.read.addr), read.en.eq(self.read.en), self.read.data.eq(read.data)]
        return m
