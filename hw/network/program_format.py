"""The layer program's words in the table memory (docs/spec.md section 16).

Word 0 is the program header (PROGRAM_FIELDS: where the input goes, where the output is).
Step n of the program is STEP_WORDS 64-bit words at word 1 + STEP_WORDS * n: a header of
HEADER_WORDS words (the unit, the reader's address pattern, the writer's region) and
the unit's parameters in the remaining PARAMS_BITS bits (the unit module's FIELDS, from
bit 0 up). A step whose unit is END stops the program. The gateware reads these fields
through `params_layout(HEADER_FIELDS)`; the compiler writes them with `pack_params`: one
definition for both.
"""
from nomac.hw.network.unit import PARAMS_BITS, TABLE_WORD_BITS, Field, pack_params

__all__ = ["PROGRAM_FIELDS", "READER_LOOPS", "HEADER_FIELDS", "HEADER_WORDS", "STEP_WORDS", "FIRST_STEP", "END",
           "step_words"]

PROGRAM_FIELDS = (Field("input_base", 16), Field("output_base", 16), Field("output_bytes", 16))

READER_LOOPS = 4          # nested loops of the reader's address pattern, outermost first
HEADER_FIELDS = (
    Field("unit", 8),
    Field("reader_base", 16),
    Field("writer_base", 16),
    Field("writer_count", 16),
    *(Field(f"count{k}", 16) for k in range(READER_LOOPS)),
    *(Field(f"stride{k}", 16, signed=True) for k in range(READER_LOOPS)),
)
HEADER_WORDS = -(-sum(f.bits for f in HEADER_FIELDS) // TABLE_WORD_BITS)
STEP_WORDS = HEADER_WORDS + PARAMS_BITS // TABLE_WORD_BITS
FIRST_STEP = 1            # the word of step 0
END = 0                   # the unit number that ends the program


def step_words(header: dict, params_bits: int) -> list[int]:
    """The STEP_WORDS words of one step: its header field values and packed parameters."""
    bits = pack_params(HEADER_FIELDS, header) | params_bits << (HEADER_WORDS * TABLE_WORD_BITS)
    mask = (1 << TABLE_WORD_BITS) - 1
    return [(bits >> (TABLE_WORD_BITS * k)) & mask for k in range(STEP_WORDS)]
