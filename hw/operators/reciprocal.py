"""floor(2^N / d) as an iterative restoring divider: shift-subtract, no multiplier.

The softmax (1 / Z) and LayerNorm (1 / r) each need one reciprocal per row, where a
row takes tens of cycles anyway, so a sequential unit of one comparator per quotient
bit costs a few dozen LUTs instead of a divider array. `bits_per_cycle` unrolls k
shift-subtract steps into one cycle (k comparators) for a shorter latency.

Restoring division of 2^N, one step per quotient bit from the top: the remainder
takes the next numerator bit (only the leading one is 1), and when it reaches d,
d is subtracted and the quotient bit is 1. With s = ceil((N + 1) / k) cycles the
steps number s*k >= N + 1; the extra leading steps see numerator bits 0 and make
quotient bits 0 that shift out of the top.
"""
from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Reciprocal"]


class Reciprocal(wiring.Component):
    """floor(2^numerator_bits / divisor) for 1 <= divisor < 2^divisor_bits.

    Members
    -------
    start : In(1)
        Take `divisor` on this cycle; ignored while `busy`.
    divisor : In(divisor_bits)
    busy : Out(1)
        A division is running (from the cycle after `start`).
    done : Out(1)
        High for the one cycle after the final step; `quotient` holds its result from
        then until the next `start` is taken.
    quotient : Out(numerator_bits + 1)
        2^N itself for divisor 1. A divisor of 0 gives all ones (callers rule it out).

    Attributes
    ----------
    steps : int
        Cycles of shift-subtract: ceil((N + 1) / bits_per_cycle).
    cycles : int
        `done` is high in the cycles-th cycle after the one `start` was taken in: steps + 1.
    """

    def __init__(self, divisor_bits: int, numerator_bits: int = 32, bits_per_cycle: int = 1):
        for name, value in (("divisor_bits", divisor_bits), ("numerator_bits", numerator_bits),
                            ("bits_per_cycle", bits_per_cycle)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Reciprocal: {name} = {value!r}: must be a positive integer")
        self.divisor_bits, self.numerator_bits, self.bits_per_cycle = divisor_bits, numerator_bits, bits_per_cycle
        self.steps = -(-(numerator_bits + 1) // bits_per_cycle)
        self.cycles = self.steps + 1
        super().__init__({"start": In(1), "divisor": In(divisor_bits), "busy": Out(1), "done": Out(1),
                          "quotient": Out(numerator_bits + 1)})

    def elaborate(self, platform):
        m = Module()
        k, steps = self.bits_per_cycle, self.steps
        leading = steps * k - (self.numerator_bits + 1)      # steps before the numerator's 1
        divisor = Signal(self.divisor_bits)
        remainder = Signal(self.divisor_bits + 1)
        quotient = Signal(self.numerator_bits + 1)
        cycle = Signal(range(steps))

        m.d.sync += self.done.eq(0)
        with m.If(self.start & ~self.busy):
            m.d.sync += [divisor.eq(self.divisor), remainder.eq(0), quotient.eq(0), cycle.eq(0),
                         self.busy.eq(1)]
        with m.Elif(self.busy):
            r, q = remainder, quotient
            for j in range(k):
                numerator_bit = (cycle * k + j) == leading     # the only 1 of 2^N
                shifted = (r << 1) | numerator_bit
                fits = shifted >= divisor
                r = Mux(fits, shifted - divisor, shifted)[:self.divisor_bits + 1]
                q = ((q << 1) | fits)[:self.numerator_bits + 1]
            m.d.sync += [remainder.eq(r), quotient.eq(q), cycle.eq(cycle + 1)]
            with m.If(cycle == steps - 1):
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]
        m.d.comb += self.quotient.eq(quotient)
        return m
