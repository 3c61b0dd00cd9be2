"""The `gelu` engine: y = table[x + 128] per element (docs/spec.md section 13.4).

Any int8 -> int8 function as a 256-entry table, hw.lanes lookups a cycle (one read
port each) and no arithmetic: the lookup address is the element's bits with the sign
bit flipped. The table is ROM or, with hw.memory "ram", loadable through the host
ports. One beat of `lanes` elements enters a cycle; the table's registered read is
the only pipeline stage, and while the output is stalled the ports hold their data.
"""
from amaranth import Cat, Module, Signal
from amaranth.hdl import signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nomac.hw.engine import LAYER_PARAMETER
from nomac.hw.matrix_vector_engine import BLOCK_RAM
from nomac.hw.memory_layout import MemoryLayout
from nomac.hw.operators.operator_engine import OperatorEngine
from nomac.hw.parameter_memory import ParameterMemory
from nomac.hw.vector_stream import beats_per_vector, vector_stream

__all__ = ["GeluCore", "GeluEngine"]


class GeluCore(wiring.Component):
    """Beats of `lanes` int8 elements in, their table entries out, one beat a cycle."""

    acc_bits = 8
    max_in_flight = 2
    cycles_per_vector_bound_rule = "ceil(E/L)"

    def __init__(self, layer):
        self.layer = layer
        self.in_lanes = self.out_lanes = layer.hw.lanes
        self.table = ParameterMemory(MemoryLayout("table", "table", lanes=1, lane_bits=8, signed=True),
                                     layer.table, layer.hw.memory == "ram", attrs=BLOCK_RAM)
        self.memories = [self.table]
        super().__init__({"i": In(vector_stream(self.in_lanes, signed(8))),
                          "o": Out(vector_stream(self.out_lanes, signed(8))),
                          **self.table.members()})

    @property
    def cycles_per_vector(self) -> int:
        return beats_per_vector(self.layer.features, self.in_lanes)

    cycles_per_vector_bound = property(lambda self: self.cycles_per_vector,
                                       doc="ceil(E / L): E lookups, L read ports")

    def elaborate(self, platform):
        m = Module()
        L = self.in_lanes
        ports = self.table.build_ports(m, self, L)
        held_valid, held_last = Signal(), Signal()
        advance = ~held_valid | self.o.ready
        x = self.i.payload.data
        for lane, port in enumerate(ports):
            m.d.comb += [port.addr.eq(x[lane].as_unsigned() ^ 0x80), port.en.eq(advance)]
        m.d.comb += self.i.ready.eq(advance)
        with m.If(advance):
            m.d.sync += [held_valid.eq(self.i.valid), held_last.eq(self.i.payload.last)]
        m.d.comb += [self.o.payload.data.eq(Cat(port.data for port in ports)),
                     self.o.valid.eq(held_valid), self.o.payload.last.eq(held_last)]
        return m


class GeluEngine(OperatorEngine):
    __doc__ = OperatorEngine.doc_template.format(
        description="A `gelu` layer: hw.lanes table lookups a cycle.",
        parameters=LAYER_PARAMETER.format(layer="GeluLayer"), rule=': "ceil(E/L)"', attributes="")
    Core = GeluCore
