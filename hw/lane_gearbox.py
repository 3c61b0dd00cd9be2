"""Lane gearbox: re-beats a vector stream from `in_lanes` to `out_lanes` elements per beat."""
from amaranth import Array, Module, Mux, Signal
from amaranth.hdl import Shape
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nomac.hw.vector_stream import beats_per_vector, vector_stream


class LaneGearbox(wiring.Component):
    """Converts beats of `in_lanes` elements into beats of `out_lanes` elements.

    Every vector has `elements` elements, so beat boundaries are counted rather than
    read from `last`: the output's `last` is always right, and `misframed` pulses when
    an input beat's `last` disagrees with the count (the beat is still taken as
    counted). Elements sit in a circular buffer; `i.ready` and `o.valid` depend on
    registered state only, so chained gearboxes add no combinational path. Without
    credit for the beat leaving in the same cycle, full rate on the slower side
    needs in_lanes + out_lanes + max(in_lanes, out_lanes) - 1 slots.
    """

    def __init__(self, elements: int, in_lanes: int, out_lanes: int, element_shape):
        for name, value in (("elements", elements), ("in_lanes", in_lanes), ("out_lanes", out_lanes)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"LaneGearbox: {name} = {value!r}: must be a positive integer")
        self.elements, self.in_lanes, self.out_lanes = elements, in_lanes, out_lanes
        self.element_shape = Shape.cast(element_shape)
        super().__init__({
            "i": In(vector_stream(in_lanes, element_shape)),
            "o": Out(vector_stream(out_lanes, element_shape)),
            "misframed": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        E, A, B = self.elements, self.in_lanes, self.out_lanes
        in_beats, out_beats = beats_per_vector(E, A), beats_per_vector(E, B)
        in_beat = Signal(range(in_beats))
        in_final = in_beat == in_beats - 1
        in_fire = self.i.valid & self.i.ready
        m.d.comb += self.misframed.eq(in_fire & (self.i.payload.last != in_final))
        with m.If(in_fire):
            m.d.sync += in_beat.eq(Mux(in_final, 0, in_beat + 1))

        if A == B and E % A == 0:       # same beats on both sides: wires only
            m.d.comb += [
                self.o.payload.data.eq(self.i.payload.data),
                self.o.payload.last.eq(in_final),
                self.o.valid.eq(self.i.valid),
                self.i.ready.eq(self.o.ready),
            ]
            return m

        slots = 1 << (A + B + max(A, B) - 2).bit_length()   # a power of two >= A + B + max - 1
        index_bits = slots.bit_length() - 1
        buffer = Array(Signal(self.element_shape, name=f"slot{j}") for j in range(slots))
        write_at = Signal(index_bits)
        read_at = Signal(index_bits)
        count = Signal(range(slots + 1))
        out_beat = Signal(range(out_beats))
        out_final = out_beat == out_beats - 1
        taken = Mux(in_final, E - (in_beats - 1) * A, A)
        given = Mux(out_final, E - (out_beats - 1) * B, B)
        out_fire = self.o.valid & self.o.ready

        m.d.comb += [
            self.i.ready.eq(count + A <= slots),
            self.o.valid.eq(count >= given),
            self.o.payload.last.eq(out_final),
        ]
        for lane in range(B):
            with m.If(lane < given):
                m.d.comb += self.o.payload.data[lane].eq(buffer[(read_at + lane)[:index_bits]])

        lanes_in = Array(self.i.payload.data[a] for a in range(A))
        for j in range(slots):
            offset = (j - write_at)[:index_bits]
            with m.If(in_fire & (offset < taken)):
                m.d.sync += buffer[j].eq(lanes_in[offset])

        m.d.sync += count.eq(count + Mux(in_fire, taken, 0) - Mux(out_fire, given, 0))
        with m.If(in_fire):
            m.d.sync += write_at.eq(write_at + taken)
        with m.If(out_fire):
            m.d.sync += [read_at.eq(read_at + given), out_beat.eq(Mux(out_final, 0, out_beat + 1))]
        return m
