"""The `layernorm` unit: integer LayerNorm of `rows` rows of E int8 values (docs/spec.md
sections 13.3 and 16), E, G and out_shift given at run time.

Arithmetic. As in the operator engine (hw/operators/layernorm.py, spec section 13.10),
Q = sum (E*x - S)^2 = E * V with V = E*P - S^2 (S = sum x, P = sum x^2), so r =
isqrt(floor(Q * 4^G / E)) = isqrt(V * 4^G) and the only division is 2^32 / r. E is a
runtime value here, and a multiply by it is a multiplier, so V is gathered without E*P
or S^2: with S' the sum of the row's elements before x, the terms x * (E*x - x - 2*S')
add up to E*P - S^2 (sum (x^2 + 2 x S') = S^2, telescoping). One multiplier makes a
term a cycle, and E*x, which the out stage needs for d = E*x - S anyway, is made once
(gated shifted adds: E has few bits) and kept in the row buffer instead of x.

Three rows are in flight, each in its own stage, so row n+1 comes in while row n is in
its statistics and row n-1 goes out (a 3-slot row buffer of E*x in block RAM):

  in     one element a cycle: x is held one cycle, then S and V take their terms and
         E*x is written into the row buffer. The last add of a row hands S and V to the
         statistics at the same clock edge.
  stats  r = isqrt(V * 4^G), 2 root bits a cycle (shift-subtract over V's pairs and
         then G zero pairs; V is gathered as V * 4^a, a = 0 or 1, so that they fill
         whole cycles; while r is 0, a cycle whose next 4 pairs are 0 consumes all 4),
         then inv = floor(2^32 / r) by restoring division, 2 quotient bits a cycle (two
         steps in series, as long as the root's), starting at the first quotient bits r
         allows (c cycles for r >= 2^(32 - 2c) + 4, decided from the root before its
         last 2 bits).
  out    a lock-step pipeline that advances on `~o.valid | o.ready`: issue (row buffer
         read) -> d = E*x - S, n = rshift_round(d * inv, 32 - 2G) -> y = sat8(
         rshift_round(n * weight + bias, out_shift)) (the runtime requantizer of
         hw/network/requantize.py) -> o; the word of weight and bias is read while n is
         made. A row's element 0 is issued in the statistics' last cycle.

Rows stream one an E cycles, so a step takes rows*E plus one latency: E cycles in, the
statistics (of the row whose statistics are longest) and 3 out. That latency is what
separates a step from its bound rows*E, so the statistics make 2 bits a cycle and the
stages hand over without idle cycles: 1 bit a cycle would not keep up with rows of 32,
more would lengthen the clock period, and radix-4 division (4w - r, 4w - 2r, 4w - 3r
side by side) costs three comparators and 3r for a cycle or two a row. V = 0 (a
row of equal values, r = 0) needs no case in the arithmetic: every d = 0 and the
division's meaningless quotient is multiplied by 0 (spec 13.3, step 4); the division
then takes its shortest plan.

Multipliers (`nomac.hw.multiplier_count`): 3. x * 4^a times the cross term (10 x 15 bits
signed at E <= 32, 1 DSP of 16 x 16), d * inv (14 bits signed x 32 unsigned, 2 DSPs) and
n * weight (12 x 16 signed, 1 DSP). E*x is 5 gated shifted adds and a multiplexer (E = 32)
in LUTs.

Table memory: one word per feature e at table_base + e, weight[e] (int16) in bits 0..15
and bias[e] (int32) in bits 32..63: one read per output element, so no register keeps
a word for later elements (E words, against 0.75 E packed four weights or two biases a
word).

Timetable, no stalls, in clock edges after the one that takes `start` (n_s =
`root_cycles`(pairs, G, V), n_q = `quotient_cycles`(r)): element j of the step is taken at edge
j + 1; row k's statistics start at S_k = max((k+1)E + 1, I_(k-1)) (its last add, or the
edge row k-1 leaves the statistics) and its element 0 is issued at I_k = max(S_k + n_s +
n_q, I_(k-1) + E), the others one an edge; an element is taken 3 edges after its issue.
While S_k = (k+1)E + 1 for every row (the statistics keep up, as at E = 32), the step
takes I_(rows-1) + E + 2 cycles. At E = 32, G = 7 the trained tiny ViTs' rows have r of 14
to 18 bits: n_s + n_q = 10 + 8 (r >= 2^16 + 4) or 9 + 9 (V * 4^a below 2^18, r >= 2^14 + 4)
or 10 + 9, so 17 rows take 597 or 598 cycles (bound 544, +10 % is 598.4), and 1 row 85 or 86
(bound 32); a row of r below 2^14 (a spread below 4) can cost a cycle or two more.
"""
from dataclasses import dataclass
from functools import cache

from amaranth import Cat, Const, Module, Mux, Shape, Signal
from amaranth.hdl import signed
from amaranth.lib import memory, wiring

from nomac.base.errors import ConfigError
from nomac.hw.matrix_vector_engine import BLOCK_RAM
from nomac.hw.network.requantize import requantize_runtime
from nomac.hw.network.unit import Field, LimitError, UnitSignature, UnitStep, params_layout
from nomac.hw.operators.layernorm import LayerNormWidths
from nomac.hw.requantize import balanced_sum
from nomac.model.operator_layers import MAX_NORM_BITS

__all__ = ["FIELDS", "LayerNormUnitWidths", "LayerNormUnit", "layernorm_step", "root_cycles", "quotient_cycles"]

FIELDS = (Field("rows", 16), Field("features", 16), Field("norm_bits", 4), Field("out_shift", 6),
          Field("table_base", 16))

RECIPROCAL_BITS = 32            # inv = floor(2^32 / r), docs/spec.md section 13.3 step 4
ROOT_BITS_PER_CYCLE = 2
QUOTIENT_BITS_PER_CYCLE = 2     # restoring steps a cycle
MAX_QUOTIENT_CYCLES = RECIPROCAL_BITS // QUOTIENT_BITS_PER_CYCLE    # r >= 2: inv <= 2^31 has 32 bits
SKIP_PAIRS = 4                  # a root cycle over leading zero pairs consumes 4 of them
SLOTS = 3                       # rows in the row buffer: in, stats, out
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
    2*S' (S' the sum before x: |S'| <= 128 (E-1), so -382 (E-1) <= c <= 383 (E-1)) and
    x * c; the partial sums of V, E*P' - S'^2 in 0..E*P' <= E^2 2^14 (Cauchy-Schwarz); the
    last two times 4^a, a < ROOT_BITS_PER_CYCLE (V's placement). The out stage's n * weight +
    bias: |n| < 2^(n bits - 1), |weight| <= 2^15, bias in int32.
    """
    sum: Shape
    scaled: Shape
    cross: Shape
    term: Shape
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
        placed = 4 ** (ROOT_BITS_PER_CYCLE - 1)
        return cls(**widest, scaled=_range(-128 * E, 127 * E), cross=_range(-382 * (E - 1), 383 * (E - 1)),
                   term=_range(-128 * 383 * (E - 1) * placed, 128 * 383 * (E - 1) * placed),
                   partial_variance=_range(0, (E * E << 14) * placed), root_bits=max(w.root_bits for w in each),
                   output_acc=_range(-acc_max, acc_max))

    @property
    def variance_pairs(self) -> int:
        return -(-self.variance.width // 2)


def _placement(variance_pairs: int, norm_bits: int) -> int:
    """a in V * 4^a, so that V's pairs and G zero pairs fill whole cycles of ROOT_BITS_PER_CYCLE."""
    full = -(-(variance_pairs + norm_bits) // ROOT_BITS_PER_CYCLE)
    return ROOT_BITS_PER_CYCLE - 1 - (ROOT_BITS_PER_CYCLE * full - variance_pairs - norm_bits)


def root_cycles(variance_pairs: int, norm_bits: int, variance: int | None = None) -> int:
    """Cycles of r = isqrt(V * 4^G): V's pairs and G zero pairs, ROOT_BITS_PER_CYCLE a cycle
    (for variance None: what the unit counts down from), less a cycle for every SKIP_PAIRS
    leading zero pairs of V * 4^a (in variance_pairs + 1 pairs) while r is still 0 and at
    least 3 cycles remain: such a cycle consumes them all."""
    full = -(-(variance_pairs + norm_bits) // ROOT_BITS_PER_CYCLE)
    if variance is None:
        return full
    placed = variance << 2 * _placement(variance_pairs, norm_bits)
    zero_pairs = ROOT_BITS_PER_CYCLE * full if variance == 0 else variance_pairs + 1 - -(-placed.bit_length() // 2)
    return full - min(zero_pairs // SKIP_PAIRS, (full - 1) // 2)


def quotient_cycles(root: int) -> int:
    """Cycles of inv = floor(2^32 / r), 2 quotient bits a cycle: the fewest c with r >= 2^(32 -
    2c) + 4 (r > 2^(32 - 2c), as far as r without its last 2 bits tells: the quotient then has
    at most 2c bits and 2^(32 - 2c) is the remainder before them), else 16 (the 32 bits of
    inv, from remainder 1, for r < 8); 1 for r = 0 (V = 0: the quotient is multiplied
    by d = 0)."""
    if root == 0:
        return 1
    for c in range(1, MAX_QUOTIENT_CYCLES):
        if root >= (1 << (RECIPROCAL_BITS - QUOTIENT_BITS_PER_CYCLE * c)) + 4:
            return c
    return MAX_QUOTIENT_CYCLES


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


def _times_count(value, count, limit: int):
    """value * count for an unsigned count of a few bits, at most `limit` (E <= limits.model_features):
    one shifted copy of value per bit of count, gated by the bit, summed as a balanced tree in
    LUTs (a multiply by a runtime value this small needs no DSP block). When limit is a power of
    two its bit is set only in count = limit, so that copy is a multiplexer, not one more adder."""
    top = limit.bit_length() - 1
    if top and limit == 1 << top:
        return Mux(count[top], value << top, _times_count(value, count[:top], limit - 1))
    return balanced_sum([Mux(count[i], value << i, 0) for i in range(len(count))])


class LayerNormUnit(wiring.Component):
    """A layernorm step: rows of E int8 values in, their LayerNorm out; see the module docstring."""

    def __init__(self, limits):
        self.limits = limits
        self.widths = LayerNormUnitWidths.of(limits)
        super().__init__(UnitSignature(params_layout(FIELDS), limits))

    def elaborate(self, platform):
        m = Module()
        p, w = self.params, self.widths
        E_max = self.limits.model_features
        index_bits = (E_max - 1).bit_length()
        E = p.features[:E_max.bit_length()]
        G = p.norm_bits
        rows_shape = range(self.limits.tokens + 1)
        k, pairs = ROOT_BITS_PER_CYCLE, w.variance_pairs

        # the step's constants, decoded from params (held from start to done) into registers
        last_index = Signal(range(E_max))
        placement = Signal(range(k))                # V is gathered as V * 4^placement
        root_cycle_count = Signal(range(root_cycles(pairs, MAX_NORM_BITS)))
        norm_shift = Signal(range(2 * MAX_NORM_BITS))
        m.d.sync += [last_index.eq(E - 1), norm_shift.eq((MAX_NORM_BITS - G) << 1)]
        with m.Switch(G):
            for g in range(1, MAX_NORM_BITS + 1):
                with m.Case(g):
                    m.d.sync += [placement.eq(_placement(pairs, g)), root_cycle_count.eq(root_cycles(pairs, g) - 1)]

        m.submodules.row_buffer = row_buffer = memory.Memory(shape=w.scaled, depth=SLOTS << index_bits, init=[],
                                                             attrs=BLOCK_RAM)
        buffer_write, buffer_read = row_buffer.write_port(), row_buffer.read_port()

        def next_slot(slot):
            return Mux(slot == SLOTS - 1, 0, slot + 1)

        # in: take an element; a cycle later add it to S and its term to V, write E*x
        take_rows = Signal(rows_shape)              # rows of the step not yet taken in full
        take_index = Signal(range(E_max))
        held, held_valid, held_last = Signal(signed(8)), Signal(), Signal()
        add_index, in_slot = Signal(range(E_max)), Signal(range(SLOTS))
        in_first, in_full = Signal(init=1), Signal()    # next add starts a row / a row waits for stats
        row_sum, row_variance = Signal(w.sum), Signal(w.partial_variance)
        adds = held_valid & ~in_full
        take_next = ~held_valid | adds
        take = self.i.valid & self.i.ready
        m.d.comb += self.i.ready.eq((take_rows != 0) & take_next)
        with m.If(take_next):
            m.d.sync += [held_valid.eq(take), held.eq(self.i.payload), held_last.eq(take_index == last_index)]
        with m.If(take):
            with m.If(take_index == last_index):
                m.d.sync += [take_index.eq(0), take_rows.eq(take_rows - 1)]
            with m.Else():
                m.d.sync += take_index.eq(take_index + 1)
        starts_row = in_first & ~in_full            # with in_full the registers hold the whole row
        sum_before, variance_before = Mux(starts_row, 0, row_sum), Mux(starts_row, 0, row_variance)
        scaled, cross, term = Signal(w.scaled), Signal(w.cross), Signal(w.term)
        next_sum, next_variance = Signal(w.sum), Signal(w.partial_variance)
        m.d.comb += [scaled.eq(_times_count(held, E, E_max)),
                     cross.eq(scaled - held - (sum_before << 1)),
                     term.eq(Mux(placement, held << 2, held) * cross),
                     next_sum.eq(sum_before + Mux(in_full, 0, held)),
                     next_variance.eq(variance_before + Mux(in_full, 0, term)),
                     buffer_write.addr.eq(Cat(add_index, in_slot)), buffer_write.data.eq(scaled),
                     buffer_write.en.eq(adds)]
        with m.If(adds):
            m.d.sync += [row_sum.eq(next_sum), row_variance.eq(next_variance), in_first.eq(held_last)]
            with m.If(held_last):
                m.d.sync += add_index.eq(0)
            with m.Else():
                m.d.sync += add_index.eq(add_index + 1)

        # stats: r = isqrt(V * 4^G), then inv = floor(2^32 / r)
        IDLE, ROOT, QUOTIENT, READY = range(4)
        phase = Signal(range(4))
        cycle = Signal(range(max(MAX_QUOTIENT_CYCLES, root_cycles(pairs, MAX_NORM_BITS))))
        stats_sum, stats_slot = Signal(w.sum), Signal(range(SLOTS))
        out_take = Signal()
        stats_free = (phase == IDLE) | out_take
        stats_take = stats_free & (in_full | (adds & held_last))
        with m.If(stats_take):
            m.d.sync += [in_full.eq(0), in_slot.eq(next_slot(in_slot))]
        with m.Elif(adds & held_last):
            m.d.sync += in_full.eq(1)

        pending = Signal(2 * (pairs + k - 1))       # the radicand's next pairs on top
        remainder = Signal(w.root_bits + 1)
        root = Signal(w.root_bits)
        divided = Signal(w.root_bits)               # the division's remainder, below r
        quotient = Signal(RECIPROCAL_BITS)
        first_remainder = Signal.like(divided)
        quotient_count = Signal.like(cycle)
        flat_row = Signal()                         # V = 0: r = 0, every d = 0, any quotient will do

        # the division's plan, from r without its last ROOT_BITS_PER_CYCLE bits (the last cycle's):
        # c cycles when r >= 2^(32 - 2c) + 4 (known_root > 2^(30 - 2c)), from remainder 2^(32 - 2c)
        known_root = root[:w.root_bits - k]
        m.d.comb += [first_remainder.eq(1), quotient_count.eq(MAX_QUOTIENT_CYCLES - 1)]
        for c in reversed(range(1, MAX_QUOTIENT_CYCLES)):
            threshold = RECIPROCAL_BITS - QUOTIENT_BITS_PER_CYCLE * c - k
            if threshold < len(known_root):
                above = known_root[threshold + 1:] != 0 if threshold + 1 < len(known_root) else Const(0)
                with m.If(above | known_root[threshold] & (known_root[:threshold] != 0)):
                    m.d.comb += [first_remainder.eq(1 << (RECIPROCAL_BITS - QUOTIENT_BITS_PER_CYCLE * c)),
                                 quotient_count.eq(c - 1)]
        with m.If(flat_row):
            m.d.comb += [first_remainder.eq(0), quotient_count.eq(0)]

        # each step's results are signals, so that the next step's expressions refer to them
        r, q, pend = remainder, root, pending       # square root: one pair of the radicand a step
        for step in range(k):
            widened = (r << 2) | pend[-2:]
            difference = widened - ((q << 2) | 1)   # its top bit is the borrow
            fits = ~difference[-1]
            r_next, q_next = Signal.like(remainder, name=f"root_remainder_{step}"), Signal.like(root, name=f"root_{step}")
            m.d.comb += [r_next.eq(Mux(fits, difference, widened)), q_next.eq((q << 1) | fits)]
            r, q = r_next, q_next
            pend = (pend << 2)[:len(pending)]
        next_remainder, next_root, next_pending = r, q, pend

        # restoring division, one quotient bit a step; in the root's last cycle (`plan`) the last
        # step's result is the plan's first remainder, chosen beside the steps' path (its borrow
        # then selects nothing), so that no multiplexer follows the last step's
        plan = (phase == ROOT) & (cycle == 0)
        r, q = divided, quotient
        for step in range(QUOTIENT_BITS_PER_CYCLE):
            shifted = r << 1                        # the numerator's bits below 2^(32 - 2c) are 0
            difference = shifted - root             # its top bit is the borrow
            fits = ~difference[-1]
            r_next, q_next = Signal.like(divided, name=f"divided_{step}"), Signal.like(quotient, name=f"quotient_{step}")
            if step < QUOTIENT_BITS_PER_CYCLE - 1:
                m.d.comb += r_next.eq(Mux(fits, difference, shifted))
            else:
                m.d.comb += r_next.eq(Mux(fits & ~plan, difference, Mux(plan, first_remainder, shifted)))
            m.d.comb += q_next.eq((q << 1) | fits)
            r, q = r_next, q_next
        next_divided, next_quotient = r, q
        with m.If(plan | (phase == QUOTIENT)):
            m.d.sync += divided.eq(next_divided)

        with m.Switch(phase):
            with m.Case(ROOT):
                # r = 0 so far and the next SKIP_PAIRS pairs 0: the steps leave the remainder and r 0
                skip = (root == 0) & (pending[-2 * SKIP_PAIRS:] == 0) & (cycle >= 2)
                m.d.sync += [remainder.eq(next_remainder), root.eq(next_root),
                             pending.eq(Mux(skip, pending << 2 * SKIP_PAIRS, next_pending)), cycle.eq(cycle - 1 - skip)]
                with m.If(cycle == 0):
                    m.d.sync += [phase.eq(QUOTIENT), quotient.eq(0), cycle.eq(quotient_count)]
            with m.Case(QUOTIENT):
                m.d.sync += [quotient.eq(next_quotient), cycle.eq(cycle - 1)]
                with m.If(cycle == 0):
                    m.d.sync += phase.eq(READY)
        with m.If(out_take):
            m.d.sync += phase.eq(IDLE)
        with m.If(stats_take):
            m.d.sync += [phase.eq(ROOT), cycle.eq(root_cycle_count), pending.eq(next_variance), remainder.eq(0),
                         root.eq(0), stats_sum.eq(next_sum), stats_slot.eq(in_slot), flat_row.eq(next_variance == 0)]
        last_quotient_cycle = (phase == QUOTIENT) & (cycle == 0)

        # out: issue (row buffer read) -> deviation (n) -> normalized (y) -> o
        advance = ~self.o.valid | self.o.ready
        out_rows = Signal(rows_shape)               # rows of the step not yet issued
        issuing, issue_index, issue_slot = Signal(), Signal(range(E_max)), Signal(range(SLOTS))
        m.d.comb += out_take.eq(advance & ~issuing & ((phase == READY) | last_quotient_cycle))
        issue_last = issuing & (out_rows == 0) & (issue_index == last_index)
        m.d.comb += [buffer_read.addr.eq(Mux(issuing, Cat(issue_index, issue_slot), Cat(Const(0, index_bits),
                                                                                        stats_slot))),
                     buffer_read.en.eq(advance)]
        with m.If(out_take):
            m.d.sync += [issuing.eq(1), issue_index.eq(1), issue_slot.eq(stats_slot), out_rows.eq(out_rows - 1)]
        with m.Elif(advance & issuing):
            with m.If(issue_index == last_index):
                m.d.sync += issuing.eq(0)
            with m.Else():
                m.d.sync += issue_index.eq(issue_index + 1)

        deviation_valid, deviation_last, deviation_index = Signal(), Signal(), Signal(range(E_max))
        row_sum_out, row_inv = Signal(w.sum), Signal(w.inv)
        deviation, product = Signal(w.deviation), Signal(w.product)
        half_units = Signal(w.normalized.width + 1)      # floor(d * inv / 2^(31 - 2G))
        m.d.comb += [deviation.eq(buffer_read.data - row_sum_out),
                     product.eq(deviation * row_inv),
                     half_units.eq((product >> (RECIPROCAL_BITS - 2 * MAX_NORM_BITS - 1)) >> norm_shift),
                     self.table.addr.eq(p.table_base + deviation_index),
                     self.table.en.eq(advance & deviation_valid)]
        normalized_valid, normalized_last, normalized = Signal(), Signal(), Signal(w.normalized)
        acc = Signal(w.output_acc)
        data = self.table.data
        m.d.comb += acc.eq(normalized * data[:WEIGHT_BITS].as_signed() + data[BIAS_LANE:].as_signed())
        output = requantize_runtime(acc, p.out_shift)
        y_valid, y_last, y = Signal(), Signal(), Signal(signed(8))
        with m.If(advance):
            m.d.sync += [deviation_valid.eq(issuing | out_take), deviation_last.eq(issue_last),
                         deviation_index.eq(Mux(issuing, issue_index, 0)),
                         normalized_valid.eq(deviation_valid), normalized_last.eq(deviation_last),
                         normalized.eq((half_units + 1) >> 1),
                         y_valid.eq(normalized_valid), y_last.eq(normalized_last), y.eq(output)]
        with m.If(out_take):
            m.d.sync += [row_sum_out.eq(stats_sum), row_inv.eq(Mux(phase == READY, quotient, next_quotient))]
        m.d.comb += [self.o.valid.eq(y_valid), self.o.payload.eq(y),
                     self.done.eq(y_valid & self.o.ready & y_last)]

        with m.If(self.start):
            m.d.sync += [take_rows.eq(p.rows), out_rows.eq(p.rows)]
        return m
