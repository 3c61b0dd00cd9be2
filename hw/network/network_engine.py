"""The network engine: the sequencer, its two memories, the activation reader and writer,
and one unit per layer kind (docs/spec.md section 16).

The host loads the table memory (the program from word 0, then the arrays) and an input
into the activation memory, pulses `start` and waits for `done`; the output is then in
the activation memory. Per step the sequencer reads the step's STEP_WORDS words, starts
the reader, the writer and the step's unit together, routes the reader's bytes to that
unit, its output to the writer and the table port to it, and when the unit is done
stores the step's cycle count (from its start to its done) in the cycles memory and goes
on to the next step, until a step whose unit is END.

The host ports (table write and read, activation write and read, cycles read) belong
to the host while the engine is not `busy`.
"""
from amaranth import Cat, Module, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from nomac.hw.network.activation_streams import (ActivationReader, ActivationReadSignature, ActivationWriter,
                                                 ActivationWriteSignature)
from nomac.hw.network.program_format import HEADER_FIELDS, HEADER_WORDS, READER_LOOPS, STEP_WORDS
from nomac.hw.network.unit import PARAMS_BITS, TABLE_WORD_BITS, NetworkLimits, TableReadSignature, params_layout
from nomac.hw.network.units import UNITS

__all__ = ["CYCLE_BITS", "TableWriteSignature", "NetworkEngine"]

CYCLE_BITS = 32                   # a step's cycle count in the cycles memory


class TableWriteSignature(wiring.Signature):
    """The host's write port of the table memory (seen from the host): `data` to word `addr`
    at an edge with `en` high."""

    def __init__(self, addr_bits: int):
        super().__init__({"addr": Out(addr_bits), "en": Out(1), "data": Out(TABLE_WORD_BITS)})


class NetworkEngine(wiring.Component):
    """The whole network on time-shared units, built for `limits` (the kinds of
    `limits.units` get a unit each).

    Members
    -------
    start : In(1)
        Run the program (when not busy).
    busy : Out(1)
        The program runs.
    done : Out(1)
        One-cycle pulse: the program's END step was reached.
    step : Out(16)
        Steps finished since the last start.
    table_write, table_read, activation_write, activation_read : In(...)
        The host's ports of the two memories.
    cycles_read : In(ActivationReadSignature-like)
        The cycle count of step n at address n, 32 bits.
    """

    def __init__(self, limits: NetworkLimits = NetworkLimits()):
        self.limits = limits
        self.kinds = [UNITS[kind] for kind in limits.units if kind in UNITS]
        table_bits, activation_bits = limits.table_addr_bits, limits.activation_addr_bits
        step_bits = max(1, (limits.steps - 1).bit_length())
        super().__init__({
            "start": In(1), "busy": Out(1), "done": Out(1), "step": Out(16),
            "table_write": In(TableWriteSignature(table_bits)), "table_read": In(TableReadSignature(table_bits)),
            "activation_write": In(ActivationWriteSignature(activation_bits)),
            "activation_read": In(ActivationReadSignature(activation_bits)),
            "cycles_read": In(wiring.Signature({"addr": Out(step_bits), "en": Out(1), "data": In(CYCLE_BITS)})),
        })

    def elaborate(self, platform):
        m = Module()
        limits = self.limits
        m.submodules.tables = tables = memory.Memory(shape=TABLE_WORD_BITS, depth=limits.table_words, init=[])
        m.submodules.activations = activations = memory.Memory(shape=8, depth=limits.activation_bytes, init=[])
        m.submodules.cycles = cycles = memory.Memory(shape=CYCLE_BITS, depth=limits.steps, init=[])
        table_port, table_write = tables.read_port(), tables.write_port()
        act_read, act_write = activations.read_port(), activations.write_port()
        cycles_read, cycles_write = cycles.read_port(), cycles.write_port()
        m.submodules.reader = reader = ActivationReader(limits.activation_addr_bits)
        m.submodules.writer = writer = ActivationWriter(limits.activation_addr_bits)
        units = {}
        for kind in self.kinds:
            units[kind.number] = m.submodules[f"{kind.kind}_unit"] = kind.unit(limits)

        words = Signal(TABLE_WORD_BITS * STEP_WORDS)          # the running step's words
        header_layout = params_layout(HEADER_FIELDS)
        header = data.View(header_layout, words[:header_layout.size])
        params = words[HEADER_WORDS * TABLE_WORD_BITS:][:PARAMS_BITS]
        step_addr = Signal(limits.table_addr_bits)            # word 0 of the running step
        word = Signal(range(STEP_WORDS + 1))
        step_cycles = Signal(CYCLE_BITS)
        loading = Signal()

        # Host ports, and the engine's own while busy.
        m.d.comb += [table_write.addr.eq(self.table_write.addr), table_write.data.eq(self.table_write.data),
                     table_write.en.eq(self.table_write.en & ~self.busy),
                     self.table_read.data.eq(table_port.data),
                     self.activation_read.data.eq(act_read.data), self.cycles_read.data.eq(cycles_read.data),
                     cycles_read.addr.eq(self.cycles_read.addr), cycles_read.en.eq(self.cycles_read.en)]
        with m.If(self.busy):
            m.d.comb += [act_read.addr.eq(reader.mem.addr), act_read.en.eq(reader.mem.en),
                         act_write.addr.eq(writer.mem.addr), act_write.data.eq(writer.mem.data),
                         act_write.en.eq(writer.mem.en)]
        with m.Else():
            m.d.comb += [act_read.addr.eq(self.activation_read.addr), act_read.en.eq(self.activation_read.en),
                         act_write.addr.eq(self.activation_write.addr), act_write.data.eq(self.activation_write.data),
                         act_write.en.eq(self.activation_write.en),
                         table_port.addr.eq(self.table_read.addr), table_port.en.eq(self.table_read.en)]
        m.d.comb += reader.mem.data.eq(act_read.data)

        # Routing to the running step's unit.
        for number, unit in units.items():
            selected = header.unit == number
            m.d.comb += [unit.params.as_value().eq(params[:unit.params.shape().size]),
                         unit.table.data.eq(table_port.data),
                         unit.i.payload.eq(reader.o.payload), unit.i.valid.eq(reader.o.valid & selected & ~loading)]
            with m.If(selected & ~loading):
                m.d.comb += [reader.o.ready.eq(unit.i.ready), writer.i.valid.eq(unit.o.valid),
                             writer.i.payload.eq(unit.o.payload), unit.o.ready.eq(writer.i.ready)]
                with m.If(self.busy):
                    m.d.comb += [table_port.addr.eq(unit.table.addr), table_port.en.eq(unit.table.en)]
        unit_done = Signal()
        m.d.comb += [unit_done.eq(0), reader.base.eq(header.reader_base), writer.base.eq(header.writer_base),
                     writer.count.eq(header.writer_count)]
        for k in range(READER_LOOPS):
            m.d.comb += [reader.counts[k].eq(header[f"count{k}"]), reader.strides[k].eq(header[f"stride{k}"])]
        for number, unit in units.items():
            with m.If(header.unit == number):
                m.d.comb += unit_done.eq(unit.done)

        m.d.comb += [cycles_write.addr.eq(self.step), cycles_write.data.eq(step_cycles + 1)]
        with m.FSM():
            with m.State("idle"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), self.step.eq(0), step_addr.eq(0), word.eq(0)]
                    m.next = "load"
            with m.State("load"):
                m.d.comb += [loading.eq(1), table_port.addr.eq(step_addr + word), table_port.en.eq(word < STEP_WORDS)]
                m.d.sync += word.eq(word + 1)
                with m.If(word != 0):
                    for k in range(STEP_WORDS):
                        with m.If(word == k + 1):
                            m.d.sync += words[k * TABLE_WORD_BITS:(k + 1) * TABLE_WORD_BITS].eq(table_port.data)
                with m.If(word == STEP_WORDS):
                    m.next = "dispatch"
            with m.State("dispatch"):
                m.d.comb += loading.eq(1)
                with m.If(header.unit == 0):
                    m.d.comb += self.done.eq(1)
                    m.d.sync += self.busy.eq(0)
                    m.next = "idle"
                with m.Else():
                    m.d.comb += [reader.start.eq(1), writer.start.eq(1)]
                    for number, unit in units.items():
                        m.d.comb += unit.start.eq(header.unit == number)
                    m.d.sync += step_cycles.eq(0)
                    m.next = "run"
            with m.State("run"):
                m.d.sync += step_cycles.eq(step_cycles + 1)
                with m.If(unit_done):
                    m.d.comb += cycles_write.en.eq(1)
                    m.d.sync += [self.step.eq(self.step + 1), step_addr.eq(step_addr + STEP_WORDS), word.eq(0)]
                    m.next = "load"
        return m
