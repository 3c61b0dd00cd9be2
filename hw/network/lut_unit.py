"""The `lut` unit: product-quantization lookup-accumulate, as in MADDNESS and LUT-NN
(docs/spec.md sections 7 and 16).

Every `lut` layer of a network runs on this one unit. A step encodes each of `rows` rows
of D int8 inputs to C codes (per subvector of V = D / C elements, the nearest of K
prototypes by `l2` or `l1`, ties to the smallest k) and writes per row M outputs
acc[m] = bias[m] + sum_c tables[c, code_c, m], as sat8(rshift_round(acc, out_shift)) or,
with `acc_output`, as 4 bytes little endian (docs/spec.md section 2). A `tree` encoder
is refused.

The table port is the unit's only way to its arrays, and it reads one word of 8 table
entries a cycle: the step's bound is rows * C * ceil(M / 8) cycles, unless encoding,
input or output take longer. So the port carries table words only, once the step runs:

- Copy: at step start the prototypes and the bias move from the table memory into a
  local memory (block RAM, 32-bit words), one local word a cycle (two per table word).
- Encoder: one beat a cycle reads a local word of 4 prototypes and x[c*V + v] from the
  row buffer, and takes |x - p| in 4 lanes, the prototypes 4j .. 4j+3 of codebook c
  (a codebook takes V * ceil(K / 4) beats). `l2` with V = 1 runs the same lanes: |x - p|
  orders the prototypes exactly as (x - p)^2 does, ties included. `l2` with V >= 2
  (`squared`) takes one prototype a beat through the unit's one squarer (V * K beats a
  codebook). Lane sums over v, then an argmin in two stages (pairs of lanes; then the
  pairs' winner against the codebook's best so far, strict `<` so the smallest k wins),
  then the code goes to one of two banks: the next row is encoded while the lookup reads
  the current one. The encoder follows the copy word by word and the input element by
  element; only the input and the output count rows (the encoder sees only the step's
  elements, the lookup only rows coded).
- Lookup: per row, groups g of 8 outputs, in each the codebooks c: the code is read,
  then the table word tables[c, code, 8g .. 8g+7], then added into 8 accumulators of
  table entries only (the bias comes later, so they need just the bits of
  limits.codebooks int8 entries). A group's first word writes its entries (the choice
  sits in the sum's LUT), so a finished group stays in the accumulators until it
  moves to `holding`, one edge after its last word at the earliest.
- Output: `holding` shifts one sum a cycle to the output stage, which adds the output's
  bias (read from the local memory the cycle before; the bias has the local read port
  before the encoder, claimed as if the output stream takes what it is offered) into
  `result`, while the next group accumulates. `result` leaves as a unit output for the
  engine's one requantizer: at out_shift, or its 4 bytes at shifts 0, 8, 16, 24.

Everything but the encoder's pipeline moves with `advance`, which drops only while a
finished group waits for `holding`; the encoder stalls only at its issue stage. For the
clock (this unit used to set the iCE40's), the argmin has no two comparators in a row,
the encoder's last-beat flags compare counters with registers set at `start` (no adder
on the way to the row's end), and the output stream's `ready` does not reach the
encoder. The block RAMs are BufferMemory: no used read meets its write. Table memory
layout, cycle timetable and limits: docs/spec.md section 16.5 (`lut`).
"""
from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.hdl import signed, unsigned
from amaranth.lib import data, wiring
import numpy as np

from nomac.hw.buffer_memory import BufferMemory
from nomac.hw.network.requantize import ACC_BYTES
from nomac.hw.network.unit import (TABLE_WORD_BYTES, Field, LimitError, UnitSignature, UnitStep, pack_words,
                                   params_layout, words_of_bytes)
from nomac.hw.widths import signed_bits

__all__ = ["FIELDS", "LutUnit", "lut_step", "local_memory_words"]

# Counts in 8 bits, table and local-memory words in 16: the sequencer holds the widest unit's
# parameters, so they are no wider than the limits of a network bitstream need.
COUNT_BITS, WORD_BITS = 8, 16
FIELDS = (Field("rows", COUNT_BITS), Field("in_features", COUNT_BITS), Field("out_features", COUNT_BITS),
          Field("codebooks", COUNT_BITS), Field("subvector", COUNT_BITS), Field("centroids", COUNT_BITS),
          Field("squared", 1), Field("out_shift", 6), Field("acc_output", 1), Field("copy_base", WORD_BITS),
          Field("copy_words", WORD_BITS), Field("bias_local", WORD_BITS), Field("tables_base", WORD_BITS))

LANES = 4                       # prototype distances a beat (one 32-bit local word of int8 prototypes)
ENTRIES_PER_WORD = TABLE_WORD_BYTES
LOCAL_PER_TABLE_WORD = 2        # 32-bit local words in a 64-bit table word
BIAS_ALIGN = ENTRIES_PER_WORD // LOCAL_PER_TABLE_WORD   # table words of prototypes: bias_local % 8 == 0
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def local_memory_words(limits) -> int:
    """32-bit words of the unit's local memory: the most prototype bytes (D * K, or D * 4
    for K = 2 in the 4-lane packing) in whole groups of 4 table words, and an int32 bias per
    output in whole table words."""
    prototype_words = BIAS_ALIGN * _ceil_div(limits.features * max(limits.centroids, LANES),
                                             BIAS_ALIGN * TABLE_WORD_BYTES)
    bias_words = _ceil_div(limits.features, LOCAL_PER_TABLE_WORD)
    return LOCAL_PER_TABLE_WORD * (prototype_words + bias_words)


def _prototype_bytes(layer, squared: bool) -> np.ndarray:
    """The prototypes in the order the encoder takes them: (c, k, v) one a beat when
    `squared`, else (c, j, v, lane) with k = 4j + lane, prototypes past K zero."""
    C, K, V = layer.codebooks, layer.centroids, layer.subvector_len
    if squared:
        return layer.prototypes.reshape(-1)
    groups = _ceil_div(K, LANES)
    padded = np.zeros((C, groups * LANES, V), dtype=np.int8)
    padded[:, :K] = layer.prototypes
    return padded.reshape(C, groups, LANES, V).transpose(0, 1, 3, 2).reshape(-1)


def _result_range(layer) -> tuple[int, int]:
    """Extremes of bias[m] + sum_c tables[c, code_c, m] over every code, from the layer's arrays."""
    tables = layer.tables.astype(np.int64)
    lo = layer.bias.astype(np.int64) + tables.min(axis=1).sum(axis=0)
    hi = layer.bias.astype(np.int64) + tables.max(axis=1).sum(axis=0)
    return int(lo.min()), int(hi.max())


def lut_step(layer, rows: int, table_base: int, limits) -> UnitStep:
    """The layer on `rows` rows: parameters, table words at `table_base` (prototypes and bias
    to copy, then the tables), and the bound rows * max(C*ceil(M/8), encoder beats, D, out bytes)."""
    D, M, C, K, V = layer.in_features, layer.out_features, layer.codebooks, layer.centroids, layer.subvector_len
    if layer.encoder not in ("l2", "l1"):
        raise LimitError(layer.name, "encoder", layer.encoder, "'l2' or 'l1' (the lut unit has no tree encoder)")
    for what, value, limit in (("rows", rows, limits.tokens), ("in_features", D, limits.features),
                               ("out_features", M, limits.features), ("codebooks", C, limits.codebooks),
                               ("centroids", K, limits.centroids)):
        if value > limit:
            raise LimitError(layer.name, what, value, limit)
    if rows < 1 or table_base < 0:
        raise ValueError(f"lut step of layer '{layer.name}': rows = {rows}, table_base = {table_base}: "
                         "need rows >= 1 and table_base >= 0")
    acc_output = layer.output == "acc"
    if acc_output:
        bits = signed_bits(*_result_range(layer))
        if bits > 32:
            raise LimitError(layer.name, "accumulator bits (output acc, int32)", bits, 32)
    squared = layer.encoder == "l2" and V >= 2
    prototype_words = words_of_bytes(_prototype_bytes(layer, squared))
    prototype_words += [0] * (-len(prototype_words) % BIAS_ALIGN)     # the bias of output 8g at a local 8j
    copy_words = prototype_words + pack_words(layer.bias, 32)
    groups = _ceil_div(M, ENTRIES_PER_WORD)
    tables = np.zeros((C, K, groups * ENTRIES_PER_WORD), dtype=np.int8)
    tables[:, :, :M] = layer.tables
    table_words = words_of_bytes(tables.reshape(C, K, groups, ENTRIES_PER_WORD).transpose(2, 0, 1, 3).reshape(-1))
    # The tables start at a multiple of K, so a code is ORed into a table row's address, and
    # right after the copy block, so the copy's word address runs on into the tables'.
    padding = [0] * (-(table_base + len(copy_words)) % K)
    tables_base = table_base + len(padding) + len(copy_words)
    table_end = tables_base + len(table_words)
    if table_end > limits.table_words:
        raise LimitError(layer.name, "table memory words (end of its arrays)", table_end, limits.table_words)
    params = {"rows": rows, "in_features": D, "out_features": M, "codebooks": C, "subvector": V, "centroids": K,
              "squared": int(squared), "out_shift": 0 if acc_output else layer.out_shift,
              "acc_output": int(acc_output),
              "copy_base": table_base + len(padding), "copy_words": len(copy_words),
              "bias_local": LOCAL_PER_TABLE_WORD * len(prototype_words), "tables_base": tables_base}
    out_bytes = ACC_BYTES * M if acc_output else M
    encoder_beats = C * V * K if squared else C * V * _ceil_div(K, LANES)
    bound = rows * max(C * groups, encoder_beats, D, out_bytes)
    rule = "T*max(C*ceil(M/8), {}, D, {})".format("C*V*K" if squared else "C*V*ceil(K/4)",
                                                   "4*M" if acc_output else "M")
    return UnitStep(params, padding + copy_words + table_words, rows * D, rows * out_bytes, bound, rule)


def _block_ram(m: Module, name: str, shape, depth: int):
    """A BufferMemory's write port and read port. No cycle of this unit uses a word read as
    it is written: the encoder reads a local word only once the copy has written it
    (`local_word < copy_write_index`), the output stage the bias only after the copy; the
    row buffer takes row r + 1 only after the encoder's last read of row r; a code bank is
    written only while the lookup reads the other one."""
    m.submodules[name] = ram = BufferMemory(shape=shape, depth=depth)
    return ram.write, ram.read


class LutUnit(wiring.Component):
    """Copy, encoder, lookup and output stage on one table port; see the module docstring."""

    def __init__(self, limits):
        for what, value in (("tokens", limits.tokens), ("features", limits.features),
                            ("codebooks", limits.codebooks), ("centroids", limits.centroids)):
            if value >= 1 << COUNT_BITS:
                raise ValueError(f"LutUnit: limits.{what} = {value}: must fit the {COUNT_BITS}-bit count fields")
        self.local_words = local_memory_words(limits)
        for what, value in (("table_words", limits.table_words), ("local memory words", self.local_words)):
            if value > 1 << WORD_BITS:
                raise ValueError(f"LutUnit: {what} = {value}: must fit the {WORD_BITS}-bit word fields")
        self.limits = limits
        # Table-entry sums of a group (no bias), and a sum plus its int32 bias: neither wraps.
        self.sum_bits = signed_bits(-128 * limits.codebooks, 127 * limits.codebooks)
        self.result_bits = signed_bits(INT32_MIN - 128 * limits.codebooks, INT32_MAX + 127 * limits.codebooks)
        super().__init__(UnitSignature(params_layout(FIELDS), limits, multiplier=True, acc_bits=self.result_bits))

    def elaborate(self, platform):
        m = Module()
        p, limits = self.params, self.limits
        features, tokens = limits.features, limits.tokens
        code_bits = max(1, (limits.centroids - 1).bit_length())
        codebook_bits = max(1, (limits.codebooks - 1).bit_length())

        def narrow(value, limit: int):
            """A 16-bit count field cut to the bits its limit needs (the step refuses more)."""
            return value[:limit.bit_length()]

        rows = narrow(p.rows, tokens)
        D, M, V = narrow(p.in_features, features), narrow(p.out_features, features), narrow(p.subvector, features)
        C, K = narrow(p.codebooks, limits.codebooks), narrow(p.centroids, limits.centroids)
        k_step = Mux(p.squared, 1, LANES)                 # prototypes a beat
        C_last, M_last = Signal.like(C), Signal.like(M)   # the last codebook and output
        m.d.comb += [C_last.eq(C - 1), M_last.eq(M - 1)]

        local_write, local_read = _block_ram(m, "local", unsigned(32), self.local_words)
        row_write, row_read = _block_ram(m, "row", signed(8), features)
        code_write, code_read = _block_ram(m, "codes", unsigned(code_bits), 2 << codebook_bits)

        # Copy: local word n <- half n % 2 of table word copy_base + n // 2, one a cycle.
        copying = Signal()
        copy_index = Signal(range(self.local_words))      # the local word read from the table this cycle
        copy_write = Signal()
        copy_write_index = Signal(range(self.local_words))  # ... last cycle: written now, the ones below it before
        copy_last = copy_index + 1 == Cat(Const(0, 1), p.copy_words)
        copy_done = ~copying & ~copy_write
        m.d.sync += [copy_write.eq(copying), copy_write_index.eq(copy_index)]
        with m.If(copying):
            m.d.sync += copy_index.eq(copy_index + 1)
            with m.If(copy_last):
                m.d.sync += copying.eq(0)
        m.d.comb += [local_write.addr.eq(copy_write_index),
                     local_write.data.eq(self.table.data.word_select(copy_write_index[0], 32)),
                     local_write.en.eq(copy_write)]

        # Input: the row being encoded, its elements as they come. Only the input and the
        # output count rows: the encoder sees only the step's rows*D elements, and the lookup
        # only the rows coded.
        rows_to_take = Signal(range(tokens + 1))
        received = Signal(range(features + 1))
        row_in = Signal()                                 # all D are in
        release = Signal()                                # the encoder has issued the row's last beat
        m.d.comb += [self.i.ready.eq((rows_to_take != 0) & ~row_in),
                     row_write.addr.eq(received), row_write.data.eq(self.i.payload),
                     row_write.en.eq(self.i.valid & self.i.ready)]
        with m.If(row_write.en):                          # never with `release`: the row is all in
            m.d.sync += received.eq(received + 1)
            with m.If(received + 1 == D):
                m.d.sync += [rows_to_take.eq(rows_to_take - 1), row_in.eq(1)]
        with m.If(release):
            m.d.sync += [received.eq(0), row_in.eq(0)]

        # Two code banks, taken in turn: the rows of codes the encoder has begun (`banks_busy`)
        # and written (`banks_ready`), less those the lookup has read.
        banks_busy, banks_ready = Signal(range(3)), Signal(range(3))
        row_begun, row_coded, row_looked_up = Signal(), Signal(), Signal()
        m.d.sync += [banks_busy.eq(banks_busy + row_begun - row_looked_up),
                     banks_ready.eq(banks_ready + row_coded - row_looked_up)]

        # Encoder issue: beat (c, k, v) reads local word `local_word` and x[c*V + v].
        enc_k, enc_v = Signal(code_bits), Signal(range(features))
        x_index, x_base = Signal(range(features)), Signal(range(features))
        # The beat's local word, and when squared its byte in it (4 prototypes a word).
        local_word, word_byte = Signal(range(features * max(limits.centroids, LANES) // LANES)), Signal(2)
        port_taken = Signal()                             # the output stage has the local read port
        # Whether the beat is its subvector's, codebook's, row's last or a row's first:
        # compares of counters with registers set at `start`, so that `issue` and the row's
        # end wait for no adder. K is a power of two, so the last k (or group of 4) is the one
        # whose bits below K's are all ones; the last codebook's subvector starts at D - V.
        v_last, k_last, c_last = Signal(name="v_last"), Signal(name="k_last"), Signal(name="c_last")
        last_v, last_base = Signal.like(V), Signal.like(D)
        k_ones = Signal(code_bits)                        # the bits of k below K's, and below the lanes'
        m.d.comb += [v_last.eq(enc_v == last_v), c_last.eq(x_base == last_base),
                     k_last.eq((enc_k & k_ones) == k_ones)]
        first_beat = Signal()
        row_last = v_last & k_last & c_last
        issue = Signal()
        m.d.comb += [issue.eq((~first_beat | (banks_busy != 2))
                              & (x_index < received) & (local_word < copy_write_index) & ~port_taken),
                     release.eq(issue & row_last), row_begun.eq(issue & first_beat),
                     row_read.addr.eq(x_index)]
        with m.If(issue):
            m.d.sync += [local_word.eq(Mux(row_last, 0, local_word + (~p.squared | (word_byte == LANES - 1)))),
                         word_byte.eq(Mux(row_last | ~p.squared, 0, word_byte + 1)), first_beat.eq(row_last)]
            with m.If(v_last):
                m.d.sync += enc_v.eq(0)
                with m.If(k_last):
                    following = Mux(c_last, 0, x_index + 1)
                    m.d.sync += [enc_k.eq(0), x_base.eq(following), x_index.eq(following)]
                with m.Else():
                    m.d.sync += [enc_k.eq(enc_k + k_step), x_index.eq(x_base)]
            with m.Else():
                m.d.sync += [enc_v.eq(enc_v + 1), x_index.eq(x_index + 1)]

        def stage(name, **flags):
            """The next encoder stage's beat flags: whether a beat is in it, and its place in the row."""
            staged = {flag: Signal(name=f"{name}_{flag}") for flag in flags}
            m.d.sync += [staged[flag].eq(value) for flag, value in flags.items()]
            return staged

        # Terms |x - p|: |d| = (d XOR s) + s, s the sign of d = x - p. When squared, lane 0 takes
        # byte `word_byte` of the word and squares |x - p| on the shared multiplier, whose
        # operands are then never negative but dense's: a build without dense needs no logic
        # for their sign bits.
        term = stage("term", valid=issue, v_first=enc_v == 0, v_last=v_last, k_last=k_last, c_last=c_last)
        term_byte = Signal(2)
        m.d.sync += term_byte.eq(word_byte)
        x = row_read.data
        prototypes = [Mux(p.squared, local_read.data.word_select(term_byte, 8), local_read.data[:8]).as_signed(),
                      *(local_read.data[8 * lane:8 * lane + 8].as_signed() for lane in range(1, LANES))]
        differences = [x - w for w in prototypes]
        magnitudes = [((d[:8] ^ d[8].replicate(8)) + d[8])[:8] for d in differences]
        terms = [Signal(16, name="term0", reset_less=True),
                 *(Signal(8, name=f"term{lane}", reset_less=True) for lane in range(1, LANES))]
        m.d.comb += [self.multiplier.a.eq(magnitudes[0]), self.multiplier.b.eq(magnitudes[0])]
        m.d.sync += [terms[0].eq(Mux(p.squared, self.multiplier.p, magnitudes[0])),
                     *(t.eq(a) for t, a in zip(terms[1:], magnitudes[1:]))]

        # Lane distances summed over the subvector (lane 0 holds sums of squares).
        dist = stage("distance", **term)
        lane_bits = (features * 255).bit_length()
        distances = [Signal((features * 255 * 255).bit_length(), name="distance0", reset_less=True),
                     *(Signal(lane_bits, name=f"distance{lane}", reset_less=True) for lane in range(1, LANES))]
        with m.If(dist["valid"]):
            m.d.sync += [d.eq(Mux(dist["v_first"], t, d + t)) for d, t in zip(distances, terms)]

        # Argmin, two stages so that no path has two comparators in a row. Pairs: lanes 0, 1
        # and lanes 2, 3 (ties to the lower lane; lanes 2, 3 exist for K >= 4, lane 0 alone
        # when squared). Best: the pairs' winner against the codebook's best so far (strict,
        # so the smallest k wins a tie), its three comparisons side by side; a lane distance
        # has lane_bits, so only lane 0's sums of squares take the full width.
        pair = stage("pair", valid=dist["valid"] & dist["v_last"], k_last=dist["k_last"], c_last=dist["c_last"])
        lane0 = distances[0][:lane_bits]
        low, high = Signal.like(distances[0]), Signal(lane_bits, reset_less=True)
        low_lane, high_lane = Signal(), Signal()
        take1, take3 = distances[1] < lane0, distances[3] < distances[2]
        with m.If(pair["valid"]):
            m.d.sync += [low.eq(Mux(p.squared, distances[0], Mux(take1, distances[1], lane0))),
                         low_lane.eq(~p.squared & take1),
                         high.eq(Mux(take3, distances[3], distances[2])), high_lane.eq(take3)]
        best = stage("best", **pair)
        argmin_valid, argmin_k_last, argmin_row_last = best["valid"], best["k_last"], best["c_last"]
        argmin_code = Signal(code_bits)                   # lane 0's prototype k
        write_c, write_bank = Signal(range(limits.codebooks)), Signal()
        best_distance, best_code = Signal.like(distances[0]), Signal(code_bits, reset_less=True)
        take_high = ~p.squared & (K != 2) & (high < low[:lane_bits])
        candidate = Mux(take_high, high, low)
        candidate_lane = Mux(take_high, Cat(high_lane, 1), Cat(low_lane, 0))
        take = (argmin_code == 0) | Mux(take_high, high < best_distance[:lane_bits], low < best_distance)
        new_code = Mux(take, argmin_code | candidate_lane, best_code)
        with m.If(argmin_valid):
            m.d.sync += argmin_code.eq(Mux(argmin_k_last, 0, argmin_code + k_step))
            with m.If(take):
                m.d.sync += [best_distance.eq(candidate), best_code.eq(new_code)]
            with m.If(argmin_k_last):
                m.d.sync += write_c.eq(Mux(argmin_row_last, 0, write_c + 1))
                with m.If(argmin_row_last):
                    m.d.sync += write_bank.eq(~write_bank)
        m.d.comb += [row_coded.eq(argmin_valid & argmin_k_last & argmin_row_last),
                     code_write.addr.eq(Cat(write_c, write_bank)), code_write.data.eq(new_code),
                     code_write.en.eq(argmin_valid & argmin_k_last)]

        # Lookup: per row, groups g of 8 outputs, in each the codebooks c.
        lk_bank = Signal()
        lk_g, lk_c = Signal(range(_ceil_div(features, ENTRIES_PER_WORD))), Signal(range(limits.codebooks))
        # The table word of the copy (copy_base + n // 2), or of the lookup's word stage but its
        # code (tables_base + (g * C + c) * K): the copy ends at tables_base.
        entry_base = Signal(len(self.table.addr))
        following_entry = entry_base + Mux(copying, copy_index[0], K)
        advance = Signal()
        lk_c_last = lk_c == C_last
        g_last = lk_g == M_last[3:]
        running = (banks_ready != 0) & copy_done
        m.d.comb += [code_read.addr.eq(Cat(lk_c, lk_bank)), code_read.en.eq(advance),
                     row_looked_up.eq(advance & running & lk_c_last & g_last)]
        word_valid, word_last, word_row_last = Signal(), Signal(), Signal()
        with m.If(advance):
            m.d.sync += [word_valid.eq(running), word_last.eq(lk_c_last),
                         word_row_last.eq(lk_c_last & g_last)]
            with m.If(running):
                m.d.sync += lk_c.eq(Mux(lk_c_last, 0, lk_c + 1))
                with m.If(lk_c_last):
                    m.d.sync += lk_g.eq(Mux(g_last, 0, lk_g + 1))
                    with m.If(g_last):
                        m.d.sync += lk_bank.eq(~lk_bank)
        # tables_base is a multiple of K, so row base + code is row base | code.
        m.d.comb += [self.table.addr.eq(entry_base | Mux(copying, 0, code_read.data)),
                     self.table.en.eq(copying | (advance & word_valid))]
        with m.If(advance & word_valid):
            m.d.sync += entry_base.eq(Mux(word_row_last, p.tables_base, following_entry))
        with m.If(copying):
            m.d.sync += entry_base.eq(following_entry)
        acc_valid, acc_last, acc_row_last = Signal(), Signal(), Signal()
        with m.If(advance):
            m.d.sync += [acc_valid.eq(word_valid), acc_last.eq(word_last), acc_row_last.eq(word_row_last)]

        # Accumulate. A group's first word writes its entries, the others add theirs (the choice
        # sits in each sum's LUT, beside the carry), so the accumulators keep a finished group
        # (`group_complete`) until it moves to `holding` (`transfer`), which shifts one sum a
        # cycle to the output stage (holding[0]) and takes the next group as it hands out its
        # last. An accumulator's sum thus drives only its own flip-flop, and holding loads the
        # accumulators' flip-flops, so each sum bit and its register share a logic cell.
        entries = data.ArrayLayout(signed(8), ENTRIES_PER_WORD)(self.table.data)
        accumulators = [Signal(signed(self.sum_bits), name=f"acc{r}", reset_less=True) for r in range(ENTRIES_PER_WORD)]
        holding = [Signal(signed(self.sum_bits), name=f"holding{r}", reset_less=True) for r in range(ENTRIES_PER_WORD)]
        holding_full = Signal()
        group_begins = Signal()                           # the next word accumulated is its group's first
        group_complete, group_row_last = Signal(), Signal()   # the accumulators hold a finished group (its row's last)
        transfer = Signal()                               # the finished group moves to `holding` this cycle
        with m.If(advance & acc_valid):
            m.d.sync += [group_begins.eq(acc_last),
                         *(acc.eq(Mux(group_begins, entry, acc + entry)) for acc, entry in zip(accumulators, entries))]
        with m.If(advance & acc_valid & acc_last):
            m.d.sync += [group_complete.eq(1), group_row_last.eq(acc_row_last)]
        with m.Elif(transfer):
            m.d.sync += group_complete.eq(0)

        # Output: the bias of the next output is read (the local port's first claim) the
        # cycle before `emit` adds it to holding[0] into `result`: when its sum is in
        # holding next cycle and `result` is then free or on its last byte (from byte 2 on
        # with acc), so the bias holds the port only while the output stream stalls.
        # `result` leaves as int8 or as 4 bytes.
        out_rows_left = Signal(range(tokens + 1))
        bias_local = p.bias_local[:len(local_read.addr)]
        bias_address = Signal.like(local_read.addr)       # the next output's bias: bias_local + m
        holding_row_last = Signal()                       # holding has its row's last group
        out_last, group_end = Signal(), Signal()          # the next output is its row's, its group's last
        # bias_local is a multiple of 8: the low bits of the bias address are m % 8. Both flags
        # are used only while holding is full.
        m.d.comb += [out_last.eq(holding_row_last & (bias_address[:3] == M_last[:3])),
                     group_end.eq(out_last | (bias_address[:3] == ENTRIES_PER_WORD - 1))]
        bias_pending = Signal()                           # local_read.data is the next output's bias
        result = Signal(signed(self.result_bits), reset_less=True)
        result_valid, result_last = Signal(), Signal()
        out_byte = Signal(2)                              # the byte of `result` with acc, else 0
        byte_last = ~p.acc_output | (out_byte == 3)
        taken = self.o.valid & self.o.ready
        emit, emit_if_taken = Signal(), Signal()
        following_bias = Mux(out_last, bias_local, bias_address + 1)
        # The bias has the port (and is pending next cycle): while a pending bias waits for
        # `emit`, and to read the next output's bias, as `emit` takes an int8 output with more
        # in holding or a group complete, or, with nothing pending, while holding is full or a
        # group is complete (with acc from the result's byte 2 on). The claim is made as if the
        # output stream takes what it is offered, so that its `ready` does not reach the
        # encoder; when it does not, the address keeps the pending bias, or, if the encoder
        # had the port, the bias is read again. A word stalls at the accumulators while they
        # hold a finished group that cannot move to `holding`.
        m.d.comb += [emit_if_taken.eq(holding_full & bias_pending & (~result_valid | byte_last)),
                     emit.eq(emit_if_taken & (~result_valid | self.o.ready)),
                     transfer.eq(group_complete & (~holding_full | (emit & group_end))),
                     advance.eq(~(acc_valid & group_complete & ~transfer)),
                     port_taken.eq(Mux(bias_pending,
                                       ~emit_if_taken | (~p.acc_output & (~group_end | group_complete)),
                                       (holding_full | group_complete) & (~p.acc_output | ~result_valid | out_byte[1]))),
                     # Read every cycle: a pending bias is read again until `emit` takes it.
                     local_read.addr.eq(Mux(port_taken, Mux(emit, following_bias, bias_address), local_word))]
        m.d.sync += bias_pending.eq(port_taken)
        with m.If(transfer):
            m.d.sync += [*(h.eq(acc) for h, acc in zip(holding, accumulators)), holding_full.eq(1),
                         holding_row_last.eq(group_row_last)]
        with m.Elif(emit):
            m.d.sync += [h.eq(following) for h, following in zip(holding, [*holding[1:], 0])]
            with m.If(group_end):
                m.d.sync += holding_full.eq(0)
        with m.If(emit):
            m.d.sync += [result.eq(holding[0] + local_read.data.as_signed()), result_valid.eq(1),
                         result_last.eq(out_last & (out_rows_left == 1)), out_byte.eq(0),
                         bias_address.eq(following_bias)]
            with m.If(out_last):
                m.d.sync += out_rows_left.eq(out_rows_left - 1)
        with m.Elif(taken & byte_last):
            m.d.sync += result_valid.eq(0)
        with m.Elif(taken):
            m.d.sync += out_byte.eq(out_byte + 1)

        # To the engine's requantizer: int8 at out_shift, or with acc byte j at shift 8j (out_shift
        # is 0 then, and out_byte is 0 for int8, so the shift is their OR).
        m.d.comb += [self.o.valid.eq(result_valid),
                     self.o.payload.acc.eq(result),
                     self.o.payload.shift.eq(p.out_shift | Cat(Const(0, 3), out_byte)),
                     self.o.payload.raw.eq(p.acc_output),
                     self.done.eq(taken & byte_last & result_last)]

        with m.If(self.start):
            m.d.sync += [copying.eq(1), copy_index.eq(0), copy_write_index.eq(0), entry_base.eq(p.copy_base),
                         rows_to_take.eq(rows), received.eq(0), row_in.eq(0),
                         enc_k.eq(0), enc_v.eq(0),
                         first_beat.eq(1),
                         last_v.eq(V - 1), last_base.eq(D - V),
                         k_ones.eq(Cat(K[i + 1:].any() & (p.squared | (i >= 2)) for i in range(code_bits))),
                         x_index.eq(0), x_base.eq(0), local_word.eq(0), word_byte.eq(0), argmin_code.eq(0), write_c.eq(0), write_bank.eq(0),
                         banks_busy.eq(0), banks_ready.eq(0),
                         lk_bank.eq(0), lk_g.eq(0), lk_c.eq(0),
                         group_begins.eq(1), group_complete.eq(0), holding_full.eq(0), out_rows_left.eq(rows),
                         bias_address.eq(bias_local), result_valid.eq(0)]
        return m
