"""Fuzz: whatever a board sends back, the host returns correct results or raises a NomacError.

The fake board (fake_board.py, through its in-process port) answers with replies that
hypothesis mutates: data too short or too long, random payloads, other status bytes,
truncated frames, garbage around or instead of a frame, other sequence numbers,
silence. The property: the host either completes with the right result or raises a
NomacError with a one-line message; never another exception, never a wrong result
nobody reports. A reply with a good CRC, status OK and the right length but other
data (a forged one) cannot be told from the true one by any host, the CRC being the
link's only check of its bytes: after one, a whole run's report must still be honest
(its mismatch count against the golden model), and a single call's result is not judged.
"""
import numpy as np
import pytest
from hypothesis import strategies as st

from fake_board import FakeBoard
from fuzz import fuzz_budgets, run_fuzz
from host_cases import COMMAND_CASES, CONFIG, MAP, call_on_fake_board, fake_link
from nomac.boards import link_protocol as lp
from nomac.boards.board_map import board_layer
from nomac.boards.host import run_config
from nomac.base.errors import NomacError
from nomac.model.golden import run_golden

RUN_VECTORS = np.random.default_rng(7).integers(-128, 128, (8, MAP.in_elements)).astype(np.int8)
RUN_GOLDEN = run_golden(CONFIG, RUN_VECTORS)
LAYER_ARRAYS = board_layer(CONFIG).arrays()
LOADED_MEMORIES = {region.index: region.words(LAYER_ARRAYS[region.array]) for region in MAP.regions}
CLEAN_RUN_REPLIES = 16     # IDENTIFY, 5 x (WRITE, CRC), WRITE_INPUTS, RUN, WAIT, READ_OUTPUTS, STATUS

DAMAGE = st.one_of(
    st.tuples(st.just("length"), st.integers(-4, 4).filter(bool), st.binary(min_size=4, max_size=4)),
    st.tuples(st.just("payload"), st.binary(max_size=40)),
    st.tuples(st.just("status"), st.integers(0, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 63)),
    st.tuples(st.just("garbage"), st.binary(min_size=1, max_size=30), st.sampled_from(["before", "after", "instead"])),
    st.tuples(st.just("other_seq"), st.integers(1, 255)),
    st.just(("silence",)),
)
FORGERY = st.tuples(st.just("forge"), st.binary(min_size=64, max_size=64))


def damaged(reply: bytes, damage) -> tuple[bytes, bool]:
    """The bytes sent instead of the reply frame `reply`, and whether they are a forged reply."""
    kind, *args = damage
    cmd, seq, payload = reply[1], reply[2], reply[1 + lp.HEADER_BYTES:-lp.CRC_BYTES]
    if kind == "truncate":
        return reply[:args[0] % len(reply)], False
    if kind == "garbage":
        garbage, where = args
        return {"before": garbage + reply, "after": reply + garbage, "instead": garbage}[where], False
    if kind == "other_seq":
        return lp.encode_frame(cmd, (seq + args[0]) & 0xFF, payload), False
    if kind == "silence":
        return b"", False
    if kind == "length":
        change, filler = args
        new = payload[:len(payload) + change] if change < 0 else payload + filler[:change]
    elif kind == "payload":
        new = args[0]
    elif kind == "status":
        new = bytes([args[0]]) + payload[1:]
    else:                                   # "forge": status OK and the true length, other data
        new = bytes([lp.Status.OK]) + args[0][:len(payload) - 1]
    forged = len(new) == len(payload) > 1 and new[0] == lp.Status.OK and new != payload
    return lp.encode_frame(cmd, seq, new), forged


def misbehaving(damages: dict, forged: list):
    """A fake board's `misbehave`: reply number n goes out as damaged(reply, damages[n])."""
    def misbehave(number, request, reply):
        if number not in damages:
            return reply
        sent, is_forged = damaged(reply, damages[number])
        if is_forged:
            forged.append(lp.Command(request.cmd))
        return sent
    return misbehave


def check_one_line(error: NomacError):
    message = str(error)
    assert message and "\n" not in message, message


@pytest.mark.parametrize("examples", fuzz_budgets(100))
def test_a_whole_run_is_right_or_stops_with_a_one_line_error(examples):
    def check(damages):
        forged = []
        board = FakeBoard(CONFIG, MAP, misbehave=misbehaving(damages, forged))
        try:
            report = run_config(CONFIG, fake_link(board), MAP, vectors=RUN_VECTORS)
        except NomacError as error:
            check_one_line(error)
            return
        wrong = int(np.any(report.outputs != RUN_GOLDEN, axis=1).sum())
        assert report.mismatched_vectors == wrong
        if lp.Command.READ_OUTPUTS not in forged:
            assert wrong == 0, damages
        assert board.memories == LOADED_MEMORIES

    damages = st.dictionaries(st.integers(0, CLEAN_RUN_REPLIES + 2), st.one_of(DAMAGE, FORGERY), max_size=12)
    run_fuzz(examples, damages, check)


@pytest.mark.parametrize("examples", fuzz_budgets(200))
def test_every_command_is_right_or_stops_with_a_one_line_error(examples):
    def check(drawn):
        case, damages = drawn
        forged = []
        try:
            result, _, _ = call_on_fake_board(case, misbehaving(damages, forged))
        except NomacError as error:
            check_one_line(error)
            return
        if not forged:
            assert result == case.expected, damages

    run_fuzz(examples, st.tuples(st.sampled_from(COMMAND_CASES), st.dictionaries(st.integers(0, 6), DAMAGE,
                                                                                  max_size=7)), check)
