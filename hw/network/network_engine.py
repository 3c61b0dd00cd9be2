"""The network engine: the sequencer, its memories, the activation reader and writer, and
one unit per layer kind, on the engine contract (docs/spec.md sections 6 and 16).

To a board it is an engine like a layer's (hw/engine.py): input vectors (an image of
`limits.input_bytes` int8) in, output vectors (`limits.output_bytes` bytes) out, `idle`,
`framing_error`, and two RAM memories with host ports: `tables` (the program from word 0,
then the arrays, 64-bit words) and `step_cycles` (what each step of the last run took).
So the board's command handler and host load and run it unchanged.

Per vector: read the program header (word 0), write the input bytes at its input base,
run the steps, stream the output region out. Per step the sequencer reads the step's
STEP_WORDS words, starts the reader, the writer and the step's unit together, routes
the reader's bytes to that unit, its output to the writer and the table port to it, and
when the unit is done stores the step's cycles (from its start to its done) and goes on,
until a step whose unit is END.
"""
import numpy as np
from amaranth import Module, Signal
from amaranth.hdl import signed
from amaranth.lib import data, memory, wiring

from nomac.hw.engine import EngineSignature
from nomac.hw.memory_layout import MemoryLayout
from nomac.hw.network.activation_streams import ActivationReader, ActivationWriter
from nomac.hw.network.table_memory import TableMemory
from nomac.hw.network.program_format import (FIRST_STEP, HEADER_FIELDS, PROGRAM_FIELDS, READER_LOOPS,
                                             STEP_WORDS)
from nomac.hw.network.unit import PARAMS_BITS, TABLE_WORD_BITS, NetworkLimits, params_layout
from nomac.hw.network.units import UNITS
from nomac.hw.parameter_memory import ParameterMemory

__all__ = ["CYCLE_BITS", "network_memories", "NetworkEngine"]

CYCLE_BITS = 32                   # a step's cycle count in `step_cycles`


def network_memories(limits: NetworkLimits) -> list:
    """The host-loadable memories, as the board link numbers them: `tables`, `step_cycles`."""
    tables = MemoryLayout("tables", "tables", lanes=1, lane_bits=TABLE_WORD_BITS, signed=False)
    cycles = MemoryLayout("step_cycles", "step_cycles", lanes=1, lane_bits=CYCLE_BITS, signed=False)
    return [ParameterMemory(tables, np.zeros((limits.table_words, 1), np.uint64), True),
            ParameterMemory(cycles, np.zeros((limits.steps, 1), np.uint32), True)]


class NetworkEngine(wiring.Component):
    """The whole network on time-shared units, built for `limits` (each kind of
    `limits.units` gets one unit). `table_memory` holds the tables (default: block RAM,
    `TableMemory`); a board passes the memory its device has. Members: see
    `nomac.hw.engine.EngineSignature`."""

    def __init__(self, limits: NetworkLimits = NetworkLimits(), table_memory: wiring.Component | None = None):
        self.limits = limits
        self.table_memory = table_memory if table_memory is not None else TableMemory(limits.table_words)
        self.memories = network_memories(limits)
        self.kinds = [UNITS[kind] for kind in limits.units]
        self.in_elements, self.out_elements = limits.input_bytes, limits.output_bytes
        super().__init__(EngineSignature(in_lanes=1, in_shape=signed(8), out_lanes=1, out_shape=signed(8),
                                         memories=self.memories))

    def elaborate(self, platform):
        m = Module()
        limits = self.limits
        tables_memory, cycles_memory = self.memories
        m.submodules.tables = tables = self.table_memory
        m.submodules.activations = activations = memory.Memory(shape=8, depth=limits.activation_bytes, init=[])
        m.submodules.step_cycles = cycles = memory.Memory(shape=CYCLE_BITS, depth=limits.steps, init=[])
        table_port, tables_write = tables.read, tables.write
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
        params = words[-PARAMS_BITS:]
        program_layout = params_layout(PROGRAM_FIELDS)
        program = Signal(program_layout)                       # word 0, read as a vector arrives
        step_addr = Signal(limits.table_addr_bits)             # word 0 of the running step
        word = Signal(range(STEP_WORDS + 1))
        step = Signal(range(limits.steps + 1))
        cycles_so_far = Signal(CYCLE_BITS)               # of the running step
        running = Signal()                                     # a step's unit owns the streams and the table port
        elements = Signal(range(max(limits.input_bytes, limits.output_bytes)))

        # Host ports (used only while idle): writes go straight to the memories, reads share
        # the table port and the cycles port; the sequencer writes a step's cycles when no
        # host write is on.
        host_tables_write, host_tables_read = self._ports(tables_memory)
        host_cycles_write, host_cycles_read = self._ports(cycles_memory)
        m.d.comb += [tables_write.addr.eq(host_tables_write.addr), tables_write.data.eq(host_tables_write.data),
                     tables_write.en.eq(host_tables_write.en)]
        m.d.comb += [host_tables_read.data.eq(table_port.data), host_cycles_read.data.eq(cycles_read.data),
                     cycles_read.addr.eq(host_cycles_read.addr), cycles_read.en.eq(host_cycles_read.en),
                     act_read.addr.eq(reader.mem.addr), act_read.en.eq(reader.mem.en),
                     reader.mem.data.eq(act_read.data),
                     act_write.addr.eq(writer.mem.addr), act_write.data.eq(writer.mem.data),
                     act_write.en.eq(writer.mem.en)]
        with m.If(host_cycles_write.en):
            m.d.comb += [cycles_write.addr.eq(host_cycles_write.addr), cycles_write.data.eq(host_cycles_write.data),
                         cycles_write.en.eq(1)]
        with m.Else():
            m.d.comb += [cycles_write.addr.eq(step), cycles_write.data.eq(cycles_so_far + 1)]

        # The running step's unit gets the reader's bytes, the writer and the table port.
        for number, unit in units.items():
            selected = running & (header.unit == number)
            m.d.comb += [unit.params.as_value().eq(params[:unit.params.shape().size]),
                         unit.table.data.eq(table_port.data),
                         unit.i.payload.eq(reader.o.payload), unit.i.valid.eq(reader.o.valid & selected)]
            with m.If(selected):
                m.d.comb += [reader.o.ready.eq(unit.i.ready), writer.i.valid.eq(unit.o.valid),
                             writer.i.payload.eq(unit.o.payload), unit.o.ready.eq(writer.i.ready),
                             table_port.addr.eq(unit.table.addr), table_port.en.eq(unit.table.en)]
        unit_done = Signal()
        for number, unit in units.items():
            with m.If(header.unit == number):
                m.d.comb += unit_done.eq(unit.done)

        with m.FSM():
            with m.State("idle"):
                m.d.comb += [self.idle.eq(1), table_port.addr.eq(host_tables_read.addr),
                             table_port.en.eq(host_tables_read.en)]
                with m.If(self.i.valid):
                    m.d.comb += [table_port.addr.eq(0), table_port.en.eq(1)]
                    m.next = "header"
            with m.State("header"):
                word0 = data.View(program_layout, table_port.data[:program_layout.size])
                m.d.comb += [writer.start.eq(1), writer.base.eq(word0.input_base), writer.count.eq(limits.input_bytes)]
                m.d.sync += [program.eq(word0), elements.eq(0)]
                m.next = "input"
            with m.State("input"):
                # The image's bytes to the activation memory; a `last` away from the final byte is
                # a framing error, and the count, not `last`, ends the vector.
                m.d.comb += [writer.i.payload.eq(self.i.payload.data[0]), writer.i.valid.eq(self.i.valid),
                             self.i.ready.eq(writer.i.ready)]
                with m.If(self.i.valid & self.i.ready):
                    m.d.sync += elements.eq(elements + 1)
                    with m.If(self.i.payload.last != (elements == limits.input_bytes - 1)):
                        m.d.sync += self.framing_error.eq(1)
                    with m.If(elements == limits.input_bytes - 1):
                        m.d.sync += [step.eq(0), step_addr.eq(FIRST_STEP), word.eq(0)]
                        m.next = "load"
            with m.State("load"):
                m.d.comb += [table_port.addr.eq(step_addr + word), table_port.en.eq(word < STEP_WORDS)]
                m.d.sync += word.eq(word + 1)
                for k in range(STEP_WORDS):
                    with m.If(word == k + 1):
                        m.d.sync += words[k * TABLE_WORD_BITS:(k + 1) * TABLE_WORD_BITS].eq(table_port.data)
                with m.If(word == STEP_WORDS):
                    m.next = "dispatch"
            with m.State("dispatch"):
                with m.If(header.unit == 0):
                    m.d.comb += [reader.start.eq(1), reader.base.eq(program.output_base)]
                    m.d.comb += [reader.counts[k].eq(1) for k in range(READER_LOOPS - 1)]
                    m.d.comb += [reader.counts[-1].eq(program.output_bytes), reader.strides[-1].eq(1)]
                    m.d.sync += elements.eq(0)
                    m.next = "output"
                with m.Else():
                    m.d.comb += [reader.start.eq(1), reader.base.eq(header.reader_base), writer.start.eq(1),
                                 writer.base.eq(header.writer_base), writer.count.eq(header.writer_count)]
                    m.d.comb += [reader.counts[k].eq(header[f"count{k}"]) for k in range(READER_LOOPS)]
                    m.d.comb += [reader.strides[k].eq(header[f"stride{k}"]) for k in range(READER_LOOPS)]
                    for number, unit in units.items():
                        m.d.comb += unit.start.eq(header.unit == number)
                    m.d.sync += cycles_so_far.eq(0)
                    m.next = "run"
            with m.State("run"):
                m.d.comb += running.eq(1)
                m.d.sync += cycles_so_far.eq(cycles_so_far + 1)
                with m.If(unit_done):
                    m.d.comb += cycles_write.en.eq(1)
                    m.d.sync += [step.eq(step + 1), step_addr.eq(step_addr + STEP_WORDS), word.eq(0)]
                    m.next = "load"
            with m.State("output"):
                m.d.comb += [self.o.payload.data[0].eq(reader.o.payload), self.o.valid.eq(reader.o.valid),
                             self.o.payload.last.eq(elements == limits.output_bytes - 1),
                             reader.o.ready.eq(self.o.ready)]
                with m.If(self.o.valid & self.o.ready):
                    m.d.sync += elements.eq(elements + 1)
                    with m.If(elements == limits.output_bytes - 1):
                        m.next = "idle"
        return m

    def _ports(self, parameter_memory):
        """The host's (write, read-back) ports of one of `memories`."""
        return getattr(self, parameter_memory.write_name), getattr(self, parameter_memory.read_name)
