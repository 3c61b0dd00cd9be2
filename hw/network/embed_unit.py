"""The `embed` step: class token and position embedding (docs/spec.md sections 13.2 and 16),
y[t, e] = sat8(rshift_round(x'[t, e] * mult + offset[t, e], shift)) with x'[0] = 0 and
x'[t] = x[t-1], mult and shift step parameters, run on the add unit (hw/network/add_unit.py,
with `embed` set): its datapath is the add's with the offset for b * mult_b.

A step reads (T-1)*E elements and writes T*E, one output a cycle in row-major order
(t, e). The class token's E outputs take no input (x' = 0), so they leave right after
`start`; every later output takes one input element. The offsets are int32 [T, E] in
the table memory at `offset_base`, two to a 64-bit word: offset[t, e] is lane n % 2
(bits 32 * (n % 2) up) of word n // 2, n = t*E + e. Timetable: output n (from 0) is
issued at edge n + 1 and taken at edge n + 3 (add_unit).
"""
from nomac.hw.network.add_unit import MULT_LIMIT, OFFSET_BITS, OFFSETS_PER_WORD
from nomac.hw.network.unit import LimitError, UnitStep, pack_words

__all__ = ["embed_step"]


def embed_step(layer, rows: int, table_base: int, limits) -> UnitStep:
    """The layer's T tokens from its T-1 patch embeddings: one multiply per output element,
    the offsets at `table_base`. The layer's T fixes the step, so `rows` is unused."""
    elements = layer.tokens * layer.features
    words = -(-elements // OFFSETS_PER_WORD)
    for what, value, limit in (("tokens", layer.tokens, limits.tokens),
                               ("features", layer.features, limits.model_features),
                               ("mult", layer.mult, MULT_LIMIT),
                               ("offset table end", table_base + words, limits.table_words)):
        if value > limit:
            raise LimitError(layer.name, what, value, limit)
    # mult_b is the class token's multiplier: 0, for x' = 0.
    params = {"rows": layer.tokens, "features": layer.features, "mult_a": layer.mult, "mult_b": 0,
              "shift": layer.shift, "embed": 1, "offset_base": table_base}
    return UnitStep(params, pack_words(layer.offset.reshape(-1), OFFSET_BITS), elements - layer.features,
                    elements, elements, "T*E")
