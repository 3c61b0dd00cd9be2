"""The `dense` unit: acc[m] = bias[m] + sum_d weights[m, d] * x[d] on one multiplier
(docs/spec.md sections 9 and 16).

Every `dense` layer of a network runs on this one unit, so nothing of a layer is in its
gates: a step reads `rows` rows of D int8 inputs and writes, per row, M outputs
sat8(rshift_round(acc, out_shift)) or, with `acc_output`, each acc as 4 bytes, little
endian (docs/spec.md section 2). One 8 x 8 signed product a cycle (one DSP block) makes
the step's bound rows * D * M cycles.

Table memory, at the step's `table_base`: one record per output m, ceil((D + 4) / 8)
words, read in order: bias[m] (int32) in bytes 0-3 of its first word, then weights[m, :]
from byte 4 on, eight int8 to a word. So the one table port reads nothing but the next
word, and the word on the port is all a term needs: no copy of it is kept, the term's
byte is picked off the port, and the bias is still on it when the output's first term
is added (no other word is read in between).

The row waits in a ping-pong buffer (two banks of the widest row, one block RAM): the
input fills one bank while the loop reads the other, and the loop chases the input in
the bank being filled (term (m, d) once x[d] is written), so a row's terms start the
cycle after its first element arrives. Both sides count down from D, x[d] at address
D - d of its bank, so that a count's end is a comparison with 1. The stages move together
on `advance`, which drops only while a finished sum waits for the output register:

- issue: term (m, d), x[d] read from the row buffer; a term at byte 0 of a word, or the
  record's first, reads that word from the table;
- multiply: x[d] times the term's byte of the word on the port;
- accumulate: acc + product, in `acc_bits` bits: any int32 bias plus `limits.features`
  products of int8 values, so nothing within the limits wraps; an output's first term
  adds to the bias on the port instead of acc;
- output: a finished acc moves to the output register, which offers it as a unit output
  at out_shift to the engine's one requantizer (docs/spec.md section 16.4); a raw
  accumulator's bytes leave from its bottom byte, each taken one shifting the next down.
  With D >= 4 for raw bytes the output never holds the loop up.

With D = 1 every term reads a word, and the word of an output's bias must stay on the port
until the cycle after its product: a term waits a cycle after one that read a bias.
"""
import numpy as np
from amaranth import Cat, Module, Mux, Signal
from amaranth.hdl import signed
from amaranth.lib import wiring

from nomac.hw.buffer_memory import BufferMemory
from nomac.hw.network.requantize import ACC_BYTES
from nomac.hw.network.unit import TABLE_WORD_BYTES, Field, LimitError, UnitSignature, UnitStep, params_layout
from nomac.hw.widths import signed_bits

__all__ = ["FIELDS", "DenseUnit", "dense_step", "dense_accumulator_bits", "dense_record_words"]

FIELDS = (Field("rows", 16), Field("in_features", 16), Field("out_features", 16), Field("out_shift", 6),
          Field("acc_output", 1), Field("table_base", 16))

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
BIAS_BYTES = 4
FIRST_LANE = BIAS_BYTES               # weights[m, 0]'s byte in its record's first word


def dense_accumulator_bits(features: int) -> int:
    """Bits of the unit's accumulator: any int32 bias plus up to `features` products of int8
    weights and int8 inputs, every partial sum included (docs/spec.md section 6.4)."""
    return signed_bits(INT32_MIN + features * (-128 * 127), INT32_MAX + features * (-128 * -128))


def dense_record_words(in_features: int) -> int:
    """Table words of one output's record: its int32 bias, then its D int8 weights."""
    return -(-(BIAS_BYTES + in_features) // TABLE_WORD_BYTES)


def _layer_accumulator_range(layer) -> tuple[int, int]:
    """Extremes of acc over every int8 input, from the layer's own arrays (each term at a corner)."""
    weights = layer.weights.astype(np.int64)
    bias = layer.bias.astype(np.int64)
    lo = bias + np.minimum(127 * weights, -128 * weights).sum(axis=1)
    hi = bias + np.maximum(127 * weights, -128 * weights).sum(axis=1)
    return int(lo.min()), int(hi.max())


def _records(layer) -> list[int]:
    """The table words: per output its bias (little-endian int32) and weights, zero-padded."""
    D, M = layer.in_features, layer.out_features
    records = np.zeros((M, dense_record_words(D) * TABLE_WORD_BYTES), dtype=np.uint8)
    records[:, :BIAS_BYTES] = np.asarray(layer.bias, dtype="<i4").reshape(M, 1).view(np.uint8)
    records[:, BIAS_BYTES:BIAS_BYTES + D] = np.asarray(layer.weights, dtype=np.int8).view(np.uint8)
    return [int.from_bytes(records.tobytes()[n:n + TABLE_WORD_BYTES], "little")
            for n in range(0, records.size, TABLE_WORD_BYTES)]


def dense_step(layer, rows: int, table_base: int, limits) -> UnitStep:
    """The layer on `rows` rows: its parameters, its table words at `table_base` (one record
    per output), and the bound max(T*D*M, T*D, T*M*B), B output bytes per accumulator."""
    D, M = layer.in_features, layer.out_features
    acc_output = layer.output == "acc"
    table_end = table_base + M * dense_record_words(D)
    for what, value, limit in (("rows", rows, limits.tokens), ("in_features", D, limits.features),
                               ("out_features", M, limits.features), ("table end", table_end, limits.table_words)):
        if value > limit:
            raise LimitError(layer.name, what, value, limit)
    if rows < 1 or table_base < 0:
        raise ValueError(f"dense step of layer '{layer.name}': rows = {rows}, table_base = {table_base}: "
                         "need rows >= 1 and table_base >= 0")
    if acc_output:
        bits = signed_bits(*_layer_accumulator_range(layer))
        if bits > 32:
            raise LimitError(layer.name, "accumulator bits (output acc)", bits, 32)
    bytes_per_acc = ACC_BYTES if acc_output else 1
    params = {"rows": rows, "in_features": D, "out_features": M, "out_shift": layer.out_shift,
              "acc_output": int(acc_output), "table_base": table_base}
    bound = max(rows * D * M, rows * D, rows * M * bytes_per_acc)
    rule = "max(T*D*M, T*D, 4*T*M)" if acc_output else "max(T*D*M, T*D, T*M)"
    return UnitStep(params, _records(layer), rows * D, rows * M * bytes_per_acc, bound, rule)


class DenseUnit(wiring.Component):
    """One product a cycle over a double-buffered row; see the module docstring."""

    def __init__(self, limits):
        for what, value, most in (("tokens", limits.tokens, 0xFFFF), ("features", limits.features, 0xFFFF),
                                  ("table_words", limits.table_words, 1 << 16)):
            if value > most:
                raise ValueError(f"DenseUnit: limits.{what} = {value}: must be at most {most} (16-bit fields)")
        self.limits = limits
        self.acc_bits = dense_accumulator_bits(limits.features)
        super().__init__(UnitSignature(params_layout(FIELDS), limits, multiplier=True, acc_bits=self.acc_bits))

    def elaborate(self, platform):
        m = Module()
        p, limits = self.params, self.limits
        features = limits.features
        # dense_step refuses D, M > features and rows > tokens: the counts need only these bits
        count_bits = features.bit_length()
        D, M = p.in_features[:count_bits], p.out_features[:count_bits]
        rows = p.rows[:limits.tokens.bit_length()]
        # A cycle that reads the x being written is one whose term waits for it: no read that
        # matters meets a write.
        m.submodules.row_buffer = row_buffer = BufferMemory(shape=signed(8), depth=2 << count_bits)
        row_write, row_read = row_buffer.write, row_buffer.read
        advance = Signal()              # every stage moves this cycle
        fill, drain = Signal(), Signal()                  # the banks being filled and read
        rows_left = Signal(range(limits.tokens + 1))      # rows of the step not yet issued in full
        issuing, last_row = rows_left != 0, rows_left == 1

        # Input side: fill bank `fill` with a row (x[d] at D - d), mark it full, go on to the
        # other bank. A step ends with both banks free and fill == drain, so only the counts
        # start anew.
        full = [Signal(name="full0"), Signal(name="full1")]
        fill_left = Signal(range(features + 1))
        fill_last = fill_left == 1
        # The input side is on the issue side's row while fill == drain, else on the next:
        # it takes the input while that row is one of the step's and its bank is free.
        m.d.comb += [self.i.ready.eq(issuing & ((fill == drain) | ~last_row) & ~Mux(fill, full[1], full[0])),
                     row_write.addr.eq(Cat(fill_left, fill)),
                     row_write.data.eq(self.i.payload),
                     row_write.en.eq(self.i.valid & self.i.ready)]
        with m.If(row_write.en):
            m.d.sync += fill_left.eq(Mux(fill_last, D, fill_left - 1))
            with m.If(fill_last):
                m.d.sync += fill.eq(~fill)

        # Issue stage: term (m, d) of the row in bank `drain`, in_left = D - d, out_left = M - m.
        in_left, out_left = Signal(range(features + 1)), Signal(range(features + 1))
        first = Signal()                                  # d = 0: the term reads its record's first word
        lane = Signal(3)                                  # the term's byte in its word
        table_addr = Signal(len(self.table.addr))         # the next word to read
        in_last, out_last = in_left == 1, out_left == 1
        row_last = in_last & out_last
        # x[d] is in: its bank is full, or it is the bank being filled and the input is past
        # it (never behind it: a term waits for its x)
        x_written = Mux(drain, full[1], full[0]) | ((fill == drain) & (fill_left != in_left))
        mul_term, mul_first = Signal(), Signal()
        reads = first | (lane == 0)
        bias_hold = reads & mul_term & mul_first          # D = 1: the last word read holds a bias still needed
        term = Signal()
        m.d.comb += [term.eq(issuing & x_written & ~bias_hold),
                     row_read.addr.eq(Cat(in_left, drain)), row_read.en.eq(advance),
                     # a read for a term that waits for its x reads the same word again: harmless
                     self.table.en.eq(advance & issuing & reads & ~bias_hold),
                     self.table.addr.eq(table_addr)]
        with m.If(advance & term):
            m.d.sync += [in_left.eq(Mux(in_last, D, in_left - 1)), first.eq(in_last),
                         lane.eq(Mux(in_last, FIRST_LANE, lane + 1))]
            with m.If(reads):
                m.d.sync += table_addr.eq(table_addr + 1)
            with m.If(in_last):
                m.d.sync += out_left.eq(Mux(out_last, M, out_left - 1))
            with m.If(row_last):            # the row's last x is read: its bank is free
                m.d.sync += [drain.eq(~drain), rows_left.eq(rows_left - 1),
                             table_addr.eq(p.table_base)]
        for bank in (0, 1):
            with m.If(row_write.en & fill_last & (fill == bank)):
                m.d.sync += full[bank].eq(1)
            with m.Elif(advance & term & row_last & (drain == bank)):
                m.d.sync += full[bank].eq(0)

        # Multiply stage: x[d] times the term's byte of the word on the port.
        mul_last, mul_lane = Signal(), Signal(3)
        with m.If(advance):
            m.d.sync += [mul_term.eq(term), mul_first.eq(first), mul_last.eq(in_last), mul_lane.eq(lane)]
        product = Signal(signed(16), reset_less=True)
        acc_term, acc_first, acc_last = Signal(), Signal(), Signal()
        m.d.comb += [self.multiplier.a.eq(self.table.data.word_select(mul_lane, 8).as_signed()),
                     self.multiplier.b.eq(row_read.data)]   # x[d], read at the issue stage's edge
        with m.If(advance):
            m.d.sync += [product.eq(self.multiplier.p), acc_term.eq(mul_term), acc_first.eq(mul_first),
                         acc_last.eq(mul_last)]

        # Accumulate stage: an output's first product adds to its bias, still on the port.
        acc = Signal(signed(self.acc_bits), reset_less=True)
        bias = self.table.data[:8 * BIAS_BYTES].as_signed()
        finished = Signal()                               # acc holds a finished sum, not yet moved
        out = Signal(signed(self.acc_bits), reset_less=True)
        out_valid, out_final = Signal(), Signal()
        shifts_left = Signal(range(ACC_BYTES))            # raw: the bytes still to come after the one on offer
        raw = p.acc_output
        last = shifts_left == 0
        taken = self.o.valid & self.o.ready
        move = finished & (~out_valid | (taken & last))
        m.d.comb += advance.eq(~(finished & acc_term & ~move))
        with m.If(advance & acc_term):
            m.d.sync += acc.eq(Mux(acc_first, bias, acc) + product)
        with m.If(advance & acc_term & acc_last):
            m.d.sync += finished.eq(1)
        with m.Elif(move):
            m.d.sync += finished.eq(0)

        # Output stage: the finished acc, on offer at out_shift; a raw accumulator's bytes leave
        # from its bottom, each taken one shifting the next down.
        with m.If(move):
            # the step's last sum: no term left to issue or in flight
            m.d.sync += [out.eq(acc), out_valid.eq(1), out_final.eq(~issuing & ~mul_term & ~acc_term),
                         shifts_left.eq(Mux(raw, ACC_BYTES - 1, 0))]
        with m.Else():
            with m.If(~last & taken):
                m.d.sync += [out.eq(out >> 8), shifts_left.eq(shifts_left - 1)]
            with m.If(taken & last):
                m.d.sync += out_valid.eq(0)
        m.d.comb += [self.o.valid.eq(out_valid), self.o.payload.acc.eq(out), self.o.payload.raw.eq(raw),
                     self.o.payload.shift.eq(Mux(raw, 0, p.out_shift)), self.done.eq(taken & out_final & last)]

        with m.If(self.start):
            m.d.sync += [fill_left.eq(D), in_left.eq(D), out_left.eq(M), first.eq(1),
                         lane.eq(FIRST_LANE), table_addr.eq(p.table_base), rows_left.eq(rows)]
        return m
