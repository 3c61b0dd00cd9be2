"""floor(2^N / d) as an iterative restoring divider: shift-subtract, no multiplier.

The softmax (1 / Z) and LayerNorm (1 / r) each need one reciprocal per row, where a
row takes tens of cycles anyway, so a sequential unit of one comparator per quotient
bit costs a few dozen LUTs instead of a divider array. `bits_per_cycle` unrolls k
shift-subtract steps into one cycle (k comparators) for a shorter latency.

Restoring division of 2^N, one step per quotient bit from the top: the remainder
takes the next numerator bit (only the leading one is 1), and when it reaches d,
d is subtracted and the quotient bit is 1. When the caller knows the quotient is
below 2^Q (its divisors exceed 2^(N-Q)), the top steps would all make 0 bits: with
s = ceil(Q / k) cycles the unit makes only the s*k >= Q lowest quotient bits,
starting from the remainder 2^(N - s*k) those skipped steps would leave (or, when
s*k reaches N + 1, from 0 with leading steps that see numerator bits 0); quotient
bits above Q are 0 and shift out of the top.
"""
from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Reciprocal"]


class Reciprocal(wiring.Component):
    """floor(2^numerator_bits / divisor) for 1 <= divisor < 2^divisor_bits (and, with
    `quotient_bits` Q, divisor > 2^(numerator_bits - Q)).

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
    quotient : Out(quotient_bits)
        2^N itself for divisor 1 (Q = N + 1, the default). A divisor out of range gives a
        number of no meaning (callers rule it out, or multiply it by 0).

    Attributes
    ----------
    steps : int
        Cycles of shift-subtract: ceil(Q / bits_per_cycle).
    cycles : int
        `done` is high in the cycles-th cycle after the one `start` was taken in: steps + 1
        (`cycles_for`, which needs no unit).
    """

    def __init__(self, divisor_bits: int, numerator_bits: int = 32, bits_per_cycle: int = 1,
                 quotient_bits: int | None = None):
        quotient_bits = numerator_bits + 1 if quotient_bits is None else quotient_bits
        for name, value in (("divisor_bits", divisor_bits), ("numerator_bits", numerator_bits),
                            ("bits_per_cycle", bits_per_cycle), ("quotient_bits", quotient_bits)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Reciprocal: {name} = {value!r}: must be a positive integer")
        if quotient_bits > numerator_bits + 1:
            raise ValueError(f"Reciprocal: quotient_bits = {quotient_bits}: must be at most numerator_bits + 1 "
                             f"({numerator_bits + 1})")
        self.divisor_bits, self.numerator_bits, self.bits_per_cycle = divisor_bits, numerator_bits, bits_per_cycle
        self.quotient_bits = quotient_bits
        self.steps = -(-quotient_bits // bits_per_cycle)
        self.cycles = self.cycles_for(bits_per_cycle, quotient_bits)
        super().__init__({"start": In(1), "divisor": In(divisor_bits), "busy": Out(1), "done": Out(1),
                          "quotient": Out(quotient_bits)})

    @staticmethod
    def cycles_for(bits_per_cycle: int, quotient_bits: int) -> int:
        """The `cycles` of a unit making `quotient_bits` bits, `bits_per_cycle` a cycle."""
        return -(-quotient_bits // bits_per_cycle) + 1

    def elaborate(self, platform):
        m = Module()
        k, steps, N, Q = self.bits_per_cycle, self.steps, self.numerator_bits, self.quotient_bits
        made = min(steps * k, N + 1)                  # quotient bits the steps make (the top ones 0)
        full = made == N + 1                          # the numerator's 1 is among the steps
        leading = steps * k - made                    # steps before the numerator's 1 (full only)
        divisor = Signal(self.divisor_bits)
        remainder = Signal(max(self.divisor_bits, N - made + 1) + 1)
        quotient = Signal(Q)
        cycle = Signal(range(steps))

        m.d.sync += self.done.eq(0)
        with m.If(self.start & ~self.busy):
            m.d.sync += [divisor.eq(self.divisor), remainder.eq(0 if full else 1 << (N - made)), quotient.eq(0),
                         cycle.eq(0), self.busy.eq(1)]
        with m.Elif(self.busy):
            r, q = remainder, quotient
            for j in range(k):
                numerator_bit = ((cycle * k + j) == leading) if full else 0     # the only 1 of 2^N
                shifted = (r << 1) | numerator_bit
                fits = shifted >= divisor
                r = Mux(fits, shifted - divisor, shifted)[:len(remainder)]
                q = ((q << 1) | fits)[:Q]
            m.d.sync += [remainder.eq(r), quotient.eq(q), cycle.eq(cycle + 1)]
            with m.If(cycle == steps - 1):
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]
        m.d.comb += self.quotient.eq(quotient)
        return m
