"""The `attention` unit: multi-head self-attention of one sequence a step (docs/spec.md sections 13.5 and 16).

Everything of the layer is a step parameter: T, H, the head's words G = ceil(dh / U), the
lanes of a head's last word, score_mult / score_shift, out_mult / out_shift and the base of
exp_table in the table memory (256 entries of 16 bits, four to a word: entry n in bits
16*(n % 4) .. of word n // 4). The unit is built for `NetworkLimits` and its lanes U.

The step reads T tokens of q | k | v (3E elements each) into one sequence buffer in words of
U elements, each head's slice starting a new word (q in one memory, k and v in another, so
a score reads a q word and a k word in one cycle), then computes rows (query i, head h) in
output order and writes y as it is made. A row has three passes over its T keys (timetable:
hw/network/attention_unit_schedule.py):
- S: s[j] = q_i . k_j on the U lane multipliers, one word pair a cycle; the row maximum is
  kept as the scores are written into the row memory.
- E: t = min(rshift_round((max - s[j]) * score_mult, score_shift), 255) on the shared
  rescale (two cycles a key), e = exp_table[t] (one table memory read), written over s[j]
  and summed into Z;
  Z's reciprocal floor(2^32 / Z) then runs on the shift-subtract unit
  (hw/operators/reciprocal.py) while the next row's scores are computed.
- C: per group of U output columns, c[d] += p[j] * v[j, d] on the same lanes. The first
  group makes p[j] = min(rshift_round(e[j] * recip, 24), 255) on the shared multiplier (two
  cycles a key) and writes it over e[j]; the other groups read it back, and meanwhile the
  shared rescale turns the previous group's U sums, held in a register, one in two cycles
  into y = sat8(rshift_round(c * out_mult, out_shift)).
The row memory has two halves (row r's key j at entry j of half r % 2), since S(r+1) writes
its scores while row r still needs its probabilities.

Multipliers: the U lanes (9-bit signed by 8-bit signed: q * k, and the unsigned p times v)
and one shared 16 x 16 unsigned multiplier (one DSP block), which makes delta * score_mult
(E), e * recip (the first C group) and c * out_mult (the held sums, in cycles no E or
first-group item needs) in two cycles each, high half of the wide operand first, followed by
one runtime shift, rounding and clamp for t and y.
Everything after the issue stage is one lock-step pipeline that advances on `advance`: the
output's skid buffer is not full, or nothing is leaving (read ports' `en` too, so their data
holds during a stall); the reciprocal runs free, its result holding until its next start.
"""
from amaranth import Cat, Module, Mux, Signal
from amaranth.hdl import signed, unsigned
from amaranth.lib import data, memory, wiring

from nomac.base.errors import ConfigError
from nomac.hw.network.attention_unit_schedule import (BOUND_RULE, EXP_ENTRY_BITS, EXP_INDEX_MAX, MULT_BITS,
                                                      PROB_MAX, PROB_SHIFT, STAGES, AttentionUnitSizes,
                                                      AttentionUnitTimetable, head_words, least_context_period)
from nomac.hw.network.unit import (TABLE_WORD_BITS, Field, LimitError, NetworkLimits, UnitSignature, UnitStep,
                                   pack_words, params_layout)
from nomac.hw.requantize import balanced_sum

__all__ = ["FIELDS", "DEFAULT_LANES", "AttentionUnit", "attention_step"]

DEFAULT_LANES = NetworkLimits.attention_lanes   # U = 2: with the shared multiplier 3 of the iCE40UP5K's 8 DSPs
EXP_TABLE_WORDS = 256 * EXP_ENTRY_BITS // TABLE_WORD_BITS

FIELDS = (Field("tokens", 16), Field("heads", 16), Field("head_words", 16), Field("tail_lanes", 16),
          Field("part_words", 16), Field("score_mult", 16), Field("score_shift", 6), Field("out_mult", 16),
          Field("out_shift", 6), Field("table_base", 16))

NONE, SCORE, EXP, CONTEXT = range(4)      # what a pipeline slot carries
KEPT_BITS = 10                            # floor(2 * product / 2^shift) in -512..511 decides t and y


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
    params = {"tokens": T, "heads": H, "head_words": G, "tail_lanes": layer.head_dim - (G - 1) * U,
              "part_words": H * G, "score_mult": layer.score_mult, "score_shift": layer.score_shift,
              "out_mult": layer.out_mult, "out_shift": layer.out_shift, "table_base": table_base}
    timetable = AttentionUnitTimetable(T, H, layer.head_dim, U)
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


class AttentionUnit(wiring.Component):
    """Attention of one sequence a step on `lanes` multipliers; see the module docstring."""

    def __init__(self, limits, lanes: int = DEFAULT_LANES):
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise ValueError(f"AttentionUnit: lanes = {lanes!r}: must be a positive integer")
        self.limits, self.lanes = limits, lanes
        self.sizes = AttentionUnitSizes.of(limits, lanes)
        super().__init__(UnitSignature(params_layout(FIELDS), limits))

    def elaborate(self, platform):
        m = Module()
        p, sz, U = self.params, self.sizes, self.lanes
        T_max = sz.max_tokens
        word = unsigned(8 * U)
        least_period = least_context_period(U)             # a context group's slots: P = max(T, least_period)
        slots_max = max(T_max, least_period)
        # Address steps as wide as the limits make them (the step refuses anything larger), and
        # each counter's last value, registered at `start` (the parameters hold until `done`),
        # so that the sequencer compares counters with registers only.
        n_head_words = p.head_words[:sz.max_head_words.bit_length()]
        n_part_words = p.part_words[:sz.max_part_words.bit_length()]
        last_token, last_head = data_register(range(T_max)), data_register(range(sz.max_heads))
        last_group, last_lane = data_register(range(sz.max_head_words)), data_register(range(U))
        last_slot = data_register(range(slots_max))
        with m.If(self.start):
            tokens = p.tokens[:T_max.bit_length()]
            m.d.sync += [last_token.eq(tokens - 1), last_head.eq(p.heads - 1), last_group.eq(p.head_words - 1),
                         last_lane.eq(p.tail_lanes - 1),
                         last_slot.eq(Mux(tokens > least_period, tokens, least_period) - 1)]

        # ---- memories: the sequence (q; k and v), the row memory (s, then e, then p) -----------
        m.submodules.queries = queries = memory.Memory(shape=word, depth=sz.query_depth, init=[])
        m.submodules.keys_values = keys_values = memory.Memory(shape=word, depth=sz.key_value_depth, init=[])
        row_key_bits = max(1, (T_max - 1).bit_length())      # row r's entries: half r % 2, then the key
        m.submodules.row = row = memory.Memory(shape=signed(sz.row_bits), depth=2 << row_key_bits, init=[])
        q_write, q_read = queries.write_port(), queries.read_port()
        kv_write, kv_read = keys_values.write_port(), keys_values.read_port()
        row_write, row_read = row.write_port(), row.read_port()
        m.submodules.reciprocal = recip = sz.make_reciprocal()

        # ---- the output: a skid buffer, so `advance` waits on registers only ------------------
        out_valid, out_data, out_last = Signal(), data_register(signed(8)), Signal()        # offered by stage 4
        skid_valid, skid_data, skid_last = Signal(), data_register(signed(8)), Signal()
        o_last = Signal()
        advance = ~out_valid | ~skid_valid
        with m.If(~self.o.valid | self.o.ready):
            m.d.sync += [self.o.valid.eq(skid_valid | out_valid), skid_valid.eq(0),
                         self.o.payload.eq(Mux(skid_valid, skid_data, out_data)),
                         o_last.eq(Mux(skid_valid, skid_last, out_last))]
        with m.Elif(out_valid & ~skid_valid):
            m.d.sync += [skid_valid.eq(1), skid_data.eq(out_data), skid_last.eq(out_last)]
        m.d.comb += self.done.eq(self.o.valid & self.o.ready & o_last)

        # ---- load: T tokens of q | k | v into words, each head's slice from a new word --------
        lane, group_in = Signal(range(U)), Signal(range(sz.max_head_words))
        head_in, part_in, token_in = Signal(range(sz.max_heads)), Signal(range(3)), Signal(range(T_max))
        assembled = Signal(data.ArrayLayout(signed(8), U))
        q_addr_in, kv_addr_in = Signal(range(sz.query_depth)), Signal(range(sz.key_value_depth))
        element = self.i.payload
        word_next = Cat(*(Mux(lane == u, element, assembled[u]) for u in range(U)))
        slice_end = (group_in == last_group) & (lane == last_lane)
        word_end = (lane == U - 1) | slice_end
        taken = self.i.valid & self.i.ready
        m.d.comb += [q_write.addr.eq(q_addr_in), q_write.data.eq(word_next),
                     q_write.en.eq(taken & word_end & (part_in == 0)),
                     kv_write.addr.eq(kv_addr_in), kv_write.data.eq(word_next),
                     kv_write.en.eq(taken & word_end & (part_in != 0))]
        load_last = (token_in == last_token) & (part_in == 2) & (head_in == last_head) & slice_end
        with m.If(taken):
            with m.If(word_end):
                m.d.sync += [assembled.eq(0), lane.eq(0), group_in.eq(Mux(slice_end, 0, group_in + 1))]
                with m.If(part_in == 0):
                    m.d.sync += q_addr_in.eq(q_addr_in + 1)
                with m.Else():
                    m.d.sync += kv_addr_in.eq(kv_addr_in + 1)
            with m.Else():
                m.d.sync += [assembled.eq(word_next), lane.eq(lane + 1)]
            with m.If(slice_end):
                m.d.sync += head_in.eq(Mux(head_in == last_head, 0, head_in + 1))
                with m.If(head_in == last_head):
                    m.d.sync += part_in.eq(Mux(part_in == 2, 0, part_in + 1))
                    with m.If(part_in == 2):
                        m.d.sync += token_in.eq(token_in + 1)

        # ---- issue: the sequencer's counters and the item it puts into the pipeline -----------
        command = data.StructLayout({
            "op": 2, "half": 1,            # the row memory half it reads and writes
            "first": 1, "last": 1,         # S: first/last group of a score; E: first/last key; C: first/last key
            "row_first": 1,                # the pass's first key (S: the maximum restarts)
            "makes_p": 1,                  # C: the first group, which makes p on the shared multiplier
            "tail": 1,                     # C: the head's last group (tail_lanes sums, not U)
            "final": 1})                   # C: the step's last group
        issue = Signal(command)
        cmd = [issue, *(Signal(command, name=f"cmd{k}") for k in range(1, STAGES + 1))]     # cmd[k]: stage k
        # The sequence memories are read in stage 2, when a first-group item's p is one stage
        # from made: their addresses follow the item for two stages.
        addresses = data.StructLayout({"q": range(sz.query_depth), "kv": range(sz.key_value_depth)})
        issue_addr, addr1, addr2 = Signal(addresses), data_register(addresses), data_register(addresses)
        op = [c.op for c in cmd]
        query, query_base = Signal(range(T_max)), Signal(range(sz.query_depth))          # i and i * part_words
        head, head_base = Signal(range(sz.max_heads)), Signal(range(sz.max_part_words))  # h and h * head_words
        context_column = Signal(range(2 * sz.max_part_words))    # C's row: part_words + h * head_words (v)
        key = Signal(range(slots_max))                                                    # j, or C's slot
        key_base = Signal(range(sz.key_value_depth))                                      # j * 2 * part_words
        group = Signal(range(sz.max_head_words))
        half, context_half = Signal(), Signal()
        context_pending, context_final, recip_ready = Signal(), Signal(), Signal()
        bubble = Signal()             # the empty slot after an E or first-group item (its multiply's 2nd cycle)
        held_left = Signal(range(U + 1))
        key_last, group_last, slot_last = key == last_token, group == last_group, key == last_slot
        score_in_flight = Cat(c.op == SCORE for c in cmd[1:]).any()
        group_in_flight = Cat((c.op == CONTEXT) & c.last for c in cmd[1:]).any()

        def row_entry(which_half):
            return [row_read.addr.eq(Cat(key[:row_key_bits], which_half)), issue.half.eq(which_half),
                    issue.row_first.eq(key == 0)]

        def next_key(wrap, step):
            return [key.eq(Mux(wrap, 0, key + 1)), key_base.eq(Mux(wrap, 0, key_base + step))]

        key_step = n_part_words << 1
        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [lane.eq(0), group_in.eq(0), head_in.eq(0), part_in.eq(0), token_in.eq(0),
                                 assembled.eq(0), q_addr_in.eq(0), kv_addr_in.eq(0),
                                 query.eq(0), query_base.eq(0), head.eq(0), head_base.eq(0), key.eq(0),
                                 key_base.eq(0), group.eq(0), half.eq(0), context_pending.eq(0),
                                 recip_ready.eq(0), bubble.eq(0)]
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
                        m.d.sync += next_key(key_last, key_step)
                        with m.If(key_last):
                            with m.If(context_pending):
                                m.next = "CONTEXT"
                            with m.Else():
                                m.next = "EXP"
            with m.State("CONTEXT"):
                may_start = (recip_ready | recip.done) & (held_left == 0) & ~group_in_flight
                started = (group != 0) | (key != 0) | bubble | may_start
                m.d.comb += [issue.op.eq(Mux(started & (key <= last_token) & ~bubble, CONTEXT, NONE)),
                             *row_entry(context_half),
                             issue.first.eq(key == 0), issue.last.eq(key_last), issue.makes_p.eq(group == 0),
                             issue.tail.eq(group_last), issue.final.eq(context_final & group_last)]
                with m.If(advance & started & (group == 0) & ~bubble):
                    m.d.sync += bubble.eq(1)
                with m.Elif(advance & started):
                    m.d.sync += [bubble.eq(0), *next_key(slot_last, key_step)]
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
                                     context_column.eq(n_part_words + head_base), context_half.eq(half), half.eq(~half),
                                     head.eq(Mux(head_last, 0, head + 1)),
                                     head_base.eq(Mux(head_last, 0, head_base + n_head_words))]
                        with m.If(head_last):
                            m.d.sync += [query.eq(query + 1), query_base.eq(query_base + n_part_words)]
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
        column = Mux(fsm.ongoing("CONTEXT"), context_column, head_base) + group
        m.d.comb += [issue_addr.q.eq(query_base + column), issue_addr.kv.eq(key_base + column)]
        m.d.comb += [row_read.en.eq(advance),
                     q_read.addr.eq(addr2.q), q_read.en.eq(advance),
                     kv_read.addr.eq(addr2.kv), kv_read.en.eq(advance)]

        # ---- stages 1 and 2: the shared 16 x 16 multiplier, two cycles a product -----------------
        # An E or first-group item x is followed by an empty slot, so the multiplier takes x's
        # high half in x's stage 1 (the slot behind it is in stage 2) and its low half in x's
        # stage 2, adding the high product 16 places up: x's product is in stage 3 as before. A
        # held sum takes two free cycles in a row, high half first (free: no such item in
        # stages 0..2, so neither the next cycle's stage 1 nor its stage 2 holds one).
        row_max = data_register(signed(sz.score_bits))
        delta_now, e_now = row_max - row_read.data, row_read.data[:EXP_ENTRY_BITS]
        operand = data_register(EXP_ENTRY_BITS)                                           # delta's low half, or e
        # p read back (stage 2: operand's low bits; stage 3), p written back (stage 4: factor_a's; 5, 6)
        probability = {k: data_register(8, name=f"p{k}") for k in (3, 5, 6)}
        with m.If(advance):
            m.d.sync += operand.eq(Mux(op[1] == EXP, delta_now, e_now))

        held = data_register(data.ArrayLayout(signed(sz.context_bits), U))
        held_next = Signal(range(U))          # the held sum rescaled next
        held_final, held_low = Signal(), Signal()                    # held_low: its high half is done
        multiplies = [(c.op == EXP) | ((c.op == CONTEXT) & c.makes_p) for c in cmd[:3]]
        item_high, item_low = multiplies[1], multiplies[2]
        held_high = ~held_low & (held_left != 0) & ~Cat(*multiplies).any()
        reciprocal_large = recip.quotient[31:].any()               # Z = 1 or 2: recip = 2^32 or 2^31
        recip_operand = Mux(reciprocal_large, 1 << 30, recip.quotient[:31])
        held_sum = held[held_next]
        half_bits = MULT_BITS
        # delta's halves by score_mult; e by recip's halves; a held sum's halves by out_mult
        multiplicand = Mux(item_high, Mux(op[1] == EXP, delta_now[half_bits:], e_now),
                           Mux(item_low, operand, Mux(held_low, held_sum[:half_bits], held_sum[half_bits:].as_signed())))
        multiplier = Mux(item_high, Mux(op[1] == EXP, p.score_mult, recip_operand[half_bits:]),
                         Mux(item_low, Mux(op[2] == EXP, p.score_mult, recip_operand[:half_bits]), p.out_mult))
        wide = Signal(2 * half_bits)
        m.d.comb += wide.eq(multiplicand[:half_bits] * multiplier[:half_bits])
        # The high product mod 2^(product_bits - 16); a negative held sum's high half went in as
        # itself + 2^16, so its product is out_mult * 2^16 too large.
        high_bits = sz.product_bits - half_bits
        high = data_register(high_bits)
        held_negative = held_sum[-1]
        product = data_register(signed(sz.product_bits))
        rescaled3, rescaled3_last, rescaled4, rescaled4_last = Signal(), Signal(), Signal(), Signal()
        with m.If(advance):
            m.d.sync += [rescaled3.eq(held_low), rescaled3_last.eq(held_final & (held_left == 1)),
                         probability[3].eq(operand[:8])]
            with m.If(item_high | held_high):
                m.d.sync += high.eq(Cat(wide[:half_bits], wide[half_bits:high_bits]
                                        - Mux(held_high & held_negative, multiplier[:high_bits - half_bits], 0)))
            with m.If(item_low | held_low):
                m.d.sync += product.eq(Cat(wide[:half_bits], wide[half_bits:] + high))
            with m.If(held_high):
                m.d.sync += held_low.eq(1)
            with m.If(held_low):
                m.d.sync += [held_low.eq(0), held_next.eq(held_next + 1), held_left.eq(held_left - 1)]

        # ---- stage 3: the runtime shift (E and held sums), p (first group); the words ------------
        # rshift_round(product, shift) = (floor(product * 2 / 2^shift) + 1) >> 1 (also for shift 0),
        # clamped to 0..255 or -128..127: only 10 bits of the floor matter, and whether it lies
        # outside -512..511 (`beyond`), that is whether the doubled product's bits from
        # shift + 9 up differ from its sign.
        doubled = product << 1
        shift = Mux(op[3] == EXP, p.score_shift, p.out_shift)
        magnitude = doubled[:-1] ^ doubled[-1].replicate(len(doubled) - 1)        # doubled, or ~doubled
        kept = data_register(signed(KEPT_BITS))
        # shift <= c from its two 3-bit halves, each compared with the constants once
        high_below = [shift[3:] < c for c in range(8)]
        high_equal = [shift[3:] == c for c in range(8)]
        low_at_most = [shift[:3] <= c for c in range(8)]

        def at_most(c):
            return high_below[c >> 3] | (high_equal[c >> 3] & low_at_most[c & 7])

        beyond, negative = data_register(1), data_register(1)
        prob_high = Mux(recip.quotient[32], product[PROB_SHIFT - 3:],
                        Mux(recip.quotient[31], product[PROB_SHIFT - 2:], product[PROB_SHIFT - 1:]))[:10]
        made_p = _at_most((prob_high + 1) >> 1, PROB_MAX)
        p_now = Mux(cmd[3].makes_p, made_p, probability[3])
        factor_a = data_register(data.ArrayLayout(signed(9), U))    # q, or p (0..255)
        factor_b = data_register(data.ArrayLayout(signed(8), U))    # k, or v
        q_lanes = [q_read.data[8 * u:8 * u + 8].as_signed() for u in range(U)]
        with m.If(advance):
            m.d.sync += [kept.eq((doubled >> shift)[:KEPT_BITS]), negative.eq(doubled[-1]),
                         beyond.eq(Cat(magnitude[k] & at_most(k - (KEPT_BITS - 1))
                                       for k in range(KEPT_BITS - 1, len(magnitude))).any()),
                         rescaled4.eq(rescaled3), rescaled4_last.eq(rescaled3_last),
                         factor_b.eq(kv_read.data)]
            m.d.sync += [factor_a[u].eq(Mux(op[3] == CONTEXT, p_now, q_lanes[u])) for u in range(U)]

        # ---- stage 4: rounding and clamp: t -> the table read, y -> the output; U products --------
        rounded = (kept + 1) >> 1                           # -256..256, >= 0 for t
        t = Mux(beyond, EXP_INDEX_MAX, _at_most(rounded, EXP_INDEX_MAX))[:8]
        above = ~rounded[-1] & (rounded[7] | rounded[8])                 # > 127
        below = rounded[-1] & ~(rounded[7] & rounded[8])                 # < -128
        y = Mux(beyond, Mux(negative, -128, 127), Mux(above, 127, Mux(below, -128, rounded)))
        table_lane = data_register(2)
        products = data_register(data.ArrayLayout(signed(16), U))        # |q * k| <= 2^14, p * v in -255*128..255*127
        m.d.comb += [self.table.addr.eq(p.table_base + t[2:]), self.table.en.eq(advance & (op[4] == EXP))]
        with m.If(advance):
            m.d.sync += [table_lane.eq(t[:2]), probability[5].eq(factor_a[0][:8]),
                         out_valid.eq(rescaled4), out_last.eq(rescaled4_last),
                         out_data.eq(y)]
            m.d.sync += [products[u].eq(factor_a[u] * factor_b[u]) for u in range(U)]

        # ---- stage 5: e read and summed into Z; score and context sums ---------------------------
        e = self.table.data.word_select(table_lane, EXP_ENTRY_BITS)
        # The lanes' sums: c in C; in S the score in lane 0's, in E Z in the last lane's (each
        # read before the next pass's first item restarts it; the reciprocal takes Z at its start).
        sums = data_register(data.ArrayLayout(signed(max(sz.context_bits, sz.score_bits, sz.sum_bits + 1)), U))
        context, score_sum, total = sums, sums[0], sums[U - 1]
        other_lanes = balanced_sum(list(products)[1:]) if U > 1 else 0
        z_final = Signal()
        m.d.sync += z_final.eq(advance & (op[5] == EXP) & cmd[5].last)
        m.d.comb += [recip.start.eq(z_final), recip.divisor.eq(total[:sz.sum_bits])]
        with m.If(advance):
            m.d.sync += probability[6].eq(probability[5])
            with m.If(op[5] != NONE):
                for u in range(U):
                    addend = products[u] + Mux(op[5] == SCORE, other_lanes, 0) if u == 0 else products[u]
                    addend = Mux(op[5] == EXP, e, addend) if u == U - 1 else addend
                    m.d.sync += sums[u].eq(Mux(cmd[5].first, 0, sums[u]) + addend)

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
            m.d.sync += row_max.eq(Mux(cmd[6].row_first | (score_sum > row_max), score_sum, row_max))
        with m.If(advance & group_done):
            m.d.sync += [held.eq(context), held_next.eq(0), held_left.eq(Mux(cmd[6].tail, last_lane + 1, U)),
                         held_final.eq(cmd[6].final)]
        return m
