"""floor(sqrt(n)) as an iterative digit-by-digit unit: shift-subtract, no multiplier.

LayerNorm needs one square root per row, where a row takes tens of cycles anyway,
so a sequential unit of one comparator per root bit costs a few dozen LUTs instead
of a multiplier-based Newton iteration. `bits_per_cycle` unrolls k steps into one
cycle (k comparators) for a shorter latency.

The schoolbook method in base 2, one root bit per step from the top: the remainder
n - root^2 takes the radicand's next two bits; the next root bit is 1 when the
remainder reaches 4*root + 1 (that is (2*root + 1)^2 - (2*root)^2), which is then
subtracted; one subtraction gives both the comparison (its borrow) and the new
remainder. The remainder never exceeds 2*root, so it needs one bit more than the
root. With s = ceil(root_bits / k) cycles the steps number s*k >= root_bits; the
extra leading steps see radicand bits 0 and make root bits 0.
"""
from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Isqrt"]


class Isqrt(wiring.Component):
    """The largest r with r * r <= radicand, for 0 <= radicand < 2^radicand_bits.

    Members
    -------
    start : In(1)
        Take `radicand` on this cycle; ignored while `busy`.
    radicand : In(radicand_bits)
    busy : Out(1)
        A square root is running (from the cycle after `start`).
    done : Out(1)
        High for the one cycle after the final step; `root` holds its result from then
        until the next `start` is taken.
    root : Out(root_bits)

    Attributes
    ----------
    root_bits : int
        ceil(radicand_bits / 2), enough for the root of the largest radicand.
    steps : int
        Cycles of shift-subtract: ceil(root_bits / bits_per_cycle).
    cycles : int
        `done` is high in the cycles-th cycle after the one `start` was taken in: steps + 1.
    """

    def __init__(self, radicand_bits: int, bits_per_cycle: int = 1):
        for name, value in (("radicand_bits", radicand_bits), ("bits_per_cycle", bits_per_cycle)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Isqrt: {name} = {value!r}: must be a positive integer")
        self.radicand_bits, self.bits_per_cycle = radicand_bits, bits_per_cycle
        self.root_bits = -(-radicand_bits // 2)
        self.steps = -(-self.root_bits // bits_per_cycle)
        self.cycles = self.steps + 1
        super().__init__({"start": In(1), "radicand": In(radicand_bits), "busy": Out(1), "done": Out(1),
                          "root": Out(self.root_bits)})

    def elaborate(self, platform):
        m = Module()
        k, steps, root_bits = self.bits_per_cycle, self.steps, self.root_bits
        pending_bits = 2 * steps * k                      # the radicand, its next two bits on top
        pending = Signal(pending_bits)
        remainder = Signal(root_bits + 1)
        root = Signal(root_bits)
        cycle = Signal(range(steps))

        m.d.sync += self.done.eq(0)
        with m.If(self.start & ~self.busy):
            m.d.sync += [pending.eq(self.radicand), remainder.eq(0), root.eq(0), cycle.eq(0),
                         self.busy.eq(1)]
        with m.Elif(self.busy):
            p, r, q = pending, remainder, root
            for _ in range(k):
                widened = (r << 2) | p[-2:]
                trial = (q << 2) | 1
                difference = widened - trial              # its top bit is the borrow
                fits = ~difference[-1]
                r = Mux(fits, difference, widened)[:root_bits + 1]
                q = ((q << 1) | fits)[:root_bits]
                p = (p << 2)[:pending_bits]
            m.d.sync += [pending.eq(p), remainder.eq(r), root.eq(q), cycle.eq(cycle + 1)]
            with m.If(cycle == steps - 1):
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]
        m.d.comb += self.root.eq(root)
        return m
