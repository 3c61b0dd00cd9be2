"""The `attention` engine: multi-head self-attention of one whole sequence (docs/spec.md section 13.5).

One input vector is the sequence, T tokens of q | k | v (3E int8 each); the output is
T*E int8, token by token, heads in order. The core keeps the sequence in block RAM in
words of U elements (U = hw.lanes, dividing dh), two banks deep: the next sequence
streams into one bank while the other is computed (ping-pong; it costs the memory of
one more sequence, 3*T*E bytes, and hides the input's T*3E/in_lanes cycles). Rows
(query i, head h) are computed in stream order, so outputs leave as they are made.

A row has three passes over its T keys (timetable: hw/operators/attention_schedule.py):
- S: s[j] = q_i . k_j on U multipliers, one word pair a cycle; the row maximum is kept
  as the scores are written into a T-entry score memory.
- E: t = min(rshift_round((max - s[j]) * score_mult, score_shift), 255), e = exp_table[t]
  (a constant multiplier, one table read), written into a T-entry memory and summed
  into Z; then Z's reciprocal floor(2^32 / Z) starts on the shift-subtract unit
  (hw/operators/reciprocal.py) and runs while the next row's scores are computed.
- C: per word group of U output columns, p[j] = min(rshift_round(e[j] * recip, 24), 255)
  and c[d] += p[j] * v[j, d] on the same U multipliers (9-bit by 8-bit signed, which
  hold both q * k and the unsigned p times v); then y = sat8(rshift_round(c * out_mult,
  out_shift)) leaves as one beat of U elements.
Everything after the issue stage is one lock-step pipeline that advances on
`~held_valid | o.ready` (read ports' `en` too, so their data holds during a stall); the
reciprocal runs free, its result holding until the next start.
"""
from amaranth import Array, Module, Mux, Signal
from amaranth.hdl import signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from nomac.hw.engine import LAYER_PARAMETER
from nomac.hw.matrix_vector_engine import BLOCK_RAM
from nomac.hw.memory_layout import MemoryLayout
from nomac.hw.operators.attention_schedule import (EXP_INDEX_MAX, PROB_MAX, PROB_SHIFT, RECIP_BITS,
                                                   AttentionSchedule)
from nomac.hw.operators.operator_engine import OperatorEngine
from nomac.hw.operators.reciprocal import Reciprocal
from nomac.hw.parameter_memory import ParameterMemory
from nomac.hw.requantize import balanced_sum, requantize
from nomac.hw.vector_stream import vector_stream

__all__ = ["AttentionCore", "AttentionEngine"]

NONE, SCORE, EXP, CONTEXT = range(4)      # what a pipeline slot carries


def rshift_round(value, shift: int):
    """docs/spec.md section 2's rounding shift of a non-negative value."""
    return value if shift == 0 else (value + (1 << (shift - 1))) >> shift


def at_most(value, limit: int):
    return Mux(value > limit, limit, value)


class AttentionCore(wiring.Component):
    """Whole sequences in (beats of U int8), their attention out (beats of U int8)."""

    max_in_flight = 4               # one leaving the output gearbox, one computed, one in its bank, one entering
    cycles_per_vector_bound_rule = "2*T*T*E/U + H*T*T"

    def __init__(self, layer):
        self.layer = layer
        self.schedule = schedule = AttentionSchedule.of(layer)
        self.in_lanes = self.out_lanes = schedule.lanes
        self.exp_table = ParameterMemory(MemoryLayout("exp_table", "exp_table", lanes=1, lane_bits=16, signed=False),
                                         layer.exp_table, layer.hw.memory == "ram", attrs=BLOCK_RAM)
        self.memories = [self.exp_table]
        self.reciprocal = Reciprocal(schedule.sum_bits, RECIP_BITS, schedule.reciprocal_bits_per_cycle)
        super().__init__({"i": In(vector_stream(self.in_lanes, signed(8))),
                          "o": Out(vector_stream(self.out_lanes, signed(8))),
                          **self.exp_table.members()})

    acc_bits = property(lambda self: max(self.schedule.score_bits, self.schedule.sum_bits,
                                         self.schedule.context_bits))
    cycles_per_vector = property(lambda self: max(self.schedule.cycles_per_sequence,
                                                  self.schedule.words_per_sequence))
    cycles_per_vector_bound = property(lambda self: self.schedule.bound)

    def elaborate(self, platform):
        m = Module()
        layer, sch = self.layer, self.schedule
        T, H, U, G, P = sch.tokens, sch.heads, sch.lanes, sch.groups, sch.context_period
        W, D, E_words = sch.words_per_token, sch.words_per_sequence, sch.features // U

        # ---- the sequence banks: written from the input, read by the datapath ----------------
        seq = memory.Memory(shape=unsigned(8 * U), depth=2 * D, init=[], attrs=BLOCK_RAM)
        m.submodules.sequence = seq
        write, port_a, port_b = seq.write_port(), seq.read_port(), seq.read_port()
        full = Array([Signal(name="bank0_full"), Signal(name="bank1_full")])
        write_bank, compute_bank = Signal(), Signal()
        write_addr = Signal(range(D))
        m.d.comb += [self.i.ready.eq(~full[write_bank]),
                     write.addr.eq(Mux(write_bank, D, 0) + write_addr),
                     write.data.eq(self.i.payload.data.as_value()),
                     write.en.eq(self.i.valid & self.i.ready)]
        with m.If(write.en):
            m.d.sync += write_addr.eq(Mux(write_addr == D - 1, 0, write_addr + 1))
            with m.If(write_addr == D - 1):
                m.d.sync += [full[write_bank].eq(1), write_bank.eq(~write_bank)]

        # ---- the row memories and the exp table --------------------------------------------
        scores = memory.Memory(shape=signed(sch.score_bits), depth=T, init=[])
        exps = memory.Memory(shape=unsigned(16), depth=T, init=[])
        m.submodules.scores, m.submodules.exps = scores, exps
        score_write, score_read = scores.write_port(), scores.read_port()
        exp_write, exp_read = exps.write_port(), exps.read_port()
        table = self.exp_table.build(m, self)
        m.submodules.reciprocal = recip = self.reciprocal

        held_valid, held_last = Signal(), Signal()
        held_data = Signal(data.ArrayLayout(signed(8), U))
        advance = ~held_valid | self.o.ready
        for port in (port_a, port_b, score_read, exp_read):
            m.d.comb += port.en.eq(advance)

        # ---- issue: the sequencer's counters and the item it puts into the pipeline ----------
        command = data.StructLayout({"op": 2, "j": range(max(T, 2)), "first": 1, "last": 1, "row_first": 1,
                                     "seq_last": 1})
        issue, cmd1, cmd2, cmd3 = (Signal(command, name=n) for n in ("issue", "cmd1", "cmd2", "cmd3"))
        query_base = Signal(range(T * W))                     # i * W
        head, head_base, context_head_base = Signal(range(H)), Signal(range(E_words)), Signal(range(E_words))
        query = Signal(range(T))
        key, key_base = Signal(range(P)), Signal(range(P * W))    # j and j * W (C counts P slots)
        group = Signal(range(G))
        context_pending, context_final = Signal(), Signal()
        recip_ready = Signal()
        bank_base = Mux(compute_bank, D, 0)
        key_last, group_last = key == T - 1, group == G - 1
        slot_last = key == P - 1
        score_in_flight = (cmd1.op == SCORE) | (cmd2.op == SCORE) | (cmd3.op == SCORE)

        def next_key(wrap):
            return [key.eq(Mux(wrap, 0, key + 1)), key_base.eq(Mux(wrap, 0, key_base + W))]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(advance & full[compute_bank]):
                    m.next = "SCORE"
            with m.State("SCORE"):
                m.d.comb += [issue.op.eq(SCORE), issue.j.eq(key), issue.first.eq(group == 0),
                             issue.last.eq(group_last), issue.row_first.eq(key == 0),
                             port_a.addr.eq(bank_base + query_base + head_base + group),
                             port_b.addr.eq(bank_base + key_base + E_words + head_base + group)]
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
                go = advance & (recip_ready | recip.done)
                with m.If(key < T):
                    m.d.comb += [issue.op.eq(Mux(recip_ready | recip.done, CONTEXT, NONE)), issue.j.eq(key),
                                 issue.first.eq(key == 0), issue.last.eq(key_last),
                                 issue.seq_last.eq(context_final & group_last & key_last)]
                m.d.comb += [port_a.addr.eq(bank_base + key_base + 2 * E_words + context_head_base + group),
                             exp_read.addr.eq(key)]
                with m.If(go):
                    m.d.sync += next_key(slot_last)
                    with m.If(slot_last):
                        m.d.sync += group.eq(Mux(group_last, 0, group + 1))
                        with m.If(group_last):
                            m.d.sync += context_pending.eq(0)
                            with m.If(context_final):
                                m.d.sync += [full[compute_bank].eq(0), compute_bank.eq(~compute_bank)]
                                m.next = "IDLE"
                            with m.Else():
                                m.next = "EXP"
            with m.State("EXP"):
                go = advance & ~score_in_flight
                m.d.comb += [issue.op.eq(Mux(score_in_flight, NONE, EXP)), issue.j.eq(key),
                             issue.first.eq(key == 0), issue.last.eq(key_last), score_read.addr.eq(key)]
                with m.If(go):
                    m.d.sync += [key.eq(Mux(key_last, 0, key + 1)), recip_ready.eq(0)]
                    with m.If(key_last):
                        head_last, query_last = head == H - 1, query == T - 1
                        m.d.sync += [context_pending.eq(1), context_final.eq(head_last & query_last),
                                     context_head_base.eq(head_base),
                                     head.eq(Mux(head_last, 0, head + 1)),
                                     head_base.eq(Mux(head_last, 0, head_base + G))]
                        with m.If(head_last):
                            m.d.sync += [query.eq(Mux(query_last, 0, query + 1)),
                                         query_base.eq(Mux(query_last, 0, query_base + W))]
                        with m.If(head_last & query_last):
                            m.next = "CONTEXT"
                        with m.Else():
                            m.next = "SCORE"
        with m.If(recip.done):
            m.d.sync += recip_ready.eq(1)

        with m.If(advance):
            m.d.sync += [cmd1.eq(issue), cmd2.eq(cmd1), cmd3.eq(cmd2)]

        # ---- stage 1: words, scores and e read; operands of the multipliers chosen -----------
        row_max = Signal(signed(sch.score_bits))
        factor_qp = Signal(data.ArrayLayout(signed(9), U))    # q, or the probability p (0..255)
        factor_kv = Signal(data.ArrayLayout(signed(8), U))    # k, or v
        word_a = port_a.data
        word_b = port_b.data
        lanes_a = [word_a[8 * u:8 * u + 8].as_signed() for u in range(U)]
        lanes_b = [word_b[8 * u:8 * u + 8].as_signed() for u in range(U)]
        probability = at_most(rshift_round(exp_read.data * recip.quotient, PROB_SHIFT), PROB_MAX)
        delta = (row_max - score_read.data).as_unsigned()[:sch.delta_max.bit_length()]
        t = at_most(rshift_round(delta * layer.score_mult, layer.score_shift), EXP_INDEX_MAX)
        m.d.comb += [table.addr.eq(t), table.en.eq(advance)]
        with m.If(advance):
            with m.If(cmd1.op == SCORE):
                m.d.sync += [factor_qp[u].eq(lanes_a[u]) for u in range(U)]
                m.d.sync += [factor_kv[u].eq(lanes_b[u]) for u in range(U)]
            with m.If(cmd1.op == CONTEXT):
                m.d.sync += [factor_qp[u].eq(probability) for u in range(U)]
                m.d.sync += [factor_kv[u].eq(lanes_a[u]) for u in range(U)]

        # ---- stage 2: U products; score partial sums, context sums, Z ------------------------
        products = [factor_qp[u] * factor_kv[u] for u in range(U)]
        score_sum = Signal(signed(sch.score_bits))
        context = Signal(data.ArrayLayout(signed(sch.context_bits), U))
        total = Signal(sch.sum_bits)
        z_final = Signal()
        e = table.data
        m.d.comb += [exp_write.addr.eq(cmd2.j), exp_write.data.eq(e),
                     exp_write.en.eq(advance & (cmd2.op == EXP))]
        m.d.sync += z_final.eq(advance & (cmd2.op == EXP) & cmd2.last)
        m.d.comb += [recip.start.eq(z_final), recip.divisor.eq(total)]
        with m.If(advance):
            with m.If(cmd2.op == SCORE):
                m.d.sync += score_sum.eq(Mux(cmd2.first, 0, score_sum) + balanced_sum(products))
            with m.If(cmd2.op == CONTEXT):
                m.d.sync += [context[u].eq(Mux(cmd2.first, 0, context[u]) + products[u]) for u in range(U)]
            with m.If(cmd2.op == EXP):
                m.d.sync += total.eq(Mux(cmd2.first, 0, total) + e)

        # ---- stage 3: a finished score written, the maximum kept; a finished group out -------
        score_done = (cmd3.op == SCORE) & cmd3.last
        m.d.comb += [score_write.addr.eq(cmd3.j), score_write.data.eq(score_sum),
                     score_write.en.eq(advance & score_done)]
        with m.If(advance & score_done):
            m.d.sync += row_max.eq(Mux(cmd3.row_first | (score_sum > row_max), score_sum, row_max))
        with m.If(advance):
            m.d.sync += [held_valid.eq((cmd3.op == CONTEXT) & cmd3.last), held_last.eq(cmd3.seq_last)]
            m.d.sync += [held_data[u].eq(requantize(context[u] * layer.out_mult, layer.out_shift))
                         for u in range(U)]
        m.d.comb += [self.o.valid.eq(held_valid), self.o.payload.last.eq(held_last),
                     self.o.payload.data.eq(held_data)]
        return m


class AttentionEngine(OperatorEngine):
    __doc__ = OperatorEngine.doc_template.format(
        description="An `attention` layer: a whole sequence in, hw.lanes multipliers on its dot products.",
        parameters=LAYER_PARAMETER.format(layer="AttentionLayer"), rule=': "2*T*T*E/U + H*T*T"', attributes="")
    Core = AttentionCore
