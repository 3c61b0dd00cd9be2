"""Nearest-prototype encoder of the `lut` kind for the `l2` and `l1` rules (docs/spec.md section 7).

PQ encoding as in PECAN (Ran et al., 2022) and LUT-NN (Tang et al., 2023): each
subvector is compared with the K prototypes of its codebook and the index of the
nearest one (the smallest on ties) is its code. `l1` needs subtractors and
comparators only; `l2` squares the differences (multipliers or DSPs).
"""
from amaranth import Cat, Module, Mux, Signal
from amaranth.hdl import signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from nomac.hw.memory_layout import MemoryLayout
from nomac.hw.parameter_memory import ParameterMemory
from nomac.hw.requantize import balanced_sum
from nomac.hw.vector_stream import vector_stream


class DistanceEncoder(wiring.Component):
    """Subvector beats in (V lanes, one beat per codebook), codes out (one per beat).

    Each cycle reads `encoder_lanes` (P) prototypes from one memory word and computes
    their distances in parallel, so a codebook takes K / P cycles; a running argmin
    with a strict `<` keeps the earliest (smallest) k on ties. Stages advance together
    and stall together when the code output is not taken.
    """

    def __init__(self, layer):
        if layer.encoder not in ("l1", "l2"):
            raise ValueError(f"DistanceEncoder: encoder = {layer.encoder!r}: must be 'l1' or 'l2'")
        self.layer = layer
        C, K, V, P = layer.codebooks, layer.centroids, layer.subvector_len, layer.hw.encoder_lanes
        self.prototypes = ParameterMemory(
            MemoryLayout("prototypes", "prototypes", lanes=P * V, lane_bits=8, signed=True,
                         reshape=(C * K // P, P * V)),
            layer.prototypes, writable=layer.hw.memory == "ram")
        members = {"i": In(vector_stream(V, signed(8))),
                   "o": Out(vector_stream(1, unsigned(K.bit_length() - 1)))}
        members.update(self.prototypes.members())
        super().__init__(members)

    @property
    def memories(self) -> list[ParameterMemory]:
        return [self.prototypes]

    @property
    def cycles_per_codebook(self) -> int:
        return self.layer.centroids // self.layer.hw.encoder_lanes

    def elaborate(self, platform):
        m = Module()
        layer = self.layer
        C, K, V, P = layer.codebooks, layer.centroids, layer.subvector_len, layer.hw.encoder_lanes
        J = K // P                                     # prototype words per codebook
        code_bits = K.bit_length() - 1
        read = self.prototypes.build(m, self)

        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), read.en.eq(advance)]

        # Stage 0: hold one subvector, issue one prototype word per cycle.
        busy0 = Signal()
        x0 = Signal(data.ArrayLayout(signed(8), V))
        c0, c_next = Signal(range(C)), Signal(range(C))
        j0 = Signal(range(J))
        last0 = Signal()
        j_final = j0 == J - 1
        m.d.comb += [self.i.ready.eq(advance & (~busy0 | j_final)),
                     read.addr.eq(Cat(j0, c0))]   # c0 * J + j0; J is a power of two
        with m.If(advance):
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += [busy0.eq(1), x0.eq(self.i.payload.data), last0.eq(self.i.payload.last),
                             j0.eq(0), c0.eq(c_next), c_next.eq(Mux(c_next == C - 1, 0, c_next + 1))]
            with m.Elif(busy0):
                m.d.sync += [busy0.eq(~j_final), j0.eq(j0 + 1)]

        # Stage 1: the word arrives; P distances, each a balanced sum over V lanes.
        valid1, first1, final1, last1 = Signal(), Signal(), Signal(), Signal()
        x1 = Signal(data.ArrayLayout(signed(8), V))
        j1 = Signal(range(J))
        with m.If(advance):
            m.d.sync += [valid1.eq(busy0), first1.eq(j0 == 0), final1.eq(j_final), last1.eq(last0),
                         x1.eq(x0), j1.eq(j0)]
        words = data.ArrayLayout(signed(8), P * V)(read.data)
        distance_bits = (8 if layer.encoder == "l1" else 16) + (V - 1).bit_length()
        terms = []
        for p in range(P):
            for v in range(V):
                x, w = x1[v], words[p * V + v]
                if layer.encoder == "l1":     # |x - w| from two subtractors, not a subtract and a negate
                    terms.append(Mux(x < w, w - x, x - w)[:8])
                else:
                    terms.append(((x - w) * (x - w))[:16])
        control = [valid1, first1, final1, last1, j1]

        def register(values, name):
            """One pipeline register per value, advancing with the stages."""
            registered = [Signal(value.shape(), name=f"{name}{i}") for i, value in enumerate(values)]
            with m.If(advance):
                m.d.sync += [r.eq(value) for r, value in zip(registered, values)]
            return registered

        def named(values, name):
            """Wires for values used more than once, so each is built once in the netlist."""
            wires = [Signal(value.shape(), name=f"{name}{i}") for i, value in enumerate(values)]
            m.d.comb += [w.eq(value) for w, value in zip(wires, values)]
            return wires

        # With pipelining, registers after the per-element terms and after the adder trees.
        if layer.hw.pipeline:
            control, terms = register(control, "control_t"), register(terms, "term")
        distances = [balanced_sum(terms[p * V:(p + 1) * V]) for p in range(P)]
        if layer.hw.pipeline:
            control, distances = register(control, "control_d"), register(distances, "distance")
        else:
            distances = named(distances, "distance")
        valid2, first2, final2, last2, j2 = control

        # Stage 2: argmin over the P lanes (ties to the lower lane), then the running best.
        # Each level of the comparator tree is named, so expressions stay linear in size.
        candidates = [(d, lane) for lane, d in enumerate(distances)]
        level = 0
        while len(candidates) > 1:
            merged = []
            for i in range(0, len(candidates) - 1, 2):
                (da, ia), (db, ib) = candidates[i], candidates[i + 1]
                take_b = db < da
                distance = Signal(distance_bits, name=f"min{level}_{i // 2}")
                index = Signal(range(P), name=f"argmin{level}_{i // 2}")
                m.d.comb += [distance.eq(Mux(take_b, db, da)), index.eq(Mux(take_b, ib, ia))]
                merged.append((distance, index))
            if len(candidates) % 2:
                merged.append(candidates[-1])
            candidates, level = merged, level + 1
        lane_distance = candidates[0][0]
        lane_index = Signal(range(P))
        m.d.comb += lane_index.eq(candidates[0][1])
        if layer.hw.pipeline and P > 1:     # the lane comparators and the running one in separate cycles
            (valid2, first2, final2, last2, j2), (lane_distance, lane_index) = \
                register([valid2, first2, final2, last2, j2], "control_m"), \
                register([lane_distance, lane_index], "lane_min")
        candidate_code = Cat(lane_index, j2)                  # j2 * P + lane; P is a power of two

        best_distance = Signal(distance_bits)
        best_code = Signal(code_bits)
        take = first2 | (lane_distance < best_distance)
        new_code = Mux(take, candidate_code, best_code)
        with m.If(advance):
            with m.If(valid2 & take):
                m.d.sync += [best_distance.eq(lane_distance), best_code.eq(candidate_code)]
            m.d.sync += self.o.valid.eq(valid2 & final2)
            with m.If(valid2 & final2):
                m.d.sync += [self.o.payload.data[0].eq(new_code), self.o.payload.last.eq(last2)]
        return m
