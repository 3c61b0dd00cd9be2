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
  (one table read), written into a T-entry memory and summed into Z; then Z's reciprocal
  floor(2^32 / Z) starts on the shift-subtract unit (hw/operators/reciprocal.py) and runs
  while the next row's scores are computed.
- C: per word group of U output columns, p[j] = min(rshift_round(e[j] * recip, 24), 255)
  and c[d] += p[j] * v[j, d] on the same U multipliers (9-bit by 8-bit signed, which
  hold both q * k and the unsigned p times v). A finished group's U sums wait in a
  holding register while one shared rescale unit turns them, one a cycle, into
  y = sat8(rshift_round(c * out_mult, out_shift)), filling one output beat of U
  elements: a group takes P >= U cycles, so one unit keeps up.
The DSP blocks hold the U products and e * recip (sized from the table's bounds); the
multiplies by score_mult and out_mult are constants, shift-and-add in LUTs
(hw/constant_multiply.py). Everything after the issue stage is one lock-step pipeline
that advances on `~beat_valid | ready` (read ports' `en` too, so their data holds
during a stall), `ready` a register of the skid buffer at the output, with a register
after each multiply (e * recip, delta * score_mult, q * k or p * v, c * out_mult), so
none shares a cycle with its rounding and clamp; the reciprocal runs free, its result
holding until the next start.
"""
from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.hdl import signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from nomac.hw.constant_multiply import constant_multiply
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
STAGES = 5                                # pipeline stages behind the issue stage


def rounded_at(value, shift: int):
    """(value >> (shift - 1)), the only bits rshift_round(value, shift) depends on: a register
    after a multiply keeps these, and `rshift_round_of` finishes the rounding."""
    return value if shift == 0 else value >> (shift - 1)


def rshift_round_of(kept, shift: int):
    """docs/spec.md section 2's rshift_round(value, shift) from kept = rounded_at(value, shift):
    floor((value + 2^(s-1)) / 2^s) = floor((floor(value / 2^(s-1)) + 1) / 2)."""
    return kept if shift == 0 else (kept + 1) >> 1


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
        self.reciprocal = Reciprocal(schedule.sum_bits, RECIP_BITS, schedule.reciprocal_bits_per_cycle,
                                     schedule.recip_bits)
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
        exps = memory.Memory(shape=unsigned(sch.exp_bits), depth=T, init=[])
        m.submodules.scores, m.submodules.exps = scores, exps
        score_write, score_read = scores.write_port(), scores.read_port()
        exp_write, exp_read = exps.write_port(), exps.read_port()
        table = self.exp_table.build(m, self)
        m.submodules.reciprocal = recip = self.reciprocal

        beat_valid, beat_last = Signal(), Signal()
        beat = Signal(8 * U)                 # lanes enter at the top and shift down: lane 0 is the first made
        beat_taken = Signal()
        m.submodules.output = output = OutputSkid(U)
        m.d.comb += [output.i.valid.eq(beat_valid), output.i.payload.data.eq(beat), output.i.payload.last.eq(beat_last),
                     beat_taken.eq(output.i.ready)]
        wiring.connect(m, output.o, wiring.flipped(self.o))
        advance = ~beat_valid | beat_taken
        for port in (port_a, port_b, score_read, exp_read):
            m.d.comb += port.en.eq(advance)

        # ---- issue: the sequencer's counters and the item it puts into the pipeline ----------
        command = data.StructLayout({"op": 2, "j": range(max(T, 2)), "first": 1, "last": 1, "row_first": 1,
                                     "seq_last": 1})
        issue = Signal(command)
        cmd = [issue, *(Signal(command, name=f"cmd{k}") for k in range(1, STAGES + 1))]   # cmd[k]: stage k
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
        score_in_flight = Cat(c.op == SCORE for c in cmd[1:]).any()

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
                m.d.comb += [port_b.addr.eq(bank_base + key_base + 2 * E_words + context_head_base + group),
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
            m.d.sync += [cmd[k].eq(cmd[k - 1]) for k in range(1, STAGES + 1)]
        op = [c.op for c in cmd]

        # ---- stage 1: words, scores and e read: held; delta; e * recip ----------------------
        # Port a reads q (S), port b k (S) or v (C).
        row_max = Signal(signed(sch.score_bits))
        word_a, word_b = Signal(8 * U), Signal(8 * U)
        delta = Signal(sch.delta_max.bit_length())
        e_recip = Signal(RECIP_BITS + 1 - (PROB_SHIFT - 1))           # (e * recip) >> 23: e * recip <= 2^32
        with m.If(advance):
            m.d.sync += [word_a.eq(port_a.data), word_b.eq(port_b.data),
                         delta.eq(row_max - score_read.data),
                         e_recip.eq(rounded_at(exp_read.data * recip.quotient[:sch.recip_bits], PROB_SHIFT))]

        # ---- stage 2: the multipliers' operands; delta * score_mult --------------------------
        factor_qp = Signal(data.ArrayLayout(signed(9), U))    # q, or the probability p (0..255)
        factor_kv = Signal(data.ArrayLayout(signed(8), U))    # k, or v
        scaled_delta_next = rounded_at(constant_multiply(delta, layer.score_mult), layer.score_shift)
        scaled_delta = Signal(scaled_delta_next.shape())
        probability = at_most(rshift_round_of(e_recip, PROB_SHIFT), PROB_MAX)
        lanes_a = [word_a[8 * u:8 * u + 8].as_signed() for u in range(U)]
        with m.If(advance):
            m.d.sync += [factor_qp[u].eq(Mux(op[2] == CONTEXT, probability, lanes_a[u])) for u in range(U)]
            m.d.sync += [factor_kv.eq(word_b),
                         scaled_delta.eq(scaled_delta_next)]

        # ---- stage 3: U products; the table address -------------------------------------------
        products = Signal(data.ArrayLayout(signed(16), U))       # |q * k| <= 2^14, |p * v| <= 255 * 128
        m.d.comb += [table.addr.eq(at_most(rshift_round_of(scaled_delta, layer.score_shift), EXP_INDEX_MAX)),
                     table.en.eq(advance)]
        with m.If(advance):
            m.d.sync += [products[u].eq(factor_qp[u] * factor_kv[u]) for u in range(U)]

        # ---- stage 4: score partial sums, context sums, e written and summed into Z ----------
        score_sum = Signal(signed(sch.score_bits))
        context = Signal(data.ArrayLayout(signed(sch.context_bits), U))
        total = Signal(sch.sum_bits)
        z_final = Signal()
        e = table.data[:sch.exp_bits]
        m.d.comb += [exp_write.addr.eq(cmd[4].j), exp_write.data.eq(e),
                     exp_write.en.eq(advance & (op[4] == EXP))]
        m.d.sync += z_final.eq(advance & (op[4] == EXP) & cmd[4].last)
        m.d.comb += [recip.start.eq(z_final), recip.divisor.eq(total)]
        with m.If(advance):
            with m.If(op[4] == SCORE):
                m.d.sync += score_sum.eq(Mux(cmd[4].first, 0, score_sum) + balanced_sum([products[u] for u in range(U)]))
            with m.If(op[4] == CONTEXT):
                m.d.sync += [context[u].eq(Mux(cmd[4].first, 0, context[u]) + products[u]) for u in range(U)]
            with m.If(op[4] == EXP):
                m.d.sync += total.eq(Mux(cmd[4].first, 0, total) + e)

        # ---- stage 5: a finished score written, the maximum kept; a finished group held ------
        score_done = (op[5] == SCORE) & cmd[5].last
        group_done = (op[5] == CONTEXT) & cmd[5].last
        m.d.comb += [score_write.addr.eq(cmd[5].j), score_write.data.eq(score_sum),
                     score_write.en.eq(advance & score_done)]
        with m.If(advance & score_done):
            m.d.sync += row_max.eq(Mux(cmd[5].row_first | (score_sum > row_max), score_sum, row_max))

        # ---- the shared rescale unit: the held sums one a cycle, into the output beat ---------
        held = Signal(data.ArrayLayout(signed(sch.context_bits), U))   # shifts down: held[0] is rescaled next
        held_left, held_last = Signal(range(U + 1)), Signal()
        scaled_valid, scaled_beat_done, scaled_last = Signal(), Signal(), Signal()
        scaled_next = rounded_at(constant_multiply(held[0], layer.out_mult), layer.out_shift)
        scaled = Signal(scaled_next.shape())
        with m.If(advance):
            m.d.sync += [scaled_valid.eq(held_left != 0), scaled_beat_done.eq(held_left == 1),
                         scaled_last.eq(held_last),
                         scaled.eq(scaled_next)]
            with m.If(group_done):
                m.d.sync += [held.eq(context), held_left.eq(U), held_last.eq(cmd[5].seq_last)]
            with m.Elif(held_left != 0):
                m.d.sync += [held[u].eq(held[u + 1]) for u in range(U - 1)]
                m.d.sync += held_left.eq(held_left - 1)
            with m.If(scaled_valid):
                m.d.sync += beat.eq(Cat(beat[8:], requantize(scaled, 1 if layer.out_shift else 0)))
            m.d.sync += [beat_valid.eq(scaled_valid & scaled_beat_done), beat_last.eq(scaled_last)]
        return m


class OutputSkid(wiring.Component):
    """A two-entry skid buffer in front of the output: its `i.ready` is a register, so the
    pipeline's `advance` (which enables every stage) does not wait on the path from the
    consumer's ready through the output gearbox; a beat refused downstream waits in the skid."""

    def __init__(self, lanes: int):
        super().__init__({"i": In(vector_stream(lanes, signed(8))), "o": Out(vector_stream(lanes, signed(8)))})

    def elaborate(self, platform):
        m = Module()
        skid_valid = Signal()
        skid = Signal.like(self.i.payload)
        m.d.comb += self.i.ready.eq(~skid_valid)
        with m.If(~self.o.valid | self.o.ready):
            m.d.sync += [self.o.valid.eq(skid_valid | self.i.valid),
                         self.o.payload.eq(Mux(skid_valid, skid, self.i.payload)), skid_valid.eq(0)]
        with m.Elif(self.i.valid & ~skid_valid):
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m


class AttentionEngine(OperatorEngine):
    __doc__ = OperatorEngine.doc_template.format(
        description="An `attention` layer: a whole sequence in, hw.lanes multipliers on its dot products.",
        parameters=LAYER_PARAMETER.format(layer="AttentionLayer"), rule=': "2*T*T*E/U + H*T*T"', attributes="")
    Core = AttentionCore
