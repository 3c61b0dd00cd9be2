"""The `layernorm` unit: integer LayerNorm of `rows` rows of E int8 values (docs/spec.md
sections 13.3 and 16), E, G and out_shift given at run time.

Arithmetic. As in the operator engine (hw/operators/layernorm.py, spec section 13.10),
Q = sum (E*x - S)^2 = E * V with V = E*P - S^2 (S = sum x, P = sum x^2), so r =
isqrt(floor(Q * 4^G / E)) = isqrt(V * 4^G) and the only division is 2^32 / r. V is
gathered without E*P or S^2: with S' the sum of the row's elements before x, the terms
x * (E*x - x - 2*S') add up to E*P - S^2 (sum (x^2 + 2 x S') = S^2, telescoping). E*x,
which the out stage needs for d = E*x - S anyway, is made once, on the network's shared
multiplier (an int8 times E, spec 16.4), and kept in the row buffer instead of x.

Three rows are in flight, each in its own stage, so row n+1 comes in while row n is in
its statistics and row n-1 goes out (a row buffer of E*x in block RAM, 4 slots):

  in     one element a cycle: E*x goes into the row buffer as x is taken, x and E*x - x
         are held a cycle, then S and V take their terms. A row's last element waits
         (and the input with it) until the statistics are idle; its add hands S and V to
         them and starts the sums again from 0.
  stats  r = isqrt(V * 4^G) by shift-subtract, two pairs of the radicand a cycle (V's
         pairs, then G zero pairs, behind a leading zero pair when they are an odd count),
         the second step made for both outcomes of the first beside it (a second step in
         series would cost the clock period), then inv = floor(2^32 / r) by restoring
         division, 2 quotient bits a cycle (two steps in series), over the quotient's
         possible bits only: c = 16 - m cycles from remainder 4^m, m = floor((bits of r -
         2) / 2), as r > 4^m. m is the root cycles left after the last one that starts
         from r <= 1 (no comparators), and the quotient register starts as 4^m too, so
         the division's last cycle is the one with that bit at 2^30. That last cycle waits
         for the out stage, which takes its quotient straight into the input registers of
         the DSP blocks of d * inv.
  out    a lock-step pipeline that advances on `~o.valid | o.ready`: issue (row buffer
         read) -> d = E*x - S, n = rshift_round(d * inv, 32 - 2G) -> o: the unit output
         acc = n * weight + bias at shift out_shift (the engine's one requantizer makes
         sat8(rshift_round(acc, out_shift)), spec 16.4); the word of weight and bias is read
         while n is made. A row's element 0 is issued in the division's last cycle.

Rows stream one an E cycles, so a step takes rows*E plus one latency: E cycles in, the
statistics (of the last row) and 2 out. The statistics take 18 to 20 cycles a row at the
tiny ViT's shape, fewer than E = 32, so they keep up. V = 0 (a row of equal values, r = 0)
needs no case in the arithmetic: every d = 0 and the division's meaningless quotient is
multiplied by 0 (spec 13.3, step 4); the division then takes one cycle. Registers that
only feed a DSP block (inv, n) have no reset, so that they are the block's own.

Multipliers (`nomac.hw.multiplier_count`): 3 of the unit's own, x times the cross term (8 x
15 bits signed at E <= 32, 1 DSP of 16 x 16), d * inv (14 bits signed x 32 unsigned, 2
DSPs) and n * weight (12 x 16 signed, 1 DSP); E*x is on the shared multiplier. The adds of
V's terms and of the bias are the DSP blocks' own adders (a product at its natural width
lets Yosys put the add after it into the block).

Table memory: one word per feature e at table_base + e, weight[e] (int16) in bits 0..15
and bias[e] (int32) in bits 32..63: one read per output element, so no register keeps
a word for later elements (E words, against 0.75 E packed four weights or two biases a
word).

Timetable, no stalls, in clock edges after the one that takes `start` (n_s =
`root_cycles`(pairs, G), n_q = `quotient_cycles`(r)): element j of the step is taken at edge
j + 1; row k's statistics start at S_k = max((k+1)E + 1, I_(k-1) + 1) (its last add, or
the edge after row k-1 leaves the statistics) and its element 0 is issued at I_k = max(S_k
+ n_s + n_q, I_(k-1) + E), the others one an edge; an element is taken 2 edges after its
issue. While S_k = (k+1)E + 1 for every row (the statistics keep up, as at E = 32), the
step takes I_(rows-1) + E + 1 cycles. At E = 32, G = 7 the trained tiny ViTs' rows have r of
14 to 18 bits: n_s = 10 and n_q = 10 (r of 14 or 15 bits), 9 (16 or 17) or 8 (18), so 17 rows
take 596 to 598 cycles (bound 544: up to 9.9 % over) and 1 row 84 to 86 (bound 32).
"""
from dataclasses import dataclass
from functools import cache

from amaranth import Cat, Const, Module, Mux, Shape, Signal
from amaranth.hdl import signed
from amaranth.lib import wiring

from nomac.base.errors import ConfigError
from nomac.hw.buffer_memory import BufferMemory
from nomac.hw.network.unit import Field, LimitError, UnitSignature, UnitStep, params_layout
from nomac.hw.operators.layernorm import LayerNormWidths
from nomac.model.operator_layers import MAX_NORM_BITS

__all__ = ["FIELDS", "LayerNormUnitWidths", "LayerNormUnit", "layernorm_step", "root_cycles", "quotient_cycles"]

FIELDS = (Field("rows", 16), Field("features", 16), Field("norm_bits", 4), Field("out_shift", 6),
          Field("table_base", 16))

RECIPROCAL_BITS = 32            # inv = floor(2^32 / r), docs/spec.md section 13.3 step 4
QUOTIENT_BITS_PER_CYCLE = 2     # restoring steps a cycle
MAX_QUOTIENT_CYCLES = RECIPROCAL_BITS // QUOTIENT_BITS_PER_CYCLE    # r >= 2: inv <= 2^31 has 32 bits
ROOT_PAIRS_PER_CYCLE = 2        # shift-subtract steps of the root a cycle
SLOTS = 4                       # rows in the row buffer: in, stats, out and a spare (slots count mod 4)
WEIGHT_BITS, BIAS_LANE = 16, 32       # weight in bits 0..15 of a feature's word, bias in 32..63


def _range(lo: int, hi: int) -> Shape:
    return Shape.cast(range(lo, hi + 1))


def _widest(shapes) -> Shape:
    shapes = list(shapes)
    return Shape(max(s.width for s in shapes), shapes[0].signed)


@dataclass(frozen=True)
class LayerNormUnitWidths:
    """Register widths for every layer within the limits (E up to model_features, G up to 8).

    The operator engine's bounds (`LayerNormWidths`, at their widest over E and G) size
    S, V, r, inv, d, d * inv and n. The in stage's own: E*x; the cross term c = E*x - x -
    2*S' (S' the sum before x: |S'| <= 128 (E-1), so -382 (E-1) <= c <= 383 (E-1)); the
    partial sums of V, E*P' - S'^2 in 0..E*P' <= E^2 2^14 (Cauchy-Schwarz). The
    out stage's n * weight + bias: |n| < 2^(n bits - 1), |weight| <= 2^15, bias in int32.
    """
    sum: Shape
    scaled: Shape
    cross: Shape
    partial_variance: Shape
    variance: Shape
    root_bits: int
    inv: Shape
    deviation: Shape
    product: Shape
    normalized: Shape
    output_acc: Shape

    @classmethod
    @cache
    def of(cls, limits) -> "LayerNormUnitWidths":
        E = limits.model_features
        each = [LayerNormWidths.of(features, G) for features in range(2, E + 1) for G in range(1, MAX_NORM_BITS + 1)]
        widest = {name: _widest(getattr(w, name) for w in each)
                  for name in ("sum", "variance", "inv", "deviation", "product", "normalized")}
        acc_max = (1 << (widest["normalized"].width - 1)) * (1 << (WEIGHT_BITS - 1)) + (1 << 31)
        return cls(**widest, scaled=_range(-128 * E, 127 * E), cross=_range(-382 * (E - 1), 383 * (E - 1)),
                   partial_variance=_range(0, E * E << 14), root_bits=max(w.root_bits for w in each),
                   output_acc=_range(-acc_max, acc_max))

    @property
    def variance_pairs(self) -> int:
        return -(-self.variance.width // 2)


def root_cycles(variance_pairs: int, norm_bits: int) -> int:
    """Cycles of r = isqrt(V * 4^G), two pairs of the radicand a cycle: V's pairs and G zero
    pairs, behind a leading zero pair when they are an odd count."""
    return (variance_pairs + norm_bits + 1) // ROOT_PAIRS_PER_CYCLE


def quotient_cycles(root: int) -> int:
    """Cycles of inv = floor(2^32 / r), 2 quotient bits a cycle: 16 - m for r >= 2 with m =
    floor((bits of r - 2) / 2) (the quotient has at most 32 - 2m bits, as r > 4^m), and 1
    for r = 0 (V = 0: the quotient is multiplied by d = 0)."""
    if root == 0:
        return 1
    return MAX_QUOTIENT_CYCLES - (root.bit_length() - 2) // 2


def layernorm_step(layer, rows: int, table_base: int, limits) -> UnitStep:
    """`rows` rows of the layer's E features: every element read in and written out once."""
    E = layer.features
    if rows < 1:
        raise ConfigError(f"layer '{layer.name}'", "rows", rows, "a step has at least one row")
    for what, value, limit in (("rows", rows, limits.tokens), ("features", E, limits.model_features),
                               ("norm_bits", layer.norm_bits, MAX_NORM_BITS),
                               ("table_base", table_base, (1 << 16) - 1),
                               ("table_base + weight/bias words", table_base + E, limits.table_words)):
        if value > limit:
            raise LimitError(layer.name, what, value, limit)
    table_words = [(int(w) & 0xFFFF) | (int(b) & 0xFFFF_FFFF) << BIAS_LANE for w, b in zip(layer.weight, layer.bias)]
    params = {"rows": rows, "features": E, "norm_bits": layer.norm_bits, "out_shift": layer.out_shift,
              "table_base": table_base}
    return UnitStep(params, table_words, rows * E, rows * E, rows * E, "rows*E")


def _difference(minuend, subtrahend_complement):
    """minuend - subtrahend with the borrow as its top bit, from the subtrahend's complement ~b:
    a + ~b + 1 on one carry chain, with no inverter in front of it."""
    width = max(len(minuend), len(subtrahend_complement)) + 1
    ones = Const(-1, width - len(subtrahend_complement))
    return (minuend + Cat(subtrahend_complement, ones) + 1)[:width]


def _window(value, pairs, width: int):
    """value >> 2 * pairs in `width` bits, by levels that keep only the bits later levels still
    need (a general shifter would shift every bit of value)."""
    bits = list(value)
    for level in reversed(range(len(pairs))):
        step, kept = 2 << level, width + (2 << level) - 2
        bits = [Mux(pairs[level], bits[j + step] if j + step < len(bits) else bits[-1], bits[j])
                for j in range(min(kept, len(bits)))]
    return Cat(*bits[:width])


class LayerNormUnit(wiring.Component):
    """A layernorm step: rows of E int8 values in, their LayerNorm out; see the module docstring."""

    def __init__(self, limits):
        self.limits = limits
        self.widths = LayerNormUnitWidths.of(limits)
        super().__init__(UnitSignature(params_layout(FIELDS), limits, multiplier=True,
                                       acc_bits=self.widths.output_acc.width))

    def elaborate(self, platform):
        m = Module()
        p, w = self.params, self.widths
        E_max = self.limits.model_features
        index_bits = (E_max - 1).bit_length()
        E = p.features[:E_max.bit_length()]
        G = p.norm_bits
        rows_shape = range(self.limits.tokens + 1)
        pairs = w.variance_pairs

        # the step's constants, decoded from params (held from start to done) into registers
        last_index = Signal(range(E_max))
        norm_pairs = Signal(range(MAX_NORM_BITS))   # the product's shift beyond 2^(31 - 2 * MAX_NORM_BITS), in pairs
        m.d.sync += [last_index.eq(E - 1), norm_pairs.eq(MAX_NORM_BITS - G)]

        # No used read meets its write: the in stage writes the slot of the row it takes, the out
        # stage reads that of the row it issues (or, at out_take, the statistics' row), and the
        # in stage is at most two rows ahead of the out stage (a row's last element waits for
        # the statistics, which wait for the out stage), so the two slots differ mod 4.
        m.submodules.row_buffer = row_buffer = BufferMemory(shape=w.scaled, depth=SLOTS << index_bits)
        buffer_write, buffer_read = row_buffer.write, row_buffer.read

        # in: take an element, write E*x (made beside it on the shared multiplier) into the row
        # buffer and hold x and E*x - x; a cycle later add x to S and its term to V. A row's last
        # element waits until the statistics are free, then S and V go to them and the sums restart
        # from 0.
        take_rows = Signal(rows_shape)              # rows of the step not yet taken in full
        take_index, take_slot = Signal(range(E_max)), Signal(range(SLOTS))
        held, held_valid, held_last = Signal(signed(8)), Signal(), Signal()
        held_cross = Signal(w.cross)                # E*x - x, the cross term before - 2 S'
        row_sum, row_variance = Signal(w.sum), Signal(w.partial_variance)
        IDLE, ROOT, QUOTIENT = range(3)
        phase = Signal(range(3))
        adds = held_valid & (~held_last | (phase == IDLE))
        stats_take = adds & held_last
        take_next = ~held_valid | adds
        take = self.i.valid & self.i.ready
        scaled = self.multiplier.p[:w.scaled.width].as_signed()
        m.d.comb += [self.i.ready.eq((take_rows != 0) & take_next),
                     self.multiplier.a.eq(self.i.payload), self.multiplier.b.eq(E),
                     buffer_write.addr.eq(Cat(take_index, take_slot)), buffer_write.data.eq(scaled),
                     buffer_write.en.eq(take)]
        with m.If(take_next):
            m.d.sync += [held_valid.eq(take), held.eq(self.i.payload), held_cross.eq(scaled - self.i.payload),
                         held_last.eq(take_index == last_index)]
        with m.If(take):
            with m.If(take_index == last_index):
                m.d.sync += [take_index.eq(0), take_slot.eq(take_slot + 1), take_rows.eq(take_rows - 1)]
            with m.Else():
                m.d.sync += take_index.eq(take_index + 1)
        cross = Signal(w.cross)
        term = Signal(signed(len(held) + len(cross)))   # the natural width: the DSP block then adds V too
        next_sum, next_variance = Signal(w.sum), Signal(w.partial_variance)
        m.d.comb += [cross.eq(held_cross - (row_sum << 1)),
                     term.eq(held * cross),
                     next_sum.eq(row_sum + held),
                     next_variance.eq(row_variance + term)]
        with m.If(adds):
            m.d.sync += [row_sum.eq(Mux(held_last, 0, next_sum)), row_variance.eq(Mux(held_last, 0, next_variance))]

        # stats: r = isqrt(V * 4^G), then inv = floor(2^32 / r)
        most_root_cycles = root_cycles(pairs, MAX_NORM_BITS)
        cycle = Signal(range(most_root_cycles))
        stats_sum = Signal(w.sum)
        out_take = Signal()

        pending = Signal(2 * pairs + 2)             # the radicand's next pairs on top
        remainder = Signal(w.root_bits)             # <= 2r < 2^root_bits before the last step (its result unused)
        root_complement = Signal(w.root_bits)      # ~r: subtracting r then needs no inverters
        root = ~root_complement
        divided = Signal(w.root_bits)               # the division's remainder, below r
        quotient = Signal(RECIPROCAL_BITS)          # below the plan's 4^m bit, which leaves at the top

        # square root, two pairs of the radicand a cycle. The second step is made for both outcomes
        # of the first, beside it (on the first's difference, as if it fits, its carry chain
        # rippling right behind the first's, and on the widened remainder, as if not), so that no
        # step waits for the first's borrow, which then picks one. r < 2^(root_bits - 1) before the
        # last step, and before a step the remainder <= 2r.
        r_complement = root_complement[:len(root_complement) - 1]
        widened = Cat(pending[-2:], remainder)
        first = _difference(widened, Cat(Const(0b10, 2), r_complement))        # - (4r + 1)
        first_fits = ~first[-1]
        seconds = []
        for fits, minuend in ((0, widened), (1, first)):
            second_widened = Cat(pending[-4:-2], minuend[:len(remainder)])
            first_root_complement = Cat(Const(1 - fits, 1), r_complement)[:len(r_complement)]
            second = _difference(second_widened, Cat(Const(0b10, 2), first_root_complement))
            second_remainder = Signal.like(remainder, name=f"root_remainder_{fits}")
            m.d.comb += second_remainder.eq(Mux(second[-1], second_widened, second))
            seconds.append((~second[-1], second_remainder))
        next_remainder = Mux(first_fits, seconds[1][1], seconds[0][1])
        second_fits = Mux(first_fits, seconds[1][0], seconds[0][0])
        next_root_complement = Cat(~second_fits, ~first_fits, root_complement)[:len(root_complement)]

        # the division's plan: c = 16 - m cycles from remainder 4^m, m = floor((bits of r - 2) / 2),
        # which is the cycle counter in the last root cycle that starts from r <= 1 (r gets its
        # leading 1 in that cycle's first step, or in its second and the next cycle starts from
        # r = 1; r = 1 itself is impossible, as G >= 1). The quotient starts as 4^m too, so that
        # its last cycle is the one with that bit at 2^30. A row with r = 0 (V = 0: every d = 0,
        # any quotient will do) takes one cycle from remainder 0.
        quotient_pairs = Signal(range(most_root_cycles))     # m
        plan = (phase == ROOT) & (cycle == 0)       # the root's last cycle
        flat_row = (root == 0) & (pending[-4:] == 0)    # in the root's last cycle: r will be 0
        first_remainder, seed = Signal.like(divided), Signal.like(quotient)
        m.d.comb += [first_remainder.eq(Cat(*(Cat((quotient_pairs == i) & ~flat_row, 0) for i in range(len(divided) // 2)))),
                     seed.eq(first_remainder | flat_row << (RECIPROCAL_BITS - QUOTIENT_BITS_PER_CYCLE))]

        # restoring division, one quotient bit a step; in the root's last cycle (`plan`) the last
        # step's result is the plan's first remainder, chosen beside the steps' path (its borrow
        # then selects nothing), so that no multiplexer follows the last step's
        r, q = divided, quotient
        for step in range(QUOTIENT_BITS_PER_CYCLE):
            shifted = r << 1                        # the numerator's bits below 2^(32 - 2c) are 0
            difference = _difference(shifted, root_complement)
            fits = ~difference[-1]
            r_next, q_next = Signal.like(divided, name=f"divided_{step}"), Signal.like(quotient, name=f"quotient_{step}")
            if step < QUOTIENT_BITS_PER_CYCLE - 1:
                m.d.comb += r_next.eq(Mux(fits, difference, shifted))
            else:
                m.d.comb += r_next.eq(Mux(fits & ~plan, difference, Mux(plan, first_remainder, shifted)))
            m.d.comb += q_next.eq((q << 1) | fits)
            r, q = r_next, q_next
        next_divided, next_quotient = r, q
        # the last cycle waits for the out stage, which takes its quotient into its DSP blocks
        last_quotient_cycle = (phase == QUOTIENT) & quotient[RECIPROCAL_BITS - QUOTIENT_BITS_PER_CYCLE]
        divides = (phase == QUOTIENT) & (~last_quotient_cycle | out_take)
        with m.If(plan | divides):
            m.d.sync += divided.eq(next_divided)

        with m.Switch(phase):
            with m.Case(ROOT):
                m.d.sync += [remainder.eq(next_remainder), root_complement.eq(next_root_complement),
                             pending.eq(pending << 2 * ROOT_PAIRS_PER_CYCLE), cycle.eq(cycle - 1)]
                with m.If(root_complement[1:].all()):      # r <= 1
                    m.d.sync += quotient_pairs.eq(cycle)
                with m.If(cycle == 0):
                    m.d.sync += [phase.eq(QUOTIENT), quotient.eq(seed)]
            with m.Case(QUOTIENT):
                with m.If(divides):
                    m.d.sync += quotient.eq(next_quotient)
        with m.If(out_take):
            m.d.sync += phase.eq(IDLE)
        with m.If(stats_take):
            # V behind a leading zero pair when V's pairs and G's are an odd count
            odd = G[0] ^ (pairs % 2)
            m.d.sync += [phase.eq(ROOT), cycle.eq(((pairs - 1) + G) >> 1),
                         pending.eq(Mux(odd, next_variance[:2 * pairs], next_variance[:2 * pairs] << 2)), remainder.eq(0),
                         root_complement.eq(-1), quotient_pairs.eq(0), stats_sum.eq(next_sum)]

        # out: issue (row buffer read) -> deviation (n) -> normalized (acc on o)
        advance = ~self.o.valid | self.o.ready
        out_rows = Signal(rows_shape)               # rows of the step not yet issued
        # rows leave in the order they come in: issue_slot counts the rows issued as take_slot
        # those taken, and moves on at a row's last issue, so that between rows it is the slot
        # of the statistics' row
        issuing, issue_index, issue_slot = Signal(), Signal(range(E_max)), Signal(range(SLOTS))
        m.d.comb += out_take.eq(advance & ~issuing & last_quotient_cycle)
        issue_last = issuing & (out_rows == 0) & (issue_index == last_index)
        # between rows issue_index is 0: element 0 of the statistics' row is read at out_take
        m.d.comb += [buffer_read.addr.eq(Cat(issue_index, issue_slot)),
                     buffer_read.en.eq(advance)]
        with m.If(out_take):
            m.d.sync += [issuing.eq(1), issue_index.eq(1), out_rows.eq(out_rows - 1)]
        with m.Elif(advance & issuing):
            with m.If(issue_index == last_index):
                m.d.sync += [issuing.eq(0), issue_index.eq(0), issue_slot.eq(issue_slot + 1)]
            with m.Else():
                m.d.sync += issue_index.eq(issue_index + 1)

        deviation_valid, deviation_last = Signal(), Signal()
        table_addr = Signal.like(self.table.addr)    # the deviation stage's weight and bias
        row_sum_out = Signal(w.sum)
        row_inv = Signal(w.inv, reset_less=True)     # no reset: the DSP blocks' own input registers
        deviation, product = Signal(w.deviation), Signal(w.product)
        half_units = Signal(w.normalized.width + 1)      # floor(d * inv / 2^(31 - 2G))
        m.d.comb += [deviation.eq(buffer_read.data - row_sum_out),
                     product.eq(deviation * row_inv),
                     half_units.eq(_window(product[RECIPROCAL_BITS - 2 * MAX_NORM_BITS - 1:], norm_pairs, len(half_units))),
                     self.table.addr.eq(table_addr),
                     self.table.en.eq(advance & deviation_valid)]
        normalized_valid, normalized_last = Signal(), Signal()
        normalized = Signal(w.normalized, reset_less=True)
        acc = Signal(w.output_acc)
        data = self.table.data
        m.d.comb += acc.eq(normalized * data[:WEIGHT_BITS].as_signed() + data[BIAS_LANE:].as_signed())
        with m.If(advance):
            m.d.sync += [deviation_valid.eq(issuing | out_take), deviation_last.eq(issue_last),
                         table_addr.eq(p.table_base + issue_index),
                         normalized_valid.eq(deviation_valid), normalized_last.eq(deviation_last),
                         normalized.eq((half_units + 1) >> 1)]
        with m.If(out_take):
            m.d.sync += [row_sum_out.eq(stats_sum), row_inv.eq(next_quotient)]
        m.d.comb += [self.o.valid.eq(normalized_valid),
                     self.o.payload.acc.eq(acc), self.o.payload.shift.eq(p.out_shift), self.o.payload.raw.eq(0),
                     self.done.eq(normalized_valid & self.o.ready & normalized_last)]

        with m.If(self.start):
            m.d.sync += [take_rows.eq(p.rows), out_rows.eq(p.rows)]
        return m
