"""The layer program's words in the table memory (docs/spec.md section 16.3).

Step n of the program is STEP_WORDS 64-bit words at word STEP_WORDS * n: the unit's
parameters in PARAMS_WORDS words (the unit module's FIELDS, from bit 0 up), then
HEADER_WORDS header words (one layout each in HEADER_WORD_FIELDS: the reader's loop
counts, the regions and the unit, the reader's jumps), then a word of zeros, so that a
step is a power of two words and the sequencer's program counter is also its word
counter and its step counter. A step whose unit is END stops the program; its reader
pattern is the output region. Every header field is 16 bits at a 16-bit boundary of its
word, so the reader and writer load their registers straight from the word the
sequencer reads. The gateware reads these fields through `params_layout`; the compiler
writes them with `pack_params`: one definition for both.
"""
from amaranth.lib import data

from nomac.hw.network.unit import PARAMS_BITS, TABLE_WORD_BITS, Field, NetworkLimits, pack_params, params_layout

__all__ = ["READER_LOOPS", "JUMPING_LOOPS", "PARAMS_WORDS", "HEADER_WORD_FIELDS", "HEADER_WORDS", "COUNTS",
           "REGIONS", "JUMPS", "STEP_WORDS", "END", "program_words", "count_limits", "count_bits", "header_fields",
           "step_words"]

READER_LOOPS = 4          # nested loops of the reader's address pattern, outermost first
# The loops with a jump of their own: when the outermost advances it moves the address by 1
# (to the next block, as patches' rows of patches are), and so does the innermost (bytes).
JUMPING_LOOPS = (1, 2)
PARAMS_WORDS = PARAMS_BITS // TABLE_WORD_BITS
HEADER_WORD_FIELDS = (
    tuple(Field(f"count{k}_less_2", 16) for k in range(READER_LOOPS)),             # modulo 2^16
    (Field("writer_base", 16), Field("reader_base", 16), Field("unit", 16)),
    tuple(Field(f"jump{k}", 16) for k in JUMPING_LOOPS),                           # modulo 2^16
)
HEADER_WORDS = len(HEADER_WORD_FIELDS)
COUNTS, REGIONS, JUMPS = range(HEADER_WORDS)          # the header words, in that order
STEP_WORDS = 1 << (PARAMS_WORDS + HEADER_WORDS - 1).bit_length()      # 8: a power of two
END = 0                   # the unit number that ends the program
assert PARAMS_WORDS + HEADER_WORDS == STEP_WORDS - 1, "the sequencer starts a step as its last word is read"


def program_words(limits: NetworkLimits) -> int:
    """Words of the longest program: `steps` steps and END."""
    return STEP_WORDS * (limits.steps + 1)


def count_limits(limits: NetworkLimits) -> tuple:
    """Each reader loop's largest count, outermost first: the inner loop reads up to a whole
    memory; the outer ones count rows, patches, a patch's rows or an add's two operands, so
    at most `tokens` or `features` (docs/spec.md section 16.3)."""
    outer = max(limits.tokens, limits.features)
    return (outer,) * (READER_LOOPS - 1) + (limits.activation_bytes,)


def count_bits(limits: NetworkLimits) -> tuple:
    """Bits of each reader loop's count less 2 in the gateware (two's complement: -1 to the
    largest count less 2, negative at the loop's last index)."""
    return tuple(max(1, count - 2).bit_length() + 1 for count in count_limits(limits))


def header_fields(word, index: int) -> data.View:
    """The fields of header word `index` (COUNTS, REGIONS or JUMPS) in the table word `word`."""
    fields = HEADER_WORD_FIELDS[index]
    return data.View(params_layout(fields), word[:16 * len(fields)])


def step_words(header: dict, params_bits: int) -> list[int]:
    """The STEP_WORDS words of one step: its packed parameters and its header field values."""
    mask = (1 << TABLE_WORD_BITS) - 1
    params = [(params_bits >> (TABLE_WORD_BITS * k)) & mask for k in range(PARAMS_WORDS)]
    header = [pack_params(fields, {f.name: header[f.name] for f in fields}) for fields in HEADER_WORD_FIELDS]
    return params + header + [0] * (STEP_WORDS - PARAMS_WORDS - HEADER_WORDS)
