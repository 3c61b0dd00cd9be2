"""The `add` engine: the residual y = sat8(rshift_round(a * mult_a + b * mult_b, shift))
(docs/spec.md section 13.6), two constant multiplies per lane (shift-and-add, hw/constant_multiply.py).

An input vector is a's E elements, then b's, in beats of L. The core runs 2*ceil(E/L)
steps a vector: the first ceil(E/L) write each input beat into a small memory as one
word (word n holds a[n*L .. n*L + L-1], the tail of the last one being b's first
elements when L does not divide E); each later step takes a beat of b, reads the
matching word of a, and emits one output beat. When L does not divide E, b starts at
lane r = E mod L of a beat, so b's elements n*L .. n*L + L-1 are the upper L - r lanes
of the beat before and the lower r lanes of this one: fixed wiring, with the upper
lanes kept in a register. If b's tail fits in those kept lanes (2r <= L), the stream
has one beat fewer than there are steps, and the last step takes no input.

Three lock-step stages advance together while the output is free: b beside its word
of a (the memory's registered read, whose data holds during a stall), the sum of the
two constant products, then the requantized result.
"""
from amaranth import Cat, Module, Mux, Signal
from amaranth.hdl import signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from nomac.hw.constant_multiply import constant_multiply
from nomac.hw.engine import LAYER_PARAMETER
from nomac.hw.matrix_vector_engine import INT8_HI, INT8_LO
from nomac.hw.operators.operator_engine import OperatorEngine
from nomac.hw.requantize import requantize
from nomac.hw.vector_stream import beats_per_vector, vector_stream
from nomac.hw.widths import signed_bits

__all__ = ["AddCore", "AddEngine"]


class AddCore(wiring.Component):
    """ceil(2E/L) input beats of a then b in, ceil(E/L) output beats out, 2*ceil(E/L) cycles a vector."""

    max_in_flight = 4        # three pipeline stages and the vector arriving
    memories = ()
    cycles_per_vector_bound_rule = "2*ceil(E/L)"

    def __init__(self, layer):
        self.layer = layer
        self.in_lanes = self.out_lanes = layer.hw.lanes
        super().__init__({"i": In(vector_stream(self.in_lanes, signed(8))),
                          "o": Out(vector_stream(self.out_lanes, signed(8)))})

    @property
    def acc_bits(self) -> int:
        """Width of a * mult_a + b * mult_b (and of its first term) over every int8 a and b."""
        mults = self.layer.mult_a + self.layer.mult_b
        return signed_bits(INT8_LO * mults, INT8_HI * mults)

    @property
    def cycles_per_vector(self) -> int:
        return 2 * beats_per_vector(self.layer.features, self.in_lanes)

    cycles_per_vector_bound = property(lambda self: self.cycles_per_vector,
                                       doc="2*ceil(E/L): the beats of a, then those of b")

    def elaborate(self, platform):
        m = Module()
        layer, L, E = self.layer, self.in_lanes, self.layer.features
        words, r = beats_per_vector(E, L), E % L
        steps = self.cycles_per_vector
        takes_no_input = steps > beats_per_vector(2 * E, L)    # the last step: b's tail is all kept lanes
        lanes = data.ArrayLayout(signed(8), L)
        m.submodules.a_words = a_words = memory.Memory(shape=lanes, depth=words, init=[])
        write, read = a_words.write_port(), a_words.read_port()

        step = Signal(range(steps))
        final = step == steps - 1
        on_b = step >= words
        no_input = final & takes_no_input
        b_valid, b_last = Signal(), Signal()
        b = Signal(lanes)
        y_valid, y_last = Signal(), Signal()
        y = Signal(lanes)
        advance = ~y_valid | self.o.ready
        moves = advance & (self.i.valid | no_input)
        taken = self.i.valid & self.i.ready
        beat = self.i.payload.data.as_value()
        m.d.comb += [self.i.ready.eq(advance & ~no_input),
                     write.addr.eq(step), write.data.eq(beat), write.en.eq(taken & ~on_b),
                     read.addr.eq(step - words), read.en.eq(advance)]
        with m.If(moves):
            m.d.sync += step.eq(Mux(final, 0, step + 1))

        # Stage 1: b's elements of this step beside the word of a, which arrives from the memory.
        if r:
            kept = Signal(8 * (L - r))                  # the upper lanes of the beat before
            with m.If(taken):
                m.d.sync += kept.eq(beat[8 * r:])
            aligned = Cat(kept, beat[:8 * r])
        else:
            aligned = beat
        with m.If(advance):
            m.d.sync += [b_valid.eq(moves & on_b), b_last.eq(final), b.eq(aligned)]

        # Stage 2: the sums of the two constant products (shift-and-add trees: a stage of their own).
        acc_valid, acc_last = Signal(), Signal()
        accs = [Signal(signed(self.acc_bits), name=f"acc{lane}") for lane in range(L)]
        with m.If(advance):
            m.d.sync += [acc_valid.eq(b_valid), acc_last.eq(b_last),
                         *(acc.eq(constant_multiply(read.data[lane], layer.mult_a) +
                                  constant_multiply(b[lane], layer.mult_b)) for lane, acc in enumerate(accs))]

        # Stage 3: the requantized sums; the unused lanes of the final beat are zero.
        with m.If(advance):
            m.d.sync += [y_valid.eq(acc_valid), y_last.eq(acc_last)]
            for lane, acc in enumerate(accs):
                result = requantize(acc, layer.shift)
                m.d.sync += y[lane].eq(Mux(acc_last, 0, result) if r and lane >= r else result)
        m.d.comb += [self.o.valid.eq(y_valid), self.o.payload.last.eq(y_last), self.o.payload.data.eq(y)]
        return m


class AddEngine(OperatorEngine):
    __doc__ = OperatorEngine.doc_template.format(
        description="An `add` layer: a's beats held in a memory, then one output beat per beat of b.",
        parameters=LAYER_PARAMETER.format(layer="AddLayer"), rule=': "2*ceil(E/L)"', attributes="")
    Core = AddCore
