"""The `embed` engine: class token and position embedding (docs/spec.md section 13.2).

y[t, e] = sat8(rshift_round(x'[t, e] * mult + offset[t, e], shift)) with x'[0] = 0
(the class token) and x'[t] = x[t-1]. The core walks the T*E/L output beats of a
vector in order, one a cycle, reading the word of L offsets at the beat's index: the
E/L class-token beats take no input (their x' is zero), every later beat takes one
input beat. The vector's first input beat is taken with its first class-token beat and
held until the class token is out, so a vector is inside the engine (not `idle`) from
its first output on, and the class token still follows the previous vector without a
bubble. mult and shift are constants in the gates.

Two lock-step stages advance together while the output is free: the input beat and
its offsets (the memory's registered read, whose data holds during a stall), then
the requantized result.
"""
from amaranth import Module, Mux, Signal
from amaranth.hdl import signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from nomac.hw.constant_multiply import constant_multiply
from nomac.hw.engine import LAYER_PARAMETER
from nomac.hw.matrix_vector_engine import BLOCK_RAM, INT8_HI, INT8_LO
from nomac.hw.memory_layout import MemoryLayout
from nomac.hw.operators.operator_engine import OperatorEngine
from nomac.hw.parameter_memory import ParameterMemory
from nomac.hw.requantize import requantize
from nomac.hw.vector_stream import vector_stream
from nomac.hw.widths import signed_bits

__all__ = ["EmbedCore", "EmbedEngine"]

OFFSET_RAM_BITS = 32         # a RAM can be loaded with any int32 offset


class EmbedCore(wiring.Component):
    """(T-1)*E/L input beats in, T*E/L output beats out, one output beat a cycle."""

    max_in_flight = 3        # two pipeline stages and the vector arriving
    cycles_per_vector_bound_rule = "T*E/L"

    def __init__(self, layer):
        self.layer = layer
        self.in_lanes = self.out_lanes = layer.hw.lanes
        ram = layer.hw.memory == "ram"
        if ram:
            self.offset_range = (-(1 << (OFFSET_RAM_BITS - 1)), (1 << (OFFSET_RAM_BITS - 1)) - 1)
        else:
            self.offset_range = (int(layer.offset.min()), int(layer.offset.max()))
        self.offset = ParameterMemory(MemoryLayout("offset", "offset", lanes=self.in_lanes,
                                                   lane_bits=signed_bits(*self.offset_range), signed=True),
                                      layer.offset, ram, attrs=BLOCK_RAM)
        self.memories = [self.offset]
        super().__init__({"i": In(vector_stream(self.in_lanes, signed(8))),
                          "o": Out(vector_stream(self.out_lanes, signed(8))),
                          **self.offset.members()})

    @property
    def acc_bits(self) -> int:
        """Width of offset + x' * mult over every int8 x' and every offset the memory can hold."""
        lo, hi = self.offset_range
        return signed_bits(lo + INT8_LO * self.layer.mult, hi + INT8_HI * self.layer.mult)

    @property
    def cycles_per_vector(self) -> int:
        return self.layer.tokens * self.layer.features // self.out_lanes

    cycles_per_vector_bound = property(lambda self: self.cycles_per_vector,
                                       doc="T*E/L: every output beat takes a cycle")

    def elaborate(self, platform):
        m = Module()
        layer, L = self.layer, self.out_lanes
        beats, class_beats = self.cycles_per_vector, layer.features // L
        port = self.offset.build(m, self)

        beat = Signal(range(beats))
        final = beat == beats - 1
        in_class, first_data = beat < class_beats, beat == class_beats
        held, held_full = Signal.like(self.i.payload.data.as_value()), Signal()   # the first input beat
        x_valid, x_last = Signal(), Signal()
        x = Signal(data.ArrayLayout(signed(8), L))
        y_valid, y_last = Signal(), Signal()
        y = Signal(data.ArrayLayout(signed(8), L))
        advance = ~y_valid | self.o.ready
        step = advance & Mux(in_class, held_full | self.i.valid, first_data | self.i.valid)
        m.d.comb += [self.i.ready.eq(advance & Mux(in_class, ~held_full, ~first_data)),
                     port.addr.eq(beat), port.en.eq(advance)]
        with m.If(step):
            m.d.sync += beat.eq(Mux(final, 0, beat + 1))
        with m.If(advance & in_class & ~held_full & self.i.valid):
            m.d.sync += [held.eq(self.i.payload.data.as_value()), held_full.eq(1)]
        with m.If(advance & first_data):
            m.d.sync += held_full.eq(0)

        # Stage 1: x' (zero for the class token) beside its offsets, which arrive from the memory.
        with m.If(advance):
            m.d.sync += [x_valid.eq(step), x_last.eq(final),
                         x.eq(Mux(in_class, 0, Mux(first_data, held, self.i.payload.data.as_value())))]

        # Stage 2: the requantized sums.
        offsets = data.ArrayLayout(signed(self.offset.layout.lane_bits), L)(port.data)
        accs = [Signal(signed(self.acc_bits), name=f"acc{lane}") for lane in range(L)]
        m.d.comb += [acc.eq(constant_multiply(x[lane], layer.mult) + offsets[lane]) for lane, acc in enumerate(accs)]
        with m.If(advance):
            m.d.sync += [y_valid.eq(x_valid), y_last.eq(x_last),
                         *(y[lane].eq(requantize(acc, layer.shift)) for lane, acc in enumerate(accs))]
        m.d.comb += [self.o.valid.eq(y_valid), self.o.payload.last.eq(y_last), self.o.payload.data.eq(y)]
        return m


class EmbedEngine(OperatorEngine):
    __doc__ = OperatorEngine.doc_template.format(
        description="An `embed` layer: the class token and position offsets, hw.lanes elements a cycle.",
        parameters=LAYER_PARAMETER.format(layer="EmbedLayer"), rule=': "T*E/L"', attributes="")
    Core = EmbedCore
