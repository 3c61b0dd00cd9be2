"""Saturating event counters in one block RAM, with one incrementer for all of them.

A board counts ten kinds of events (link_protocol.COUNTERS). As registers with their
own adders and a byte multiplexer for the STATUS reply they cost more logic than the
frame decoder; here they are words of a small memory. An event marks its counter
pending; the unit serves one pending counter every two cycles (read, then write the
value plus one, saturating) and answers reads when none is pending, so a read sees every
event counted before it was asked (a STATUS reply counts itself). A counter
loses an event only if the same event comes again before the unit served the first:
the link's events come at most once per byte time (20 cycles or more), once per frame
for the verdicts. After reset the unit first clears every counter (one per cycle).
"""
from amaranth import Const, Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out


class EventCounters(wiring.Component):
    """`events`: one pulse line per counter. `read_en` with `read_index` asks for a counter
    (hold both until `read_valid`); `read_valid` pulses with its value on `read_value`.
    `ready`: the counters are cleared (a few cycles after reset)."""

    def __init__(self, count: int, bits: int):
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"EventCounters: count = {count!r}: must be a positive integer")
        self.count, self.bits = count, bits
        super().__init__({"events": In(count), "read_en": In(1), "read_index": In(range(count)),
                          "read_valid": Out(1), "read_value": Out(bits), "ready": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.words = words = memory.Memory(shape=self.bits, depth=self.count, init=[])
        read, write = words.read_port(), words.write_port()
        pending = Signal(self.count)
        served = Signal(self.count)
        clearing = Signal(range(self.count + 1), init=self.count)
        chosen = Signal(range(self.count))
        target = Signal(range(self.count))
        for k in reversed(range(self.count)):         # the lowest pending counter is served first
            with m.If(pending[k]):
                m.d.comb += chosen.eq(k)
        m.d.sync += pending.eq((pending & ~served) | self.events)
        m.d.comb += [self.read_value.eq(read.data), read.en.eq(0), write.data.eq(0),
                     self.ready.eq(clearing == 0)]
        current = read.data
        with m.FSM():
            with m.State("CLEAR"):
                m.d.comb += [write.addr.eq(self.count - clearing), write.en.eq(1)]
                m.d.sync += clearing.eq(clearing - 1)
                with m.If(clearing == 1):
                    m.next = "IDLE"
            with m.State("IDLE"):
                with m.If(pending != 0):
                    m.d.comb += [read.addr.eq(chosen), read.en.eq(1)]
                    m.d.sync += target.eq(chosen)
                    m.next = "INCREMENT"
                with m.Elif(self.read_en):
                    m.d.comb += [read.addr.eq(self.read_index), read.en.eq(1)]
                    m.next = "ANSWER"
            with m.State("ANSWER"):
                m.d.comb += self.read_valid.eq(1)
                m.next = "IDLE"
            with m.State("INCREMENT"):
                m.d.comb += [write.addr.eq(target), write.en.eq(1),
                             write.data.eq(current + Mux(current == (1 << self.bits) - 1, 0, 1)),
                             served.eq(Const(1, self.count) << target)]
                m.next = "IDLE"
        return m
