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

The network engine has one requantizer (`requantize_output`, docs/spec.md section 16.4)
after the register that takes the running unit's output element. A raw accumulator
leaves as ACC_BYTES bytes, little-endian: byte j is bits 1..8 of acc's window (h) at
shift 8j, so a unit that holds acc while its bytes leave sends it at shifts 0, 8, 16, 24
through the same shifter, with no byte multiplexer.
"""
from amaranth import C, Cat, Module, Mux, Signal, Value
from amaranth.hdl import signed
from amaranth.lib import data

from nomac.hw.matrix_vector_engine import INT8_HI, INT8_LO

__all__ = ["ACC_BYTES", "requantize_output"]

ACC_BYTES = 4                        # a raw accumulator output: int32, little-endian
H_BITS = 9                           # floor(2a / 2^s) of every unsaturated result
WINDOW = data.StructLayout({"h": signed(H_BITS), "fits": 1, "negative": 1})   # h, fits int8, acc < 0


def requantize_output(m: Module, output) -> Value:
    """The int8 element of a unit output (hw/network/unit.py `unit_output_layout`): acc
    requantized by shift, or with raw its bits [shift, shift + 8). The shifter is built in
    `m` as one signal per level (the simulator takes a shifter of per-bit expressions
    seconds to compile, this one milliseconds)."""
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
    return _output_element(window, output.raw)


def _output_element(window, raw: Value) -> Value:
    """The int8 result of a WINDOW: floor((h + 1) / 2) when that fits int8, else -128 or 127
    by acc's sign; with `raw` the byte h[1:9]."""
    window = WINDOW(window)
    h = window.h
    saturated = Mux(window.fits & (h != INT8_HI * 2 + 1), (h + 1)[1:H_BITS].as_signed(),
                    Mux(window.negative, INT8_LO, INT8_HI))
    return Mux(raw, h[1:].as_signed(), saturated)
