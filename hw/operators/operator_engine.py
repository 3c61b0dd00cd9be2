"""What every operator engine shares: gearboxes around a core, the status outputs.

An operator's *core* is the datapath at its own beat width: a `wiring.Component`
with `i` (int8 beats of `in_lanes` elements, correctly framed: the gearbox in front
counts beats) and `o` (int8 beats of `out_lanes`), a RAM host port pair per writable
memory, and the figures `memories`, `acc_bits`, `cycles_per_vector`,
`cycles_per_vector_bound`, `cycles_per_vector_bound_rule`, `max_in_flight` (vectors it
can hold at once). `OperatorEngine` puts a `LaneGearbox` on each side (the layer's
hw.in_lanes and hw.out_lanes to the core's widths) and drives `idle` and
`framing_error`, so a core is only arithmetic and order.
"""
from amaranth import Module
from amaranth.hdl import signed
from amaranth.lib.wiring import connect, flipped

from nomac.hw.engine import LAYER_PARAMETER, Engine, connect_memory_ports
from nomac.hw.engine_status import drive_status
from nomac.hw.lane_gearbox import LaneGearbox
from nomac.hw.vector_stream import beats_per_vector

__all__ = ["OperatorEngine"]


class OperatorEngine(Engine):
    __doc__ = Engine.doc_template.format(description="""
    An operator layer in gates: its kind's core (`Core`, a class built from the layer)
    between two lane gearboxes. A subclass names the core.
    """.strip(), parameters=LAYER_PARAMETER.format(layer="an operator layer (nomac.model.operator_layers)"),
        rule=" (the core's)", attributes="""
    core : the kind's core component
    """.strip())

    Core: type

    def __init__(self, layer):
        self.core = self.Core(layer)
        super().__init__(layer, in_lanes=layer.hw.in_lanes, out_lanes=layer.hw.out_lanes, out_shape=signed(8),
                         memories=self.core.memories)

    @property
    def in_elements(self) -> int:
        return self.layer.stream_in_features

    acc_bits = property(lambda self: self.core.acc_bits)
    cycles_per_vector_bound = property(lambda self: self.core.cycles_per_vector_bound)
    cycles_per_vector_bound_rule = property(lambda self: self.core.cycles_per_vector_bound_rule)

    @property
    def cycles_per_vector(self) -> int:
        """Steady-state interval between vectors: the slowest of input, core and output."""
        hw = self.layer.hw
        return max(beats_per_vector(self.in_elements, hw.in_lanes), self.core.cycles_per_vector,
                   beats_per_vector(self.out_elements, hw.out_lanes))

    def elaborate(self, platform):
        m = Module()
        hw, core = self.layer.hw, self.core
        m.submodules.gather = gather = LaneGearbox(self.in_elements, hw.in_lanes, core.in_lanes, signed(8))
        m.submodules.core = core
        m.submodules.scatter = scatter = LaneGearbox(self.out_elements, core.out_lanes, hw.out_lanes, signed(8))
        connect(m, flipped(self.i), gather.i)
        connect(m, gather.o, core.i)
        connect(m, core.o, scatter.i)
        connect(m, scatter.o, flipped(self.o))
        connect_memory_ports(m, self, core)
        drive_status(m, self, beats_per_vector(self.in_elements, hw.in_lanes), gather.misframed,
                     max_in_flight=core.max_in_flight)
        return m
