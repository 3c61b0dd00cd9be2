"""The `select_token` engine: token `index` of a T x E sequence (docs/spec.md section 13.7).

No buffer and no arithmetic: the core counts input beats and passes on the beats
that hold the token. It moves L = min(hw.in_lanes, hw.out_lanes) elements a cycle
(hw.lanes stays 1; the gearboxes re-beat both sides), so a vector takes
ceil(T*E / L) cycles. Why the narrower side: without a buffer for the token, the
token leaves as fast as it arrives, so a core wider than the output would stall the
input during the token, and the input beats lost are never made up (a buffer of E
elements would reach the bound, ceil(T*E / in_lanes), when the output is narrower).

The token starts at lane s = (index*E) mod L of its first beat, a constant,
so an output beat is a fixed funnel of two input beats: lanes s.. of the previous
beat, then lanes ..s-1 of the current one (s = 0: the current beat). When the
token's final output beat lies wholly inside the beat that completes the one before
it, it leaves a cycle later from the previous beat alone ("deferred"); the input beat
consumed in that cycle never starts an output beat (it is past the token, or the
next vector's first beat, which starts none when s > 0), so one output beat a
cycle is never exceeded and the input never waits. Lanes past the token in its
final output beat carry whatever the funnel holds: the output gearbox drops them
(it is a real gearbox, not wires, whenever E is not a multiple of L).
"""
from amaranth import C, Cat, Module, Mux, Signal
from amaranth.hdl import signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nomac.hw.engine import LAYER_PARAMETER
from nomac.hw.operators.operator_engine import OperatorEngine
from nomac.hw.vector_stream import beats_per_vector, vector_stream

__all__ = ["SelectTokenCore", "SelectTokenEngine"]


def _beat_in(beat, lo: int, hi: int, beats: int):
    """beat in lo..hi (of 0..beats-1), without a comparison that is always true (Verilator's lint)."""
    if lo > hi:
        return C(0)
    within = C(1)
    if lo > 0:
        within = beat >= lo
    if hi < beats - 1:
        within = within & (beat <= hi)
    return within


class SelectTokenCore(wiring.Component):
    """Beats of L elements in, one a cycle; the token's beats (L wide) out."""

    acc_bits = 8
    max_in_flight = 2                 # a vector's last output beat held while the next one streams in
    memories = []
    cycles_per_vector_bound_rule = "ceil(T*E/in_lanes)"

    def __init__(self, layer):
        self.layer = layer
        self.in_lanes = self.out_lanes = min(layer.hw.in_lanes, layer.hw.out_lanes)
        super().__init__({"i": In(vector_stream(self.in_lanes, signed(8))),
                          "o": Out(vector_stream(self.out_lanes, signed(8)))})

    @property
    def cycles_per_vector(self) -> int:
        return beats_per_vector(self.layer.in_features, self.in_lanes)

    cycles_per_vector_bound = property(lambda self: beats_per_vector(self.layer.in_features, self.layer.hw.in_lanes),
                                       doc="ceil(T*E / in_lanes): every input beat is read; reached when "
                                           "out_lanes >= in_lanes")

    def elaborate(self, platform):
        m = Module()
        L, E = self.in_lanes, self.layer.features
        start = self.layer.index * E
        shift = start % L
        first = start // L                                  # the beat holding the token's first element
        final = (start + E - 1) // L                        # ... and its last
        tail = E - (beats_per_vector(E, L) - 1) * L         # elements of the final output beat
        deferred_case = shift > 0 and shift + tail <= L

        beat = Signal(range(self.cycles_per_vector))
        deferred = Signal()                                 # the final output beat leaves at the next advance
        held_valid, held_last, held = Signal(), Signal(), Signal(8 * L)
        advance = ~held_valid | self.o.ready
        take = advance & self.i.valid
        current = self.i.payload.data.as_value()
        if shift:
            rest = Signal(8 * (L - shift))                  # lanes s.. of the previous beat
            with m.If(take):
                m.d.sync += rest.eq(current[8 * shift:])
            funnel = Cat(rest, current[:8 * shift])
        else:
            funnel = current
        completes = _beat_in(beat, first + (shift > 0), final, self.cycles_per_vector)   # an output beat
        completes_final = C(0) if deferred_case else beat == final

        m.d.comb += self.i.ready.eq(advance)
        with m.If(take):
            m.d.sync += beat.eq(Mux(beat == self.cycles_per_vector - 1, 0, beat + 1))
        with m.If(advance):
            m.d.sync += [held.eq(funnel), deferred.eq(0),
                         held_valid.eq(deferred | (self.i.valid & completes)),
                         held_last.eq(deferred | (self.i.valid & completes_final))]
            if deferred_case:
                with m.If(self.i.valid & (beat == final)):
                    m.d.sync += deferred.eq(1)
        m.d.comb += [self.o.payload.data.eq(held), self.o.valid.eq(held_valid), self.o.payload.last.eq(held_last)]
        return m


class SelectTokenEngine(OperatorEngine):
    __doc__ = OperatorEngine.doc_template.format(
        description="A `select_token` layer: min(in_lanes, out_lanes) elements a cycle, the token's passed on.",
        parameters=LAYER_PARAMETER.format(layer="SelectTokenLayer"), rule=': "ceil(T*E/in_lanes)"', attributes="")
    Core = SelectTokenCore
