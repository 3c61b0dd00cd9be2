"""The `shift` unit: DeepShift power-of-two weights without a multiplier (docs/spec.md sections 8 and 16).

acc[r, m] = bias[m] + sum_d sign[m, d] * (x[r, d] << (shift[m, d] - p0)), in units of 2^p0,
then the output rule of docs/spec.md section 2 (or the raw acc as 4 bytes, little-endian).
The matrix-vector shift engine (hw/shift_engine.py) bakes a layer in and costs an iCE40
4,183 LUT4 at 8 terms a cycle; this unit serves every shift layer of a model (weights,
bias, shapes and out_shift come from the step) and is built to be cheap.

Datapath: TERMS_PER_CYCLE = 4 terms a cycle from one 64-bit table word: a byte a term
(left shift in bits 0-3, the 2-bit sign in bits 4-5) in the low half, and in the high half
of an output's first word its bias, so no bias buffer and no extra read. Each term is a
logarithmic shifter of its int8 input (four stages of 2:1 multiplexers, the input gated
to zero by the sign's nonzero bit in the first stage), then negated as a one's complement
(an XOR with the sign's negative bit, in the last stage's LUT): -v = ~v + 1, and the "+1"
of every negative term of an output is added to its bias when the step is compiled. A
tree of kept two-input adders (carry chains) sums the four terms; one accumulator adds
an output's ceil(D/4) tree sums to its bias; the held sum leaves as unit outputs (at
out_shift, or a raw acc's bytes at 8 * byte) for the engine's one requantizer
(docs/spec.md section 16.4). Eight terms a cycle (the whole word, so the biases in a
buffer of two more block RAMs) measured 1,149 LUT4 and 6 block RAMs against this one's
701 and 2: twice the speed was not worth 64 % more logic on the iCE40UP5K.

Memory (block RAM, `BufferMemory`): the input rows, two banks of ceil(features/4) words (to a
power of two) of four int8; the next row is written, byte by byte, while the current one
computes.

Timetable of a step (no stalls): row 0 streams in (D cycles); from the cycle after its last
element, one table word a cycle, rows * M * ceil(D/4) cycles, row after row (a row starts
once its bank is full); each output is offered 3 cycles after the read of its last word
(read; terms and tree; accumulate). A finished output waits in one holding register;
while that is still being taken (4 bytes with output "acc") the pipeline stalls only when
the next finished output would need it.
"""
import numpy as np
from amaranth import Cat, Module, Mux, Signal
from amaranth.hdl import signed, unsigned
from amaranth.lib import wiring

from nomac.hw.buffer_memory import BufferMemory
from nomac.hw.network.requantize import ACC_BYTES
from nomac.hw.network.unit import Field, LimitError, UnitSignature, UnitStep, pack_words, params_layout
from nomac.hw.widths import signed_bits

__all__ = ["FIELDS", "TERMS_PER_CYCLE", "MAX_SPAN", "ShiftUnit", "shift_step"]

TERMS_PER_CYCLE = 4                 # terms of one table word, a byte each, in its low half
LANE_BITS = TERMS_PER_CYCLE.bit_length() - 1
AMOUNT_BITS = 4
MAX_SPAN = (1 << AMOUNT_BITS) - 1   # p1 - p0 <= 15: the 5-bit weights of DeepShift-Q (shift in -15..0)
SIGN_SHIFT = AMOUNT_BITS            # sign in bits 4-5 of a term's byte: +1 = 0b01, -1 = 0b11, 0 = 0b00
BIAS_BITS = 32                      # in the high half of an output's first word
INT32_LO, INT32_HI = -(1 << 31), (1 << 31) - 1

FIELDS = (Field("rows", 16), Field("in_features", 16), Field("out_features", 16), Field("words_per_output", 16),
          Field("table_base", 16), Field("out_shift", 6), Field("raw_acc", 1))


def words_per_output(in_features: int) -> int:
    """Table words (and cycles) of one output: ceil(D / TERMS_PER_CYCLE)."""
    return -(-in_features // TERMS_PER_CYCLE)


def shift_bound(rows: int, D: int, M: int, raw_acc: bool) -> tuple[int, str]:
    """The step's lower bound: its terms at TERMS_PER_CYCLE a cycle, and the streams at one element
    a cycle (no output before row 0's D inputs are in, none of the last row before its inputs)."""
    out_bytes = ACC_BYTES if raw_acc else 1
    bound = max(-(-rows * D * M // TERMS_PER_CYCLE), rows * D + M * out_bytes, D + rows * M * out_bytes)
    return bound, f"max(ceil(rows*D*M/{TERMS_PER_CYCLE}), rows*D + M*B, D + rows*M*B), B = 4 for output acc else 1"


def _refuse(layer, what, value, limit):
    if value > limit:
        raise LimitError(layer.name, what, value, limit)


def shift_step(layer, rows: int, table_base: int, limits) -> UnitStep:
    """`rows` rows of a shift layer: M * ceil(D/4) table words at `table_base`, output m's in a row."""
    D, M, raw_acc = layer.in_features, layer.out_features, layer.output == "acc"
    _refuse(layer, "rows", rows, limits.tokens)
    _refuse(layer, "in_features", D, limits.features)
    _refuse(layer, "out_features", M, limits.features)
    _refuse(layer, "shift_max - shift_min", layer.shift_span, MAX_SPAN)
    sign = layer.sign.astype(int)
    amounts = layer.shift.astype(int) - layer.shift_min
    folded_bias = layer.bias.astype(int) + (sign == -1).sum(axis=1)     # the "+1" of each one's complement
    _refuse(layer, "bias + negative weights of an output", int(folded_bias.max()), INT32_HI)
    if raw_acc:
        weights = layer.integer_weights()
        acc_lo = layer.bias.astype(int) + (weights.clip(min=0) * -128 + weights.clip(max=0) * 127).sum(axis=1)
        acc_hi = layer.bias.astype(int) + (weights.clip(min=0) * 127 + weights.clip(max=0) * -128).sum(axis=1)
        _refuse(layer, "accumulator bits of output acc", signed_bits(int(acc_lo.min()), int(acc_hi.max())),
                BIAS_BITS)
    S = words_per_output(D)
    lanes = np.zeros((M, S * TERMS_PER_CYCLE), dtype=np.int64)
    lanes[:, :D] = amounts | (sign & 3) << SIGN_SHIFT       # padding lanes: sign 0, a zero term
    term_halves = lanes.reshape(M, S, TERMS_PER_CYCLE) @ (1 << (8 * np.arange(TERMS_PER_CYCLE)))   # [M, S]
    bias_halves = np.zeros((M, S), dtype=np.int64)
    bias_halves[:, 0] = folded_bias                           # the bias rides in the first word of its output
    words = pack_words(np.stack([term_halves, bias_halves], axis=2).reshape(-1), BIAS_BITS)
    out_elements = rows * M * (ACC_BYTES if raw_acc else 1)
    _refuse(layer, "output elements", out_elements, (1 << 16) - 1)     # a step's 16-bit writer count
    _refuse(layer, "table words", table_base + len(words), min(limits.table_words, 1 << 16))
    bound, rule = shift_bound(rows, D, M, raw_acc)
    params = {"rows": rows, "in_features": D, "out_features": M, "words_per_output": S, "table_base": table_base,
              "out_shift": layer.out_shift, "raw_acc": int(raw_acc)}
    return UnitStep(params, words, rows * D, out_elements, bound, rule)


def term_bounds():
    """Range of one hardware term: v = x << a (int8 x, a <= MAX_SPAN), or ~v for a negative sign."""
    lo, hi = -128 << MAX_SPAN, 127 << MAX_SPAN
    return min(lo, ~hi), max(hi, ~lo)


def accumulator_bits(limits) -> int:
    """Covers any int32 bias plus every prefix of up to `features` (rounded up to words) terms,
    whatever the table holds: nothing wraps, for any word the port can deliver."""
    lo, hi = term_bounds()
    terms = words_per_output(limits.features) * TERMS_PER_CYCLE
    return signed_bits(INT32_LO + terms * lo, INT32_HI + terms * hi)


def shifted_term(m, lane, x):
    """sign * (x << amount), less one for a negative sign, from a term's byte."""
    amount, nonzero, negative = lane[:AMOUNT_BITS], lane[SIGN_SHIFT], lane[SIGN_SHIFT + 1]
    value = Mux(nonzero, x, 0).as_signed()
    for stage in range(AMOUNT_BITS):
        value = Mux(amount[stage], value << (1 << stage), value)
    term = Signal(signed(8 + MAX_SPAN))
    m.d.comb += term.eq(value ^ negative.replicate(len(term)).as_signed())
    return term


def adder_tree(m, terms):
    """A balanced tree of two-input adders, each sum a kept wire: left to itself, Yosys merges
    the sums into one multi-operand adder that costs the iCE40 far more LUTs than carry chains."""
    level = 0
    while len(terms) > 1:
        sums = []
        for i in range(0, len(terms) - 1, 2):
            total = Signal(signed(max(len(terms[i]), len(terms[i + 1])) + 1), name=f"tree_{level}_{i // 2}",
                           attrs={"keep": 1})
            m.d.comb += total.eq(terms[i] + terms[i + 1])
            sums.append(total)
        terms = sums + terms[len(terms) & ~1:]
        level += 1
    return terms[0]


class ShiftUnit(wiring.Component):
    """A shift layer's rows, four terms a cycle; see the module docstring."""

    def __init__(self, limits):
        self.limits = limits
        self.acc_bits = accumulator_bits(limits)
        super().__init__(UnitSignature(params_layout(FIELDS), limits, acc_bits=self.acc_bits))

    def elaborate(self, platform):
        m = Module()
        p, limits = self.params, self.limits
        feature_bits = limits.features.bit_length()
        word_bits = max(1, (words_per_output(limits.features) - 1).bit_length())
        D, M, S = p.in_features[:feature_bits], p.out_features[:feature_bits], p.words_per_output[:word_bits + 1]

        # -- the input rows: two banks, one element a cycle into its byte lane
        # A bank is written only while not full and read only while full: no read meets a write.
        m.submodules.rows_mem = rows_mem = BufferMemory(shape=unsigned(8 * TERMS_PER_CYCLE), depth=2 << word_bits,
                                                        granularity=8)
        row_write, row_read = rows_mem.write, rows_mem.read
        rows_to_take = Signal(range(limits.tokens + 1))
        write_element = Signal(feature_bits)
        write_bank = Signal()
        bank_full = Signal(2)
        take = self.i.valid & self.i.ready
        next_element = write_element + 1
        row_written = take & (next_element == D)
        m.d.comb += [self.i.ready.eq((rows_to_take != 0) & ~bank_full.bit_select(write_bank, 1)),
                     row_write.addr.eq(Cat(write_element[LANE_BITS:LANE_BITS + word_bits], write_bank)),
                     row_write.data.eq(self.i.payload.as_unsigned().replicate(TERMS_PER_CYCLE)),
                     row_write.en.eq(take.replicate(TERMS_PER_CYCLE) & (1 << write_element[:LANE_BITS]))]
        with m.If(take):
            m.d.sync += write_element.eq(Mux(row_written, 0, next_element))
            with m.If(row_written):
                m.d.sync += [write_bank.eq(~write_bank), rows_to_take.eq(rows_to_take - 1)]

        # -- stage A: one table word and one input word a cycle, once the row's bank is full
        stall = Signal()
        advance = ~stall
        word = Signal(word_bits)
        output = Signal(feature_bits)
        read_bank = Signal()
        rows_left = Signal(range(limits.tokens + 1))
        table_addr = Signal(limits.table_addr_bits)
        issue = advance & (rows_left != 0) & bank_full.bit_select(read_bank, 1)
        next_word, next_output = word + 1, output + 1
        last_of_output = next_word == S
        last_of_row = last_of_output & (next_output == M)
        m.d.comb += [self.table.en.eq(issue), self.table.addr.eq(table_addr),
                     row_read.addr.eq(Cat(word, read_bank)), row_read.en.eq(issue)]
        with m.If(issue):
            m.d.sync += [word.eq(Mux(last_of_output, 0, next_word)), table_addr.eq(table_addr + 1)]
            with m.If(last_of_output):
                m.d.sync += output.eq(Mux(last_of_row, 0, next_output))
            with m.If(last_of_row):
                m.d.sync += [table_addr.eq(p.table_base), read_bank.eq(~read_bank), rows_left.eq(rows_left - 1)]
        m.d.sync += bank_full.eq((bank_full | Mux(row_written, 1 << write_bank, 0))
                                 & ~Mux(issue & last_of_row, 1 << read_bank, 0))

        # -- stage B: the terms and their tree; the word's high half (its output's bias) passed on
        valid_b, first_b, last_b = Signal(), Signal(), Signal()
        terms = [shifted_term(m, self.table.data.word_select(t, 8), row_read.data.word_select(t, 8).as_signed())
                 for t in range(TERMS_PER_CYCLE)]
        tree = adder_tree(m, terms)
        with m.If(advance):
            m.d.sync += [valid_b.eq(issue), first_b.eq(word == 0), last_b.eq(last_of_output)]

        # -- stage C: accumulate; a finished output goes to the holding register
        valid_c, first_c, last_c = Signal(), Signal(), Signal()
        tree_sum = Signal(signed(len(tree)))
        bias = Signal(signed(BIAS_BITS))
        with m.If(advance):
            m.d.sync += [valid_c.eq(valid_b), first_c.eq(first_b), last_c.eq(last_b), tree_sum.eq(tree),
                         bias.eq(self.table.data[BIAS_BITS:])]
        acc = Signal(signed(self.acc_bits))
        acc_next = Signal(signed(self.acc_bits))
        m.d.comb += acc_next.eq(Mux(first_c, bias, acc) + tree_sum)

        held = Signal(signed(self.acc_bits))
        holding = Signal()
        byte = Signal(range(ACC_BYTES))
        taken = self.o.valid & self.o.ready
        freed = taken & (~p.raw_acc | (byte == ACC_BYTES - 1))
        finishing = valid_c & last_c
        m.d.comb += [stall.eq(finishing & holding & ~freed), self.o.valid.eq(holding),
                     self.o.payload.acc.eq(held), self.o.payload.raw.eq(p.raw_acc),
                     self.o.payload.shift.eq(Mux(p.raw_acc, byte * 8, p.out_shift))]
        with m.If(advance & valid_c):
            m.d.sync += acc.eq(acc_next)
        with m.If(taken & p.raw_acc):
            m.d.sync += byte.eq(byte + 1)
        with m.If(advance & finishing):
            m.d.sync += [held.eq(acc_next), holding.eq(1)]
        with m.Elif(freed):
            m.d.sync += holding.eq(0)
        m.d.comb += self.done.eq(freed & (rows_left == 0) & ~valid_b & ~valid_c)   # nothing left to compute

        with m.If(self.start):      # the step's counters (the unit is idle: the pipeline is empty)
            m.d.sync += [rows_to_take.eq(p.rows), write_element.eq(0), write_bank.eq(0), bank_full.eq(0),
                         word.eq(0), output.eq(0), read_bank.eq(0), rows_left.eq(p.rows),
                         table_addr.eq(p.table_base), byte.eq(0)]
        return m
