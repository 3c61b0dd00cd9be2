"""The int8 output rule of docs/spec.md section 2, in gates: sat8(rshift_round(acc, out_shift))."""
from amaranth import Mux, Value


def requantize(acc: Value, out_shift: int) -> Value:
    """Round half up by adding 2^(s-1) before an arithmetic right shift, then clamp."""
    rounded = acc if out_shift == 0 else (acc + (1 << (out_shift - 1))) >> out_shift
    return Mux(rounded > 127, 127, Mux(rounded < -128, -128, rounded))


def balanced_sum(terms: list[Value]) -> Value:
    """Sum as a balanced adder tree (depth log2 n), not a chain."""
    terms = list(terms)
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]
