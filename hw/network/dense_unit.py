"""The `dense` unit: acc[m] = bias[m] + sum_d weights[m, d] * x[d] on one multiplier
(docs/spec.md sections 9 and 16).

Every `dense` layer of a network runs on this one unit, so nothing of a layer is in its
gates: a step reads `rows` rows of D int8 inputs and writes, per row, M outputs
sat8(rshift_round(acc, out_shift)) or, with `acc_output`, each acc as 4 bytes, little
endian (docs/spec.md section 2). One 8 x 8 signed product a cycle (one DSP block) makes
the step's bound rows * D * M cycles.

Table memory, at the step's bases: `weights` flattened row-major ([M, D], the order the
loop reads them), eight int8 to a word; `bias` int32, two to a word.

The row waits in a ping-pong buffer (two banks of the widest row, one block RAM): the
input fills one bank while the loop reads the other, and the loop chases the input in
the bank being filled (term (0, d) once x[d] is written), so a row's terms start the
cycle after its first element arrives. The stages move together on `advance`, which
drops only while a finished sum waits for the output register:

- issue: term (m, d), x[d] read from the row buffer. A cycle whose term is the first of
  a weight word (lane 0) reads that word from the table, any other cycle may read the
  bias of the output after the current one, so the one table port serves both;
- multiply: x[d] times the term's weight, lane 0 straight from the port, later lanes from
  `rest`, which keeps the word; a bias read lands in `bias`;
- accumulate: acc + product, in `acc_bits` bits: any int32 bias plus `limits.features`
  products of int8 values, so nothing within the limits wraps; the last term's sum goes
  to `result` while acc takes the next output's bias (so no multiplexer sits in front
  of the adder); bias[0], the step's first read, goes to acc before the first term;
- output: the window of `result` that the output rule needs, or that holds a raw
  accumulator's next byte, moves to the output register; rounding and saturation sit
  between that register and `o` (hw/network/requantize.py).

The bias of output m+1 is read in the first cycle from the one issuing term (m, 0) on
that reads no weight word, and term (m, D-1) waits for it: with D >= 2 it never waits;
with D = 1 a term at lane 0 (one output in eight) waits a cycle, but the step's last.
"""
import numpy as np
from amaranth import Cat, Module, Mux, Signal
from amaranth.hdl import signed
from amaranth.lib import memory, wiring

from nomac.hw.network.requantize import ACC_BYTES, WINDOW, output_element, output_window
from nomac.hw.network.unit import (TABLE_WORD_BYTES, Field, LimitError, UnitSignature, UnitStep, pack_words,
                                   params_layout, words_of_bytes)
from nomac.hw.widths import signed_bits

__all__ = ["FIELDS", "DenseUnit", "dense_step", "dense_accumulator_bits"]

FIELDS = (Field("rows", 16), Field("in_features", 16), Field("out_features", 16), Field("out_shift", 6),
          Field("acc_output", 1), Field("weights_base", 16), Field("bias_base", 16))

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
BIASES_PER_WORD = 2


def dense_accumulator_bits(features: int) -> int:
    """Bits of the unit's accumulator: any int32 bias plus up to `features` products of int8
    weights and int8 inputs, every partial sum included (docs/spec.md section 6.4)."""
    return signed_bits(INT32_MIN + features * (-128 * 127), INT32_MAX + features * (-128 * -128))


def _layer_accumulator_range(layer) -> tuple[int, int]:
    """Extremes of acc over every int8 input, from the layer's own arrays (each term at a corner)."""
    weights = layer.weights.astype(np.int64)
    bias = layer.bias.astype(np.int64)
    lo = bias + np.minimum(127 * weights, -128 * weights).sum(axis=1)
    hi = bias + np.maximum(127 * weights, -128 * weights).sum(axis=1)
    return int(lo.min()), int(hi.max())


def dense_step(layer, rows: int, table_base: int, limits) -> UnitStep:
    """The layer on `rows` rows: its parameters, its table words at `table_base` (weights,
    then bias), and the bound max(T*D*M, T*D, T*M*B), B output bytes per accumulator."""
    D, M = layer.in_features, layer.out_features
    acc_output = layer.output == "acc"
    weight_words = -(-D * M // TABLE_WORD_BYTES)
    table_end = table_base + weight_words + -(-M // BIASES_PER_WORD)
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
              "acc_output": int(acc_output), "weights_base": table_base, "bias_base": table_base + weight_words}
    words = words_of_bytes(layer.weights.reshape(-1)) + pack_words(layer.bias, 32)
    bound = max(rows * D * M, rows * D, rows * M * bytes_per_acc)
    rule = "max(T*D*M, T*D, 4*T*M)" if acc_output else "max(T*D*M, T*D, T*M)"
    return UnitStep(params, words, rows * D, rows * M * bytes_per_acc, bound, rule)


class DenseUnit(wiring.Component):
    """One product a cycle over a double-buffered row; see the module docstring."""

    def __init__(self, limits):
        for what, value, most in (("tokens", limits.tokens, 0xFFFF), ("features", limits.features, 0xFFFF),
                                  ("table_words", limits.table_words, 1 << 16)):
            if value > most:
                raise ValueError(f"DenseUnit: limits.{what} = {value}: must be at most {most} (16-bit fields)")
        self.limits = limits
        self.acc_bits = dense_accumulator_bits(limits.features)
        super().__init__(UnitSignature(params_layout(FIELDS), limits, multiplier=True))

    def elaborate(self, platform):
        m = Module()
        p, limits = self.params, self.limits
        features = limits.features
        # dense_step refuses D, M > features and rows > tokens: compare only the bits those need
        count_bits = features.bit_length()
        D, M = p.in_features[:count_bits], p.out_features[:count_bits]
        rows = p.rows[:limits.tokens.bit_length()]
        bank_bits = max(1, (features - 1).bit_length())
        m.submodules.row_buffer = row_buffer = memory.Memory(shape=signed(8), depth=2 << bank_bits, init=[])
        row_write, row_read = row_buffer.write_port(), row_buffer.read_port()

        advance = Signal()              # every stage moves this cycle
        # The counters' first/last flags are registers, set a count ahead, so that no
        # enable waits for a comparison.

        # Input side: fill bank `fill` with a row, mark it full, go on to the other bank.
        full = [Signal(name="full0"), Signal(name="full1")]
        fill, fill_count, fill_last = Signal(), Signal(range(features)), Signal()
        fill_rows_left = Signal(range(limits.tokens + 1))
        m.d.comb += [self.i.ready.eq((fill_rows_left != 0) & ~Mux(fill, full[1], full[0])),
                     row_write.addr.eq(Cat(fill_count, fill)),
                     row_write.data.eq(self.i.payload),
                     row_write.en.eq(self.i.valid & self.i.ready)]
        with m.If(row_write.en):
            m.d.sync += [fill_count.eq(Mux(fill_last, 0, fill_count + 1)),
                         fill_last.eq(Mux(fill_last, D == 1, fill_count + 2 == D))]
            with m.If(fill_last):
                m.d.sync += [fill.eq(~fill), fill_rows_left.eq(fill_rows_left - 1)]

        # Issue stage: term (out_index, in_index) of the row in bank `drain`.
        drain = Signal()
        out_index, in_index = Signal(range(features)), Signal(range(features))
        in_last, out_last = Signal(), Signal()
        lane = Signal(3)                                  # the term's byte in its weight word
        weight_addr = Signal(len(self.table.addr))        # the next weight word to read
        issue_rows_left = Signal(range(limits.tokens + 1))
        primed = Signal()                                 # bias[0] is read: the step's first read
        bias_index = Signal(range(features))              # the output whose bias is read next,
        bias_addr = Signal(len(self.table.addr))          # ... its word,
        bias_read_done = Signal()                         # ... and whether it has been read
        row_last = in_last & out_last
        issuing = issue_rows_left != 0
        last_row = issue_rows_left == 1
        final_output = last_row & out_last               # no bias is read for an output after it
        # x[in_index] is in: its bank is full, or it is the bank being filled and the input
        # is past in_index (never behind it: a term waits for its x)
        x_written = Mux(drain, full[1], full[0]) | ((fill == drain) & (fill_count != in_index))
        # A lane-0 cycle reads the weight word (needed if its term issues, harmless if not),
        # unless the term waits for a bias; any other cycle may read a bias. An output's last
        # term waits until the next output's bias is read (that cycle at the latest), as the
        # accumulator takes that bias when it adds the last term. Neither read depends on
        # `term`, so the table port is driven from registers.
        term, weight_read, bias_read = Signal(), Signal(), Signal()
        bias_wait = in_last & ~bias_read_done & ~final_output
        m.d.comb += [term.eq(issuing & primed & x_written & (~bias_wait | (lane != 0))),
                     weight_read.eq(primed & (lane == 0) & ~bias_wait),
                     bias_read.eq(issuing & (~primed | (~bias_read_done & ~final_output & ((lane != 0) | in_last)))),
                     row_read.addr.eq(Cat(in_index, drain)),
                     row_read.en.eq(advance),
                     self.table.en.eq(advance & issuing & (weight_read | bias_read)),
                     self.table.addr.eq(Mux(weight_read, weight_addr, bias_addr))]
        with m.If(advance & term):
            m.d.sync += [in_index.eq(Mux(in_last, 0, in_index + 1)),
                         in_last.eq(Mux(in_last, D == 1, in_index + 2 == D)), lane.eq(lane + 1)]
            with m.If(lane == 0):
                m.d.sync += weight_addr.eq(weight_addr + 1)
            with m.If(in_last):
                m.d.sync += [out_index.eq(Mux(out_last, 0, out_index + 1)),
                             out_last.eq(Mux(out_last, M == 1, out_index + 2 == M))]
            with m.If(row_last):            # the row's last x is read: its bank is free
                m.d.sync += [drain.eq(~drain), issue_rows_left.eq(issue_rows_left - 1),
                             lane.eq(0), weight_addr.eq(p.weights_base)]
        with m.If(advance):
            with m.If(bias_read & ~primed):
                m.d.sync += primed.eq(1)
            with m.Elif(term & in_last):
                m.d.sync += bias_read_done.eq(0)       # the bias read is consumed; the next one is due
            with m.Elif(bias_read):
                m.d.sync += bias_read_done.eq(1)
            with m.If(bias_read):
                bias_wraps = bias_index + 1 == M
                m.d.sync += [bias_index.eq(Mux(bias_wraps, 0, bias_index + 1)),
                             bias_addr.eq(Mux(bias_wraps, p.bias_base, bias_addr + bias_index[0]))]
        for bank in (0, 1):
            with m.If(row_write.en & fill_last & (fill == bank)):
                m.d.sync += full[bank].eq(1)
            with m.Elif(advance & term & row_last & (drain == bank)):
                m.d.sync += full[bank].eq(0)

        # Multiply stage: the word read at lane 0 is on the port; later lanes come from `rest`.
        mul_term, mul_fresh, mul_prime, mul_last, mul_final = (Signal(name=f"mul_{n}") for n in
                                                               ("term", "fresh", "prime", "last", "final"))
        mul_bias, mul_bias_lane = Signal(), Signal()
        with m.If(advance):
            m.d.sync += [mul_term.eq(term), mul_fresh.eq(lane == 0), mul_prime.eq(bias_read & ~primed),
                         mul_last.eq(in_last), mul_final.eq(row_last & last_row),
                         mul_bias.eq(bias_read), mul_bias_lane.eq(bias_index[0])]
        rest = Signal(64 - 8, reset_less=True)            # the word's lanes still to come, lane 1 at the bottom
        bias = Signal(signed(32), reset_less=True)
        weight = Signal(signed(8))
        m.d.comb += weight.eq(Mux(mul_fresh, self.table.data[:8], rest[:8]))
        product = Signal(signed(16), reset_less=True)
        acc_term, acc_prime, acc_last, acc_final = (Signal(name=f"acc_{n}") for n in
                                                    ("term", "prime", "last", "final"))
        m.d.comb += [self.multiplier.a.eq(weight), self.multiplier.b.eq(row_read.data)]
        with m.If(advance):
            m.d.sync += [product.eq(self.multiplier.p),
                         acc_term.eq(mul_term), acc_prime.eq(mul_prime), acc_last.eq(mul_last),
                         acc_final.eq(mul_final)]
            with m.If(mul_term):
                m.d.sync += rest.eq(Mux(mul_fresh, self.table.data[8:], rest[8:]))
            with m.If(mul_bias):
                m.d.sync += bias.eq(self.table.data.word_select(mul_bias_lane, 32))

        # Accumulate stage: the last term's sum goes to `result` and the next output's bias
        # to `acc` (bias[0] at the step's start), so no multiplexer sits in front of the adder.
        acc = Signal(signed(self.acc_bits), reset_less=True)
        acc_next = acc + product
        result = Signal(signed(self.acc_bits), reset_less=True)
        result_valid, result_final = Signal(), Signal()
        byte_index = Signal(range(ACC_BYTES))             # the byte of a raw accumulator to move next
        out_window = Signal(WINDOW)
        out_valid, out_final = Signal(), Signal()
        move, last_byte = Signal(), Signal()
        m.d.comb += [move.eq(result_valid & (~out_valid | self.o.ready)),
                     last_byte.eq(~p.acc_output | (byte_index == ACC_BYTES - 1)),
                     advance.eq(~(acc_term & acc_last & result_valid & ~(move & last_byte)))]
        with m.If(advance & (acc_term | acc_prime)):
            m.d.sync += acc.eq(Mux(acc_last | ~acc_term, bias, acc_next))
        with m.If(advance & acc_term & acc_last):
            m.d.sync += [result.eq(acc_next), result_valid.eq(1), result_final.eq(acc_final), byte_index.eq(0)]
        with m.Elif(move):
            m.d.sync += [result_valid.eq(~last_byte), byte_index.eq(byte_index + 1)]

        # Output stage: the element's window into the output register, rounded on its way to `o`.
        with m.If(move):
            m.d.sync += [out_window.eq(output_window(result, p.out_shift, p.acc_output, byte_index)),
                         out_valid.eq(1), out_final.eq(result_final & last_byte)]
        with m.Elif(self.o.ready):
            m.d.sync += out_valid.eq(0)
        m.d.comb += [self.o.valid.eq(out_valid),
                     self.o.payload.eq(output_element(out_window, p.acc_output)),
                     self.done.eq(self.o.valid & self.o.ready & out_final)]

        with m.If(self.start):
            m.d.sync += [fill.eq(0), fill_count.eq(0), fill_last.eq(D == 1), fill_rows_left.eq(rows),
                         full[0].eq(0), full[1].eq(0),
                         drain.eq(0), out_index.eq(0), in_index.eq(0), in_last.eq(D == 1),
                         out_last.eq(M == 1), lane.eq(0), weight_addr.eq(p.weights_base),
                         issue_rows_left.eq(rows), bias_index.eq(0), bias_addr.eq(p.bias_base),
                         primed.eq(0), bias_read_done.eq(0), mul_term.eq(0), mul_prime.eq(0), mul_bias.eq(0),
                         acc_term.eq(0), acc_prime.eq(0),
                         result_valid.eq(0), out_valid.eq(0)]
        return m
