"""The network units' output rule, sat8(rshift_round(acc, shift)) (docs/spec.md section 2),
for a shift known only at run time, and the bytes of a raw accumulator.

A unit serves every layer of its kind, so the shift is a step parameter and not a
constant to build the shifter for (hw/requantize.py does that for the engines). For
every s >= 0, rshift_round(a, s) = floor((h + 1) / 2) with h = floor(2a / 2^s): one
arithmetic shift of 2a, no 2^(s-1) to decode. Unless the result saturates, h lies in
-256..255, so the shifter makes only those 9 bits: its levels go largest first, each
keeping the bits the later levels still need, and a bit a level drops must equal the
sign or the result saturates (tested as the bits drop, beside the multiplexers, so
nothing waits for a wide comparison). Levels stop once they reach past every bit of 2a;
a shift beyond them gives 0, what the definition gives there, without a clamp on the
shift in front of the shifter.

The rule comes in two halves, so that a unit can put a register between them:
`shifted_window` makes a WINDOW (h, whether the result fits int8, acc's sign) and
`saturate_window` rounds and saturates it; `requantize_runtime` is both in one cycle.
A raw accumulator leaves as ACC_BYTES bytes, little-endian: byte j is bits 1..8 of
acc's window at shift 8j, so a unit that holds acc while its bytes leave takes them
through the same shifter (`output_window`, `output_element`), with no byte multiplexer.
"""
from amaranth import C, Cat, Module, Mux, Signal, Value
from amaranth.hdl import signed
from amaranth.lib import data

from nomac.hw.matrix_vector_engine import INT8_HI, INT8_LO

__all__ = ["ACC_BYTES", "WINDOW", "shifted_window", "saturate_window", "requantize_runtime",
           "output_window", "output_element", "requantize_output"]

ACC_BYTES = 4                        # a raw accumulator output: int32, little-endian
H_BITS = 9                           # floor(2a / 2^s) of every unsaturated result
WINDOW = data.StructLayout({"h": signed(H_BITS), "fits": 1, "negative": 1})


def _window(bits: list, sign: Value, amount: Value, levels: int):
    """h = floor(x / 2^amount) in 9 bits, x = `bits` (little-endian, the sign above them)
    shifted by amount's low `levels` bits, and whether no dropped bit makes the result
    saturate."""
    beyond_every_shift = bits[H_BITS + (1 << levels) - 1:]     # above h whatever the shift
    spills = Cat(*(bit ^ sign for bit in beyond_every_shift)).any() if beyond_every_shift else C(0, 1)
    for level in reversed(range(levels)):
        step = 1 << level
        kept = H_BITS + step - 1                   # the places h still depends on after this level
        dropped = bits[kept:]                      # dropped unless this level shifts them down
        if dropped:
            spills |= ~amount[level] & Cat(*(bit ^ sign for bit in dropped)).any()
        bits = [Mux(amount[level], bits[j + step] if j + step < len(bits) else sign, bits[j])
                for j in range(min(len(bits), kept))]
    h = Cat(*bits, *[sign] * (H_BITS - len(bits)))[:H_BITS].as_signed()
    return h, ~spills & (h[-1] == sign)


def shifted_window(acc: Value, shift: Value) -> data.View:
    """The first half: h = floor(2 acc / 2^shift) in 9 bits, whether no dropped bit makes the
    result saturate (`fits`; h = 255, which rounds to 128, is the second half's to find),
    and acc's sign."""
    doubled = Cat(C(0, 1), acc).as_signed()
    sign = doubled[-1]
    levels = (len(doubled) - 1).bit_length()       # enough to shift out every place of 2 acc
    amount = Cat(shift, C(0, levels))              # zero-extended to at least `levels` bits
    h, fits = _window(list(doubled), sign, amount, levels)
    beyond = amount[levels:].any()                 # past every place of 2 acc: the result is 0
    return WINDOW(Cat(Mux(beyond, 0, h)[:H_BITS], beyond | fits, sign))


def saturate_window(window) -> Value:
    """The second half: floor((h + 1) / 2) when that fits int8, else -128 or 127 by acc's sign."""
    window = WINDOW(window)
    h = window.h
    return Mux(window.fits & (h != INT8_HI * 2 + 1), (h + 1)[1:H_BITS].as_signed(),
               Mux(window.negative, INT8_LO, INT8_HI))


def requantize_runtime(acc: Value, shift: Value) -> Value:
    """sat8(rshift_round(acc, shift)) in one cycle."""
    return saturate_window(shifted_window(acc, shift))


def output_window(acc: Value, shift: Value, raw: Value, byte: Value) -> data.View:
    """The WINDOW of an output element of `acc`: requantized by `shift`, or with `raw` its
    byte `byte` (the window at shift 8 * byte; acc holds an int32, so that is never past it)."""
    assert len(acc) >= 8 * ACC_BYTES, len(acc)
    return shifted_window(acc, Mux(raw, Cat(C(0, 3), byte), shift))


def requantize_output(m: Module, output) -> Value:
    """The int8 element of a unit output (hw/network/unit.py `unit_output_layout`): acc
    requantized by shift, or with raw its bits [shift, shift + 8). The same shifter as
    `shifted_window`, built in `m` as one signal per level (the simulator takes a shifter
    of per-bit expressions seconds to compile, this one milliseconds)."""
    doubled = Cat(C(0, 1), output.acc).as_signed()
    sign = doubled[-1]
    levels = (len(doubled) - 1).bit_length()       # enough to shift out every place of 2 acc
    amount = Cat(output.shift, C(0, levels))
    value, spills = doubled, C(0, 1)
    for level in reversed(range(levels)):
        step = 1 << level
        kept = H_BITS + step - 1                   # the places h still depends on after this level
        if len(value) > kept:
            dropped = Signal(name=f"spills_{level}")
            m.d.comb += dropped.eq(spills | (~amount[level] & (value[kept:] ^ sign.replicate(len(value) - kept)).any()))
            spills = dropped
        shifted = Signal(signed(min(len(value), kept)), name=f"level_{level}")
        m.d.comb += shifted.eq(Mux(amount[level], value.as_signed() >> step, value.as_signed()))
        value = shifted
    h = Signal(signed(H_BITS), name="h")           # the last level's bits, sign-extended
    m.d.comb += h.eq(value)
    beyond = amount[levels:].any()                 # past every place of 2 acc: the result is 0
    window = WINDOW(Cat(Mux(beyond, 0, h)[:H_BITS], beyond | (~spills & (h[-1] == sign)), sign))
    return output_element(window, output.raw)


def output_element(window, raw: Value) -> Value:
    """The output element of an `output_window` WINDOW: the int8 result, or with `raw` the byte."""
    return Mux(raw, WINDOW(window).h[1:].as_signed(), saturate_window(window))
