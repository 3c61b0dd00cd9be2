"""The activation memory as streams: the reader walks a step's address pattern and streams
the bytes to the unit, the writer stores the unit's output bytes in a region
(docs/spec.md section 16.4).

Both load their registers straight from the step's header words as the sequencer reads
them (program_format.HEADER_WORD_FIELDS), so the pattern is kept once. The reader's
pattern is four nested loops, outermost first; it keeps one address and a jump per loop
(what the address moves by when that loop advances and those inside it restart), so
each next address is one addition. The memory's read register holds a byte until the
next read, and a two-byte queue behind it feeds the unit: a read is issued whenever the
read register will be free at the edge, which depends on no `ready`, and the unit still
gets a byte every cycle it takes one.
"""
from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.hdl import signed

from nomac.hw.network.program_format import HEADER_WORD_FIELDS, HEADER_WORDS, READER_LOOPS, WRITER_FIELDS
from nomac.hw.network.unit import TABLE_WORD_BITS, params_layout

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

    Members: `word` and `load` (at an edge with `load[n]` high, `word` is header word n
    and the reader takes its fields of it: base, counts, jumps), `start` (pulse: the loaded
    pattern begins), `o`, `last` (the byte on `o` is the pattern's final one), `mem` (the
    memory's read port). Loading is for between patterns, after the last byte was taken.
    """

    def __init__(self, addr_bits: int, count_bits: int):
        self.addr_bits, self.count_bits = addr_bits, count_bits
        super().__init__({"word": In(TABLE_WORD_BITS), "load": In(HEADER_WORDS), "start": In(1), "last": Out(1),
                          "o": Out(stream.Signature(signed(8))), "mem": Out(ActivationReadSignature(addr_bits))})

    def elaborate(self, platform):
        m = Module()
        header = [data.View(params_layout(fields), self.word[:16 * len(fields)]) for fields in HEADER_WORD_FIELDS]
        address = Signal(self.addr_bits)
        remaining = [Signal(self.count_bits, name=f"remaining{k}") for k in range(READER_LOOPS)]
        counts = [Signal(self.count_bits, name=f"count{k}") for k in range(1, READER_LOOPS)]    # loop 0 never restarts
        jumps = [Signal(self.addr_bits, name=f"jump{k}") for k in range(READER_LOOPS)]
        busy = Signal()             # reads still to issue
        held = Signal()             # mem.data holds a byte not yet queued
        queue = [Signal(signed(8), name=f"queue{n}") for n in range(2)]      # queue[0] is on `o`
        queued = Signal(range(3))
        push = held & (queued != 2)
        pop = self.o.valid & self.o.ready
        issue = busy & (~held | push)                  # so the unit's `ready` reaches no counter
        m.d.comb += [self.mem.addr.eq(address), self.mem.en.eq(issue), self.o.payload.eq(queue[0]),
                     self.o.valid.eq(queued != 0), self.last.eq(~busy & ~held & (queued == 1))]
        with m.If(issue):
            m.d.sync += held.eq(1)
        with m.Elif(push):
            m.d.sync += held.eq(0)
        m.d.sync += queued.eq(queued + push - pop)
        with m.If(push & ((queued == 0) | (queued == 1) & pop)):
            m.d.sync += queue[0].eq(self.mem.data)
        with m.Elif(pop):
            m.d.sync += queue[0].eq(queue[1])
        with m.If(push):
            m.d.sync += queue[1].eq(self.mem.data)

        # The innermost loop not at its last index advances: the address moves by its jump and
        # the loops inside it restart (every loop restarts at `start`; loop 0 only at `load`).
        # `last` (remaining == 1) is kept in registers, so only a mux stands before the adder.
        last = [Signal(name=f"last{k}") for k in range(READER_LOOPS)]
        jump = jumps[0]
        for k in range(1, READER_LOOPS):
            jump = Mux(last[k], jump, jumps[k])
        with m.If(self.load[0]):
            m.d.sync += address.eq(header[0].reader_base)
        with m.Elif(issue):
            m.d.sync += address.eq(address + jump)
        with m.If(self.load[1]):
            count0 = header[1].count0[:self.count_bits]
            m.d.sync += [remaining[0].eq(count0), last[0].eq(count0 == 1)]
            m.d.sync += [counts[k - 1].eq(header[1][f"count{k}"]) for k in range(1, READER_LOOPS)]
        with m.Elif(issue & Cat(last[1:]).all()):
            m.d.sync += [remaining[0].eq(remaining[0] - 1), last[0].eq(remaining[0] == 2)]
        for k in range(1, READER_LOOPS):
            with m.If(self.start | issue & Cat(last[k:]).all()):
                m.d.sync += [remaining[k].eq(counts[k - 1]), last[k].eq(counts[k - 1] == 1)]
            with m.Elif(issue & Cat(last[k + 1:]).all()):
                m.d.sync += [remaining[k].eq(remaining[k] - 1), last[k].eq(remaining[k] == 2)]
        with m.If(self.load[2]):
            m.d.sync += [jumps[k].eq(header[2][f"jump{k}"]) for k in range(READER_LOOPS)]
        with m.If(self.start):
            m.d.sync += busy.eq(1)
        with m.Elif(issue & Cat(last).all()):
            m.d.sync += busy.eq(0)
        return m


class ActivationWriter(wiring.Component):
    """Stores each byte taken on `i` at the next address of a region.

    Members: `word` and `load` (at an edge with `load` high the region is taken from
    `word`'s WRITER_FIELDS: a step's header word 0 or the program's word 0), `i`, `last`
    (the next byte taken is the region's final one), `mem` (the memory's write port).
    """

    def __init__(self, addr_bits: int, count_bits: int):
        self.addr_bits, self.count_bits = addr_bits, count_bits
        super().__init__({"word": In(TABLE_WORD_BITS), "load": In(1), "last": Out(1),
                          "i": In(stream.Signature(signed(8))), "mem": Out(ActivationWriteSignature(addr_bits))})

    def elaborate(self, platform):
        m = Module()
        region = data.View(params_layout(WRITER_FIELDS), self.word[:32])
        addr, remaining = Signal(self.addr_bits), Signal(self.count_bits)
        m.d.comb += [self.last.eq(remaining == 1), self.mem.addr.eq(addr), self.mem.data.eq(self.i.payload),
                     self.mem.en.eq(self.i.valid & self.i.ready)]
        with m.If(self.load):
            m.d.sync += [addr.eq(region.writer_base), remaining.eq(region.writer_count),
                         self.i.ready.eq(region.writer_count[:self.count_bits] != 0)]
        with m.Elif(self.mem.en):
            m.d.sync += [addr.eq(addr + 1), remaining.eq(remaining - 1)]
            with m.If(self.last):
                m.d.sync += self.i.ready.eq(0)
        return m
