"""The activation memory as streams: the reader walks a step's address pattern and streams
the bytes to the unit, the writer stores the unit's output bytes in a region
(docs/spec.md section 16).

The reader's pattern is four nested loops (counts and signed strides, outermost first).
It keeps one base address per loop level, so each next address is one addition: the
loop that advances adds its stride, and every loop inside it restarts from the new
base. Read data arrives a cycle after the read and goes through a small FIFO, so the
reader issues a read a cycle whatever the unit's stalls, without losing one.
"""
from amaranth import Cat, Module, Signal
from amaranth.hdl import signed, unsigned
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from nomac.hw.network.program_format import READER_LOOPS

__all__ = ["ActivationReadSignature", "ActivationWriteSignature", "ActivationReader", "ActivationWriter"]


class ActivationReadSignature(wiring.Signature):
    """A read port of the activation memory (seen from its user): `data` is the byte at the
    `addr` of the last edge with `en` high."""

    def __init__(self, addr_bits: int):
        super().__init__({"addr": Out(addr_bits), "en": Out(1), "data": In(8)})


class ActivationWriteSignature(wiring.Signature):
    """A write port of the activation memory (seen from its user): `data` goes to `addr` at
    an edge with `en` high."""

    def __init__(self, addr_bits: int):
        super().__init__({"addr": Out(addr_bits), "en": Out(1), "data": Out(8)})


class ActivationReader(wiring.Component):
    """Streams the bytes at a pattern's addresses, one a cycle while the sink takes them.

    Members: `start` (pulse; `base`, `counts`, `strides` are read in that cycle), `o`,
    `mem` (the memory's read port), `busy` (reads still to issue).
    """
    DEPTH = 4

    def __init__(self, addr_bits: int):
        self.addr_bits = addr_bits
        super().__init__({"start": In(1), "base": In(16), "counts": In(unsigned(16)).array(READER_LOOPS),
                          "strides": In(signed(16)).array(READER_LOOPS), "busy": Out(1),
                          "o": Out(stream.Signature(signed(8))), "mem": Out(ActivationReadSignature(addr_bits))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.buffer = buffer = fifo.SyncFIFO(width=8, depth=self.DEPTH)
        index = [Signal(16, name=f"index{k}") for k in range(READER_LOOPS)]
        bases = [Signal(16, name=f"base{k}") for k in range(READER_LOOPS)]
        counts = [Signal(16, name=f"count{k}") for k in range(READER_LOOPS)]
        strides = [Signal(signed(16), name=f"stride{k}") for k in range(READER_LOOPS)]
        pending = Signal()          # a read issued at the last edge, its byte now on mem.data
        issue = self.busy & (buffer.w_level + pending < self.DEPTH)
        m.d.comb += [self.mem.addr.eq(bases[-1]), self.mem.en.eq(issue),
                     buffer.w_data.eq(self.mem.data), buffer.w_en.eq(pending)]
        wiring.connect(m, wiring.flipped(self.o), buffer.r_stream)
        m.d.sync += pending.eq(issue)
        with m.If(self.start):
            m.d.sync += self.busy.eq(1)
            for k in range(READER_LOOPS):
                m.d.sync += [index[k].eq(0), bases[k].eq(self.base), counts[k].eq(self.counts[k]),
                             strides[k].eq(self.strides[k])]
        with m.Elif(issue):
            last = [index[k] == counts[k] - 1 for k in range(READER_LOOPS)]
            # The innermost loop not at its last index advances; those inside it restart.
            with m.If(last[0] & last[1] & last[2] & last[3]):
                m.d.sync += self.busy.eq(0)
            for k in reversed(range(READER_LOOPS)):
                inner_done = Cat(last[k + 1:]).all()
                with m.If(inner_done & ~last[k]):
                    advanced = bases[k] + strides[k]
                    m.d.sync += [index[k].eq(index[k] + 1), bases[k].eq(advanced)]
                    for j in range(k + 1, READER_LOOPS):
                        m.d.sync += [index[j].eq(0), bases[j].eq(advanced)]
        return m


class ActivationWriter(wiring.Component):
    """Stores each byte taken on `i` at the next address of a region.

    Members: `start` (pulse; `base`, `count` read in that cycle), `i`, `mem` (the memory's
    write port), `busy` (bytes still to come).
    """

    def __init__(self, addr_bits: int):
        super().__init__({"start": In(1), "base": In(16), "count": In(16), "busy": Out(1),
                          "i": In(stream.Signature(signed(8))), "mem": Out(ActivationWriteSignature(addr_bits))})

    def elaborate(self, platform):
        m = Module()
        addr, remaining = Signal(16), Signal(16)
        m.d.comb += [self.busy.eq(remaining != 0), self.i.ready.eq(self.busy),
                     self.mem.addr.eq(addr), self.mem.data.eq(self.i.payload), self.mem.en.eq(self.i.valid & self.i.ready)]
        with m.If(self.start):
            m.d.sync += [addr.eq(self.base), remaining.eq(self.count)]
        with m.Elif(self.mem.en):
            m.d.sync += [addr.eq(addr + 1), remaining.eq(remaining - 1)]
        return m
