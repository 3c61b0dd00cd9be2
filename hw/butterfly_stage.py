"""One DeBut factor [p, q, r, s, t] in gates: a pipelined stage of a `butterfly` engine.

The factor's permutation is fixed by (r, s, t), so the stage needs no crossbar.
Inputs arrive in column order; block b of the factor (columns b*s*t .. b*s*t + s*t-1)
is everything its r*t outputs need. The stage writes a block into one half of a
double buffer while it computes the previous block from the other half. Within a
block, column j*t + k is row j, position k: output (i, k) sums w * x over the s
rows j at the same position k. So the buffer is v banks (bank c holds rows j = c
mod v), each row stored as words of `ew` consecutive positions, and one cycle reads
one word from every bank: the u outputs of a cycle sit at consecutive positions k
(or, when u > t, at every position of u/t consecutive i), and their v terms in v
different rows. Nothing is routed but a small select of a u-element chunk within a
word.

Per cycle the stage computes u outputs x v of their terms (lanes = u*v int8
multipliers or shift units): p*s/lanes cycles per vector. An output's s terms
accumulate over s/v cycles (on top of its bias), then are rounded and saturated to
int8 (docs/spec.md section 2), or leave as raw accumulators from the last factor of a layer
whose output is "acc".

Pipeline: S0 walks (block, output group g, term group h) and addresses the buffer,
weight and bias memories; S1 reads them and forms the products, registered; S2 sums
the v terms (balanced adder tree) onto the bias or the running sum; S3 registers the
finished sums; S4 rounds and saturates into the output register. Every register
advances only when the output register can move (`advance`), so backpressure stalls
the whole stage and nothing is lost.
"""
import math
from dataclasses import dataclass

import numpy as np
from amaranth import Array, Module, Mux, Signal, Value
from amaranth.hdl import signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from nomac.hw.memory_layout import MemoryLayout
from nomac.hw.parameter_memory import ParameterMemory
from nomac.hw.requantize import balanced_sum, requantize
from nomac.hw.vector_stream import vector_stream
from nomac.hw.widths import prefix_sum_range, signed_bits
from nomac.model.butterfly_spec import lane_split

__all__ = ["INT8_LO", "INT8_HI", "input_words", "factor_term_bounds", "ButterflyStage"]

INT8_LO, INT8_HI = -128, 127


def input_words(shape, u: int, v: int) -> tuple[int, int, int]:
    """(W, ew, z): input elements per beat, elements per bank word, banks written per beat.

    A stage computing u outputs x v terms per cycle needs ceil(u*v / r) new inputs per
    cycle to keep up (p*s = q*r). A beat is either part of one row (W divides t, a
    multiple of u: one bank word, ew = W) or z whole rows (W = t*z, z divides v: z
    banks, ew = t). The narrowest such W that keeps up is chosen; W = t*v always does.
    """
    p, q, r, s, t = shape
    need = math.ceil(u * v / r)
    candidates = [w for w in range(u, t + 1, u) if t % w == 0] if u <= t else []
    candidates += [t * z for z in range(1, v + 1) if v % z == 0]
    width = min((w for w in candidates if w >= need), default=max(candidates))
    ew = min(width, t)
    return width, ew, width // ew


def factor_term_bounds(factor, writable: bool) -> tuple[np.ndarray, np.ndarray]:
    """[p, s] bounds of each term m * x over int8 x (m: w, or sign * 2^(shift - shift_min)).

    ROM: from the factor's own weights. RAM: any weight the memory may be loaded with.
    """
    if writable:
        if factor.weights == "int8":
            m_lo, m_hi = INT8_LO, INT8_HI
        else:
            m_hi = 1 << (factor.shift_max - factor.shift_min)
            m_lo = -m_hi
        m_lo = np.full((factor.p, factor.s), m_lo, dtype=object)
        m_hi = np.full((factor.p, factor.s), m_hi, dtype=object)
    else:
        m_lo = m_hi = factor.multipliers().astype(object)
    products = [m * x for m in (m_lo, m_hi) for x in (INT8_LO, INT8_HI)]
    return np.minimum.reduce(products), np.maximum.reduce(products)


@dataclass
class _Walk:
    """What S0 hands the later stages: the loop's position and the memory read ports."""
    advance: Signal                 # every register of the stage moves this cycle
    running: Value                  # the half being drained is full
    step: Signal
    step_final: Value
    last: Value                     # the group is the vector's last
    chunk: Signal
    weight_ports: list
    bias_port: object


class ButterflyStage(wiring.Component):
    """Factor `index` of a butterfly layer: int8 beats of `in_lanes` in, beats of u outputs out."""

    def __init__(self, layer, index: int):
        self.layer, self.index = layer, index
        factor = self.factor = layer.factors[index]
        p, q, r, s, t = self.shape = factor.shape
        self.lanes = layer.hw.lanes[index]
        self.u, self.v = lane_split(self.shape, self.lanes)
        self.in_lanes, self.word_elements, self.rows_per_beat = input_words(self.shape, self.u, self.v)
        self.writable = layer.hw.memory[index] == "ram"
        self.raw = index == len(layer.factors) - 1 and layer.output == "acc"
        self.acc_bits, self.bias_bits = self._widths()
        self.out_shape = signed(self.acc_bits) if self.raw else signed(8)
        self.out_lanes = self.u
        # The loop's geometry: per block, groups x steps cycles; a buffer half is steps rows
        # of words_per_row bank words; a bank word holds `chunks` u-element chunks.
        self.groups, self.steps = r * t // self.u, s // self.v
        self.words_per_row = t // self.word_elements
        self.half = self.steps * self.words_per_row
        self.chunks = self.word_elements // self.u if self.u <= t else 1

        u, v = self.u, self.v
        lanes_layout = dict(reshape=(p // u, u, s // v, v), transpose=(0, 2, 1, 3))
        if factor.weights == "int8":
            self.weight_memories = [ParameterMemory(
                MemoryLayout(f"w{index}", f"w{index}", lanes=u * v, lane_bits=8, signed=True, **lanes_layout),
                factor.w, self.writable)]
        else:
            shift_bits = signed_bits(factor.shift_min, factor.shift_max)
            self.weight_memories = [
                ParameterMemory(MemoryLayout(f"sign{index}", f"sign{index}", lanes=u * v, lane_bits=2,
                                             signed=True, **lanes_layout), factor.sign, self.writable),
                ParameterMemory(MemoryLayout(f"shift{index}", f"shift{index}", lanes=u * v, lane_bits=shift_bits,
                                             signed=True, **lanes_layout), factor.shift, self.writable)]
        self.bias_memory = ParameterMemory(
            MemoryLayout(f"bias{index}", f"bias{index}", lanes=u, lane_bits=self.bias_bits, signed=True),
            factor.bias, self.writable)
        members = {"i": In(vector_stream(self.in_lanes, signed(8))),
                   "o": Out(vector_stream(self.u, self.out_shape))}
        for mem in self.memories:
            members.update(mem.members())
        super().__init__(members)

    def _widths(self) -> tuple[int, int]:
        factor, hw = self.factor, self.layer.hw
        if self.writable:
            bias_bits = hw.bias_bits
            limit = 1 << (bias_bits - 1)
            start_lo, start_hi = np.full(factor.p, -limit, dtype=object), np.full(factor.p, limit - 1, dtype=object)
        else:
            bias_bits = signed_bits(int(factor.bias.min()), int(factor.bias.max()))
            start_lo = start_hi = factor.bias.astype(object)
        term_lo, term_hi = factor_term_bounds(factor, self.writable)
        groups = factor.s // self.v                        # terms are added v at a time, in row order j
        group_lo = term_lo.reshape(factor.p, groups, self.v).sum(axis=2).T      # [groups, p]
        group_hi = term_hi.reshape(factor.p, groups, self.v).sum(axis=2).T
        return signed_bits(*prefix_sum_range(start_lo, start_hi, group_lo, group_hi)), bias_bits

    @property
    def memories(self) -> list[ParameterMemory]:
        return [*self.weight_memories, self.bias_memory]

    @property
    def compute_cycles(self) -> int:
        """Cycles per vector of the compute loop: p*s / lanes."""
        return self.factor.p * self.factor.s // self.lanes

    @property
    def cycles_per_vector(self) -> int:
        """The slower of the compute loop and the input side (q / in_lanes beats)."""
        return max(self.compute_cycles, self.factor.q // self.in_lanes)

    def describe(self) -> dict:
        """The stage's figures, for the manifest."""
        return {"factor": self.index, "shape": list(self.shape), "weights": self.factor.weights,
                "lanes": self.lanes, "outputs_per_cycle": self.u, "terms_per_cycle": self.v,
                "in_lanes": self.in_lanes, "acc_bits": self.acc_bits,
                "memory": "ram" if self.writable else "rom", "cycles_per_vector": self.cycles_per_vector}

    def elaborate(self, platform):
        m = Module()
        banks, full, fill, block_written = self._input_buffer(m)
        walk = self._walk(m, banks, full, fill, block_written)
        terms, biases, flags = self._terms(m, banks, walk)
        self._sum_and_emit(m, walk.advance, terms, biases, flags)
        return m

    def _input_buffer(self, m):
        """The double buffer (v banks of ew-element words, two halves each) and its write side.

        Beat after beat goes into half `fill`; (row_mod, row_div, word) is where the beat
        goes. Returns the banks' (write, read) ports, the halves' `full` flags, `fill` and
        `block_written` (the beat completing a block arrives).
        """
        v, ew, z = self.v, self.word_elements, self.rows_per_beat
        steps, words_per_row, half = self.steps, self.words_per_row, self.half
        banks = []
        for c in range(v):
            bank = memory.Memory(shape=unsigned(8 * ew), depth=2 * half, init=[])
            m.submodules[f"bank{c}"] = bank
            banks.append((bank.write_port(), bank.read_port()))
        full = [Signal(name="full0"), Signal(name="full1")]

        fill = Signal()
        row_mod = Signal(range(v))                 # j mod v of the beat's first row (a multiple of z)
        row_div = Signal(range(steps))             # j // v
        word = Signal(range(words_per_row))        # word of the row (positions word*ew ..)
        fire = self.i.valid & self.i.ready
        m.d.comb += self.i.ready.eq(~Mux(fill, full[1], full[0]))
        write_addr = Mux(fill, half, 0) + row_div * words_per_row + word
        for c, (write, _) in enumerate(banks):
            offset = c % z
            m.d.comb += [write.addr.eq(write_addr),
                         write.data.eq(self.i.payload.data.as_value()[8 * ew * offset:8 * ew * (offset + 1)]),
                         write.en.eq(fire & (row_mod == c - offset))]
        word_final, mod_final, div_final = word == words_per_row - 1, row_mod == v - z, row_div == steps - 1
        block_written = fire & word_final & mod_final & div_final
        with m.If(fire):
            m.d.sync += word.eq(Mux(word_final, 0, word + 1))
            with m.If(word_final):
                m.d.sync += row_mod.eq(Mux(mod_final, 0, row_mod + z))
                with m.If(mod_final):
                    m.d.sync += row_div.eq(Mux(div_final, 0, row_div + 1))
            with m.If(block_written):
                m.d.sync += fill.eq(~fill)
        return banks, full, fill, block_written

    def _walk(self, m, banks, full, fill, block_written) -> _Walk:
        """S0: walk blocks, output groups g and term groups h over half `drain`, addressing
        the buffer, weight and bias memories; a half is released after its block's last step."""
        u, t = self.u, self.shape[4]
        blocks, groups, steps = self.factor.blocks, self.groups, self.steps
        words_per_row, chunks = self.words_per_row, self.chunks
        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)
        drain = Signal()
        running = Mux(drain, full[1], full[0])
        issue = advance & running
        block, group, step = Signal(range(blocks)), Signal(range(groups)), Signal(range(steps))
        chunk = Signal(range(chunks))              # which chunk of the word the group reads
        group_word = Signal(range(words_per_row))  # which word of the row the group reads
        weight_addr = Signal(range(max(2, blocks * groups * steps)))
        bias_addr = Signal(range(max(2, blocks * groups)))
        step_final, group_final, block_final = step == steps - 1, group == groups - 1, block == blocks - 1
        chunk_final, group_word_final = chunk == chunks - 1, group_word == words_per_row - 1
        released = issue & step_final & group_final
        for bank_half in (0, 1):
            with m.If(block_written & (fill == bank_half)):
                m.d.sync += full[bank_half].eq(1)
            with m.Elif(released & (drain == bank_half)):
                m.d.sync += full[bank_half].eq(0)
        with m.If(issue):
            m.d.sync += [step.eq(Mux(step_final, 0, step + 1)),
                         weight_addr.eq(Mux(step_final & group_final & block_final, 0, weight_addr + 1))]
            with m.If(step_final):
                m.d.sync += [group.eq(Mux(group_final, 0, group + 1)),
                             bias_addr.eq(Mux(group_final & block_final, 0, bias_addr + 1))]
                if u <= t:
                    m.d.sync += chunk.eq(Mux(chunk_final | group_final, 0, chunk + 1))
                    with m.If(group_final):
                        m.d.sync += group_word.eq(0)
                    with m.Elif(chunk_final):
                        m.d.sync += group_word.eq(Mux(group_word_final, 0, group_word + 1))
                with m.If(group_final):
                    m.d.sync += [block.eq(Mux(block_final, 0, block + 1)), drain.eq(~drain)]

        read_addr = Mux(drain, self.half, 0) + step * words_per_row + group_word
        for _, read in banks:
            m.d.comb += [read.addr.eq(read_addr), read.en.eq(advance)]
        weight_ports = [mem.build(m, self) for mem in self.weight_memories]
        bias_port = self.bias_memory.build(m, self)
        for port in (*weight_ports, bias_port):
            m.d.comb += port.en.eq(advance)
        m.d.comb += [port.addr.eq(weight_addr) for port in weight_ports]
        m.d.comb += bias_port.addr.eq(bias_addr)
        return _Walk(advance, running, step, step_final, group_final & block_final, chunk, weight_ports, bias_port)

    def _terms(self, m, banks, walk: _Walk):
        """S1: the words arrive; pick each lane's input and form its u x v terms.

        Returns the terms, the group's biases and the S1 flags (valid, first, final, last).
        """
        u, v, t, ew, chunks = self.u, self.v, self.shape[4], self.word_elements, self.chunks
        valid1, first1, final1, last1 = Signal(), Signal(), Signal(), Signal()
        chunk1 = Signal.like(walk.chunk)
        with m.If(walk.advance):
            m.d.sync += [valid1.eq(walk.running), first1.eq(walk.step == 0), final1.eq(walk.step_final),
                         last1.eq(walk.last), chunk1.eq(walk.chunk)]
        words = [data.ArrayLayout(signed(8), ew)(read.data) for _, read in banks]

        def lane_input(a, c):
            if u <= t:
                return Array(words[c][k * u + a] for k in range(chunks))[chunk1]
            return words[c][a % t]

        terms = []
        weight_ports = walk.weight_ports
        if self.factor.weights == "int8":
            weights = data.ArrayLayout(signed(8), u * v)(weight_ports[0].data)
            for a in range(u):
                terms.append([weights[a * v + c] * lane_input(a, c) for c in range(v)])
        else:
            signs = data.ArrayLayout(signed(2), u * v)(weight_ports[0].data)
            shifts = data.ArrayLayout(signed(self.weight_memories[1].layout.lane_bits), u * v)(weight_ports[1].data)
            for a in range(u):
                row = []
                for c in range(v):
                    row.append(self._shift_term(m, lane_input(a, c), signs[a * v + c], shifts[a * v + c]))
                terms.append(row)
        biases = data.ArrayLayout(signed(self.bias_bits), u)(walk.bias_port.data)
        return terms, biases, (valid1, first1, final1, last1)

    def _sum_and_emit(self, m, advance, terms, biases, flags):
        """S2: the registered terms summed onto the bias or the running sum; S3: the finished
        sums registered; S4: rounded and saturated (or raw) into the output register."""
        u, v = self.u, self.v
        valid1, first1, final1, last1 = flags
        valid2, first2, final2, last2 = Signal(), Signal(), Signal(), Signal()
        terms2 = [[Signal(signed(len(terms[a][c])), name=f"term_{a}_{c}") for c in range(v)] for a in range(u)]
        bias2 = [Signal(signed(self.bias_bits), name=f"bias_{a}") for a in range(u)]
        with m.If(advance):
            m.d.sync += [valid2.eq(valid1), first2.eq(first1), final2.eq(final1), last2.eq(last1)]
            m.d.sync += [terms2[a][c].eq(terms[a][c]) for a in range(u) for c in range(v)]
            m.d.sync += [bias2[a].eq(biases[a]) for a in range(u)]
        acc = [Signal(signed(self.acc_bits), name=f"acc_{a}") for a in range(u)]
        totals = []
        for a in range(u):
            start = bias2[a] if self.steps == 1 else Mux(first2, bias2[a], acc[a])
            totals.append(start + balanced_sum(terms2[a]))
        if self.steps > 1:
            with m.If(advance & valid2):
                m.d.sync += [acc[a].eq(totals[a]) for a in range(u)]

        valid3, last3 = Signal(), Signal()
        sums = [Signal(signed(self.acc_bits), name=f"sum_{a}") for a in range(u)]
        with m.If(advance):
            m.d.sync += [valid3.eq(valid2 & final2), last3.eq(last2)]
            m.d.sync += [sums[a].eq(totals[a]) for a in range(u)]
            m.d.sync += self.o.valid.eq(valid3)
            with m.If(valid3):
                m.d.sync += self.o.payload.last.eq(last3)
                for a in range(u):
                    value = sums[a] if self.raw else requantize(sums[a], self.factor.out_shift)
                    m.d.sync += self.o.payload.data[a].eq(value)

    def _shift_term(self, m, x, sign, shift):
        """sign * (x << (shift - shift_min)) (docs/spec.md section 8): a barrel shift and a conditional negation."""
        factor = self.factor
        amount = Signal(range(factor.shift_max - factor.shift_min + 1), name="amount")
        m.d.comb += amount.eq(shift - factor.shift_min)
        shifted = x << amount
        return Mux(sign == 0, 0, Mux(sign[1], -shifted, shifted))

