"""A block RAM for a user that never needs the word it writes in the same cycle.

A `lib.memory` read port in the write port's domain promises the old word when a cycle
reads the address it writes (or the new one, transparent), which the iCE40 block RAM
does not do, so yosys adds an emulation: about 27 flip-flops and 19 LUTs per memory.
`BufferMemory` reads asynchronously into a data register of its own: yosys merges that
register into the block RAM and, told by `no_rw_check` that a collision's result is not
used, adds nothing. The data register keeps its word while `en` is low, as a read port's
does, and like the block RAM's output has no reset and no initial value (an `init` of x
for yosys: a 0 would cost a flip-flop and a LUT per bit); it is only used after a read.

The user's side of the bargain: no read whose data is used is of the address written at
the same edge. Every user says in a comment why that holds for it.
"""
from amaranth import Module, Signal
from amaranth.back import rtlil
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import Out

__all__ = ["BufferMemory"]


def _addr_width(depth: int) -> int:
    return max(1, (depth - 1).bit_length())


class BufferMemory(wiring.Component):
    """A block RAM of `depth` words of `shape` with a `write` port (of `granularity`-bit lanes,
    or whole words) and a synchronous `read` port, both the ports of `lib.memory`."""

    def __init__(self, *, shape, depth: int, init=(), granularity: int | None = None):
        self.shape, self.depth, self.init, self.granularity = shape, depth, list(init), granularity
        width = _addr_width(depth)
        super().__init__({"write": Out(memory.WritePort.Signature(addr_width=width, shape=shape,
                                                                  granularity=granularity)),
                          "read": Out(memory.ReadPort.Signature(addr_width=width, shape=shape))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.words = words = memory.Memory(shape=self.shape, depth=self.depth, init=self.init,
                                                   attrs={"no_rw_check": 1})
        write, read = words.write_port(granularity=self.granularity), words.read_port(domain="comb")
        data = Signal.like(self.read.data, reset_less=True, attrs={"init": rtlil.Undef(len(self.read.data))})
        m.d.comb += [write.addr.eq(self.write.addr), write.data.eq(self.write.data), write.en.eq(self.write.en),
                     read.addr.eq(self.read.addr), self.read.data.eq(data)]
        with m.If(self.read.en):
            m.d.sync += data.eq(read.data)
        return m
