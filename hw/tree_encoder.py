"""Hash-tree encoder of the `lut` kind (docs/spec.md section 7, `tree`), after MADDNESS.

MADDNESS (Blalock & Guttag, ICML 2021, section 4.2) encodes a subvector by walking
a balanced binary tree of depth L = log2 K: level l compares the element at that
level's split dimension with the node's threshold and goes right when it is
greater. Comparators only, no arithmetic on the input.
"""
from amaranth import Array, Cat, Module, Mux, Signal
from amaranth.hdl import signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from nomac.hw.memory_layout import MemoryLayout
from nomac.hw.parameter_memory import ParameterMemory
from nomac.hw.vector_stream import vector_stream


class TreeEncoder(wiring.Component):
    """Subvector beats in (V lanes, one beat per codebook), codes out, one per cycle.

    One pipeline stage per tree level, each with its own threshold memory holding
    that level's nodes of every codebook (C * 2^l words): stage l compares against
    the threshold its predecessor addressed and addresses the next level's. The
    split dimensions of a codebook are read once, on entry, and select the L
    compared elements before the first level.
    """

    def __init__(self, layer):
        if layer.encoder != "tree":
            raise ValueError(f"TreeEncoder: encoder = {layer.encoder!r}: must be 'tree'")
        self.layer = layer
        C, V, L = layer.codebooks, layer.subvector_len, layer.levels
        writable = layer.hw.memory == "ram"
        self.split_dims = ParameterMemory(
            MemoryLayout("split_dims", "split_dims", lanes=L, lane_bits=max(1, (V - 1).bit_length()),
                         signed=False),
            layer.split_dims, writable)
        self.thresholds = [
            ParameterMemory(
                MemoryLayout(f"thresholds_level{level}", "thresholds", lanes=1, lane_bits=8, signed=True,
                             select=((0, C), ((1 << level) - 1, (2 << level) - 1))),
                layer.thresholds, writable)
            for level in range(L)]
        members = {"i": In(vector_stream(V, signed(8))), "o": Out(vector_stream(1, unsigned(L)))}
        for memory in self.memories:
            members.update(memory.members())
        super().__init__(members)

    @property
    def memories(self) -> list[ParameterMemory]:
        return [self.split_dims, *self.thresholds]

    def elaborate(self, platform):
        m = Module()
        layer = self.layer
        C, V, L = layer.codebooks, layer.subvector_len, layer.levels
        dim_bits = self.split_dims.layout.lane_bits
        split_read = self.split_dims.build(m, self)
        threshold_reads = [memory.build(m, self) for memory in self.thresholds]

        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]
        for port in (split_read, *threshold_reads):
            m.d.comb += port.en.eq(advance)

        # Entry: take the subvector, read its codebook's split dimensions.
        valid_a, last_a = Signal(), Signal()
        x_a = Signal(data.ArrayLayout(signed(8), V))
        c_a, c_next = Signal(range(C)), Signal(range(C))
        fire = self.i.valid & self.i.ready
        m.d.comb += split_read.addr.eq(c_next)
        with m.If(advance):
            m.d.sync += [valid_a.eq(fire), x_a.eq(self.i.payload.data), last_a.eq(self.i.payload.last)]
            with m.If(fire):
                m.d.sync += [c_a.eq(c_next), c_next.eq(Mux(c_next == C - 1, 0, c_next + 1))]

        # Select the element each level compares; address level 0 (node 0 of codebook c).
        dims = data.ArrayLayout(unsigned(dim_bits), L)(split_read.data)
        elements = Array(x_a[v] for v in range(V))
        valid, last, c = Signal(), Signal(), Signal(range(C))
        compared = Signal(data.ArrayLayout(signed(8), L))
        node = Signal(0)
        m.d.comb += threshold_reads[0].addr.eq(c_a)
        with m.If(advance):
            m.d.sync += [valid.eq(valid_a), last.eq(last_a), c.eq(c_a),
                         *(compared[level].eq(elements[dims[level]]) for level in range(L))]

        # One stage per level: go right (bit 1) when the element is greater.
        for level in range(L):
            bit = compared[level] > threshold_reads[level].data.as_signed()
            child = Cat(bit, node)                       # 2 * node + bit
            if level + 1 < L:
                m.d.comb += threshold_reads[level + 1].addr.eq(Cat(child, c))   # c * 2^(l+1) + child
                next_valid, next_last = Signal(name=f"valid{level + 1}"), Signal(name=f"last{level + 1}")
                next_c = Signal(range(C), name=f"c{level + 1}")
                next_node = Signal(level + 1, name=f"node{level + 1}")
                next_compared = Signal(data.ArrayLayout(signed(8), L), name=f"compared{level + 1}")
                with m.If(advance):
                    m.d.sync += [next_valid.eq(valid), next_last.eq(last), next_c.eq(c),
                                 next_node.eq(child), next_compared.eq(compared)]
                valid, last, c, node, compared = next_valid, next_last, next_c, next_node, next_compared
            else:
                with m.If(advance):
                    m.d.sync += self.o.valid.eq(valid)
                    with m.If(valid):
                        m.d.sync += [self.o.payload.data[0].eq(child), self.o.payload.last.eq(last)]
        return m
