"""The options of `nomac build` and `nomac run`, checked before a port is opened or a tool started.

Each check raises a NomacError (a ConfigError where the value fits on the line)
naming the option, its value and the rule, so a bad option fails at once instead
of after the upload (a vector count of -5), in silence (a baud rate no board
makes: the host would wait minutes for replies) or with a misleading message (a
timeout of nan). `max_payload` is checked by `board_map`,
which knows the layer's sizes, and both commands build the map before any I/O.
"""
import math
import numbers

import numpy as np

from nomac.base.errors import ConfigError, NomacError
from nomac.boards.devices import Board

__all__ = ["LINE_MIN_DIVISOR", "MAX_DIVISOR", "baud_range", "board_divisor", "check_count", "check_line_baud",
           "check_retries", "check_seed", "check_timeout", "check_vectors"]

# A real line: the receiver's sampling point moves by up to a cycle against the sender's
# bits (and both clocks drift), so a board keeps at least this many cycles per bit.
LINE_MIN_DIVISOR = 4
# IDENTIFY reports the divisor (clock cycles per UART bit) in a u16 (link_protocol.Identity), and
# the gateware's IDENTIFY reply is built from it: a slower rate cannot be built or identified.
MAX_DIVISOR = 0xFFFF


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def baud_range(board: Board, clock_hz: int | None = None) -> tuple[int, int]:
    """The slowest and the fastest baud rate of `board`'s UART: MAX_DIVISOR and LINE_MIN_DIVISOR
    clock cycles per bit of its oscillator, or of `clock_hz` (a PLL's clock)."""
    clock_hz = board.clock_hz if clock_hz is None else clock_hz
    return math.ceil(clock_hz / MAX_DIVISOR), clock_hz // LINE_MIN_DIVISOR


def board_divisor(where: str, board: Board, baud, clock_hz: int | None = None) -> int:
    """Clock cycles per bit for `baud` on `board` clocked by its oscillator, or by `clock_hz`
    (a PLL's clock); the rate must come within 2 % of `baud`."""
    clock_hz = board.clock_hz if clock_hz is None else clock_hz
    slowest, fastest = baud_range(board, clock_hz)
    if not _is_integer(baud) or not slowest <= baud <= fastest:
        raise ConfigError(where, "baud", baud, f"must be an integer in {slowest}..{fastest} for {board.name}'s "
                                               f"{clock_hz / 1e6:g} MHz clock ({LINE_MIN_DIVISOR}.."
                                               f"{MAX_DIVISOR} clock cycles per bit: the fewest a real line "
                                               f"needs, the most IDENTIFY reports)")
    divisor = round(clock_hz / baud)
    if abs(clock_hz / divisor - baud) > 0.02 * baud:
        raise ConfigError(where, "baud", baud, f"{board.name}'s {clock_hz / 1e6:g} MHz clock cannot make it "
                                               f"within 2 % (rates {clock_hz}/n work, n = "
                                               f"{LINE_MIN_DIVISOR}..{MAX_DIVISOR})")
    return divisor


def _is_positive_finite(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def check_line_baud(where: str, baud):
    """Any serial line's rate (a pseudo-terminal has no clock); `board_divisor` checks a board's."""
    if not _is_positive_finite(baud):
        raise ConfigError(where, "baud", baud, "must be a finite number of bits per second > 0")


def check_timeout(where: str, timeout):
    if not _is_positive_finite(timeout):
        raise ConfigError(where, "timeout", timeout, "must be a finite number of seconds > 0 (the wait for "
                                                     "each reply)")


def check_retries(where: str, retries):
    if not _is_integer(retries) or retries < 0:
        raise ConfigError(where, "retries", retries, "must be an integer >= 0 (attempts after the first)")


def check_count(where: str, count):
    if not _is_integer(count) or count < 1:
        raise ConfigError(where, "count (--vectors)", count, "must be an integer >= 1 (random vectors to run)")


def check_seed(where: str, seed):
    if not _is_integer(seed) or seed < 0:
        raise ConfigError(where, "seed", seed, "must be an integer >= 0 (numpy's default_rng)")


def check_vectors(where: str, vectors, in_features: int) -> np.ndarray:
    """`vectors` as an array, if it is int8 [N, in_features] with N >= 1."""
    try:
        array = np.asarray(vectors)
    except (TypeError, ValueError):
        array = np.asarray(object())                 # ragged nested lists: no shape at all
    if array.dtype != np.int8 or array.ndim != 2 or array.shape[1] != in_features or not len(array):
        raise NomacError(f"{where}: vectors (--inputs) = {array.dtype} {list(array.shape)}: must be int8 "
                         f"[N, {in_features}] with N >= 1 (N vectors of the layer's in_features)")
    return array
