"""The `layernorm` engine: integer LayerNorm over a row of E values (docs/spec.md section 13.3).

The spec's route, Q = sum (E*x - S)^2 and then floor(Q * 4^G / E), needs a second
pass and a divider by E. With S = sum x and P = sum x^2 the same number is cheaper:
Q = E * (E*P - S^2), so floor(Q * 4^G / E) = V << 2G exactly, with V = E*P - S^2
(= sum over pairs i < j of (x_i - x_j)^2). One pass gathers S and P; E*P is a
multiply by the constant E and S*S one multiply a row.

Three stages, each on its own row, so row n+1 comes in while row n is in its square
root and reciprocal and row n-1 goes out:

  in      L elements a cycle: a beat is held one cycle while x*x is read from a
          256-entry table in block RAM (one per lane; the UP5K's 8 DSPs are kept
          for S*S, d * inv and n * weight), then S and P accumulate and the beat is
          written into a 3-slot ring buffer (block RAM, L elements a word).
  stats   V from the finished S and P, r = isqrt(V << 2G) (`Isqrt`) and then
          inv = floor(2^32 / r) (`Reciprocal`), k bits a cycle each (k = 1 or 2,
          the fewest that keep the stage within E/L cycles where possible).
  out     L elements a cycle, a lock-step pipeline that advances on
          `~out_valid | o.ready`: read the row buffer; d = E*x - S,
          n = rshift_round(d * inv, 32 - 2G) (weight and bias are read meanwhile);
          y = sat8(rshift_round(n * weight + bias, out_shift)).

r = 0 only for a row of equal values, where every d is 0: the reciprocal's
all-ones answer for a divisor of 0 is multiplied by 0, so n = 0 needs no special
case (and y = sat8(rshift_round(bias, out_shift)), as the spec says).

Widths come from the layer's E and G (`LayerNormWidths`); at the tiny ViT's E = 32,
G = 7: S 13 bits signed, P 20, V 24, V << 2G 38, r 19, inv 23 (unsigned), d 14
signed, d * inv 37 signed, n 11 signed, n * weight + bias 33 signed.

Throughput: a stage hands its row on when the next is free (the stats stage frees
the cycle after the out stage took its result), so a row every
max(E/L, isqrt cycles + reciprocal cycles + 1) cycles.
"""
from dataclasses import dataclass
from math import isqrt

from amaranth import Cat, Module, Mux, Shape, Signal
from amaranth.hdl import signed, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from nomac.hw.constant_multiply import constant_multiply
from nomac.hw.engine import LAYER_PARAMETER
from nomac.hw.matrix_vector_engine import BLOCK_RAM
from nomac.hw.memory_layout import MemoryLayout
from nomac.hw.operators.isqrt import Isqrt
from nomac.hw.operators.operator_engine import OperatorEngine
from nomac.hw.operators.reciprocal import Reciprocal
from nomac.hw.parameter_memory import ParameterMemory
from nomac.hw.requantize import balanced_sum, requantize
from nomac.hw.vector_stream import vector_stream

__all__ = ["LayerNormWidths", "LayerNormCore", "LayerNormEngine"]

RECIPROCAL_BITS = 32          # inv = floor(2^32 / r)


def _range_shape(lo: int, hi: int) -> Shape:
    return Shape.cast(range(lo, hi + 1))


@dataclass(frozen=True)
class LayerNormWidths:
    """Register widths from the bounds of a layer's E and G (every x in [-128, 127]).

    |S| <= 128E. P <= 2^14 E. V = sum over pairs of (x_i - x_j)^2 is largest with
    half the row at -128 and half at 127: floor(E/2) * ceil(E/2) * 255^2. r <= isqrt(V_max << 2G).
    The smallest non-zero V is E - 1 (one element off by one), so r >= r_min =
    isqrt((E-1) << 2G) and inv <= 2^32 // r_min. |d| <= 255 (E-1). By Cauchy-Schwarz
    d^2 <= (E-1) V, and 2^G sqrt(V) < r + 1, so |n| < sqrt(E-1) 2^G (1 + 1/r_min) + 1/2
    <= (r_min + 1)^2 / r_min + 1/2.
    """
    sum: Shape
    squares: Shape
    variance: Shape
    radicand_bits: int
    root_bits: int
    inv: Shape
    deviation: Shape
    product: Shape
    normalized: Shape
    output_acc: Shape

    @classmethod
    def of(cls, E: int, G: int) -> "LayerNormWidths":
        variance_max = (E // 2) * ((E + 1) // 2) * 255 ** 2
        radicand_max = variance_max << (2 * G)
        r_min = isqrt((E - 1) << (2 * G))
        inv_max = (1 << RECIPROCAL_BITS) // r_min
        deviation_max = 255 * (E - 1)
        normalized_max = -(-(r_min + 1) ** 2 // r_min) + 1
        product_max = deviation_max * inv_max
        acc_max = normalized_max * (1 << 15) + (1 << 31)
        return cls(sum=_range_shape(-128 * E, 127 * E), squares=_range_shape(0, (1 << 14) * E),
                   variance=_range_shape(0, variance_max), radicand_bits=radicand_max.bit_length(),
                   root_bits=isqrt(radicand_max).bit_length(), inv=_range_shape(0, inv_max),
                   deviation=_range_shape(-deviation_max, deviation_max),
                   product=_range_shape(-product_max, product_max),
                   normalized=_range_shape(-normalized_max, normalized_max),
                   output_acc=_range_shape(-acc_max, acc_max))

    @property
    def widest(self) -> int:
        return max(self.radicand_bits, self.product.width, self.output_acc.width)


def _stats_units(widths: LayerNormWidths, beats: int) -> tuple[Isqrt, Reciprocal]:
    """The square root and reciprocal units: the fewest bits a cycle that keep the stats
    stage (both in turn, plus the cycle of the hand-over) within `beats` cycles, else 2 and 2.
    The cycle counts are the units' own `cycles` (without building units that go unused)."""
    inv_bits = widths.inv.width          # r >= r_min > 2^(32 - inv_bits): only those quotient bits
    for sqrt_k, recip_k in ((1, 1), (1, 2), (2, 2)):
        sqrt_cycles = 1 + -(-widths.root_bits // sqrt_k)
        if sqrt_cycles + Reciprocal.cycles_for(recip_k, inv_bits) + 1 <= beats:
            break
    return Isqrt(widths.radicand_bits, sqrt_k), Reciprocal(widths.root_bits, RECIPROCAL_BITS, recip_k, inv_bits)


class LayerNormCore(wiring.Component):
    """Rows of E int8 values in beats of L, their LayerNorm out; a row in each stage."""

    # a row in each of in, stats and out, the beat held at the input of the next, and
    # beats of up to three earlier rows in the out pipeline's three stages
    max_in_flight = 7
    cycles_per_vector_bound_rule = "E/L"

    def __init__(self, layer):
        self.layer = layer
        L = layer.hw.lanes
        self.in_lanes = self.out_lanes = L
        self.beats = layer.features // L
        self.widths = LayerNormWidths.of(layer.features, layer.norm_bits)
        ram = layer.hw.memory == "ram"
        self.weight = ParameterMemory(MemoryLayout("weight", "weight", lanes=L, lane_bits=16, signed=True),
                                      layer.weight, ram, attrs=BLOCK_RAM)
        self.bias = ParameterMemory(MemoryLayout("bias", "bias", lanes=L, lane_bits=32, signed=True),
                                    layer.bias, ram, attrs=BLOCK_RAM)
        self.memories = [self.weight, self.bias]
        self.sqrt, self.reciprocal = _stats_units(self.widths, self.beats)
        super().__init__({"i": In(vector_stream(L, signed(8))),
                          "o": Out(vector_stream(L, signed(8))),
                          **self.weight.members(), **self.bias.members()})

    acc_bits = property(lambda self: self.widths.widest,
                        doc="The widest intermediate: V << 2G, d * inv or n * weight + bias")

    @property
    def stats_cycles(self) -> int:
        """Cycles from the stats stage taking a row to taking the next, when it is the slowest."""
        return self.sqrt.cycles + self.reciprocal.cycles + 1

    @property
    def cycles_per_vector(self) -> int:
        return max(self.beats, self.stats_cycles)

    cycles_per_vector_bound = property(lambda self: self.beats,
                                       doc="E / L: every element read in and written out once, L a cycle")

    def elaborate(self, platform):
        m = Module()
        layer, widths, L, beats = self.layer, self.widths, self.in_lanes, self.beats
        E, G = layer.features, layer.norm_bits
        shift = RECIPROCAL_BITS - 2 * G

        def next_slot(base):
            return Mux(base == 2 * beats, 0, base + beats)

        m.submodules.row_buffer = row_buffer = memory.Memory(shape=unsigned(8 * L), depth=3 * beats, init=[],
                                                             attrs=BLOCK_RAM)
        buffer_write, buffer_read = row_buffer.write_port(), row_buffer.read_port()
        m.submodules.isqrt = sqrt = self.sqrt
        m.submodules.reciprocal = reciprocal = self.reciprocal

        # in: a beat is held while its squares are read from the table, then added to S and P
        # and written into the row buffer; `in_full` holds a finished row until stats takes it
        m.submodules.square_table = square_table = memory.Memory(
            shape=unsigned(15), depth=256, init=[(code - 128) ** 2 for code in range(256)], attrs=BLOCK_RAM)
        square_ports = [square_table.read_port() for _ in range(L)]
        held_valid, held_last, held = Signal(), Signal(), Signal(self.i.payload.data.shape())
        in_full, in_beat, in_base = Signal(), Signal(range(beats)), Signal(range(3 * beats))
        row_sum, row_squares = Signal(widths.sum), Signal(widths.squares)
        stats_busy = Signal()
        stats_take = in_full & ~stats_busy
        adds = held_valid & (~in_full | stats_take)
        take_beat = ~held_valid | adds
        m.d.comb += self.i.ready.eq(take_beat)
        with m.If(take_beat):
            m.d.sync += [held_valid.eq(self.i.valid), held_last.eq(self.i.payload.last),
                         held.eq(self.i.payload.data)]
        for lane, port in enumerate(square_ports):
            m.d.comb += [port.addr.eq(self.i.payload.data[lane].as_unsigned() ^ 0x80), port.en.eq(take_beat)]
        first = in_beat == 0
        m.d.comb += [buffer_write.addr.eq(in_base + in_beat), buffer_write.data.eq(held.as_value()),
                     buffer_write.en.eq(adds)]
        with m.If(adds):
            m.d.sync += [row_sum.eq(Mux(first, 0, row_sum) + balanced_sum([held[l] for l in range(L)])),
                         row_squares.eq(Mux(first, 0, row_squares) + balanced_sum([p.data for p in square_ports]))]
            with m.If(held_last):
                m.d.sync += [in_beat.eq(0), in_base.eq(next_slot(in_base))]
            with m.Else():
                m.d.sync += in_beat.eq(in_beat + 1)
        with m.If(adds & held_last):
            m.d.sync += in_full.eq(1)
        with m.Elif(stats_take):
            m.d.sync += in_full.eq(0)

        # stats: V = E*P - S^2, r = isqrt(V << 2G), then inv = floor(2^32 / r)
        variance = Signal(widths.variance)
        stats_sum, stats_holding = Signal(widths.sum), Signal()
        m.d.comb += [variance.eq(constant_multiply(row_squares, E) - row_sum * row_sum),
                     sqrt.start.eq(stats_take), sqrt.radicand.eq(variance << (2 * G)),
                     reciprocal.start.eq(sqrt.done), reciprocal.divisor.eq(sqrt.root)]
        stats_ready = reciprocal.done | stats_holding

        # out: issue the row's beats; read buffer (stage 1), n (stage 2), y (output register)
        out_valid = Signal()
        advance = ~out_valid | self.o.ready
        out_row, out_beat, out_base = Signal(), Signal(range(beats)), Signal(range(3 * beats), init=2 * beats)
        out_sum, out_inv = Signal(widths.sum), Signal(widths.inv)
        final_beat = out_beat == beats - 1
        out_take = stats_ready & (~out_row | (advance & final_beat))

        with m.If(stats_take):
            m.d.sync += [stats_busy.eq(1), stats_sum.eq(row_sum)]
        with m.If(out_take):
            m.d.sync += [stats_busy.eq(0), stats_holding.eq(0)]
        with m.Elif(reciprocal.done):
            m.d.sync += stats_holding.eq(1)

        with m.If(out_take):
            m.d.sync += [out_row.eq(1), out_beat.eq(0), out_base.eq(next_slot(out_base)),
                         out_sum.eq(stats_sum), out_inv.eq(reciprocal.quotient)]
        with m.Elif(advance & out_row):
            with m.If(final_beat):
                m.d.sync += out_row.eq(0)
            with m.Else():
                m.d.sync += out_beat.eq(out_beat + 1)
        m.d.comb += [buffer_read.addr.eq(out_base + out_beat), buffer_read.en.eq(advance)]

        read_valid, read_last, read_beat = Signal(), Signal(), Signal(range(beats))
        read_sum, read_inv = Signal(widths.sum), Signal(widths.inv)
        with m.If(advance):
            m.d.sync += [read_valid.eq(out_row), read_last.eq(final_beat), read_beat.eq(out_beat),
                         read_sum.eq(out_sum), read_inv.eq(out_inv)]
        normalized = [Signal(widths.normalized, name=f"normalized_{l}") for l in range(L)]
        norm_valid, norm_last = Signal(), Signal()
        with m.If(advance):
            m.d.sync += [norm_valid.eq(read_valid), norm_last.eq(read_last)]
        for l in range(L):
            deviation = Signal(widths.deviation, name=f"deviation_{l}")
            product = Signal(widths.product, name=f"product_{l}")
            m.d.comb += [deviation.eq(constant_multiply(buffer_read.data[8 * l:8 * l + 8].as_signed(), E) - read_sum),
                         product.eq(deviation * read_inv)]
            with m.If(advance):
                m.d.sync += normalized[l].eq((product + (1 << (shift - 1))) >> shift)

        weight_port, bias_port = self.weight.build(m, self), self.bias.build(m, self)
        m.d.comb += [weight_port.addr.eq(read_beat), weight_port.en.eq(advance),
                     bias_port.addr.eq(read_beat), bias_port.en.eq(advance)]
        outputs = [Signal(signed(8), name=f"y_{l}") for l in range(L)]
        out_last = Signal()
        with m.If(advance):
            m.d.sync += [out_valid.eq(norm_valid), out_last.eq(norm_last)]
        for l in range(L):
            acc = Signal(widths.output_acc, name=f"acc_{l}")
            m.d.comb += acc.eq(normalized[l] * weight_port.data[16 * l:16 * l + 16].as_signed() +
                               bias_port.data[32 * l:32 * l + 32].as_signed())
            with m.If(advance):
                m.d.sync += outputs[l].eq(requantize(acc, layer.out_shift))
        m.d.comb += [self.o.valid.eq(out_valid), self.o.payload.last.eq(out_last),
                     self.o.payload.data.eq(Cat(outputs))]
        return m


class LayerNormEngine(OperatorEngine):
    __doc__ = OperatorEngine.doc_template.format(
        description="A `layernorm` layer: hw.lanes elements a cycle in and out, three rows in flight.",
        parameters=LAYER_PARAMETER.format(layer="LayerNormLayer"), rule=': "E/L"', attributes="")
    Core = LayerNormCore
