"""The activation memory as streams: the reader walks a step's address pattern and streams
the bytes to the unit, the writer stores the unit's output bytes in a region
(docs/spec.md sections 16.3 and 16.4).

Both load their registers straight from the step's header words as the sequencer reads
them (program_format.HEADER_WORD_FIELDS), so the pattern is kept once. The reader's
pattern is four nested loops, outermost first; it keeps one address and a jump for the
middle two loops (what the address moves by when that loop advances and those inside it
restart; the outermost and the innermost move it by 1), so each next address is one
addition. Each loop counts down from its count less 2 and is at its last index once its
counter is negative: the sign bit is the test, with no comparator. The memory's read register holds a byte until the
next read, and a two-byte queue behind it feeds the unit: a read is issued whenever the
read register will be free at the edge, which depends on no `ready`, and the unit still
gets a byte every cycle it takes one.
"""
from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.hdl import signed

from nomac.hw.network.program_format import (COUNTS, HEADER_WORDS, JUMPING_LOOPS, JUMPS, READER_LOOPS, REGIONS,
                                              header_fields)
from nomac.hw.network.unit import TABLE_WORD_BITS

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
    and the reader takes its fields of it: counts, base, jumps; the edge that takes the
    last, the jumps, starts the pattern), `o`, `last` (the byte on `o` is the pattern's
    final one), `mem` (the memory's read port). Loading is for between patterns, after
    the last byte was taken, in the header's order (the counts clear the address).
    `count_bits`: of each loop's count less 2, two's complement.
    """

    def __init__(self, addr_bits: int, count_bits: tuple):
        self.addr_bits, self.count_bits = addr_bits, tuple(count_bits)
        super().__init__({"word": In(TABLE_WORD_BITS), "load": In(HEADER_WORDS), "last": Out(1),
                          "o": Out(stream.Signature(signed(8))), "mem": Out(ActivationReadSignature(addr_bits))})

    def elaborate(self, platform):
        m = Module()
        counts_word, regions_word, jumps_word = (header_fields(self.word, n) for n in (COUNTS, REGIONS, JUMPS))
        start = self.load[JUMPS]
        # The pattern's registers are loaded before use: no reset.
        address = Signal(self.addr_bits, reset_less=True)
        remaining = [Signal(signed(bits), name=f"remaining{k}", reset_less=True)
                     for k, bits in enumerate(self.count_bits)]
        counts = [Signal(bits, name=f"count{k}", reset_less=True)                    # loop 0 never restarts
                  for k, bits in enumerate(self.count_bits) if k]
        jumps = {k: Signal(self.addr_bits, name=f"jump{k}", reset_less=True) for k in JUMPING_LOOPS}
        busy = Signal()             # reads still to issue
        held = Signal()             # mem.data holds a byte not yet queued
        queue = [Signal(signed(8), name=f"queue{n}", reset_less=True) for n in range(2)]      # queue[0] is on `o`
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
        # the loops inside it restart (every loop restarts at the start; loop 0 only at `load`).
        last = [counter[-1] for counter in remaining]
        jump = 1
        for k in range(1, READER_LOOPS):
            jump = Mux(last[k], jump, jumps.get(k, 1))
        # The address is cleared with the counts and takes its base through the same adder.
        with m.If(self.load[COUNTS]):
            m.d.sync += address.eq(0)
        with m.Elif(self.load[REGIONS] | issue):
            m.d.sync += address.eq(address + Mux(self.load[REGIONS], regions_word.reader_base, jump))
        with m.If(self.load[COUNTS]):
            m.d.sync += remaining[0].eq(counts_word.count0_less_2)
            m.d.sync += [counts[k - 1].eq(counts_word[f"count{k}_less_2"]) for k in range(1, READER_LOOPS)]
        with m.Elif(issue & Cat(last[1:]).all()):
            m.d.sync += remaining[0].eq(remaining[0] - 1)
        for k in range(1, READER_LOOPS):
            with m.If(start | issue & Cat(last[k:]).all()):
                m.d.sync += remaining[k].eq(counts[k - 1])
            with m.Elif(issue & Cat(last[k + 1:]).all()):
                m.d.sync += remaining[k].eq(remaining[k] - 1)
        with m.If(start):
            m.d.sync += [jumps[k].eq(jumps_word[f"jump{k}"]) for k in JUMPING_LOOPS]
            m.d.sync += busy.eq(1)
        with m.Elif(issue & Cat(last).all()):
            m.d.sync += busy.eq(0)
        return m


class ActivationWriter(wiring.Component):
    """Stores each byte on `i` at the next address of a region; it takes one every cycle.

    Members: `word` and `load` (at an edge with `load` high, `word` is a step's region
    header word and the region starts at its `writer_base`), `i`, `mem` (the memory's
    write port, `addr` the next byte's address). The region's size is the unit's to keep.
    """

    def __init__(self, addr_bits: int):
        self.addr_bits = addr_bits
        super().__init__({"word": In(TABLE_WORD_BITS), "load": In(1),
                          "i": In(stream.Signature(signed(8))), "mem": Out(ActivationWriteSignature(addr_bits))})

    def elaborate(self, platform):
        m = Module()
        addr = Signal(self.addr_bits)
        m.d.comb += [self.i.ready.eq(1), self.mem.addr.eq(addr), self.mem.data.eq(self.i.payload),
                     self.mem.en.eq(self.i.valid)]
        with m.If(self.load):
            m.d.sync += addr.eq(header_fields(self.word, REGIONS).writer_base)
        with m.Elif(self.i.valid):
            m.d.sync += addr.eq(addr + 1)
        return m
