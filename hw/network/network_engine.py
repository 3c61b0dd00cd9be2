"""The network engine: the sequencer, its memories, the activation reader and writer, and
one unit per layer kind, on the engine contract (docs/spec.md sections 6 and 16).

To a board it is an engine like a layer's (hw/engine.py): input vectors (an image of
`limits.input_bytes` int8) in, output vectors (`limits.output_bytes` bytes) out, `idle`,
`framing_error`, and two RAM memories with host ports: `tables` (the program from word 0,
then the arrays, 64-bit words) and `step_cycles` (what each step of the last run took).
So the board's command handler and host load and run it unchanged.

Per vector: write the input bytes at address 0 (the writer is there since reset or the
last END), run the steps, stream the END step's reader pattern (the output region) out. Per
step the sequencer reads the step's STEP_WORDS - 1 words, one a cycle, its program
counter's low bits saying which word is on the port (the reader and writer take their
header words as they arrive; the unit's parameters and number stay in the step
register); the edge that takes the last header word starts the reader and the step's
unit. It routes the reader's bytes to that unit, its output to the writer and the table
port to it, and when the unit is done stores the step's cycles (from its start to its
done) at the program counter's high bits, the step's number, and goes on, until a step
whose unit is END.
"""
import numpy as np
from amaranth import Cat, Const, Module, Signal, Value
from amaranth.hdl import signed
from amaranth.lib import wiring

from nomac.hw.buffer_memory import BufferMemory
from nomac.hw.engine import EngineSignature
from nomac.hw.memory_layout import MemoryLayout
from nomac.hw.network.activation_streams import ActivationReader, ActivationWriter
from nomac.hw.network.table_memory import TableMemory
from nomac.hw.network.program_format import (HEADER_WORDS, PARAMS_WORDS, REGIONS, STEP_WORDS, count_bits,
                                              header_fields, program_words)
from nomac.hw.network.requantize import requantize_output
from nomac.hw.network.unit import (OUTPUT_SHIFT_BITS, TABLE_WORD_BITS, NetworkLimits, SharedMultiplier,
                                  output_acc_bits, unit_output_layout)
from nomac.hw.network.units import UNITS
from nomac.hw.parameter_memory import ParameterMemory

__all__ = ["CYCLE_BITS", "network_memories", "NetworkEngine"]

CYCLE_BITS = 16                   # a `step_cycles` word: a step's cycles, saturating (one EBR of 256 words)
WORD_BITS = (STEP_WORDS - 1).bit_length()          # the program counter's bits below the step's number


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
        # No cycle reads the address it writes (docs/spec.md section 16.2): collision-free RAMs.
        m.submodules.activations = activations = BufferMemory(shape=8, depth=limits.activation_bytes)
        m.submodules.step_cycles = cycles = BufferMemory(shape=CYCLE_BITS, depth=limits.steps)
        table_port, tables_write = tables.read, tables.write
        act_write, cycles_write, act_read, cycles_read = activations.write, cycles.write, activations.read, cycles.read
        m.submodules.reader = reader = ActivationReader(limits.activation_addr_bits, count_bits(limits))
        m.submodules.writer = writer = ActivationWriter(limits.activation_addr_bits)
        units = {}
        for kind in self.kinds:
            if kind.number not in units:            # kinds of one number share its unit
                units[kind.number] = m.submodules[f"{kind.kind}_unit"] = kind.unit(limits)

        numbers = list(units)
        # The step register (loaded before a step starts: no reset): one-hot, the step's unit
        # (none: END), and its parameters.
        step_units = Signal(len(units), reset_less=True)
        params = Signal(max(unit.params.shape().size for unit in units.values()), reset_less=True)
        # The program word to read: the step's number above the word's index in the step.
        program_counter = Signal(range(program_words(limits)))
        word, step = program_counter[:WORD_BITS], program_counter[WORD_BITS:]
        cycles_so_far = Signal(CYCLE_BITS, reset_less=True)     # of the running step, counting its done edge
        m.d.comb += [reader.word.eq(table_port.data), writer.word.eq(table_port.data)]

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
            m.d.comb += [cycles_write.addr.eq(step), cycles_write.data.eq(cycles_so_far)]

        # The step's unit gets the reader's bytes and the table port (the others see no valid
        # input and offer no output, so they may see the shared signals); the writer takes
        # a byte every cycle, so every unit's output is always ready.
        selected = {number: step_units[n] for n, number in enumerate(numbers)}
        for number, unit in units.items():
            m.d.comb += [unit.params.as_value().eq(params[:unit.params.shape().size]),
                         unit.table.data.eq(table_port.data), unit.i.payload.eq(reader.o.payload),
                         unit.i.valid.eq(reader.o.valid & selected[number]), unit.o.ready.eq(1)]

        # The shared multiplier (docs/spec.md section 16.4): the running unit's operands.
        multiplying = [(unit, selected[number]) for number, unit in units.items()
                       if "multiplier" in unit.signature.members]
        if multiplying:
            m.submodules.multiplier = multiplier = SharedMultiplier()
            m.d.comb += [multiplier.a.eq(_one_hot_mux([(unit.multiplier.a, select) for unit, select in multiplying])),
                         multiplier.b.eq(_one_hot_mux([(unit.multiplier.b, select) for unit, select in multiplying])),
                         *(unit.multiplier.p.eq(multiplier.p) for unit, _ in multiplying)]

        def of_running(member):
            """`member` of the running step's unit."""
            return _one_hot_mux([(member(unit), selected[number]) for number, unit in units.items()])
        unit_done, unit_output_valid, unit_input_ready = (
            of_running(lambda unit: unit.done), of_running(lambda unit: unit.o.valid),
            of_running(lambda unit: unit.i.ready))

        running, host_owns_table, loading = Signal(), Signal(), Signal()

        # The shared requantizer (docs/spec.md section 16.4): the running unit's output element,
        # registered, then requantized on its way to the writer.
        acc_bits = max(output_acc_bits(unit) or 8 for unit in units.values())
        output = Signal(unit_output_layout(acc_bits), reset_less=True)
        output_valid = Signal()
        unit_output = _one_hot_mux([(_as_unit_output(unit, acc_bits), selected[number])
                                    for number, unit in units.items()])
        m.d.sync += output_valid.eq(running & unit_output_valid)
        with m.If(unit_output_valid):
            m.d.sync += output.eq(unit_output)
        m.d.comb += [writer.i.valid.eq(output_valid), writer.i.payload.eq(requantize_output(m, output))]

        # The table port's owner: the running unit, the host while idle, the sequencer while
        # it loads a step (at `program_counter`).
        owners = [(unit.table, selected[number] & running) for number, unit in units.items()]
        m.d.comb += [table_port.addr.eq(_one_hot_mux([(table.addr, select) for table, select in owners]
                                                     + [(host_tables_read.addr, host_owns_table),
                                                        (program_counter, loading)])),
                     table_port.en.eq(_one_hot_mux([(table.en, select) for table, select in owners]
                                                   + [(host_tables_read.en, host_owns_table)]) | loading)]

        # The edge that takes a step's last header word starts it (END: no unit).
        starting = loading & (word == STEP_WORDS - 1)
        m.d.comb += [unit.start.eq(selected[number] & starting) for number, unit in units.items()]

        def take_input():
            """The image's bytes to the activation memory from address 0; a `last` away from the
            final byte is a framing error, and the count, not `last`, ends the vector."""
            # the input's addresses, 0 .. input_bytes - 1, fit in the writer address's low bits
            final = writer.mem.addr[:max(1, (limits.input_bytes - 1).bit_length())] == limits.input_bytes - 1
            m.d.comb += [writer.i.payload.eq(self.i.payload.data[0]), writer.i.valid.eq(self.i.valid),
                         self.i.ready.eq(1)]
            with m.If(self.i.valid):
                with m.If(self.i.payload.last != final):
                    m.d.sync += self.framing_error.eq(1)
                with m.If(final):
                    m.next = "load"

        with m.FSM():
            with m.State("idle"):
                m.d.comb += [self.idle.eq(1), host_owns_table.eq(1)]
                with m.If(self.i.valid):
                    m.next = "input"
                take_input()
            with m.State("input"):
                take_input()
            with m.State("load"):
                # Word k of the step is read at word == k and on the port at word == k + 1.
                m.d.comb += loading.eq(1)
                with m.If(word != STEP_WORDS - 1):
                    m.d.sync += program_counter.eq(program_counter + 1)
                for k in range(PARAMS_WORDS):
                    low = k * TABLE_WORD_BITS
                    if low < len(params):
                        with m.If(word == k + 1):
                            m.d.sync += params[low:low + TABLE_WORD_BITS].eq(table_port.data)
                for k in range(HEADER_WORDS):
                    m.d.comb += reader.load[k].eq(word == PARAMS_WORDS + k + 1)
                with m.If(word == PARAMS_WORDS + REGIONS + 1):
                    number = header_fields(table_port.data, REGIONS).unit
                    m.d.comb += writer.load.eq(1)
                    # the compiler names only units of the build: their numbers' bits suffice
                    m.d.sync += step_units.eq(Cat(number[:max(numbers).bit_length()] == n for n in numbers))
                with m.If(starting):
                    with m.If(step_units == 0):           # END
                        m.next = "output"
                    with m.Else():
                        m.d.sync += cycles_so_far.eq(1)
                        m.next = "run"
            with m.State("run"):
                m.d.comb += [running.eq(1), reader.o.ready.eq(unit_input_ready)]
                with m.If(~cycles_so_far.all()):
                    m.d.sync += cycles_so_far.eq(cycles_so_far + 1)
                with m.If(unit_done):
                    m.d.comb += cycles_write.en.eq(1)
                    m.d.sync += program_counter.eq(program_counter + 1)
                    m.next = "load"
            with m.State("output"):
                m.d.comb += [self.o.payload.data[0].eq(reader.o.payload), self.o.valid.eq(reader.o.valid),
                             self.o.payload.last.eq(reader.last), reader.o.ready.eq(self.o.ready)]
                with m.If(self.o.valid & self.o.ready & reader.last):
                    m.d.sync += program_counter.eq(0)
                    m.next = "idle"
        return m

    def _ports(self, parameter_memory):
        """The host's (write, read-back) ports of one of `memories`."""
        return getattr(self, parameter_memory.write_name), getattr(self, parameter_memory.read_name)


def _as_unit_output(unit, acc_bits: int) -> Value:
    """`unit`'s output element as the bits of a unit output of `acc_bits`, each field where
    unit_output_layout puts it. An int8 v is raw byte 0 of an acc of v's bits above zeros,
    so the output select has no sign extension of it to make."""
    payload = unit.o.payload
    if output_acc_bits(unit) is None:
        fields = {"acc": [payload.as_unsigned(), Const(0, acc_bits - len(payload))],
                  "shift": [Const(0, OUTPUT_SHIFT_BITS)], "raw": [Const(1, 1)]}
    else:
        fields = {"acc": [payload.acc, payload.acc[-1].replicate(acc_bits - len(payload.acc))],
                  "shift": [payload.shift], "raw": [payload.raw]}
    in_order = sorted(unit_output_layout(acc_bits), key=lambda item: item[1].offset)   # (name, Field), low bits first
    return Cat(*(part for name, _ in in_order for part in fields[name]))


def _one_hot_mux(choices):
    """The value of the (value, select) pairs whose select is high (at most one is), as an
    AND-OR: cheaper than a mux tree on a unit number."""
    result = Const(0)
    for value, select in choices:
        result = result | (value.as_unsigned() & select.replicate(len(value)))
    return result
