"""The `attention` unit: multi-head self-attention of one sequence a step (docs/spec.md sections 13.5 and 16).

Everything of the layer is a step parameter: T, H, the head's words G = ceil(dh / U) and
H * G (counts as their last values, which the counters are compared with), the lanes of a
head's last word, a context group's slots, score_mult / score_shift, out_mult / out_shift, the base of
exp_table in the table memory (256 entries of 16 bits, four to a word: entry n in bits
16*(n % 4) .. of word n // 4). The unit is built for `NetworkLimits` and its lanes U.

The step reads T tokens of q | k | v (3E elements each) into one sequence buffer in words of
U elements, each head's slice starting a new word (q in one memory, k and v in another, so
a score reads a q word and a k word in one cycle; a token's words at a power-of-two stride,
so an address is the token and the word side by side), then computes rows (query i, head h) in
output order and writes c * out_mult as it is made (with out_shift, for the engine's
requantizer: y = sat8(rshift_round(c * out_mult, out_shift))). A row has three passes over its T keys (timetable:
hw/network/attention_unit_schedule.py):
- S: s[j] = q_i . k_j on the U lane multipliers, one word pair a cycle, each lane summing
  its part in its multiplier block; the row maximum is kept as the scores are written into
  the row memory.
- E: t = min(rshift_round((max - s[j]) * score_mult, score_shift), 255) on the shared
  rescale (two cycles a key), e = exp_table[t] (one table memory read), written over s[j]
  and summed into Z;
  Z's reciprocal floor(2^32 / Z) then runs on the shift-subtract unit
  (hw/operators/reciprocal.py) while the next row's scores are computed, in 31 bits: for
  Z = 1 or 2 (recip 2^32 or 2^31) p follows from e alone.
- C: per group of U output columns, c[d] += p[j] * v[j, d] on the same lanes. The first
  group makes p[j] = min(rshift_round(e[j] * recip, 24), 255) on the shared multiplier (two
  cycles a key) and writes it over e[j]; the other groups read it back, and meanwhile the
  shared multiplier turns the previous group's U sums, held in a register, one in two cycles
  into the output c * out_mult.
The row memory has two halves (row r's key j at entry j of half r % 2), since S(r+1) writes
its scores while row r still needs its probabilities.

Multipliers: the U lanes (9-bit signed by 8-bit signed: q * k, and the unsigned p times v)
and one shared 16 x 16 unsigned multiplier (one DSP block), which makes delta * score_mult
(E), e * recip (the first C group) and c * out_mult (the held sums, in cycles no E or
first-group item needs) in two cycles each, high half of the wide operand first, followed by
one runtime shift, rounding and clamp for t.
Everything after the issue stage is one lock-step pipeline that advances on `advance`: the
output (the product register's) is empty, or its element is being taken (read ports' `en` too, so their data
holds during a stall); the reciprocal runs free, its result holding until its next start.
"""
import operator
from functools import reduce

from amaranth import C, Cat, Module, Mux, Shape, Signal
from amaranth.hdl import signed, unsigned
from amaranth.lib import data, wiring

from nomac.base.errors import ConfigError
from nomac.hw.buffer_memory import BufferMemory
from nomac.hw.network.attention_unit_schedule import (BOUND_RULE, EXP_ENTRY_BITS, MULT_BITS,
                                                      PROB_MAX, PROB_SHIFT, STAGES, AttentionUnitSizes,
                                                      AttentionUnitTimetable, head_words, least_context_period)
from nomac.hw.network.unit import (TABLE_WORD_BITS, Field, LimitError, NetworkLimits, UnitSignature, UnitStep,
                                   pack_words, params_layout)
from nomac.hw.requantize import balanced_sum

__all__ = ["FIELDS", "DEFAULT_LANES", "AttentionUnit", "attention_step"]

DEFAULT_LANES = NetworkLimits.attention_lanes   # U = 2: with the shared multiplier 3 of the iCE40UP5K's 8 DSPs
EXP_TABLE_WORDS = 256 * EXP_ENTRY_BITS // TABLE_WORD_BITS

COUNT_BITS = 8                            # the count fields (the unit refuses limits beyond them)
FIELDS = (Field("last_token", COUNT_BITS), Field("last_head", COUNT_BITS), Field("head_words", COUNT_BITS),
          Field("last_group", COUNT_BITS), Field("tail_lanes", COUNT_BITS), Field("last_word", COUNT_BITS),
          Field("last_slot", COUNT_BITS), Field("score_mult", 16), Field("score_shift", 6), Field("out_mult", 16),
          Field("out_shift", 6), Field("table_base", 16))

NONE, SCORE, EXP, CONTEXT = range(4)      # what a pipeline slot carries
KEPT_BITS = 9                             # floor(2 * product / 2^score_shift) in 0..511 decides t


def attention_step(layer, rows: int, table_base: int, limits, lanes: int = DEFAULT_LANES) -> UnitStep:
    """One sequence (`rows` = 1 row of the layer's T*3E inputs) on a unit of `lanes` multipliers.

    Refuses (LimitError) T, E or H beyond the limits' tokens, model_features or heads, a
    score_mult or out_mult of 2^16 or more (the shared multiplier's 16-bit operand), and an
    exp_table that would end past the table memory; more than one row (sequence) is a
    ConfigError (a step is one whole sequence).
    """
    where = f"layer '{layer.name}'"
    if rows != 1:
        raise ConfigError(where, "rows", rows, "must be 1: a step is one sequence of the layer's tokens")
    for what, value, limit in (("tokens", layer.tokens, limits.tokens),
                               ("features", layer.features, limits.model_features),
                               ("heads", layer.heads, limits.heads),
                               ("score_mult", layer.score_mult, (1 << MULT_BITS) - 1),
                               ("out_mult", layer.out_mult, (1 << MULT_BITS) - 1),
                               ("table_base + exp_table words", table_base + EXP_TABLE_WORDS, limits.table_words)):
        if value > limit:
            raise LimitError(layer.name, what, value, limit)
    T, E, H, U = layer.tokens, layer.features, layer.heads, lanes
    G = head_words(layer.head_dim, U)
    timetable = AttentionUnitTimetable(T, H, layer.head_dim, U)
    params = {"last_token": T - 1, "last_head": H - 1, "head_words": G, "last_group": G - 1,
              "tail_lanes": timetable.tail_lanes, "last_word": H * G - 1, "last_slot": timetable.context_period - 1,
              "score_mult": layer.score_mult, "score_shift": layer.score_shift,
              "out_mult": layer.out_mult, "out_shift": layer.out_shift, "table_base": table_base}
    return UnitStep(params, pack_words(layer.exp_table, EXP_ENTRY_BITS), T * 3 * E, T * E, timetable.bound,
                    BOUND_RULE)


def data_register(shape, name=None):
    """A register whose value matters only once written (no reset: fewer logic cells on the iCE40)."""
    return Signal(shape, name=name, reset_less=True, src_loc_at=1)


def _at_most(value, limit: int):
    """min(value, limit) for a limit of 2^k - 1 and a value >= 0: a bit test, not a comparator
    (a carry chain on the iCE40)."""
    k = limit.bit_length()
    assert limit == (1 << k) - 1
    return Mux(value[k:].any(), limit, value[:k])


def _one_of(*choices):
    """The value of the one (select, value) choice whose select is high, 0 if none: an AND-OR,
    for selects of which at most one is high (fewer logic cells than a chain of muxes)."""
    return reduce(operator.or_, (Mux(select, value, 0) for select, value in choices))


def _shifted_right(magnitude, shift, width: int):
    """((magnitude >> shift)[:width], whether (magnitude >> shift) >= 2^width) for a runtime
    shift, as a log shifter from its largest step down: after the step of 2^k a bit at or
    above width + 2^k - 1 lands at width or above whatever the smaller steps do, so each
    step keeps only the bits below that and ORs the rest into `beyond`."""
    bits, beyond = list(magnitude), []
    for k in reversed(range(len(shift))):
        step, keep = 1 << k, width + (1 << k) - 1
        beyond.append(Mux(shift[k], Cat(*bits[keep + step:]).any(), Cat(*bits[keep:]).any()))
        bits = [Mux(shift[k], bits[i + step] if i + step < len(bits) else 0, bits[i])
                for i in range(min(keep, len(bits)))]
    return Cat(*bits), Cat(*beyond).any()


def _block_ram(m: Module, name: str, shape, depth: int, granularity=None):
    """A BufferMemory's write port and read port. No read whose data is used meets its write:
    the sequence memories are written only while loading, and no row memory read that
    matters is of an entry written in the same cycle (an E or first-group item writes its
    key's entry 5 or 6 cycles after reading it, S(r+1) writes the half C(r) does not read, a
    later group reads p more than 6 slots after the first group wrote it, and E waits for S)."""
    m.submodules[name] = ram = BufferMemory(shape=shape, depth=depth, granularity=granularity)
    return ram.write, ram.read


class _SplitPorts:
    """The write and read ports of `_split_block_ram`: `addr`, `data`, `en` as a memory's."""

    def __init__(self, addr_shape, data_shape, en_shape):
        self.addr, self.data, self.en = Signal(addr_shape), Signal(data_shape), Signal(en_shape)


def _split_block_ram(m: Module, name: str, shape, depth: int, granularity: int):
    """`_block_ram` of a depth 2^n < depth < 2^(n+1) as two memories, words from 2^n up in the
    second: the iCE40 maps the first to block RAMs of 2^n words side by side (512 x 8 at the
    default limits), so a read picks between two words, not among three 256 x 16 blocks'."""
    n = (depth - 1).bit_length() - 1
    if depth == 1 << (n + 1):
        return _block_ram(m, name, shape, depth, granularity)
    lanes = Shape.cast(shape).width // granularity
    write, read = _SplitPorts(range(depth), shape, lanes), _SplitPorts(range(depth), shape, 1)
    reads, upper_read = [], Signal(reset_less=True)
    for part, (size, upper) in enumerate(((1 << n, 0), (depth - (1 << n), 1))):
        part_write, part_read = _block_ram(m, f"{name}_{part}", shape, size, granularity)
        m.d.comb += [part_write.addr.eq(write.addr[:n]), part_write.data.eq(write.data),
                     part_write.en.eq(Mux(write.addr[n] == upper, write.en, 0)),
                     part_read.addr.eq(read.addr[:n]), part_read.en.eq(read.en)]
        reads.append(part_read.data)
    with m.If(read.en):
        m.d.sync += upper_read.eq(read.addr[n])
    m.d.comb += read.data.eq(Mux(upper_read, reads[1], reads[0]))
    return write, read


class AttentionUnit(wiring.Component):
    """Attention of one sequence a step on `lanes` multipliers; see the module docstring."""

    def __init__(self, limits, lanes: int = DEFAULT_LANES):
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise ValueError(f"AttentionUnit: lanes = {lanes!r}: must be a positive integer")
        self.limits, self.lanes = limits, lanes
        self.sizes = AttentionUnitSizes.of(limits, lanes)
        largest = max(limits.tokens, self.sizes.max_part_words, least_context_period(lanes))
        if largest > 1 << COUNT_BITS:
            raise ValueError(f"AttentionUnit: limits.tokens, a token's words and a context group's slots "
                             f"(up to {largest}) must fit the {COUNT_BITS}-bit count fields")
        super().__init__(UnitSignature(params_layout(FIELDS), limits, acc_bits=self.sizes.output_bits))

    def elaborate(self, platform):
        m = Module()
        p, sz, U = self.params, self.sizes, self.lanes
        T_max = sz.max_tokens
        word = unsigned(8 * U)
        slots_max = max(T_max, least_context_period(U))     # a context group's slots: P = max(T, that)
        # Counts as wide as the limits make them (the step refuses anything larger); each counter's
        # last value is a field, so that the sequencer compares counters with parameters only.
        def below(field, limit: int):
            return field[:Shape.cast(range(limit)).width]

        n_head_words, tail_lanes = below(p.head_words, sz.max_head_words + 1), below(p.tail_lanes, U + 1)
        last_token, last_head = below(p.last_token, T_max), below(p.last_head, sz.max_heads)
        last_group, last_lane = below(p.last_group, sz.max_head_words), below(tail_lanes - 1, U)
        last_word, last_slot = below(p.last_word, sz.max_part_words), below(p.last_slot, slots_max)

        # ---- memories: the sequence (q; k and v), the row memory (s, then e, then p) -----------
        q_write, q_read = _block_ram(m, "queries", word, sz.query_depth, granularity=8)
        kv_write, kv_read = _split_block_ram(m, "keys_values", word, sz.key_value_depth, granularity=8)
        row_key_bits = max(1, (T_max - 1).bit_length())      # row r's entries: half r % 2, then the key
        row_write, row_read = _block_ram(m, "row", signed(sz.row_bits), 2 << row_key_bits)
        m.submodules.reciprocal = recip = sz.make_reciprocal()

        # ---- the output: the product register's; the pipeline advances while it is free or leaving
        o_last = Signal()
        advance = ~self.o.valid | self.o.ready
        m.d.comb += self.done.eq(self.o.valid & self.o.ready & o_last)

        # ---- load: T tokens of q | k | v into words, each head's slice from a new word --------
        # Each element is written into its lane of the word (a byte's write enable); a slice's
        # last element also writes zeros into the lanes after it.
        lane, group_in = Signal(range(U)), Signal(range(sz.max_head_words))
        word_in, part_in, token_in = Signal(range(sz.max_part_words)), Signal(range(3)), Signal(range(T_max))
        word_bits = sz.word_bits
        element = self.i.payload
        slice_end = (group_in == last_group) & (lane == last_lane)
        word_end = (lane == U - 1) | slice_end
        taken = self.i.valid & self.i.ready
        part_end = slice_end & (word_in == last_word)
        lanes_written = Cat(*((lane == u) | (slice_end & (lane < u)) for u in range(U)))
        word_data = Cat(element, *(Mux(lane == u, element, 0) for u in range(1, U)))
        m.d.comb += [q_write.addr.eq(Cat(word_in[:word_bits], token_in)), q_write.data.eq(word_data),
                     q_write.en.eq(Mux(taken & (part_in == 0), lanes_written, 0)),
                     kv_write.addr.eq(Cat(word_in[:word_bits], part_in[1], token_in)), kv_write.data.eq(word_data),
                     kv_write.en.eq(Mux(taken & (part_in != 0), lanes_written, 0))]
        load_last = (token_in == last_token) & (part_in == 2) & part_end
        with m.If(taken):
            with m.If(word_end):
                m.d.sync += [lane.eq(0), group_in.eq(Mux(slice_end, 0, group_in + 1)),
                             word_in.eq(Mux(part_end, 0, word_in + 1))]
            with m.Else():
                m.d.sync += lane.eq(lane + 1)
            with m.If(slice_end):
                with m.If(part_end):
                    m.d.sync += part_in.eq(Mux(part_in == 2, 0, part_in + 1))
                    with m.If(part_in == 2):
                        m.d.sync += token_in.eq(token_in + 1)

        # ---- issue: the sequencer's counters and the item it puts into the pipeline -----------
        command = data.StructLayout({
            "op": 2, "half": 1,            # the row memory half it reads and writes
            "first": 1, "last": 1,         # S: first/last group of a score; E: first/last key; C: first/last key
            "row_first": 1,                # the pass's first key (S: the maximum restarts)
            "makes_p": 1})                 # C: the first group, which makes p on the shared multiplier
        issue = Signal(command)
        cmd = [issue, *(Signal(command, name=f"cmd{k}") for k in range(1, STAGES + 1))]     # cmd[k]: stage k
        # The sequence memories are read in stage 2, when a first-group item's p is one stage
        # from made: their addresses follow the item for two stages.
        # The word's place: its word in the token's q, k or v (h * G + g) and the key.
        addresses = data.StructLayout({"word": word_bits, "key": row_key_bits})
        issue_addr, addr1, addr2 = Signal(addresses), data_register(addresses), data_register(addresses)
        op = [c.op for c in cmd]
        query = Signal(range(T_max))                                                      # i
        head, head_base = Signal(range(sz.max_heads)), Signal(range(sz.max_part_words))  # h and h * head_words
        context_head_base = Signal(range(sz.max_part_words))     # C's row's h * head_words
        key = Signal(range(slots_max))                                                    # j, or C's slot
        group = Signal(range(sz.max_head_words))
        half, context_half = Signal(), Signal()
        context_pending, context_final, recip_ready = Signal(), Signal(), Signal()
        group_tail, group_final = data_register(1), data_register(1)    # C: the head's / the step's last group
        bubble = Signal()             # the empty slot after an E or first-group item (its multiply's 2nd cycle)
        padding = Signal()            # C: the group's slots after its last key (none of them an item)
        held_left = Signal(range(U + 1))
        key_last, group_last, slot_last = key == last_token, group == last_group, key == last_slot
        # Whether stages 1..6 hold an S item, or a C group's last key: registered, from what those
        # stages hold next (the stage before's item if the pipeline advances), so that the issue
        # logic does not wait on the whole pipeline's commands.
        score_in_flight, group_in_flight = Signal(), Signal()

        def next_in_flight(holds):
            return Mux(advance, Cat(holds(c) for c in cmd[:STAGES]).any(), Cat(holds(c) for c in cmd[1:]).any())

        m.d.sync += [score_in_flight.eq(next_in_flight(lambda c: c.op == SCORE)),
                     group_in_flight.eq(next_in_flight(lambda c: (c.op == CONTEXT) & c.last))]

        def row_entry(which_half):
            return [row_read.addr.eq(Cat(key[:row_key_bits], which_half)), issue.half.eq(which_half),
                    issue.row_first.eq(key == 0)]

        def next_key(wrap):
            return key.eq(Mux(wrap, 0, key + 1))

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [lane.eq(0), group_in.eq(0), word_in.eq(0), part_in.eq(0), token_in.eq(0),
                                 query.eq(0), head.eq(0), head_base.eq(0), key.eq(0),
                                 group.eq(0), half.eq(0), context_pending.eq(0),
                                 recip_ready.eq(0), bubble.eq(0), padding.eq(0)]
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(taken & load_last):
                    m.next = "SCORE"
            with m.State("SCORE"):
                m.d.comb += [issue.op.eq(SCORE), *row_entry(half),
                             issue.first.eq(group == 0), issue.last.eq(group_last)]
                with m.If(advance):
                    m.d.sync += group.eq(Mux(group_last, 0, group + 1))
                    with m.If(group_last):
                        m.d.sync += next_key(key_last)
                        with m.If(key_last):
                            with m.If(context_pending):
                                m.next = "CONTEXT"
                            with m.Else():
                                m.next = "EXP"
            with m.State("CONTEXT"):
                may_start = (recip_ready | recip.done) & (held_left == 0) & ~group_in_flight
                started = (group != 0) | (key != 0) | bubble | may_start
                m.d.comb += [issue.op.eq(Mux(started & ~padding & ~bubble, CONTEXT, NONE)),
                             *row_entry(context_half),
                             issue.first.eq(key == 0), issue.last.eq(key_last), issue.makes_p.eq(group == 0)]
                # A group's last key reaches stage 6 before the next group's is issued (P > STAGES
                # slots), so what its sums need there is kept from its issue.
                with m.If(advance & (issue.op == CONTEXT) & issue.last):
                    m.d.sync += [group_tail.eq(group_last), group_final.eq(context_final & group_last)]
                with m.If(advance & started & (group == 0) & ~bubble):
                    m.d.sync += bubble.eq(1)
                with m.Elif(advance & started):
                    m.d.sync += [bubble.eq(0), next_key(slot_last), padding.eq(~slot_last & (padding | key_last))]
                    with m.If(slot_last):
                        m.d.sync += group.eq(Mux(group_last, 0, group + 1))
                        with m.If(group_last):
                            m.d.sync += context_pending.eq(0)
                            m.next = "EXP"
                    with m.If(context_final & group_last & key_last):
                        m.next = "DRAIN"               # the last group's padding slots have nothing to wait for
            with m.State("EXP"):
                m.d.comb += [issue.op.eq(Mux(score_in_flight | bubble, NONE, EXP)), *row_entry(half),
                             issue.first.eq(key == 0), issue.last.eq(key_last)]
                with m.If(advance & ~score_in_flight & ~bubble):
                    m.d.sync += bubble.eq(1)
                with m.Elif(advance & ~score_in_flight):
                    m.d.sync += [bubble.eq(0), key.eq(Mux(key_last, 0, key + 1)), recip_ready.eq(0)]
                    with m.If(key_last):
                        head_last, query_last = head == last_head, query == last_token
                        m.d.sync += [context_pending.eq(1), context_final.eq(head_last & query_last),
                                     context_head_base.eq(head_base), context_half.eq(half), half.eq(~half),
                                     head.eq(Mux(head_last, 0, head + 1)),
                                     head_base.eq(Mux(head_last, 0, head_base + n_head_words))]
                        with m.If(head_last):
                            m.d.sync += query.eq(query + 1)
                        with m.If(head_last & query_last):
                            m.next = "CONTEXT"
                        with m.Else():
                            m.next = "SCORE"
            with m.State("DRAIN"):
                with m.If(self.done):
                    m.next = "IDLE"
        with m.If(recip.done):
            m.d.sync += recip_ready.eq(1)

        with m.If(advance):
            m.d.sync += [cmd[k].eq(cmd[k - 1]) for k in range(1, STAGES + 1)]
            m.d.sync += [addr1.eq(issue_addr), addr2.eq(addr1)]
        # The word of a token's q, k or v an S or C item reads: one sum for both memories.
        # The query changes only after its row's last S item has read its q word.
        m.d.comb += [issue_addr.word.eq(Mux(fsm.ongoing("CONTEXT"), context_head_base, head_base) + group),
                     issue_addr.key.eq(key)]
        m.d.comb += [row_read.en.eq(advance),
                     q_read.addr.eq(Cat(addr2.word, query)), q_read.en.eq(advance),
                     kv_read.addr.eq(Cat(addr2.word, op[2] == CONTEXT, addr2.key)), kv_read.en.eq(advance)]

        # ---- stages 1 and 2: the shared 16 x 16 multiplier, two cycles a product -----------------
        # An E or first-group item x is followed by an empty slot, so the multiplier takes x's
        # high half in x's stage 1 (the slot behind it is in stage 2) and its low half in x's
        # stage 2, adding the high product 16 places up: x's product is in stage 3 as before. A
        # held sum takes two free cycles in a row, high half first (free: no such item in
        # stages 0..2, so neither the next cycle's stage 1 nor its stage 2 holds one).
        # The empty slot behind an E or first-group item reads the same row entry, so delta or e
        # is still there in the item's stage 2, for its product's low half.
        # One subtractor: max - s[j] for E, and max - s in stage 6 for S, whose sign says that s is
        # the new maximum (no E item is in stages 1 and 2 while an S item is in stage 6).
        row_max = data_register(signed(sz.score_bits))
        score_sum = Signal(signed(sz.score_bits))
        below_max = row_max - Mux(op[6] == SCORE, score_sum, row_read.data)
        delta_now, e_now = below_max[:sz.score_bits], row_read.data[:EXP_ENTRY_BITS]
        # p read back, or e's low bits (stages 2 and 3); p written back (stage 4: factor_a's; 5, 6)
        probability = {k: data_register(8, name=f"p{k}") for k in (2, 3, 5, 6)}
        with m.If(advance):
            m.d.sync += probability[2].eq(row_read.data[:8])

        held = data_register(data.ArrayLayout(signed(sz.context_bits), U))    # shifts down a sum at a time
        held_final, held_low = Signal(), Signal()                    # held_low: its high half is done
        multiplies = [(c.op == EXP) | ((c.op == CONTEXT) & c.makes_p) for c in cmd[:3]]
        item_high, item_low = multiplies[1], multiplies[2]
        held_high = ~held_low & (held_left != 0) & ~Cat(*multiplies).any()
        held_sum = held[0]                    # the held sum rescaled next
        half_bits = MULT_BITS
        # delta's halves by score_mult; e by recip's halves; a held sum's halves by out_mult: the
        # operands as an OR of the choices, each ANDed with its select (at most one of them high,
        # none in a cycle whose product is not kept).
        exp_high, exp_low = op[1] == EXP, op[2] == EXP
        p_high, p_low = item_high & ~exp_high, item_low & ~exp_low       # a first-group item
        multiplicand = _one_of((p_high | p_low, e_now), (exp_high, delta_now[half_bits:]),
                               (exp_low, delta_now[:half_bits]), (held_low, held_sum[:half_bits]),
                               (held_high, held_sum[half_bits:].as_signed()))
        multiplier = Mux(p_high | p_low, Mux(p_high, recip.quotient[half_bits:], recip.quotient[:half_bits]),
                         Mux(exp_high | exp_low, p.score_mult, p.out_mult))
        wide = Signal(2 * half_bits)
        m.d.comb += wide.eq(multiplicand[:half_bits] * multiplier[:half_bits])
        # The high product mod 2^(product_bits - 16); a negative held sum's high half went in as
        # itself + 2^16, so its product is out_mult * 2^16 too large.
        high_bits = sz.product_bits - half_bits
        high = data_register(high_bits)
        held_negative = held_sum[-1]
        product = data_register(signed(sz.product_bits))
        # The output: a held sum's c * out_mult in the product register, with out_shift, for the
        # engine's requantizer (docs/spec.md section 16.5.10); it holds while the output stalls.
        m.d.comb += [self.o.payload.acc.eq(product), self.o.payload.shift.eq(p.out_shift), self.o.payload.raw.eq(0)]
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(held_low), o_last.eq(held_final & (held_left == 1)),
                         probability[3].eq(probability[2])]
            with m.If(item_high | held_high):
                m.d.sync += high.eq(Cat(wide[:half_bits], wide[half_bits:high_bits]
                                        - Mux(held_high & held_negative, multiplier[:high_bits - half_bits], 0)))
            with m.If(item_low | held_low):
                m.d.sync += product.eq(Cat(wide[:half_bits], wide[half_bits:] + high))
            with m.If(held_high):
                m.d.sync += held_low.eq(1)
            with m.If(held_low):
                m.d.sync += [held_low.eq(0), held_left.eq(held_left - 1)]
                m.d.sync += [held[u].eq(held[u + 1]) for u in range(U - 1)]

        # ---- stage 3: the exp index's runtime shift, p (first group); the words -----------------
        # rshift_round(product, shift) = (floor(product * 2 / 2^shift) + 1) >> 1 (also for shift 0),
        # clamped to 255: of a product >= 0 only 9 bits h of the floor matter, and whether it is
        # 512 or more, kept as h = 511 (t = 255 either way).
        doubled = Cat(C(0, 1), product[:-1])
        kept_now, beyond_now = _shifted_right(doubled, p.score_shift, KEPT_BITS)
        kept = data_register(KEPT_BITS)
        # Z = 1 or 2 (no recip made): e in 0..Z, p = 0, 128 (e = 1 of Z = 2) or 255.
        z_small, z_two = data_register(1), data_register(1)
        e_low = probability[3]
        e_nonzero, e_half = e_low[:2].any(), z_two & e_low[0]
        made_p = Mux(z_small, Cat((e_nonzero & ~e_half).replicate(7), e_nonzero),
                     _at_most((product[PROB_SHIFT - 1:][:10] + 1) >> 1, PROB_MAX))
        p_now = Mux(cmd[3].makes_p, made_p, probability[3])
        factor_a = data_register(data.ArrayLayout(signed(9), U))    # q, or p (0..255)
        factor_b = data_register(data.ArrayLayout(signed(8), U))    # k, or v
        q_lanes = [q_read.data[8 * u:8 * u + 8].as_signed() for u in range(U)]
        with m.If(advance):
            m.d.sync += [kept.eq(kept_now | beyond_now.replicate(KEPT_BITS)), factor_b.eq(kv_read.data)]
            m.d.sync += [factor_a[u].eq(Mux(op[3] == CONTEXT, p_now, q_lanes[u])) for u in range(U)]

        # ---- stage 4: rounding and clamp: t -> the table read; U products ------------------------
        # t = (h + 1) >> 1, 255 for h = 511: its word t // 4 = (h + 1) >> 3 takes the + 1 as the
        # carry into the sum with table_base (none for h = 511), its lane t % 4 is bits 1, 2 of
        # h's low three bits + 1 (3 for h = 511).
        index_max = kept.all()
        word_carry = kept[:3].all() & ~index_max
        table_lane = data_register(2)
        # The lanes' operands again, as the multiplier blocks' input registers: each lane's
        # product then goes straight into its sum, which the block keeps (no adder in the fabric).
        lane_a, lane_b = data_register(factor_a.shape()), data_register(factor_b.shape())
        m.d.comb += [self.table.addr.eq((Cat(C(1, 1), p.table_base) + Cat(word_carry, kept[3:]))[1:]), self.table.en.eq(advance & (op[4] == EXP))]
        with m.If(advance):
            m.d.sync += [table_lane.eq(Mux(index_max, 3, (kept[:3] + 1)[1:3])), probability[5].eq(factor_a[0][:8])]
            m.d.sync += [lane_a.eq(factor_a), lane_b.eq(factor_b)]

        # ---- stage 5: e read and summed into Z; score and context sums ---------------------------
        e = self.table.data.word_select(table_lane, EXP_ENTRY_BITS)
        # The lanes' sums: c in C, each lane a column; in S each lane's part of the score, added up
        # in stage 6. Z apart, cleared once the reciprocal has taken it.
        sums = data_register(data.ArrayLayout(signed(max(sz.context_bits, sz.score_bits)), U))
        context = sums
        m.d.comb += score_sum.eq(balanced_sum(list(sums)))
        total = Signal(sz.sum_bits)
        z_final = Signal()
        m.d.sync += z_final.eq(advance & (op[5] == EXP) & cmd[5].last)
        m.d.comb += [recip.start.eq(z_final), recip.divisor.eq(total)]
        with m.If(z_final):
            m.d.sync += [z_small.eq(total[2:] == 0), z_two.eq(total[1]), total.eq(0)]
        with m.Elif(advance & (op[5] == EXP)):
            m.d.sync += total.eq(total + e)
        with m.If(advance):
            m.d.sync += probability[6].eq(probability[5])
            with m.If((op[5] == SCORE) | (op[5] == CONTEXT)):
                m.d.sync += [sums[u].eq(Mux(cmd[5].first, 0, sums[u]) + lane_a[u] * lane_b[u]) for u in range(U)]

        # ---- stage 6: s or p written back (e in stage 5); the row maximum; a group's sums held ----
        # e is written from stage 5: no s or p write is ever in stage 6 at the same time (E(0)
        # waits for S(0) to drain, and the first E item follows a C pass's last p by 2 slots).
        score_done = (op[6] == SCORE) & cmd[6].last
        group_done = (op[6] == CONTEXT) & cmd[6].last
        exp_write = op[5] == EXP
        writer_first, writer_half = (Mux(exp_write, cmd[5][f], cmd[6][f]) for f in ("row_first", "half"))
        # A pass writes its keys in order, so the written key is counted here, not carried along.
        written_key = data_register(range(T_max))
        write_key = Mux(writer_first, 0, written_key)
        with m.If(row_write.en):
            m.d.sync += written_key.eq(write_key + 1)
        m.d.comb += [row_write.addr.eq(Cat(write_key[:row_key_bits], writer_half)),
                     row_write.data.eq(Mux(exp_write, e, Mux(op[6] == SCORE, score_sum, probability[6]))),
                     row_write.en.eq(advance & (score_done | exp_write | ((op[6] == CONTEXT) & cmd[6].makes_p)))]
        with m.If(advance & score_done):
            m.d.sync += row_max.eq(Mux(cmd[6].row_first | below_max[-1], score_sum, row_max))
        with m.If(advance & group_done):
            m.d.sync += [held.eq(context), held_left.eq(Mux(group_tail, tail_lanes, U)),
                         held_final.eq(group_final)]
        return m
