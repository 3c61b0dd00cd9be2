"""Every argument of `run_on_board` and `build_bitstream` is checked before any I/O.

A bad option must fail at once with one line naming it, its value and the rule,
instead of after IDENTIFY and the upload (a negative vector count), in minutes of
silence (baud 7) or with a misleading message (a timeout of nan). The port in these
tests does not exist, so an option checked only after opening it would show up as
NoSuchPort; the simulated board and the build would start tools, so they must not
be reached either. Baud limits: 4..65535 clock cycles per bit (boards/board_top.py,
link_protocol.Identity's u16 divisor), so 12 MHz / 65535 = 183.1 -> 184 baud up to
12 MHz / 4 = 3 Mbaud on an iCEBreaker, 25 MHz / 65535 = 381.5 -> 382 baud up to
6.25 Mbaud on a ULX3S.
"""
import math
import re

import numpy as np
import pytest

from fake_board import FakeBoard, FakePort
from host_cases import CONFIG, MAP
from nomac.boards.build import build_bitstream
from nomac.board_run import run_on_board
from nomac.boards.host import BoardConnection, NoSuchPort
from nomac.base.errors import NomacError

NO_PORT = "/dev/nomac-no-such-port"
BAUD_RULE = "(4..65535 clock cycles per bit: the fewest a real line needs, the most IDENTIFY reports)"
ICEBREAKER_BAUD = f"must be an integer in 184..3000000 for icebreaker's 12 MHz clock {BAUD_RULE}"
ULX3S_BAUD = f"must be an integer in 382..6250000 for ulx3s-85f's 25 MHz clock {BAUD_RULE}"
COUNT_RULE = "must be an integer >= 1 (random vectors to run)"
TIMEOUT_RULE = "must be a finite number of seconds > 0 (the wait for each reply)"
VECTORS_RULE = "must be int8 [N, 4] with N >= 1 (N vectors of the layer's in_features)"
# the layer needs 25 payload bytes: a status byte and IDENTIFY's 24 (more than a vector, a word or STATUS)
MAX_PAYLOAD_RULE = ("must be an integer in 25..65528 for layer 'fc' (one vector, one memory word and every "
                    "reply must fit)")

RUN_CASES = [
    ({"count": -5}, f"run: count (--vectors) = -5: {COUNT_RULE}"),
    ({"count": 0}, f"run: count (--vectors) = 0: {COUNT_RULE}"),
    ({"count": 2.0}, f"run: count (--vectors) = 2.0: {COUNT_RULE}"),
    ({"count": True}, f"run: count (--vectors) = True: {COUNT_RULE}"),
    ({"timeout": math.nan}, f"run: timeout = nan: {TIMEOUT_RULE}"),
    ({"timeout": math.inf}, f"run: timeout = inf: {TIMEOUT_RULE}"),
    ({"timeout": -1}, f"run: timeout = -1: {TIMEOUT_RULE}"),
    ({"timeout": 0}, f"run: timeout = 0: {TIMEOUT_RULE}"),
    ({"timeout": "1"}, f"run: timeout = '1': {TIMEOUT_RULE}"),
    ({"baud": 7}, f"run: baud = 7: {ICEBREAKER_BAUD}"),
    ({"baud": 183}, f"run: baud = 183: {ICEBREAKER_BAUD}"),
    ({"baud": 3_000_001}, f"run: baud = 3000001: {ICEBREAKER_BAUD}"),
    ({"baud": -1}, f"run: baud = -1: {ICEBREAKER_BAUD}"),
    ({"baud": 1e6}, f"run: baud = 1000000.0: {ICEBREAKER_BAUD}"),
    ({"board": "ulx3s-85f", "baud": 381}, f"run: baud = 381: {ULX3S_BAUD}"),
    ({"board": "ulx3s-85f", "baud": 6_250_001}, f"run: baud = 6250001: {ULX3S_BAUD}"),
    ({"baud": 2_500_000}, "run: baud = 2500000: icebreaker's 12 MHz clock cannot make it within 2 % "
                          "(rates 12000000/n work, n = 4..65535)"),   # 12 MHz / 5 is 4 % off
    ({"retries": -1}, "run: retries = -1: must be an integer >= 0 (attempts after the first)"),
    ({"retries": 1.5}, "run: retries = 1.5: must be an integer >= 0 (attempts after the first)"),
    ({"seed": -1}, "run: seed = -1: must be an integer >= 0 (numpy's default_rng)"),
    ({"vectors": np.zeros((3, 4))}, f"run: vectors (--inputs) = float64 [3, 4]: {VECTORS_RULE}"),
    ({"vectors": np.zeros((3, 5), np.int8)}, f"run: vectors (--inputs) = int8 [3, 5]: {VECTORS_RULE}"),
    ({"vectors": np.zeros((0, 4), np.int8)}, f"run: vectors (--inputs) = int8 [0, 4]: {VECTORS_RULE}"),
    ({"vectors": np.zeros(4, np.int8)}, f"run: vectors (--inputs) = int8 [4]: {VECTORS_RULE}"),
    ({"vectors": [[1, 2], [3]]}, f"run: vectors (--inputs) = object []: {VECTORS_RULE}"),
    ({"max_payload": 24}, f"max_payload = 24: {MAX_PAYLOAD_RULE}"),
    ({"max_payload": 65529}, f"max_payload = 65529: {MAX_PAYLOAD_RULE}"),
    ({"max_payload": 512.0}, f"max_payload = 512.0: {MAX_PAYLOAD_RULE}"),
]


def case_id(case):
    options, _ = case
    return "-".join(f"{name}={value!r}"[:24] for name, value in options.items())


@pytest.mark.parametrize("options, message", RUN_CASES, ids=[case_id(c) for c in RUN_CASES])
def test_run_options_are_checked_before_the_port_is_opened(options, message):
    with pytest.raises(NomacError) as raised:
        run_on_board(CONFIG, port=NO_PORT, **options)
    assert not isinstance(raised.value, NoSuchPort)
    assert str(raised.value) == message


@pytest.mark.parametrize("options", [{"baud": 184}, {"baud": 3_000_000}, {"board": "ulx3s-85f", "baud": 382},
                                     {"board": "ulx3s-85f", "baud": 6_250_000}, {"max_payload": 25},
                                     {"max_payload": 65528}, {"count": 1}, {"timeout": 1e-3}, {"retries": 0},
                                     {"seed": 0}, {"vectors": np.zeros((1, 4), np.int8)}],
                         ids=lambda options: case_id((options, None)))
def test_options_at_their_limits_are_accepted(options):
    with pytest.raises(NoSuchPort):                   # the next step after the checks
        run_on_board(CONFIG, port=NO_PORT, **options)


@pytest.mark.parametrize("options, message", [c for c in RUN_CASES if "max_payload" not in c[0]][::4],
                         ids=[case_id(c) for c in RUN_CASES if "max_payload" not in c[0]][::4])
def test_run_options_are_checked_before_the_simulated_board_starts(options, message, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the simulated board was started")

    monkeypatch.setattr("nomac.board_run.SimulatedBoard", never)
    with pytest.raises(NomacError, match=f"^{re.escape(message)}$"):
        run_on_board(CONFIG, **options)


@pytest.mark.parametrize("options, message", [
    ({"baud": 7}, f"build: baud = 7: {ICEBREAKER_BAUD}"),
    ({"board_name": "ulx3s-85f", "baud": 6_250_001}, f"build: baud = 6250001: {ULX3S_BAUD}"),
    ({"baud": "1000000"}, f"build: baud = '1000000': {ICEBREAKER_BAUD}"),
    ({"max_payload": 24}, f"max_payload = 24: {MAX_PAYLOAD_RULE}"),
    ({"max_payload": -1}, f"max_payload = -1: {MAX_PAYLOAD_RULE}"),
], ids=["baud-7", "ulx3s-baud", "baud-text", "max_payload-24", "max_payload-negative"])
def test_build_options_are_checked_before_anything_is_written(options, message, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(NomacError) as raised:
        build_bitstream(CONFIG, out_dir=out, progress=lambda text: None, **options)
    assert str(raised.value) == message
    assert not out.exists()


def test_connection_options_are_checked_before_the_port_is_opened():
    with pytest.raises(NomacError, match=f"^board connection: timeout = nan: {re.escape(TIMEOUT_RULE)}$"):
        BoardConnection.open(NO_PORT, timeout=math.nan)
    with pytest.raises(NomacError, match="^board connection: retries = -2: must be an integer >= 0"):
        BoardConnection.open(NO_PORT, retries=-2)
    with pytest.raises(NomacError, match="^board connection: baud = 0: must be a finite number of bits per "
                                         "second > 0$"):
        BoardConnection(FakePort(FakeBoard(CONFIG, MAP)), baud=0)
