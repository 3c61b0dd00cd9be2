"""Table lookup-accumulate of the `lut` kind: acc[m] = bias[m] + sum_c tables[c, code_c, m].

This is the part of MADDNESS / LUT-NN that replaces the multiply-accumulate array:
C table reads and C additions per output, no multiplier.
"""
from amaranth import Cat, Module, Signal
from amaranth.hdl import signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from nomac.hw.group_loop import accumulate_and_emit, ping_pong_walk
from nomac.hw.memory_layout import MemoryLayout
from nomac.hw.parameter_memory import ParameterMemory
from nomac.hw.vector_stream import beats_per_vector, vector_stream
from nomac.hw.widths import bias_memory_bits, lut_accumulator_bits

__all__ = ["LutAccumulator"]


class LutAccumulator(wiring.Component):
    """Codes in (a vector of C codes), results out in groups of R = `table_reads` lanes.

    The tables memory is one word of R entries of table_bits bits (outputs g*R .. g*R+R-1 of one table
    row) per address (g * C + c) * K + k, so the loop runs over groups g and, inside,
    over codebooks c, reading one word a cycle: C * ceil(M / R) cycles per vector and
    only R accumulators. Codes wait in two banks (ping-pong): the encoder fills one
    while the loop reads the other.
    """

    def __init__(self, layer):
        self.layer = layer
        C, K, M, R = layer.codebooks, layer.centroids, layer.out_features, layer.hw.table_reads
        G = beats_per_vector(M, R)
        writable = layer.hw.memory == "ram"
        self.acc_bits = lut_accumulator_bits(layer)
        self.out_shape = signed(8) if layer.output == "int8" else signed(self.acc_bits)
        self.tables = ParameterMemory(
            MemoryLayout("tables", "tables", lanes=R, lane_bits=layer.table_bits, signed=True,
                         pad=((0, 0), (0, 0), (0, G * R - M)), reshape=(C, K, G, R), transpose=(2, 0, 1, 3)),
            layer.tables, writable)
        self.bias = ParameterMemory(
            MemoryLayout("bias", "bias", lanes=R, lane_bits=bias_memory_bits(layer), signed=True,
                         pad=((0, G * R - M),)),
            layer.bias, writable)
        members = {"i": In(vector_stream(1, unsigned(K.bit_length() - 1))),
                   "o": Out(vector_stream(R, self.out_shape))}
        for mem in self.memories:
            members.update(mem.members())
        super().__init__(members)

    @property
    def memories(self) -> list[ParameterMemory]:
        return [self.tables, self.bias]

    @property
    def cycles_per_vector(self) -> int:
        return self.layer.codebooks * beats_per_vector(self.layer.out_features, self.layer.hw.table_reads)

    def elaborate(self, platform):
        m = Module()
        layer = self.layer
        C, K, M, R = layer.codebooks, layer.centroids, layer.out_features, layer.hw.table_reads
        G = beats_per_vector(M, R)
        code_bits = K.bit_length() - 1
        bank_bits = (C - 1).bit_length()

        tables = self.tables.build(m, self)
        bias = self.bias.build(m, self)
        m.submodules.codes = codes = memory.Memory(shape=unsigned(code_bits), depth=2 << bank_bits, init=[])
        code_write, code_read = codes.write_port(), codes.read_port()

        # Stage 0: walk (g, c) over the codes of a vector, g * C * K the group's table base.
        walk = ping_pong_walk(m, self.i, self.o, code_write, code_read, data_in=self.i.payload.data[0],
                              groups=G, steps=C, base_stride=C * K, step_name="c", ports=(tables, bias))
        advance = walk.advance

        # Stage 1: the code arrives; read the table word and the group's bias.
        valid1, first1, final1, last1 = Signal(), Signal(), Signal(), Signal()
        c1, g1, base1 = Signal(range(C)), Signal(range(G)), Signal(range(G * C * K))
        with m.If(advance):
            m.d.sync += [valid1.eq(walk.running), first1.eq(walk.step == 0), final1.eq(walk.step_final),
                         last1.eq(walk.group_final), c1.eq(walk.step), g1.eq(walk.group), base1.eq(walk.base)]
        m.d.comb += [tables.addr.eq(base1 + Cat(code_read.data, c1)),   # base + c * K + code
                     bias.addr.eq(g1)]

        # Stage 2: accumulate R lanes; the group is complete after codebook C - 1.
        valid2, first2, final2, last2 = Signal(), Signal(), Signal(), Signal()
        with m.If(advance):
            m.d.sync += [valid2.eq(valid1), first2.eq(first1), final2.eq(final1), last2.eq(last1)]
        entries = data.ArrayLayout(signed(layer.table_bits), R)(tables.data)
        biases = data.ArrayLayout(signed(self.bias.layout.lane_bits), R)(bias.data)
        accumulate_and_emit(m, self.o, advance=advance, valid=valid2, first=first2, final=final2, last=last2,
                            starts=biases, addends=entries, acc_bits=self.acc_bits, pipeline=layer.hw.pipeline,
                            out_shift=None if layer.output == "acc" else layer.out_shift, flag_suffix="3")
        return m
