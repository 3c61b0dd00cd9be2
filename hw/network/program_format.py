"""The layer program's words in the table memory (docs/spec.md section 16.3).

Word 0 is the program header (PROGRAM_FIELDS: the input's region). Step n of the program
is STEP_WORDS 64-bit words at word 1 + STEP_WORDS * n: HEADER_WORDS header words (one
layout each in HEADER_WORD_FIELDS: the writer's region and the unit, the reader's loop
counts, the reader's jumps) and the unit's parameters in the remaining PARAMS_BITS bits
(the unit module's FIELDS, from bit 0 up). A step whose unit is END stops the program;
its reader pattern is the output region. Every header field is 16 bits at a 16-bit
boundary of its word, so the reader and writer load their registers straight from the
word the sequencer reads, and the program header's input region sits where a step's
writer region does. The gateware reads these fields through `params_layout`; the compiler
writes them with `pack_params`: one definition for both.
"""
from nomac.hw.network.unit import PARAMS_BITS, TABLE_WORD_BITS, Field, NetworkLimits, pack_params

__all__ = ["PROGRAM_FIELDS", "READER_LOOPS", "WRITER_FIELDS", "HEADER_WORD_FIELDS", "HEADER_WORDS", "STEP_WORDS",
           "FIRST_STEP", "END", "count_bits", "step_words"]

READER_LOOPS = 4          # nested loops of the reader's address pattern, outermost first
WRITER_FIELDS = (Field("writer_base", 16), Field("writer_count", 16))
PROGRAM_FIELDS = (Field("input_base", 16), Field("input_bytes", 16))          # where WRITER_FIELDS are
HEADER_WORD_FIELDS = (
    (*WRITER_FIELDS, Field("reader_base", 16), Field("unit", 16)),
    tuple(Field(f"count{k}", 16) for k in range(READER_LOOPS)),
    tuple(Field(f"jump{k}", 16) for k in range(READER_LOOPS)),                 # modulo 2^16
)
HEADER_WORDS = len(HEADER_WORD_FIELDS)
STEP_WORDS = HEADER_WORDS + PARAMS_BITS // TABLE_WORD_BITS
FIRST_STEP = 1            # the word of step 0
END = 0                   # the unit number that ends the program


def count_bits(limits: NetworkLimits) -> int:
    """Bits of a reader loop count or writer count in the gateware: up to `activation_bytes`."""
    return limits.activation_bytes.bit_length()


def step_words(header: dict, params_bits: int) -> list[int]:
    """The STEP_WORDS words of one step: its header field values and packed parameters."""
    words = [pack_params(fields, {f.name: header[f.name] for f in fields}) for fields in HEADER_WORD_FIELDS]
    mask = (1 << TABLE_WORD_BITS) - 1
    return words + [(params_bits >> (TABLE_WORD_BITS * k)) & mask for k in range(STEP_WORDS - HEADER_WORDS)]
