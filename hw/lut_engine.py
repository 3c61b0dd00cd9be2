"""The `lut` engine: a product-quantization lookup-accumulate layer (docs/spec.md section 7) in gates.

input beats -> gearbox (to one subvector per beat) -> encoder (a code per codebook)
-> lookup-accumulate (R outputs per group) -> gearbox (to output beats). Every link
is a `lib.stream` with valid/ready, so any stage may stall any other and nothing is
lost or repeated (docs/spec.md section 3).
"""
from amaranth import Module
from amaranth.hdl import signed
from amaranth.lib.wiring import connect, flipped

from nomac.hw.distance_encoder import DistanceEncoder
from nomac.hw.engine import LAYER_PARAMETER, Engine, connect_memory_ports
from nomac.hw.engine_status import drive_status
from nomac.hw.lane_gearbox import LaneGearbox
from nomac.hw.lut_accumulator import LutAccumulator
from nomac.hw.tree_encoder import TreeEncoder
from nomac.hw.vector_stream import beats_per_vector

__all__ = ["LutEngine"]


class LutEngine(Engine):
    __doc__ = Engine.doc_template.format(description="""
    A whole `lut` layer with its memories: the encoder's (prototypes, or split
    dimensions and thresholds) and the accumulator's (tables, bias).
    """.strip(), parameters=LAYER_PARAMETER.format(layer="LutLayer"), rule=': "ceil(C*M/R)"', attributes="""
    encoder : TreeEncoder or DistanceEncoder
    accumulator : LutAccumulator
    """.strip())

    cycles_per_vector_bound_rule = "ceil(C*M/R)"

    def __init__(self, layer):
        self.layer = layer
        self.encoder = TreeEncoder(layer) if layer.encoder == "tree" else DistanceEncoder(layer)
        self.accumulator = LutAccumulator(layer)
        super().__init__(layer, in_lanes=layer.hw.in_lanes, out_lanes=layer.hw.out_lanes,
                         out_shape=self.accumulator.out_shape,
                         memories=[*self.encoder.memories, *self.accumulator.memories])

    @property
    def acc_bits(self) -> int:
        return self.accumulator.acc_bits

    @property
    def cycles_per_vector(self) -> int:
        """Steady-state interval between vectors: the slowest stage's cycles per vector."""
        layer, hw = self.layer, self.layer.hw
        encoder = layer.codebooks * (1 if layer.encoder == "tree" else self.encoder.cycles_per_codebook)
        return max(beats_per_vector(layer.in_features, hw.in_lanes), encoder,
                   self.accumulator.cycles_per_vector, beats_per_vector(layer.out_features, hw.out_lanes))

    @property
    def cycles_per_vector_bound(self) -> int:
        """The table-read bound ceil(C * M / R): each output needs C entries, R come per cycle."""
        layer = self.layer
        return -(-layer.codebooks * layer.out_features // layer.hw.table_reads)

    def elaborate(self, platform):
        m = Module()
        layer, hw = self.layer, self.layer.hw
        m.submodules.gather = gather = LaneGearbox(layer.in_features, hw.in_lanes, layer.subvector_len, signed(8))
        m.submodules.encoder = self.encoder
        m.submodules.accumulator = self.accumulator
        m.submodules.scatter = scatter = LaneGearbox(layer.out_features, hw.table_reads, hw.out_lanes,
                                                     self.out_shape)
        connect(m, flipped(self.i), gather.i)
        connect(m, gather.o, self.encoder.i)
        connect(m, self.encoder.o, self.accumulator.i)
        connect(m, self.accumulator.o, scatter.i)
        connect(m, scatter.o, flipped(self.o))
        for unit in (self.encoder, self.accumulator):
            connect_memory_ports(m, self, unit)

        drive_status(m, self, beats_per_vector(layer.in_features, hw.in_lanes), gather.misframed)
        return m
