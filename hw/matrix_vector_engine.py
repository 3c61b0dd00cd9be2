"""The streaming skeleton of the matrix-vector engines (`shift`, `dense`).

acc[m] = bias[m] + sum_d term(m, d), with U = hw.lanes output units and
T = hw.terms_per_cycle inputs per unit and cycle:

input beats -> gearbox (to words of T inputs) -> ping-pong input buffer
-> loop over groups g (outputs g*U .. g*U+U-1) and steps s (inputs s*T .. s*T+T-1):
   one weight word of U*T entries a cycle, U*T terms, an adder tree per unit,
   U accumulators -> rounding -> gearbox (to output beats).

A vector takes ceil(M / U) * ceil(D / T) cycles, the bound ceil(D*M / (U*T)) when U
divides M and T divides D. The input buffer has two banks: the gearbox fills one
while the loop reads the other, so input and computation overlap. What a term is
(a shift with a sign, a product) comes from a *term unit* object:

- `memories`: its weight memories (`weight_memory`), each laid out by
  `weight_word_layout`: the word at address g*S + s holds entry [g*U+u, s*T+t] in lane
  u*T + t (zero-padded past M and D), and held in block RAM;
- `weight_bounds()`: (lo, hi), the range of each effective integer weight in
  accumulator units, [M, D] arrays or scalars (ROM: the weights; RAM: anything
  loadable), so that accumulator widths cover every partial sum;
- `operands(m, x) -> list of values`: what the terms need of the T int8 inputs x,
  computed once and shared by the U units (the inputs themselves, or also their
  negations);
- `terms(m, words, operands) -> [U][T] values`: the terms of one cycle from the weight
  words read (one per memory, in order) and the operands.

With `pipeline`, the operands and the weight words are registered before the terms,
the terms before the adder trees, the tree sums before the accumulators, and the
final sums before rounding.
"""
import numpy as np
from amaranth import Module, Signal
from amaranth.hdl import signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from nomac.hw.engine import LAYER_PARAMETER, Engine, connect_memory_ports
from nomac.hw.engine_status import drive_status
from nomac.hw.group_loop import accumulate_and_emit, ping_pong_walk
from nomac.hw.lane_gearbox import LaneGearbox
from nomac.hw.memory_layout import MemoryLayout
from nomac.hw.parameter_memory import ParameterMemory
from nomac.hw.requantize import balanced_sum
from nomac.hw.vector_stream import beats_per_vector, vector_stream
from nomac.hw.widths import bias_memory_bits, prefix_sum_range, signed_bits

__all__ = ["INT8_LO", "INT8_HI", "BLOCK_RAM", "weight_word_layout", "weight_memory", "matrix_accumulator_bits",
           "MatrixVectorLoop", "MatrixVectorEngine"]

INT8_LO, INT8_HI = -128, 127
BLOCK_RAM = {"ram_style": "block", "rom_style": "block"}


def weight_word_layout(layer, name: str, array: str, lane_bits: int, signed: bool, offset: int = 0) -> MemoryLayout:
    """An [M, D] array as words of U*T entries: word g*S + s, lane u*T + t = array[g*U + u, s*T + t]."""
    D, M, U, T = layer.in_features, layer.out_features, layer.hw.lanes, layer.hw.terms_per_cycle
    G, S = layer.hw.groups(M), layer.hw.steps(D)
    return MemoryLayout(name, array, lanes=U * T, lane_bits=lane_bits, signed=signed, offset=offset,
                        pad=((0, G * U - M), (0, S * T - D)), reshape=(G, U, S, T), transpose=(0, 2, 1, 3))


def weight_memory(layer, name: str, array: np.ndarray, lane_bits: int, signed: bool, offset: int = 0):
    """A weight memory in `weight_word_layout`, ROM or RAM as the layer says, in block RAM.

    Left to itself, yosys builds ROMs of a few dozen words from LUTs, which costs an
    iCE40UP5K a sixth of its 5280 LUTs for a 32 x 32 layer; the attributes ask for
    block RAM (yosys memory_libmap, also Vivado), where the `lut` engine's tables land
    by their size anyway.
    """
    return ParameterMemory(weight_word_layout(layer, name, name, lane_bits, signed, offset), array,
                           layer.hw.memory == "ram", attrs=BLOCK_RAM)


def matrix_accumulator_bits(layer, weight_lo, weight_hi) -> int:
    """Width holding bias + every prefix of the per-cycle sums, in the loop's order (steps s).

    A term w * x with w in [weight_lo, weight_hi] and int8 x reaches its extremes at
    the corners; the sum of a step is bounded by the sum of its terms' bounds.
    """
    D, M, T = layer.in_features, layer.out_features, layer.hw.terms_per_cycle
    S = layer.hw.steps(D)
    lo = np.broadcast_to(np.asarray(weight_lo, dtype=object), (M, D))
    hi = np.broadcast_to(np.asarray(weight_hi, dtype=object), (M, D))
    corners = [w * x for w in (lo, hi) for x in (INT8_LO, INT8_HI)]
    term_lo, term_hi = np.minimum.reduce(corners), np.maximum.reduce(corners)
    pad = ((0, 0), (0, S * T - D))
    step_lo = np.pad(term_lo, pad).reshape(M, S, T).sum(axis=2).T          # [S, M]
    step_hi = np.pad(term_hi, pad).reshape(M, S, T).sum(axis=2).T
    if layer.hw.memory == "ram":
        limit = 1 << (layer.hw.bias_bits - 1)
        bias_lo, bias_hi = np.full(M, -limit), np.full(M, limit - 1)
    else:
        bias_lo = bias_hi = layer.bias.astype(np.int64)
    return signed_bits(*prefix_sum_range(bias_lo, bias_hi, step_lo, step_hi))


class MatrixVectorLoop(wiring.Component):
    """Input words of T int8 elements in (S per vector), results out in groups of U lanes (G per vector)."""

    def __init__(self, layer, term_unit):
        self.layer, self.term_unit = layer, term_unit
        hw = layer.hw
        U, T, M = hw.lanes, hw.terms_per_cycle, layer.out_features
        G = hw.groups(M)
        self.acc_bits = matrix_accumulator_bits(layer, *term_unit.weight_bounds())
        self.out_shape = signed(8) if layer.output == "int8" else signed(self.acc_bits)
        self.bias = ParameterMemory(
            MemoryLayout("bias", "bias", lanes=U, lane_bits=bias_memory_bits(layer), signed=True,
                         pad=((0, G * U - M),)),
            layer.bias, hw.memory == "ram")
        members = {"i": In(vector_stream(T, signed(8))), "o": Out(vector_stream(U, self.out_shape))}
        for mem in self.memories:
            members.update(mem.members())
        super().__init__(members)

    @property
    def memories(self) -> list[ParameterMemory]:
        return [*self.term_unit.memories, self.bias]

    @property
    def cycles_per_vector(self) -> int:
        hw = self.layer.hw
        return hw.groups(self.layer.out_features) * hw.steps(self.layer.in_features)

    def elaborate(self, platform):
        m = Module()
        layer, hw = self.layer, self.layer.hw
        U, T = hw.lanes, hw.terms_per_cycle
        G, S = hw.groups(layer.out_features), hw.steps(layer.in_features)
        bank_bits = (S - 1).bit_length()

        weights = [mem.build(m, self) for mem in self.term_unit.memories]
        bias = self.bias.build(m, self)
        m.submodules.inputs = inputs = memory.Memory(shape=unsigned(8 * T), depth=2 << bank_bits, init=[])
        input_write, input_read = inputs.write_port(), inputs.read_port()

        # Stage 0: walk (g, s) over the input words of a vector, g * S the group's weight base.
        walk = ping_pong_walk(m, self.i, self.o, input_write, input_read, data_in=self.i.payload.data.as_value(),
                              groups=G, steps=S, base_stride=S, step_name="s", ports=(*weights, bias))
        advance = walk.advance
        for port in weights:
            m.d.comb += port.addr.eq(walk.base + walk.step)

        # Control flags travel down the pipeline beside the data they describe.
        flags = {"valid": walk.running, "first": walk.step == 0, "final": walk.step_final, "last": walk.group_final,
                 "g": walk.group}
        stages = [flags]

        def next_stage(name):
            registered = {key: Signal.like(value, name=f"{key}_{name}") if isinstance(value, Signal)
                          else Signal(len(value), name=f"{key}_{name}") for key, value in stages[-1].items()}
            with m.If(advance):
                m.d.sync += [registered[key].eq(stages[-1][key]) for key in registered]
            stages.append(registered)

        # Stage 1: input word and weight words arrive; the operands, then the terms of this cycle.
        next_stage("read")
        x = data.ArrayLayout(signed(8), T)(input_read.data)
        operands = self.term_unit.operands(m, [x[t] for t in range(T)])
        words = [port.data for port in weights]
        if hw.pipeline:
            held = [Signal.like(value, name=f"operand_{i}") for i, value in enumerate(operands)]
            held_words = [Signal.like(word, name=f"word_{i}") for i, word in enumerate(words)]
            with m.If(advance):
                m.d.sync += [*(h.eq(v) for h, v in zip(held, operands)),
                             *(h.eq(w) for h, w in zip(held_words, words))]
            operands, words = held, held_words
            next_stage("operands")
        terms = self.term_unit.terms(m, words, operands)
        if hw.pipeline:
            held = [[Signal.like(term, name=f"term_{u}_{t}") for t, term in enumerate(row)]
                    for u, row in enumerate(terms)]
            with m.If(advance):
                m.d.sync += [held[u][t].eq(terms[u][t]) for u in range(U) for t in range(T)]
            terms = held
            next_stage("terms")
        partials = [balanced_sum(row) for row in terms]
        if hw.pipeline:
            held = [Signal.like(partial, name=f"partial_{u}") for u, partial in enumerate(partials)]
            with m.If(advance):
                m.d.sync += [held[u].eq(partials[u]) for u in range(U)]
            partials = held
            next_stage("partial")

        # Accumulate stage: the bias word was addressed by the stage before, so it arrives now.
        m.d.comb += bias.addr.eq(stages[-2]["g"])
        now = stages[-1]
        biases = data.ArrayLayout(signed(self.bias.layout.lane_bits), U)(bias.data)
        accumulate_and_emit(m, self.o, advance=advance, valid=now["valid"], first=now["first"], final=now["final"],
                            last=now["last"], starts=biases, addends=partials, acc_bits=self.acc_bits,
                            pipeline=hw.pipeline, out_shift=None if layer.output == "acc" else layer.out_shift,
                            flag_suffix="_sum")
        return m


class MatrixVectorEngine(Engine):
    __doc__ = Engine.doc_template.format(description="""
    What the `shift` and `dense` engines share: gearboxes around the `MatrixVectorLoop`,
    its memories and the status logic. A subclass names its term unit (`TermUnit`, a
    class built from the layer).
    """.strip(), parameters=LAYER_PARAMETER.format(layer="ShiftLayer or DenseLayer"), rule=': "ceil(D*M/(U*T))"',
        attributes="""
    loop : MatrixVectorLoop
    """.strip())

    TermUnit: type
    cycles_per_vector_bound_rule = "ceil(D*M/(U*T))"

    def __init__(self, layer):
        self.layer = layer
        self.loop = MatrixVectorLoop(layer, self.TermUnit(layer))
        super().__init__(layer, in_lanes=layer.hw.in_lanes, out_lanes=layer.hw.out_lanes, out_shape=self.loop.out_shape,
                         memories=self.loop.memories)

    @property
    def acc_bits(self) -> int:
        return self.loop.acc_bits

    @property
    def cycles_per_vector(self) -> int:
        """Steady-state interval between vectors: the slowest of input, loop and output."""
        layer, hw = self.layer, self.layer.hw
        return max(beats_per_vector(layer.in_features, hw.in_lanes), self.loop.cycles_per_vector,
                   beats_per_vector(layer.out_features, hw.out_lanes))

    @property
    def cycles_per_vector_bound(self) -> int:
        """ceil(D * M / (U * T)): D*M terms per vector, U*T of them a cycle."""
        layer, hw = self.layer, self.layer.hw
        return -(-layer.in_features * layer.out_features // (hw.lanes * hw.terms_per_cycle))

    def elaborate(self, platform):
        m = Module()
        layer, hw = self.layer, self.layer.hw
        m.submodules.gather = gather = LaneGearbox(layer.in_features, hw.in_lanes, hw.terms_per_cycle, signed(8))
        m.submodules.loop = self.loop
        m.submodules.scatter = scatter = LaneGearbox(layer.out_features, hw.lanes, hw.out_lanes, self.out_shape)
        connect(m, flipped(self.i), gather.i)
        connect(m, gather.o, self.loop.i)
        connect(m, self.loop.o, scatter.i)
        connect(m, scatter.o, flipped(self.o))
        connect_memory_ports(m, self, self.loop)
        drive_status(m, self, beats_per_vector(layer.in_features, hw.in_lanes), gather.misframed)
        return m
