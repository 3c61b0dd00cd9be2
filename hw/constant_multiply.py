"""value * constant as shift-and-add in LUTs: a multiplier by a config parameter is a constant.

Written as `value * constant`, yosys maps the product onto DSP blocks, and the
iCE40UP5K has only eight. A constant is instead written in canonical signed digits
(the non-adjacent form: digits -1, 0, +1, no two non-zero digits side by side, so at
most about half the bits are non-zero): the +1 terms value << k are summed as one
balanced adder tree, the -1 terms as another, and the second is subtracted from the
first; n non-zero digits take n - 1 adders, about ceil(log2 n) levels deep. Two terms
are added at the lower one's position, the bits below it passing through as wires, so
no adder spends carry cells on known zeros.
"""
from amaranth import Cat, Const, Value

from nomac.hw.widths import signed_bits

__all__ = ["constant_multiply", "signed_digits"]


def signed_digits(constant: int) -> list[tuple[int, int]]:
    """(position, digit) of the constant's non-adjacent form, digits +-1, lowest first."""
    digits, position = [], 0
    while constant:
        if constant & 1:
            digit = 2 - (constant & 3)          # +1 when constant = 1 mod 4, else -1 (it carries)
            digits.append((position, digit))
            constant -= digit
        constant >>= 1
        position += 1
    return digits


def _extended(value: Value, width: int) -> Value:
    """The same number in at least `width` bits (sign or zero extension)."""
    if len(value) >= width:
        return value
    if value.shape().signed:
        return Cat(value, value[-1].replicate(width - len(value))).as_signed()
    return Cat(value, Const(0, width - len(value)))


def _combine(low, high, subtract: bool):
    """low +- high for terms (value, position), low's position not above high's: the
    result at low's position, low's bits below high's position passed through."""
    (a, i), (b, j) = low, high
    gap = j - i
    if gap == 0:
        return (a - b if subtract else a + b), i
    a = _extended(a, gap + 1)
    top = (a >> gap) - b if subtract else (a >> gap) + b
    joined = Cat(a[:gap], top)
    return (joined.as_signed() if top.shape().signed else joined), i


def _balanced_sum(terms):
    """A balanced tree of additions over terms (value, position) sorted by position."""
    while len(terms) > 1:
        terms = [_combine(terms[k], terms[k + 1], False) if k + 1 < len(terms) else terms[k]
                 for k in range(0, len(terms), 2)]
    return terms[0]


def constant_multiply(value, constant: int) -> Value:
    """An Amaranth value exactly equal to value * constant, for a signed or unsigned value and
    an integer constant >= 0; its shape is the fewest bits that hold every such product."""
    if not isinstance(constant, int) or isinstance(constant, bool) or constant < 0:
        raise ValueError(f"constant_multiply: constant = {constant!r}: must be an integer >= 0")
    value = Value.cast(value)
    if constant == 0:
        return Const(0, 1)
    digits = signed_digits(constant)
    plus = _balanced_sum([(value, k) for k, digit in digits if digit > 0])
    minus = [(value, k) for k, digit in digits if digit < 0]
    if minus:
        minus = _balanced_sum(minus)
        if minus[1] < plus[1]:                   # the subtrahend is the lower term: no bits pass through
            gap = plus[1] - minus[1]
            plus = ((plus[0] << gap) - minus[0], minus[1])
        else:
            plus = _combine(plus, minus, True)
    total, position = plus
    total = total << position
    width = len(value)
    if value.shape().signed:
        bits = signed_bits(-(1 << (width - 1)) * constant, ((1 << (width - 1)) - 1) * constant)
        return total[:bits].as_signed()
    return total[:max(1, (((1 << width) - 1) * constant).bit_length())]
