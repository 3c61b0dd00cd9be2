"""The sizes and the timetable of the network's attention unit (hw/network/attention_unit.py), as numbers.

Register widths and memory depths come from the bitstream's `NetworkLimits` and the unit's
lanes U alone (docs/spec.md section 13.5's bounds at the largest shapes the limits allow,
any exp_table), never from a layer. The cycle count of a step is worked out here from the
same rules the unit's sequencer follows, so a test can compare it with the measured one.

A step has two phases. *Load*: the T*3E input elements, one a cycle, are packed into
words of U elements, each head's slice of q, k and v starting a new word (G = ceil(dh / U)
words a slice, the last one's unused lanes zero). *Compute*: rows (query i, head h) in
output order, R = T*H of them, each in three passes over its T keys: S (T*G score items),
E (T exp-table items, each followed by an empty slot: the shared 16 x 16 multiplier takes two
cycles a product) and C (G context groups of P item slots: T keys, padded to P = max(T,
2U + 5, 7) slots so that a group's U sums leave the shared rescale before the next group's
arrive and a group reads back a probability only after the first group wrote it; the first
group's slots, which make the probabilities on the shared multiplier, are doubled too).
The passes run as S(0) E(0) | S(1) C(0) E(1) | ... | S(R-1) C(R-2) E(R-1) | C(R-1): Z's
reciprocal runs while the next row's scores are computed, and E(r+1) finds the scores of
S(r+1) written because C(r) lies between them.
"""
from dataclasses import dataclass
from math import ceil

from nomac.hw.operators.reciprocal import Reciprocal
from nomac.hw.widths import signed_bits

__all__ = ["AttentionUnitSizes", "AttentionUnitTimetable", "head_words", "least_context_period", "bound_of",
           "BOUND_RULE", "EXP_ENTRY_BITS", "EXP_INDEX_MAX", "MULT_BITS", "PROB_MAX", "PROB_SHIFT", "STAGES"]

RECIP_BITS = 32              # recip = floor(2^32 / Z)
# recip < 2^31 for Z >= 3, the only Z whose recip the unit makes; for Z = 1 or 2 (recip 2^32
# or 2^31) p = min(e * 2^8 / Z, 255) is 0, 128 or 255, set from e and Z without a product.
QUOTIENT_BITS = 31
PROB_SHIFT = 24              # p = min(rshift_round(e * recip, 24), 255)
PROB_MAX = 255
EXP_INDEX_MAX = 255
EXP_ONE = 1 << 15            # exp_table entries lie in 0..2^15
EXP_ENTRY_BITS = 16          # an exp_table entry in the table memory
MULT_BITS = 16               # score_mult and out_mult: the unit's multiplier takes 16 bits unsigned
Q_MAX_PRODUCT, Q_MIN_PRODUCT = 128 * 128, -128 * 127        # int8 * int8
P_MAX_PRODUCT, P_MIN_PRODUCT = 255 * 127, -255 * 128        # uint8 probability * int8
# The pipeline behind the issue stage (stage 0): row memory read and the shared multiplier's
# high half (1), its low half and the sequence memories' addresses (2), its product and the
# words (3), the kept bits of the runtime shift, the lanes' operands and the table address (4),
# the lanes' operands again, in their multiplier blocks, and e (5), sums and e, p written back,
# the row maximum, a group's sums held (6).
STAGES = 6
# The last E item's e reaches Z in stage 5; the reciprocal takes Z in the cycle after its
# stage 5 and is done `Reciprocal.cycles` later; C may issue from the cycle its `done` is high.
RECIPROCAL_START_DELAY = 6
# One quotient bit a cycle, 31 of them: hidden behind S(r+1) when T*G >= 36 (the tiny ViT on
# U = 2: 68). Two bits a cycle make the two chained compare-subtracts
# the unit's longest path (iCE40UP5K: 30 instead of 37 MHz at U = 4).
RECIPROCAL_BITS_PER_CYCLE = 1
BOUND_RULE = "T*3E + ceil(2*T*T*E/U) + 3*H*T*T"


def least_context_period(lanes: int) -> int:
    """P = max(T, this): a group's U sums leave the held register, two cycles each, before
    the next group's are held (2U + 5 slots: free from the cycle after its stage 6, and the
    E items after the last group take the multiplier from their issue), and its p is written
    (stage 6) before the next group reads it back."""
    return max(2 * lanes + 5, STAGES + 1)


def head_words(head_dim: int, lanes: int) -> int:
    """G: the words of U elements a head's slice of q, k or v takes."""
    return ceil(head_dim / lanes)


def bound_of(tokens: int, features: int, heads: int, lanes: int) -> int:
    """T*3E + ceil(2*T*T*E/U) + 3*H*T*T: every input element read at one a cycle (the first
    row needs every key), the T*T*E multiplies of the scores and as many of the context on U
    multipliers, and for each row's key two cycles of the 16 x 16 shared multiplier for its
    exp index and one for the second half of its probability (the first half overlaps the
    lanes' context products)."""
    T, E, H, U = tokens, features, heads, lanes
    return T * 3 * E + ceil(2 * T * T * E / U) + 3 * H * T * T


@dataclass(frozen=True)
class AttentionUnitSizes:
    """Widths and depths of a unit built for `limits` with `lanes` multipliers."""
    max_tokens: int
    max_features: int
    max_heads: int
    lanes: int

    @classmethod
    def of(cls, limits, lanes: int) -> "AttentionUnitSizes":
        return cls(limits.tokens, limits.model_features, limits.heads, lanes)

    @property
    def max_head_dim(self) -> int:
        return self.max_features                                   # one head

    @property
    def max_head_words(self) -> int:
        return head_words(self.max_head_dim, self.lanes)

    @property
    def max_part_words(self) -> int:
        """The most words a token's q (or k, or v) takes: H * G over every E and H within the limits."""
        return max(h * head_words(e // h, self.lanes) for e in range(1, self.max_features + 1)
                   for h in range(1, min(e, self.max_heads) + 1) if e % h == 0)

    @property
    def word_bits(self) -> int:
        """A token's q (k, v) takes 2^word_bits words of the sequence memories, so that an address
        is the token, (k or v,) and the word side by side: no multiply, no adder."""
        return (self.max_part_words - 1).bit_length()

    @property
    def query_depth(self) -> int:
        return self.max_tokens << self.word_bits

    @property
    def key_value_depth(self) -> int:
        return self.max_tokens << (self.word_bits + 1)

    @property
    def score_bits(self) -> int:
        """s and its partial sums over a head's products."""
        return signed_bits(self.max_head_dim * Q_MIN_PRODUCT, self.max_head_dim * Q_MAX_PRODUCT)

    @property
    def delta_max(self) -> int:
        return self.max_head_dim * (Q_MAX_PRODUCT - Q_MIN_PRODUCT)

    @property
    def context_range(self) -> tuple[int, int]:
        """c and its partial sums: T products of an 8-bit probability and an int8."""
        return self.max_tokens * P_MIN_PRODUCT, self.max_tokens * P_MAX_PRODUCT

    @property
    def context_bits(self) -> int:
        return signed_bits(*self.context_range)

    @property
    def output_bits(self) -> int:
        """A unit output's acc, c * out_mult, which the engine's requantizer shifts by out_shift."""
        lo, hi = self.context_range
        m = (1 << MULT_BITS) - 1
        return signed_bits(lo * m, hi * m)

    @property
    def sum_bits(self) -> int:
        """Z and its partial sums: T entries of at most 2^15."""
        return (self.max_tokens * EXP_ONE).bit_length()

    @property
    def row_bits(self) -> int:
        """A row memory entry: a score, then e (unsigned, 16 bits), then p (8 bits)."""
        return max(self.score_bits, EXP_ENTRY_BITS + 1)

    @property
    def product_bits(self) -> int:
        """The shared multiplier's products that occur: delta * score_mult, c * out_mult, and
        e * recip <= 2^32 (e <= Z, Z >= 3)."""
        lo, hi = self.context_range
        m = (1 << MULT_BITS) - 1
        return signed_bits(lo * m, max(self.delta_max * m, hi * m, 1 << RECIP_BITS))

    def make_reciprocal(self) -> Reciprocal:
        """floor(2^32 / Z) for Z >= 3: 31 quotient bits (QUOTIENT_BITS)."""
        return Reciprocal(self.sum_bits, RECIP_BITS, RECIPROCAL_BITS_PER_CYCLE, QUOTIENT_BITS)


@dataclass(frozen=True)
class AttentionUnitTimetable:
    """The cycles of one step of T tokens, H heads of dh on U lanes (the module docstring's passes)."""
    tokens: int
    heads: int
    head_dim: int
    lanes: int

    groups = property(lambda self: head_words(self.head_dim, self.lanes), doc="G")
    rows = property(lambda self: self.tokens * self.heads, doc="R")

    @property
    def context_period(self) -> int:
        """P: item slots of a context group."""
        return max(self.tokens, least_context_period(self.lanes))

    @property
    def tail_lanes(self) -> int:
        """The lanes of a head's last word: the sums its last context group holds."""
        return self.head_dim - (self.groups - 1) * self.lanes

    @property
    def reciprocal_cycles(self) -> int:
        return Reciprocal.cycles_for(RECIPROCAL_BITS_PER_CYCLE, QUOTIENT_BITS)

    @property
    def bound(self) -> int:
        return bound_of(self.tokens, self.heads * self.head_dim, self.heads, self.lanes)

    @property
    def cycles(self) -> int:
        """Clock edges from the one that takes `start` to the one that takes the last output,
        when neither stream stalls: the issue cycle of every pass, row by row.

        Cycle numbers count from the start edge (0). An item issued in cycle c is in stage k in
        cycle c + k. E(0) waits until S(0)'s last item has left stage 6. C(r)'s first item
        waits for the cycle the reciprocal's `done` is high and for the held sums of C(r-1)'s
        last group to have left the shared multiplier: they take its free slots (stage 2 not
        holding an E item) from the cycle after they are held on.
        """
        T, G, P, R, n = self.tokens, self.groups, self.context_period, self.rows, self.tail_lanes
        score, context = T * G, (G + 1) * P                     # the first group's slots take two cycles
        load = 3 * T * self.heads * self.head_dim              # elements taken at edges 1..load
        last_exp = load + score + STAGES + 2 * T - 1           # S(0) from load + 1, the drain, E(0)'s T pairs
        held_free = 0
        for r in range(R):
            recip_done = last_exp + RECIPROCAL_START_DELAY + self.reciprocal_cycles
            after = last_exp + 2 + (score if r + 1 < R else 0)  # S(r+1) between E(r) and C(r)
            first_context = max(after, recip_done, held_free)
            last_key = first_context + (2 * (T - 1) if G == 1 else G * P + T - 1)    # the last real key
            if r + 1 == R:
                # its sums held after stage 6, two cycles each on the multiplier, the last
                # one's product (the output) taken in the cycle after its second.
                return last_key + STAGES + 2 * n + 1
            exp_first = first_context + context                 # E(r+1): no S item left in flight
            last_exp = exp_first + 2 * T - 2
            # The held sums' pairs start from the cycle after their stage 6 up to the one before
            # E(r+1)'s first issue, then again once its last item has left stage 2.
            held_from = last_key + STAGES + 1
            before = max(0, (exp_first - held_from + 1) // 2)
            last_pair = held_from + 2 * (n - 1) if n <= before else exp_first + 2 * T + 1 + 2 * (n - before - 1)
            held_free = last_pair + 2
