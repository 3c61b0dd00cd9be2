"""What a unit of the network engine is to the sequencer (docs/spec.md section 16).

A unit is one layer kind in gates, shared by every step of the program that uses the
kind. Unlike an engine (hw/engine.py) nothing of a layer is baked in: shapes, shifts,
multipliers and the base addresses of its arrays are the step's *parameters*, and the
arrays themselves sit in the table memory, read through one port of 64-bit words. The
bitstream is built for `NetworkLimits`, and every model within them runs on it.

A step runs as: the sequencer sets `params` and pulses `start`; the unit takes the
step's input elements from `i` in the kind's input order, writes its output elements
to `o` in the output order, and pulses `done` once its last output element has been
taken. `params` stays unchanged from `start` to `done`. Both streams may stall on any
cycle (valid/ready, docs/spec.md section 3); there is no `last`: the element counts
follow from the parameters.
"""
from dataclasses import dataclass, fields

from amaranth import Module
from amaranth.hdl import signed, unsigned

from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from nomac.base.errors import ConfigError
from nomac.hw.network.requantize import requantize_output

__all__ = ["TABLE_WORD_BITS", "TABLE_WORD_BYTES", "PARAMS_BITS", "NetworkLimits", "LimitError", "UnitStep", "Field",
           "params_layout", "pack_params", "TableReadSignature", "MultiplierSignature",
           "SharedMultiplier", "OUTPUT_SHIFT_BITS", "unit_output_layout", "output_acc_bits", "StandaloneUnit",
           "UnitSignature", "pack_words", "words_of_bytes"]

TABLE_WORD_BITS = 64          # four 16-bit SPRAMs side by side on the iCE40UP5K
TABLE_WORD_BYTES = TABLE_WORD_BITS // 8
PARAMS_BITS = 256             # a step's unit parameters (four table words)


@dataclass(frozen=True)
class NetworkLimits:
    """The shapes a network bitstream is built for; any model within them runs on it.

    tokens: rows of a step (the sequence length T). features: the widest row any
    matrix layer reads or writes (qkv's 3E). model_features: E of layernorm, attention,
    add and embed rows. heads, codebooks, centroids: attention heads, lut codebooks C and
    prototypes K. table_words / activation_bytes: the two memories' sizes. steps: the
    program's most steps. input_bytes / output_bytes: a model's input (an image) and output
    (int8 values, or 4-byte accumulators) on the board's vector streams. attention_lanes: the
    attention unit's lane multipliers U (its speed against DSP blocks). units: the layer
    kinds that have a unit in the bitstream.
    """
    tokens: int = 17
    features: int = 96
    model_features: int = 32
    heads: int = 4
    codebooks: int = 64
    centroids: int = 16
    table_words: int = 16384
    activation_bytes: int = 4096
    steps: int = 64
    input_bytes: int = 64
    output_bytes: int = 40
    attention_lanes: int = 2
    units: tuple = ("dense", "lut", "shift", "butterfly", "layernorm", "attention", "gelu", "add", "embed")

    def __post_init__(self):
        for f in fields(self):
            if f.name == "units":
                continue
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"NetworkLimits: {f.name} = {value!r}: must be a positive integer")

    @property
    def table_addr_bits(self) -> int:
        return max(1, (self.table_words - 1).bit_length())

    @property
    def activation_addr_bits(self) -> int:
        return max(1, (self.activation_bytes - 1).bit_length())


class LimitError(ConfigError):
    """A layer of a model needs more than the network bitstream was built for."""

    def __init__(self, layer: str, what: str, value, limit):
        super().__init__(f"layer '{layer}'", what, value, f"exceeds the network's limit {limit}")


@dataclass(frozen=True)
class UnitStep:
    """One layer as a step of its unit: what the program compiler needs from the unit's module.

    params: field name -> value (the unit's FIELDS). table_words: the words of the layer's
    arrays, placed at the table base the compiler gave. in_elements / out_elements: the
    elements the step reads from and writes to the activation memory. bound / bound_rule:
    the step's lower bound in cycles (its lookups, adds or multiplies over the unit's
    parallelism) and how it is computed.
    """
    params: dict
    table_words: list
    in_elements: int
    out_elements: int
    bound: int
    bound_rule: str


@dataclass(frozen=True)
class Field:
    """One parameter of a unit's step: `bits` wide, two's complement when `signed`."""
    name: str
    bits: int
    signed: bool = False


def params_layout(params_fields) -> data.StructLayout:
    """The Amaranth layout of a unit's parameters, fields from bit 0 up in the order given;
    the same packing `pack_params` makes for the program."""
    layout = data.StructLayout({f.name: (signed if f.signed else unsigned)(f.bits) for f in params_fields})
    assert layout.size <= PARAMS_BITS, f"unit parameters take {layout.size} bits, more than {PARAMS_BITS}"
    return layout


def pack_params(params_fields, values: dict) -> int:
    """The parameter bits of one step (an int of PARAMS_BITS bits) from field values,
    each checked against its field's range."""
    assert set(values) == {f.name for f in params_fields}, (sorted(values), [f.name for f in params_fields])
    bits, offset = 0, 0
    for f in params_fields:
        value = int(values[f.name])
        lo, hi = (-(1 << (f.bits - 1)), (1 << (f.bits - 1)) - 1) if f.signed else (0, (1 << f.bits) - 1)
        if not lo <= value <= hi:
            raise ValueError(f"parameter {f.name} = {value}: must lie in {lo}..{hi} ({f.bits} bits)")
        bits |= (value & ((1 << f.bits) - 1)) << offset
        offset += f.bits
    return bits


def pack_words(values, lane_bits: int) -> list[int]:
    """Values (two's complement, `lane_bits` each) packed into 64-bit table words, value i
    at bits [lane_bits * (i % n), ...) of word i // n, n = 64 // lane_bits; the last word
    padded with zeros."""
    per_word = TABLE_WORD_BITS // lane_bits
    mask = (1 << lane_bits) - 1
    values = [int(v) for v in values]
    words = []
    for start in range(0, len(values), per_word):
        word = 0
        for lane, value in enumerate(values[start:start + per_word]):
            word |= (value & mask) << (lane * lane_bits)
        words.append(word)
    return words


def words_of_bytes(values) -> list[int]:
    """int8 values, eight to a table word (pack_words with 8-bit lanes)."""
    return pack_words(values, 8)


class TableReadSignature(wiring.Signature):
    """A unit's read port into the table memory (seen from the unit).

    Members
    -------
    addr : Out(table_addr_bits)
        The word to read.
    en : Out(1)
        Read `addr` at this clock edge.
    data : In(64)
        The word read at the last edge with `en` high, from the cycle after it on, held
        until the next read.
    """

    def __init__(self, addr_bits: int):
        super().__init__({"addr": Out(addr_bits), "en": Out(1), "data": In(TABLE_WORD_BITS)})


class MultiplierSignature(wiring.Signature):
    """A unit's use of the network's one shared multiplier (seen from the unit).

    The units that multiply one pair a cycle (dense, lut's squarer, add, embed) share one
    DSP block: only one unit runs at a time (docs/spec.md section 16.4).

    Members
    -------
    a : Out(signed(9))
        An int8 or a uint8.
    b : Out(signed(17))
        An int8, a uint8 or a uint16 (a dyadic multiplier).
    p : In(signed(26))
        a * b in the same cycle (the unit registers it).
    """

    def __init__(self):
        super().__init__({"a": Out(signed(9)), "b": Out(signed(17)), "p": In(signed(26))})


class SharedMultiplier(wiring.Component):
    """p = a * b: the multiplier behind every unit's MultiplierSignature port."""

    def __init__(self):
        super().__init__(MultiplierSignature().flip())

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.p.eq(self.a * self.b)
        return m


OUTPUT_SHIFT_BITS = 6          # a unit output's shift: a step's out_shift, or 8 * byte of a raw accumulator


def unit_output_layout(acc_bits: int) -> data.StructLayout:
    """A unit's output element before the engine's one requantizer (docs/spec.md section
    16.4): sat8(rshift_round(acc, shift)), or with `raw` bits [shift, shift + 8) of acc
    (byte j of a raw accumulator at shift 8 * j). An int8 v at shift 0 is v."""
    return data.StructLayout({"acc": signed(acc_bits), "shift": unsigned(OUTPUT_SHIFT_BITS), "raw": unsigned(1)})


def output_acc_bits(unit: wiring.Component) -> int | None:
    """The accumulator bits of `unit`'s output elements, or None if they are int8 already."""
    shape = unit.o.payload.shape()
    return shape["acc"].shape.width if isinstance(shape, data.StructLayout) else None


class StandaloneUnit(wiring.Component):
    """A unit alone, for tests and out-of-context synthesis: with a multiplier of its own if it
    uses the shared one, and the requantizer on its output if it leaves that to the engine
    (`requantize_output`, in the same cycle); the members of a unit with int8 elements on `o`.
    The network engine shares one multiplier and one requantizer among its units."""

    def __init__(self, unit: wiring.Component):
        self.unit = unit
        members = {name: member for name, member in unit.signature.members.items() if name != "multiplier"}
        members["o"] = Out(stream.Signature(signed(8)))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        unit = m.submodules.unit = self.unit
        if "multiplier" in unit.signature.members:
            m.submodules.multiplier = multiplier = SharedMultiplier()
            wiring.connect(m, unit.multiplier, multiplier)
        wiring.connect(m, wiring.flipped(self.i), unit.i)
        wiring.connect(m, unit.table, wiring.flipped(self.table))
        payload = unit.o.payload if output_acc_bits(unit) is None else requantize_output(m, unit.o.payload)
        m.d.comb += [unit.params.eq(self.params), unit.start.eq(self.start), self.done.eq(unit.done),
                     self.o.payload.eq(payload), self.o.valid.eq(unit.o.valid), unit.o.ready.eq(self.o.ready)]
        return m


class UnitSignature(wiring.Signature):
    """Signature of a unit (seen from the unit).

    Members
    -------
    params : In(layout)
        The step's parameters, valid from `start` to `done`.
    start : In(1)
        One-cycle pulse: a step begins (only when the unit is not running one).
    done : Out(1)
        One-cycle pulse: the step's last output element has been taken.
    i : In(stream.Signature(signed(8)))
        The step's input elements, in the kind's input order.
    o : Out(stream.Signature(element))
        The step's output elements, in the kind's output order: int8, or with `acc_bits`
        unit outputs that the engine's one requantizer turns into int8.
    table : Out(TableReadSignature)
        Reads of the table memory (shapes' arrays at the bases in `params`).
    multiplier : Out(MultiplierSignature)
        Only with `multiplier`: the shared multiplier.
    """

    def __init__(self, layout: data.StructLayout, limits: NetworkLimits, multiplier: bool = False,
                 acc_bits: int | None = None):
        element = signed(8) if acc_bits is None else unit_output_layout(acc_bits)
        members = {"params": In(layout), "start": In(1), "done": Out(1),
                   "i": In(stream.Signature(signed(8))), "o": Out(stream.Signature(element)),
                   "table": Out(TableReadSignature(limits.table_addr_bits))}
        if multiplier:
            members["multiplier"] = Out(MultiplierSignature())
        super().__init__(members)
