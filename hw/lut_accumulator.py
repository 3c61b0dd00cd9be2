"""Table lookup-accumulate of the `lut` kind: acc[m] = bias[m] + sum_c tables[c, code_c, m].

This is the part of MADDNESS / LUT-NN that replaces the multiply-accumulate array:
C table reads and C additions per output, no multiplier.
"""
from amaranth import Cat, Module, Mux, Signal
from amaranth.hdl import signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from nomac.hw.memory_layout import MemoryLayout
from nomac.hw.parameter_memory import ParameterMemory
from nomac.hw.requantize import requantize
from nomac.hw.vector_stream import beats_per_vector, vector_stream
from nomac.hw.widths import bias_memory_bits, lut_accumulator_bits


class LutAccumulator(wiring.Component):
    """Codes in (a vector of C codes), results out in groups of R = `table_reads` lanes.

    The tables memory is one word of R entries (outputs g*R .. g*R+R-1 of one table
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
            MemoryLayout("tables", "tables", lanes=R, lane_bits=8, signed=True,
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

        # Write side: fill bank `fill` with the C codes of a vector, then mark it full.
        full = [Signal(name="full0"), Signal(name="full1")]
        fill, fill_c = Signal(), Signal(range(C))
        code_fire = self.i.valid & self.i.ready
        m.d.comb += [self.i.ready.eq(Mux(fill, full[1], full[0]) == 0),
                     code_write.addr.eq(Cat(fill_c, fill)),
                     code_write.data.eq(self.i.payload.data[0]),
                     code_write.en.eq(code_fire)]
        fill_done = code_fire & (fill_c == C - 1)
        with m.If(code_fire):
            m.d.sync += fill_c.eq(Mux(fill_done, 0, fill_c + 1))
            with m.If(fill_done):
                m.d.sync += fill.eq(~fill)

        # Loop stage 0: walk (g, c) over the bank `drain` once it is full.
        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)
        for port in (code_read, tables, bias):
            m.d.comb += port.en.eq(advance)
        drain = Signal()
        g, c = Signal(range(G)), Signal(range(C))
        base = Signal(range(G * C * K))                   # g * C * K, kept by increments
        running = Mux(drain, full[1], full[0])
        c_final, g_final = c == C - 1, g == G - 1
        m.d.comb += code_read.addr.eq(Cat(c, drain))
        release = advance & running & c_final & g_final
        for bank in (0, 1):
            with m.If(fill_done & (fill == bank)):
                m.d.sync += full[bank].eq(1)
            with m.Elif(release & (drain == bank)):
                m.d.sync += full[bank].eq(0)
        with m.If(advance & running):
            m.d.sync += c.eq(Mux(c_final, 0, c + 1))
            with m.If(c_final):
                m.d.sync += [g.eq(Mux(g_final, 0, g + 1)), base.eq(Mux(g_final, 0, base + C * K))]
            with m.If(c_final & g_final):
                m.d.sync += drain.eq(~drain)

        # Stage 1: the code arrives; read the table word and the group's bias.
        valid1, first1, final1, last1 = Signal(), Signal(), Signal(), Signal()
        c1, g1, base1 = Signal(range(C)), Signal(range(G)), Signal(range(G * C * K))
        with m.If(advance):
            m.d.sync += [valid1.eq(running), first1.eq(c == 0), final1.eq(c_final), last1.eq(g_final),
                         c1.eq(c), g1.eq(g), base1.eq(base)]
        m.d.comb += [tables.addr.eq(base1 + Cat(code_read.data, c1)),   # base + c * K + code
                     bias.addr.eq(g1)]

        # Stage 2: accumulate R lanes; the group is complete after codebook C - 1.
        valid2, first2, final2, last2 = Signal(), Signal(), Signal(), Signal()
        with m.If(advance):
            m.d.sync += [valid2.eq(valid1), first2.eq(first1), final2.eq(final1), last2.eq(last1)]
        entries = data.ArrayLayout(signed(8), R)(tables.data)
        biases = data.ArrayLayout(signed(self.bias.layout.lane_bits), R)(bias.data)
        acc = Signal(data.ArrayLayout(signed(self.acc_bits), R))
        sums = [Mux(first2, biases[r], acc[r]) + entries[r] for r in range(R)]
        with m.If(advance & valid2):
            m.d.sync += [acc[r].eq(sums[r]) for r in range(R)]

        done, done_last = valid2 & final2, last2
        if layer.hw.pipeline:                     # register the sums before rounding
            registered = Signal(data.ArrayLayout(signed(self.acc_bits), R))
            valid3, last3 = Signal(), Signal()
            with m.If(advance):
                m.d.sync += [valid3.eq(done), last3.eq(done_last),
                             *(registered[r].eq(sums[r]) for r in range(R))]
            sums = [registered[r] for r in range(R)]
            done, done_last = valid3, last3

        with m.If(advance):
            m.d.sync += self.o.valid.eq(done)
            with m.If(done):
                m.d.sync += self.o.payload.last.eq(done_last)
                for r in range(R):
                    value = sums[r] if layer.output == "acc" else requantize(sums[r], layer.out_shift)
                    m.d.sync += self.o.payload.data[r].eq(value)
        return m
