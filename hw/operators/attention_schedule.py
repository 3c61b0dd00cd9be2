"""The sizes and the timetable of the attention core (hw/operators/attention.py), as numbers.

Every register width comes from the layer's parameters (docs/spec.md section 13.5,
worst case over every int8 input and every exp_table a RAM may hold), and the cycle
count is worked out here from the same rules the core's sequencer follows, so the
manifest's cycles_per_vector is exact and a test can compare it with the measured one.

A row is one (query, head) pair; rows go query by query, heads in order. Each row has
three passes: S (T*G score cycles, G = dh / U word groups), E (T exp-table cycles) and C
(G context groups of P cycles each: T keys, padded to P = max(T, U) cycles when T < U,
because the one shared output rescale unit takes a finished group's U sums one a cycle,
and the U-element beat it fills covers the output stream's ceil(U / out_lanes) cycles).
The sequencer runs them as S(0) E(0) | S(1) C(0) E(1) | S(2) C(1) E(2) | ... | C(R-1),
so the reciprocal of a row's sum runs while the next row's scores are computed (a row's
C waits for it when the reciprocal's 4 + recip_bits + 1 cycles exceed the T*G score cycles).

The multiply e * recip is sized from the bounds, so it takes as few DSP tiles as the
table allows: e <= the table's largest entry, and recip <= 2^32 // (the least Z), where
Z >= exp_table[0] (the row maximum's own weight). A ROM knows its table; a RAM may be
loaded with any table, so its bounds are 2^15 and exp_table[0] >= 1.
"""
from dataclasses import dataclass

from nomac.hw.operators.reciprocal import Reciprocal
from nomac.hw.widths import signed_bits

__all__ = ["AttentionSchedule", "EXP_INDEX_MAX", "PIPELINE_SCORE_DRAIN", "PROB_MAX", "PROB_SHIFT", "RECIP_BITS",
           "RECIPROCAL_START_DELAY"]

RECIP_BITS = 32              # recip = floor(2^32 / Z)
PROB_SHIFT = 24              # p = min(rshift_round(e * recip, 24), 255)
PROB_MAX = 255
EXP_INDEX_MAX = 255
EXP_ONE = 1 << 15            # exp_table entries lie in 0..2^15
Q_MAX_PRODUCT, Q_MIN_PRODUCT = 128 * 128, -128 * 127        # int8 * int8
P_MAX_PRODUCT, P_MIN_PRODUCT = 255 * 127, -255 * 128        # uint8 probability * int8
# An E item may enter only when no S item is in the five pipeline stages behind the
# issue stage (words read, operands, products, sum, written: its score is in the score
# memory and the row maximum final when it leaves the fifth).
PIPELINE_SCORE_DRAIN = 5
# The last E item's e reaches Z four cycles after its issue cycle (delta, delta *
# score_mult, table address, e); the reciprocal starts the cycle after that, and C
# may issue from the cycle its `done` is high.
RECIPROCAL_START_DELAY = 4
# One quotient bit a cycle: the reciprocal's shift-subtract step is the core's longest
# path (two chained steps cut its Fmax on the iCE40UP5K from 37 to 27 MHz at the tiny
# ViT's size); making only recip_bits bits (18 there), it still hides behind the next
# row's scores.
RECIPROCAL_BITS_PER_CYCLE = 1


@dataclass(frozen=True)
class AttentionSchedule:
    tokens: int               # T
    heads: int                # H
    head_dim: int             # dh
    lanes: int                # U multipliers
    exp_max: int              # the largest exp_table entry the memory can hold
    exp_first_min: int        # the least exp_table[0] it can hold: the least Z

    @classmethod
    def of(cls, layer) -> "AttentionSchedule":
        ram = layer.hw.memory == "ram"
        exp_max = EXP_ONE if ram else max(1, int(layer.exp_table.max()))
        exp_first_min = 1 if ram else int(layer.exp_table[0])
        return cls(layer.tokens, layer.heads, layer.head_dim, layer.hw.lanes, exp_max, exp_first_min)

    # ---- shape ---------------------------------------------------------------------------
    features = property(lambda self: self.heads * self.head_dim)
    groups = property(lambda self: self.head_dim // self.lanes, doc="G: words of U elements in a head's slice")
    rows = property(lambda self: self.tokens * self.heads, doc="R: (query, head) pairs")
    words_per_token = property(lambda self: 3 * self.features // self.lanes, doc="q | k | v of a token in words")
    words_per_sequence = property(lambda self: self.tokens * self.words_per_token, doc="D: one bank")

    @property
    def context_period(self) -> int:
        """P: cycles per context group; at least T, and at least U, the cycles the shared
        rescale unit takes for a group's U sums (and so at least the ceil(U / out_lanes)
        cycles the output stream takes for their beat: a beat never waits)."""
        return max(self.tokens, self.lanes)

    # ---- widths --------------------------------------------------------------------------
    @property
    def score_bits(self) -> int:
        """s and its partial sums over the head's dh products."""
        return signed_bits(self.head_dim * Q_MIN_PRODUCT, self.head_dim * Q_MAX_PRODUCT)

    @property
    def delta_max(self) -> int:
        return self.head_dim * (Q_MAX_PRODUCT - Q_MIN_PRODUCT)

    @property
    def exp_bits(self) -> int:
        """e: an exp_table entry."""
        return self.exp_max.bit_length()

    @property
    def recip_bits(self) -> int:
        """recip = floor(2^32 / Z) for Z >= exp_table[0]."""
        return ((1 << RECIP_BITS) // self.exp_first_min).bit_length()

    @property
    def sum_bits(self) -> int:
        """Z and its partial sums: T entries of at most exp_max."""
        return (self.tokens * self.exp_max).bit_length()

    @property
    def context_bits(self) -> int:
        """c and its partial sums: T products of an 8-bit probability and an int8."""
        return signed_bits(self.tokens * P_MIN_PRODUCT, self.tokens * P_MAX_PRODUCT)

    # ---- time ----------------------------------------------------------------------------
    @property
    def reciprocal_bits_per_cycle(self) -> int:
        return RECIPROCAL_BITS_PER_CYCLE

    @property
    def reciprocal_cycles(self) -> int:
        """`Reciprocal.cycles` of the unit making recip's recip_bits bits."""
        return Reciprocal.cycles_for(self.reciprocal_bits_per_cycle, self.recip_bits)

    @property
    def cycles_per_sequence(self) -> int:
        """Cycles from one sequence's start to the next one's, input and output never waiting."""
        T, G, P, R = self.tokens, self.groups, self.context_period, self.rows
        recip = self.reciprocal_cycles
        score, context = T * G, G * P
        recip_wait = max(0, RECIPROCAL_START_DELAY + recip - score)        # C(r) after S(r+1)
        drain_wait = max(0, PIPELINE_SCORE_DRAIN - recip_wait - context)   # E(r+1) after C(r)
        first = score + PIPELINE_SCORE_DRAIN + T                            # S(0) E(0)
        middle = (R - 1) * (score + recip_wait + context + drain_wait + T)  # S(r) C(r-1) E(r)
        last = RECIPROCAL_START_DELAY + recip + context                     # C(R-1)
        return 1 + first + middle + last                                    # 1: the idle state

    @property
    def bound(self) -> int:
        """2*T*T*E/U + H*T*T: the T*T*E multiplies of the scores and as many of the context
        on U multipliers, and one pass over each row's T scores for max, exp and sum."""
        T, E, H, U = self.tokens, self.features, self.heads, self.lanes
        return 2 * T * T * E // U + H * T * T
