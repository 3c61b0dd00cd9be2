"""The sizes and the timetable of the attention core (hw/operators/attention.py), as numbers.

Every register width comes from the layer's parameters (docs/spec.md section 13.5,
worst case over every int8 input and every exp_table a RAM may hold), and the cycle
count is worked out here from the same rules the core's sequencer follows, so the
manifest's cycles_per_vector is exact and a test can compare it with the measured one.

A row is one (query, head) pair; rows go query by query, heads in order. Each row has
three passes: S (T*G score cycles, G = dh / U word groups), E (T exp-table cycles) and C
(G context groups of P cycles each: T keys, padded to P when the output stream is too
narrow to take U elements every T cycles). The sequencer runs them as
S(0) E(0) | S(1) C(0) E(1) | S(2) C(1) E(2) | ... | C(R-1), so the reciprocal of a
row's sum runs while the next row's scores are computed.
"""
from dataclasses import dataclass

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
# An E item may enter only when no S item is in the three pipeline stages behind the
# issue stage (its score is written, the row maximum final, when it leaves the third).
PIPELINE_SCORE_DRAIN = 3
# The last E item's e reaches Z two cycles after its issue cycle; the reciprocal
# starts the cycle after that, and C may issue from the cycle its `done` is high.
RECIPROCAL_START_DELAY = 2
RECIPROCAL_BITS_CHOICES = (1, 2, 3, 4)


@dataclass(frozen=True)
class AttentionSchedule:
    tokens: int               # T
    heads: int                # H
    head_dim: int             # dh
    lanes: int                # U multipliers
    out_lanes: int            # elements per beat of the engine's output stream

    @classmethod
    def of(cls, layer) -> "AttentionSchedule":
        return cls(layer.tokens, layer.heads, layer.head_dim, layer.hw.lanes, layer.hw.out_lanes)

    # ---- shape ---------------------------------------------------------------------------
    features = property(lambda self: self.heads * self.head_dim)
    groups = property(lambda self: self.head_dim // self.lanes, doc="G: words of U elements in a head's slice")
    rows = property(lambda self: self.tokens * self.heads, doc="R: (query, head) pairs")
    words_per_token = property(lambda self: 3 * self.features // self.lanes, doc="q | k | v of a token in words")
    words_per_sequence = property(lambda self: self.tokens * self.words_per_token, doc="D: one bank")

    @property
    def context_period(self) -> int:
        """P: cycles per context group; at least T, and at least the cycles the output stream
        needs for the group's U elements, so an output beat never waits."""
        return max(self.tokens, -(-self.lanes // self.out_lanes))

    # ---- widths --------------------------------------------------------------------------
    @property
    def score_bits(self) -> int:
        """s and its partial sums over the head's dh products."""
        return signed_bits(self.head_dim * Q_MIN_PRODUCT, self.head_dim * Q_MAX_PRODUCT)

    @property
    def delta_max(self) -> int:
        return self.head_dim * (Q_MAX_PRODUCT - Q_MIN_PRODUCT)

    @property
    def sum_bits(self) -> int:
        """Z and its partial sums: T entries of at most 2^15."""
        return (self.tokens * EXP_ONE).bit_length()

    @property
    def context_bits(self) -> int:
        """c and its partial sums: T products of an 8-bit probability and an int8."""
        return signed_bits(self.tokens * P_MIN_PRODUCT, self.tokens * P_MAX_PRODUCT)

    # ---- time ----------------------------------------------------------------------------
    @property
    def reciprocal_bits_per_cycle(self) -> int:
        """The fewest quotient bits a cycle that hide the reciprocal behind the next row's
        T*G score cycles (at most 4)."""
        for k in RECIPROCAL_BITS_CHOICES:
            if RECIPROCAL_START_DELAY + self.reciprocal_cycles_at(k) <= self.tokens * self.groups:
                return k
        return RECIPROCAL_BITS_CHOICES[-1]

    @staticmethod
    def reciprocal_cycles_at(bits_per_cycle: int) -> int:
        """`Reciprocal.cycles` of a 32-bit numerator (steps + 1)."""
        return -(-(RECIP_BITS + 1) // bits_per_cycle) + 1

    @property
    def cycles_per_sequence(self) -> int:
        """Cycles from one sequence's start to the next one's, input and output never waiting."""
        T, G, P, R = self.tokens, self.groups, self.context_period, self.rows
        recip = self.reciprocal_cycles_at(self.reciprocal_bits_per_cycle)
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
