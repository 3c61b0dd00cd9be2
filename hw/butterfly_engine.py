"""The `butterfly` engine: a DeBut factor chain (docs/spec.md section 11) as a pipeline of stages.

input beats -> gearbox -> stage 0 -> gearbox -> stage 1 -> ... -> stage n-1 -> gearbox
-> output beats. Each stage is one factor (`hw/butterfly_stage.py`) with its own
lanes, weight kind (int8 multipliers or shift units) and memories (ROM or RAM);
a gearbox re-beats the previous stage's outputs into the words the next stage's
block buffer takes. Every link is a `lib.stream` with valid/ready (docs/spec.md section 3).
"""
from amaranth import Module
from amaranth.hdl import Shape, signed
from amaranth.lib.wiring import connect, flipped

from nomac.hw.butterfly_stage import ButterflyStage
from nomac.hw.engine import LAYER_PARAMETER, Engine, connect_memory_ports
from nomac.hw.engine_status import drive_status
from nomac.hw.lane_gearbox import LaneGearbox
from nomac.hw.vector_stream import beats_per_vector

__all__ = ["ButterflyEngine"]


class ButterflyEngine(Engine):
    __doc__ = Engine.doc_template.format(description="""
    A whole `butterfly` layer: a chain of factor stages, each with its weights and
    bias memories (per factor ROM or RAM).
    """.strip(), parameters=LAYER_PARAMETER.format(layer="ButterflyLayer"), rule=': "max_k ceil(p_k*s_k/lanes_k)"',
        attributes="""
    stages : list of ButterflyStage
        One per factor; `describe_stages()` gives their figures.
    """.strip())

    cycles_per_vector_bound_rule = "max_k ceil(p_k*s_k/lanes_k)"

    def __init__(self, layer):
        self.layer = layer
        self.stages = [ButterflyStage(layer, k) for k in range(len(layer.factors))]
        super().__init__(layer, in_lanes=layer.hw.in_lanes, out_lanes=layer.hw.out_lanes,
                         out_shape=self.stages[-1].out_shape,
                         memories=[memory for stage in self.stages for memory in stage.memories])

    @property
    def acc_bits(self) -> int:
        """The widest accumulator of the chain (per-stage widths are in `describe_stages`)."""
        return max(stage.acc_bits for stage in self.stages)

    @property
    def cycles_per_vector(self) -> int:
        """Steady-state interval between vectors: the slowest stage or stream."""
        hw = self.layer.hw
        return max(beats_per_vector(self.layer.in_features, hw.in_lanes),
                   beats_per_vector(self.layer.out_features, hw.out_lanes),
                   *(stage.cycles_per_vector for stage in self.stages))

    @property
    def cycles_per_vector_bound(self) -> int:
        """Each factor needs p*s multiplies (or shifts) per vector, lanes of them per cycle."""
        return max(-(-stage.factor.p * stage.factor.s // stage.lanes) for stage in self.stages)

    @property
    def max_in_flight(self) -> int:
        """An upper bound on the vectors inside the engine, which sizes the `idle` counter.

        A vector in flight holds at least one element, partial sum or beat somewhere:
        per stage two block buffers and four pipeline registers, and one slot of a
        gearbox each (a gearbox has fewer than 2 * (A + B + max(A, B)) slots).
        """
        hw = self.layer.hw
        widths = [(hw.in_lanes, self.stages[0].in_lanes),
                  *((a.out_lanes, b.in_lanes) for a, b in zip(self.stages, self.stages[1:])),
                  (self.stages[-1].out_lanes, hw.out_lanes)]
        return 1 + 6 * len(self.stages) + sum(2 * (a + b + max(a, b)) for a, b in widths)

    def describe_stages(self) -> list[dict]:
        return [stage.describe() for stage in self.stages]

    def elaborate(self, platform):
        m = Module()
        layer, hw = self.layer, self.layer.hw
        m.submodules.gather = gather = LaneGearbox(layer.in_features, hw.in_lanes, self.stages[0].in_lanes, signed(8))
        connect(m, flipped(self.i), gather.i)
        previous = gather.o
        for k, stage in enumerate(self.stages):
            m.submodules[f"factor{k}"] = stage
            if k:
                regear = LaneGearbox(stage.factor.q, self.stages[k - 1].out_lanes, stage.in_lanes, signed(8))
                m.submodules[f"regear{k}"] = regear
                connect(m, previous, regear.i)
                previous = regear.o
            connect(m, previous, stage.i)
            previous = stage.o
            connect_memory_ports(m, self, stage)
        m.submodules.scatter = scatter = LaneGearbox(layer.out_features, self.stages[-1].out_lanes, hw.out_lanes,
                                                     Shape.cast(self.out_shape))
        connect(m, previous, scatter.i)
        connect(m, scatter.o, flipped(self.o))
        drive_status(m, self, beats_per_vector(layer.in_features, hw.in_lanes), gather.misframed,
                     max_in_flight=self.max_in_flight)
        return m
