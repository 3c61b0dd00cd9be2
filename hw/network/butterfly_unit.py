"""The `butterfly` unit: one DeBut factor [p, q, r, s, t] a step (docs/spec.md sections 11 and 16).

A butterfly layer of F factors runs as F consecutive steps of this unit, factor 0 first;
each step reads the int8 rows the step before wrote (the program compiler keeps them in
the activation memory). Output `row` = b*r*t + i*t + e of a factor sums the s terms
m[row, j] * x[b*s*t + j*t + e], j = 0..s-1, onto bias[row] (docs/spec.md section 11.3).

How, for `rows` input rows of q elements:

- The columns an output reads are spread over its block, so a whole input row is kept:
  one block RAM of two halves (`lib.memory`, 2^ceil(log2(features + 1)) bytes each). Row
  n + 1 is written into one half while row n is computed from the other; a row takes
  p*s = q*r >= q cycles to compute, so the writer always keeps up.
- One term a cycle, output after output, its s terms in the order j = 0..s-1 onto its
  bias: one int8 x int8 multiplier for an `int8` factor; for a `shift` factor
  sign * (x << (shift - shift_min)), a barrel shift of at most 32 (docs/spec.md section 8).
- The table holds one *record* per output row, R = ceil((4 + s) / 8) words: bytes 0..3
  of the first word are the int32 bias (little-endian), bytes 4.. the row's s weight
  codes, continued in the following words, 8 a word. Every row of the step reads the
  p*R words in address order: a word is read on the cycle its first term is walked and
  the port holds it while the next terms use it, so there is no word register.
- A weight code is one byte: the int8 weight, or for a shift factor the amount
  shift - shift_min (0..32) in bits 0..5 and the sign in bits 6..7 (two's complement,
  -1 = 0b11), so shift_min is no parameter of the unit.
- The accumulator is wide enough for any factor within the limits (features terms of
  128 * 2^32 onto an int32 bias), so no valid factor is refused for its sums. Every
  factor but the last writes sat8(rshift_round(acc, out_shift)) (acc goes from the output
  register to the engine's one requantizer, docs/spec.md section 16.4); the
  last factor of a layer with output "acc" writes acc as 4 bytes, little-endian (refused
  unless it fits int32), from a byte shift register: acc itself is free for the next
  output's sum while they leave.

Pipeline, every register moving on `advance` (the output register can take a value or
none is waiting for it): S0 walks (output, term) and addresses the row buffer and the
table; S1 registers the term's code byte (picked from the word on the table port), its
input element and the record's bias; S2 forms the term; S3 adds it onto the bias or the
running sum; S4 puts the finished sum into the output register, which offers it (or its 4
bytes, a byte a cycle) as unit outputs.

Timetable without stalls (int8 output): `start` is taken at edge 0, the q inputs of row 0
at edges 1..q, the walk issues the rows*p*s terms at edges q + 1 .. q + rows*p*s, one an
edge (each later row is in its half by then), and the last output is taken 5 edges after
the last term: q + rows*p*s + 5 cycles from start to done. With 4-byte outputs and
s >= 4, 3 more (the last output's other bytes); with s < 4 the bytes are the limit (the
walk waits for the output register).
"""
import numpy as np
from amaranth import Cat, Module, Mux, Signal
from amaranth.hdl import signed
from amaranth.lib import memory, wiring

from nomac.hw.butterfly_stage import factor_term_bounds
from nomac.hw.network.requantize import ACC_BYTES
from nomac.hw.network.unit import (TABLE_WORD_BYTES, Field, LimitError, UnitSignature, UnitStep, params_layout,
                                   words_of_bytes)
from nomac.hw.widths import prefix_sum_range, signed_bits
from nomac.model.butterfly_spec import SHIFT_MIN_LIMIT

__all__ = ["FIELDS", "BIAS_BYTES", "record_words", "weight_codes", "factor_table_words", "unit_accumulator_bits",
           "butterfly_steps", "ButterflyUnit"]

FIELDS = (Field("rows", 16), Field("q", 16), Field("r", 16), Field("s", 16), Field("t", 16),
          Field("shift_weights", 1), Field("output_acc", 1), Field("out_shift", 6), Field("table_base", 16))

BIAS_BYTES = 4                         # a record's int32 bias
SHIFT_AMOUNT_MAX = -SHIFT_MIN_LIMIT    # shift - shift_min of any valid shift factor
INT32_BITS = 32
FIELD_LIMIT = 1 << 16                  # counts and table bases are 16-bit fields
FIRST_CODE_LANE = BIAS_BYTES           # the byte of a record's first word holding its first code


def record_words(s: int) -> int:
    """Table words of one output row's record: its bias and its s weight codes."""
    return -(-(BIAS_BYTES + s) // TABLE_WORD_BYTES)


def weight_codes(factor) -> np.ndarray:
    """uint8 [p, s]: the int8 weight, or (shift - shift_min) | sign << 6 of a shift factor."""
    if factor.weights == "int8":
        return factor.w.view(np.uint8)
    amount = (factor.shift.astype(np.int64) - factor.shift_min).astype(np.uint8)
    return amount | ((factor.sign.astype(np.int64) & 0b11) << 6).astype(np.uint8)


def factor_table_words(factor) -> list[int]:
    """The factor's p records (see the module docstring), output row 0 first."""
    p, s = factor.p, factor.s
    records = np.zeros((p, record_words(s) * TABLE_WORD_BYTES), dtype=np.uint8)
    records[:, :BIAS_BYTES] = factor.bias.astype("<i4").view(np.uint8).reshape(p, BIAS_BYTES)
    records[:, BIAS_BYTES:BIAS_BYTES + s] = weight_codes(factor)
    return words_of_bytes(records.reshape(-1))


def accumulator_bits(factor) -> int:
    """Signed width of the bias plus every prefix of the terms in the unit's order (j = 0..s-1),
    over every int8 input (docs/spec.md section 6.4)."""
    term_lo, term_hi = factor_term_bounds(factor, writable=False)
    bias = factor.bias.astype(object)
    return signed_bits(*prefix_sum_range(bias, bias, term_lo.T, term_hi.T))


def unit_accumulator_bits(limits) -> int:
    """Enough for any factor within `limits`: features terms of |m * x| <= 128 * 2^32 onto an int32 bias."""
    terms = limits.features * (128 << SHIFT_AMOUNT_MAX)
    return signed_bits(-(1 << (INT32_BITS - 1)) - terms, (1 << (INT32_BITS - 1)) - 1 + terms)


def butterfly_steps(layer, rows: int, table_base: int, limits) -> list[UnitStep]:
    """One step per factor of `layer`, input side first, on `rows` rows.

    Factor k's records are placed right after factor k-1's: step k's table base is
    table_base + len(step 0's table_words) + ... + len(step k-1's table_words), and its
    `table_base` parameter says so. Step k reads rows * q_k int8 elements (factor 0: the
    layer's input, later ones: the previous step's output) and writes rows * p_k int8
    elements, or rows * p_k * 4 bytes for the last factor of a layer whose output is "acc".
    Refuses, before any step is made, rows beyond limits.tokens, a factor's p or q beyond
    limits.features, the records beyond the table memory (or a 16-bit base), and an "acc"
    output whose accumulator does not fit int32.
    """
    factors = layer.factors
    last = len(factors) - 1
    if rows > limits.tokens:
        raise LimitError(layer.name, "rows (tokens)", rows, limits.tokens)
    for k, factor in enumerate(factors):
        for name, value in (("p (outputs)", factor.p), ("q (inputs)", factor.q)):
            if value > limits.features:
                raise LimitError(layer.name, f"factor {k} {name}", value, limits.features)
    if layer.output == "acc" and accumulator_bits(factors[last]) > INT32_BITS:
        raise LimitError(layer.name, f"factor {last} accumulator bits (output acc, int32)",
                         accumulator_bits(factors[last]), INT32_BITS)
    words = [factor_table_words(factor) for factor in factors]
    end = table_base + sum(len(w) for w in words)
    table_limit = min(limits.table_words, FIELD_LIMIT)
    if end > table_limit:
        raise LimitError(layer.name, "table memory words (end of its factors' records)", end, table_limit)

    steps, base = [], table_base
    for k, (factor, table_words) in enumerate(zip(factors, words)):
        p, q, r, s, t = factor.shape
        output_acc = k == last and layer.output == "acc"
        out_bytes = ACC_BYTES if output_acc else 1
        params = {"rows": rows, "q": q, "r": r, "s": s, "t": t, "shift_weights": int(factor.weights == "shift"),
                  "output_acc": int(output_acc), "out_shift": 0 if output_acc else factor.out_shift,
                  "table_base": base}
        bound, rule = (rows * max(p * s, ACC_BYTES * p), "T*max(p*s, 4*p)") if output_acc else (rows * p * s, "T*p*s")
        steps.append(UnitStep(params, table_words, rows * q, rows * p * out_bytes, bound, rule))
        base += len(table_words)
    return steps


class ButterflyUnit(wiring.Component):
    """One factor a step, one term a cycle; see the module docstring.

    After `done` every register is where `start` wants it (both row halves free, the walk
    at its first term, the pipeline empty) except the copies of the step's parameters,
    so `start` loads only those.
    """

    def __init__(self, limits):
        self.limits = limits
        self.acc_bits = unit_accumulator_bits(limits)
        super().__init__(UnitSignature(params_layout(FIELDS), limits, acc_bits=self.acc_bits))

    def elaborate(self, platform):
        m = Module()
        width = self.limits.features.bit_length()          # any of r, s, t, a column
        shape = {name: getattr(self.params, name)[:width] for name in ("r", "s", "t")}
        last_column = Signal(width)                        # q - 1, the last column of a row
        with m.If(self.start):
            m.d.sync += last_column.eq(self.params.q - 1)
        full, buffer_read = self._row_buffer(m, last_column)
        summed = Signal()                                  # acc holds an output's finished sum
        can_load = Signal()
        advance = ~summed | can_load
        flags1, x = self._walk(m, shape, last_column, advance, full, buffer_read)
        flags3, term, bias = self._term(m, advance, flags1, x)
        acc = self._accumulate(m, advance, flags3, term, bias)
        final = Signal()
        with m.If(advance):
            m.d.sync += [summed.eq(flags3["valid"] & flags3["last"]), final.eq(flags3["final"])]
        self._emit(m, summed, final, can_load, acc)
        return m

    def _row_buffer(self, m, last_column):
        """The two halves of input rows and their writer: element c of a row into half `fill`
        at column c; a half is `full` once its row is complete, until the walk releases it."""
        width = len(last_column)
        m.submodules.rows = buffer = memory.Memory(shape=signed(8), depth=2 << width, init=[])
        write, read = buffer.write_port(), buffer.read_port()
        to_write = Signal(range(self.limits.tokens + 1))        # rows still to be taken
        full = [Signal(name="full0"), Signal(name="full1")]
        fill = Signal()
        column = Signal(width)
        take = self.i.valid & self.i.ready
        row_taken = take & (column == last_column)
        m.d.comb += [self.i.ready.eq((to_write != 0) & ~Mux(fill, full[1], full[0])),
                     write.addr.eq(Cat(column, fill)), write.data.eq(self.i.payload), write.en.eq(take)]
        with m.If(take):
            m.d.sync += column.eq(Mux(row_taken, 0, column + 1))
        with m.If(row_taken):
            m.d.sync += [fill.eq(~fill), to_write.eq(to_write - 1)]
            for half, flag in enumerate(full):
                with m.If(fill == half):
                    m.d.sync += flag.eq(1)
        with m.If(self.start):
            m.d.sync += to_write.eq(self.params.rows)
        return full, read

    def _walk(self, m, shape, last_column, advance, full, buffer_read):
        """S0: for each row, output after output, term after term: the input column
        b*s*t + j*t + e of the buffer and the record word the term's code is in.

        Counters run down: j_left terms of the output after this one, e_left positions
        of the row group, i_left row groups of the block. Returns S1's flags (and the
        code's lane) and the input element (the buffer's read data)."""
        r, s, t = shape["r"], shape["s"], shape["t"]
        width = len(last_column)
        drain = Signal()                                   # the half being computed
        running = Mux(drain, full[1], full[0])
        issue = advance & running
        j_left, e_left, i_left = Signal(width), Signal(width), Signal(width)
        column, output_column, block_column = Signal(width), Signal(width), Signal(width)
        first = Signal(init=1)                             # the output's first term
        lane = Signal(3, init=FIRST_CODE_LANE)             # the term's code byte in its word
        next_word = Signal.like(self.table.addr)
        rows_left = Signal(range(self.limits.tokens + 1))

        last_term = j_left == 0
        row_done = last_term & (e_left == 0) & (i_left == 0) & (column == last_column)
        read_word = first | (lane == 0)
        m.d.comb += [self.table.addr.eq(next_word), self.table.en.eq(issue & read_word),
                     buffer_read.addr.eq(Cat(column, drain)), buffer_read.en.eq(advance)]
        with m.If(issue):
            with m.If(read_word):
                m.d.sync += next_word.eq(next_word + 1)
            with m.If(~last_term):
                m.d.sync += [j_left.eq(j_left - 1), column.eq(column + t), first.eq(0), lane.eq(lane + 1)]
            with m.Else():
                m.d.sync += [j_left.eq(s - 1), first.eq(1), lane.eq(FIRST_CODE_LANE)]
                with m.If(e_left != 0):                    # next position e of the row group
                    m.d.sync += [e_left.eq(e_left - 1), output_column.eq(output_column + 1),
                                 column.eq(output_column + 1)]
                with m.Elif(i_left != 0):                  # next row group i of the block
                    m.d.sync += [e_left.eq(t - 1), i_left.eq(i_left - 1), output_column.eq(block_column),
                                 column.eq(block_column)]
                with m.Elif(~row_done):                    # next block: its columns follow this one's
                    m.d.sync += [e_left.eq(t - 1), i_left.eq(r - 1), block_column.eq(column + 1),
                                 output_column.eq(column + 1), column.eq(column + 1)]
                with m.Else():                             # the row is done: release its half
                    m.d.sync += [e_left.eq(t - 1), i_left.eq(r - 1), block_column.eq(0), output_column.eq(0),
                                 column.eq(0), next_word.eq(self.params.table_base), drain.eq(~drain),
                                 rows_left.eq(rows_left - 1)]
                    for half, flag in enumerate(full):
                        with m.If(drain == half):
                            m.d.sync += flag.eq(0)
        with m.If(self.start):
            m.d.sync += [j_left.eq(s - 1), e_left.eq(t - 1), i_left.eq(r - 1),
                         next_word.eq(self.params.table_base), rows_left.eq(self.params.rows)]

        flags1 = {"valid": Signal(), "first": Signal(), "last": Signal(), "final": Signal(), "lane": Signal(3)}
        with m.If(advance):
            m.d.sync += [flags1["valid"].eq(running), flags1["first"].eq(first), flags1["last"].eq(last_term),
                         flags1["final"].eq(row_done & (rows_left == 1)), flags1["lane"].eq(lane)]
        return flags1, buffer_read.data

    def _term(self, m, advance, flags1, x):
        """S1: the term's code byte from the word on the table port, its input element (for
        a shift factor also times its sign) and the record's bias (used on an output's
        first term) registered; S2: the term m * x formed and registered."""
        code = self.table.data.word_select(flags1["lane"], 8)
        sign = code[6:8].as_signed()
        code2, x2, signed_x2 = Signal(8), Signal(signed(8)), Signal(signed(9))
        bias2, bias3 = Signal(signed(INT32_BITS)), Signal(signed(INT32_BITS))
        flags2 = {name: Signal(name=f"{name}2") for name in ("valid", "first", "last", "final")}
        with m.If(advance):
            m.d.sync += [code2.eq(code), x2.eq(x), signed_x2.eq(Mux(sign == 0, 0, Mux(sign[1], -x, x))),
                         bias2.eq(self.table.data[:INT32_BITS]), *(flags2[name].eq(flags1[name]) for name in flags2)]
        product = code2.as_signed() * x2
        amount = code2[:6]
        shifted = Mux(amount[5], signed_x2 << SHIFT_AMOUNT_MAX, signed_x2 << amount[:5])
        term = Signal(signed(len(signed_x2) + SHIFT_AMOUNT_MAX))
        flags3 = {name: Signal(name=f"{name}3") for name in flags2}
        with m.If(advance):
            m.d.sync += [term.eq(Mux(self.params.shift_weights, shifted, product)), bias3.eq(bias2),
                         *(flags3[name].eq(flags2[name]) for name in flags3)]
        return flags3, term, bias3

    def _accumulate(self, m, advance, flags3, term, bias):
        """S3: the term onto the bias (first term) or the running sum; the sum of an
        output's last term stays in `acc` while S4 takes it."""
        acc = Signal(signed(self.acc_bits))
        with m.If(advance & flags3["valid"]):
            m.d.sync += acc.eq(Mux(flags3["first"], bias, acc) + term)
        return acc

    def _emit(self, m, summed, final_sum, can_load, acc):
        """S4 and the output: acc into the output register, offered as a unit output at
        out_shift (int8, for the engine's one requantizer) or as its 4 bytes from the bottom,
        a byte shift register (raw). `done` with the step's last byte."""
        out = Signal(signed(self.acc_bits))
        left = Signal(range(ACC_BYTES + 1))                # bytes of `out` still to be taken
        final = Signal()
        take = self.o.valid & self.o.ready
        raw = self.params.output_acc
        m.d.comb += [self.o.valid.eq(left != 0), self.o.payload.acc.eq(out), self.o.payload.raw.eq(raw),
                     self.o.payload.shift.eq(Mux(raw, 0, self.params.out_shift)),
                     can_load.eq((left == 0) | ((left == 1) & self.o.ready)),
                     self.done.eq(take & (left == 1) & final)]
        with m.If(summed & can_load):
            m.d.sync += [out.eq(acc), left.eq(Mux(raw, ACC_BYTES, 1)), final.eq(final_sum)]
        with m.Elif(take):
            m.d.sync += [out.eq(out >> 8), left.eq(left - 1)]
