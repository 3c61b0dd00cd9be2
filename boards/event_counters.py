"""Saturating event counters in one block RAM, with one incrementer for all of them.

A board counts ten kinds of events (link_protocol.COUNTERS). As registers with their
own adders and a byte multiplexer for the STATUS reply they cost more logic than the
frame decoder; here they are words of a small memory. Events come from a few sources,
each raising at most one event (a counter index) per cycle: the handler's verdicts, and
the byte events (a byte is garbage, an overrun or has a bad stop bit, never two of
these). An event is held pending in its source's slot; the unit serves one slot every
two cycles (read, then write the value plus one, saturating) and answers reads when no
slot is pending, so a read sees every event counted before it was asked (a STATUS reply
counts itself). A source loses an event only if it raises another before the unit served
the first: the link's events come at most once per byte time (20 cycles or more), once
per frame for the verdicts. After reset the unit first clears every counter (one per cycle).
No read meets a write of its address: a state reads or writes, never both.

The block RAM has room to spare, so it also holds `constants`: words after the
counters, set when the memory is configured, never written, read like the counters
(the board's IDENTIFY reply, which then needs no logic of its own).
"""
from amaranth import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nomac.hw.buffer_memory import BufferMemory


class EventCounters(wiring.Component):
    """`event{k}` for k < `sources`: `valid` with the `index` of the counter it adds one to.
    `read_en` with `read_index` asks for a counter, or for constant k at index count + k
    (hold both until `read_valid`); `read_valid` pulses with its value on `read_value`.
    `ready`: the counters are cleared (a few cycles after reset)."""

    def __init__(self, count: int, bits: int, constants=(), sources: int = 1):
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"EventCounters: count = {count!r}: must be a positive integer")
        self.count, self.bits, self.constants, self.sources = count, bits, list(constants), sources
        if any(not 0 <= word < 1 << bits for word in self.constants):
            raise ValueError(f"EventCounters: constants {self.constants}: each must fit {bits} bits")
        event = wiring.Signature({"valid": Out(1), "index": Out(range(count))})
        super().__init__({**{f"event{k}": In(event) for k in range(sources)}, "read_en": In(1),
                          "read_index": In(range(count + len(self.constants))),
                          "read_valid": Out(1), "read_value": Out(bits), "ready": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.words = words = BufferMemory(shape=self.bits, depth=self.count + len(self.constants),
                                                  init=[0] * self.count + self.constants)
        read, write = words.read, words.write
        events = [getattr(self, f"event{k}") for k in range(self.sources)]
        pending = [Signal(name=f"pending{k}") for k in range(self.sources)]
        indices = [Signal(range(self.count), name=f"index{k}") for k in range(self.sources)]
        served = Signal(self.sources)
        clearing = Signal(range(self.count + 1))         # the next counter to clear
        chosen = Signal(range(self.count))
        target = Signal(range(self.count))
        for k in reversed(range(self.sources)):       # the lowest pending source is served first
            with m.If(pending[k]):
                m.d.comb += chosen.eq(indices[k])
        for k, event in enumerate(events):
            with m.If(served[k]):
                m.d.sync += pending[k].eq(0)
            with m.If(event.valid):
                m.d.sync += [pending[k].eq(1), indices[k].eq(event.index)]
        source = Signal(range(self.sources))            # the source being served
        first = Signal(range(self.sources))
        for k in reversed(range(self.sources)):
            with m.If(pending[k]):
                m.d.comb += first.eq(k)
        any_pending = Cat(*pending).any()
        m.d.comb += [self.read_value.eq(read.data), read.en.eq(0), write.data.eq(0),
                     self.ready.eq(clearing == self.count)]
        current = read.data
        following = current + 1                          # its carry-out, OR-ed in, holds a full counter
        with m.FSM():
            with m.State("CLEAR"):
                m.d.comb += [write.addr.eq(clearing), write.en.eq(1)]
                m.d.sync += clearing.eq(clearing + 1)
                with m.If(clearing == self.count - 1):
                    m.next = "IDLE"
            with m.State("IDLE"):
                with m.If(any_pending):
                    m.d.comb += [read.addr.eq(chosen), read.en.eq(1)]
                    m.d.sync += [target.eq(chosen), source.eq(first)]
                    m.next = "INCREMENT"
                with m.Elif(self.read_en):
                    m.d.comb += [read.addr.eq(self.read_index), read.en.eq(1)]
                    m.next = "ANSWER"
            with m.State("ANSWER"):
                m.d.comb += self.read_valid.eq(1)
                m.next = "IDLE"
            with m.State("INCREMENT"):
                m.d.comb += [write.addr.eq(target), write.en.eq(1),
                             write.data.eq(following[:self.bits] | following[self.bits].replicate(self.bits)),
                             served.eq(Const(1, self.sources) << source)]
                m.next = "IDLE"
        return m
