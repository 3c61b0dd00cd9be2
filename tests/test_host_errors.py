"""The host driver (boards/host.py) on every error path, against a Python board.

Each test makes the fake board (tests/fake_board.py) misbehave in one way and checks
that the host retries what a retry can fix, and otherwise stops with the error
that names the problem: no such port, a bitstream for another config or other
options, replies that never complete, replies of the wrong length or shape, a board
that stops answering, refusals, and read-back CRCs that never match. The board sits
behind a pty, as a real one behind its serial port, except for the reply shape tests,
which use the in-process port (host_cases.fake_link).
"""
import re

import pytest

from fake_board import FakeBoard
from host_cases import (COMMAND_CASES, CONFIG, GOLDEN_OUTPUTS, MAP, TABLES, VECTORS, call_on_fake_board,
                        fake_link)
from nomac.boards import link_protocol as lp
from nomac.boards.board_map import board_layer
from nomac.boards.host import (BoardConnection, BoardNotAnswering, BoardRejected, BoardSession, BoardTimeout,
                               MalformedReply, NoSuchPort, UploadVerifyError, WrongBitstream, run_config)
from nomac.cli import main
from nomac.model.config import save_config


def connect(board, retries=2):
    return BoardConnection.open(board.port, baud=1_000_000, timeout=0.25, retries=retries)


def test_happy_path_loads_runs_and_matches_the_golden_model():
    with FakeBoard(CONFIG, MAP) as board, connect(board) as link:
        report = run_config(CONFIG, link, MAP, count=40, seed=3)
    assert report.mismatched_vectors == 0 and report.vectors == 40
    assert report.load.memories == 5 and report.load.reloads == 0
    assert report.link.retries == 0
    layer = board_layer(CONFIG)
    for region in MAP.regions:
        assert board.memories[region.index] == region.words(layer.arrays()[region.array])


def test_no_such_port_names_the_port():
    with pytest.raises(NoSuchPort, match="'/dev/nomac-no-such-port' does not exist; ports here"):
        BoardConnection.open("/dev/nomac-no-such-port")


def test_a_bitstream_for_another_config_is_refused():
    other = lp.Identity(**{**MAP.identity().__dict__, "config_id": "0123456789abcdef"})
    with FakeBoard(CONFIG, MAP, identity=other) as board, connect(board) as link:
        with pytest.raises(WrongBitstream, match=f"built for config 0123456789abcdef, not {CONFIG.config_id}"):
            BoardSession(link, MAP).check_identity()


def test_a_bitstream_with_other_board_options_is_refused():
    other = lp.Identity(**{**MAP.identity().__dict__, "max_payload": 256, "batch": 63})
    with FakeBoard(CONFIG, MAP, identity=other) as board, connect(board) as link:
        with pytest.raises(WrongBitstream, match="max_payload 256 \\(host expects 512\\), batch 63"):
            BoardSession(link, MAP).check_identity()


def test_a_damaged_reply_is_retried():
    def misbehave(number, request, reply):
        return reply[:-1] + bytes([reply[-1] ^ 0x40]) if number == 1 else reply

    with FakeBoard(CONFIG, MAP, misbehave=misbehave) as board, connect(board) as link:
        session = BoardSession(link, MAP)
        session.check_identity()
        assert session.status().frames_ok == 3          # IDENTIFY, the damaged STATUS, its retry
    assert link.stats.retries == 1 and link.stats.damaged_bytes > 0


def test_a_lost_write_reply_is_retried_and_the_duplicate_counts_as_done():
    def misbehave(number, request, reply):
        return b"" if request.cmd == lp.Command.WRITE and number == 1 else reply

    with FakeBoard(CONFIG, MAP, misbehave=misbehave) as board, connect(board) as link:
        session = BoardSession(link, MAP)
        session.check_identity()
        session.write_words(TABLES.index, 2, [0x1234, 0x5678])
        assert session.read_words(TABLES.index, 1, 4) == [0, 0x1234, 0x5678, 0]
    assert link.stats.retries == 1
    assert [(f.cmd, f.seq) for f in board.requests[1:3]] == [(lp.Command.WRITE, 1)] * 2   # same seq resent


def test_a_duplicate_to_a_first_attempt_is_cleared_and_the_frame_sent_again():
    with FakeBoard(CONFIG, MAP) as board, connect(board) as link:
        board.last_changed = 0                  # an earlier session's last write had sequence number 0
        BoardSession(link, MAP).write_words(TABLES.index, 0, [0x4321])
    assert [(f.cmd, f.seq) for f in board.requests] == [(lp.Command.WRITE, 0), (lp.Command.IDENTIFY, 1),
                                                        (lp.Command.WRITE, 2)]
    assert board.memories[TABLES.index][0] == 0x4321


@pytest.mark.parametrize("status", [lp.Status.BAD_CRC, lp.Status.TIMEOUT])
def test_a_request_the_board_saw_damaged_is_sent_again(status):
    def misbehave(number, request, reply):
        return lp.encode_frame(reply[1], reply[2], bytes([status])) if number == 0 else reply

    with FakeBoard(CONFIG, MAP, misbehave=misbehave) as board, connect(board) as link:
        BoardSession(link, MAP).check_identity()
    assert link.stats.retries == 1


def test_a_refused_frame_stops_with_the_refusal():
    def misbehave(number, request, reply):
        if request.cmd == lp.Command.WRITE:
            return lp.encode_frame(reply[1], reply[2], bytes([lp.Status.BAD_ADDRESS]))
        return reply

    with FakeBoard(CONFIG, MAP, misbehave=misbehave) as board, connect(board) as link:
        session = BoardSession(link, MAP)
        with pytest.raises(BoardRejected, match="WRITE \\(seq 0, 11 payload bytes\\) refused with BAD_ADDRESS"):
            session.write_words(0, 0, [1, 2])


def test_replies_that_never_complete_time_out():
    with FakeBoard(CONFIG, MAP, misbehave=lambda number, request, reply: reply[:len(reply) // 2]) as board, \
            connect(board) as link:
        with pytest.raises(BoardTimeout, match="no good reply to IDENTIFY \\(seq 0\\) in 3 attempts .* "
                                               "no complete reply"):
            BoardSession(link, MAP).identify()


def test_a_board_that_stops_answering():
    with FakeBoard(CONFIG, MAP, misbehave=lambda number, request, reply: reply if number < 3 else b"") as board, \
            connect(board) as link:
        session = BoardSession(link, MAP)
        session.check_identity()
        session.status()
        session.status()
        with pytest.raises(BoardNotAnswering, match="stopped answering: nothing in 3 attempts .* after 3 replies"):
            session.status()


def test_a_port_where_nothing_answers():
    with FakeBoard(CONFIG, MAP, misbehave=lambda number, request, reply: b"") as board, connect(board) as link:
        with pytest.raises(BoardNotAnswering, match="no board answered on .* at 1e\\+06 baud"):
            BoardSession(link, MAP).check_identity()


def test_an_upload_whose_read_back_crc_never_matches():
    def misbehave(number, request, reply):
        if request.cmd == lp.Command.CRC:
            return lp.encode_frame(reply[1], reply[2], bytes([lp.Status.OK]) + lp.CRC_REPLY.pack(0xDEADBEEF))
        return reply

    with FakeBoard(CONFIG, MAP, misbehave=misbehave) as board, connect(board) as link:
        session = BoardSession(link, MAP)
        session.check_identity()
        with pytest.raises(UploadVerifyError, match="memory 'split_dims' reads back with CRC deadbeef, not "
                                                    "[0-9a-f]{8}, after 3 uploads"):
            session.load(board_layer(CONFIG))


# --- replies of the wrong length or shape (in-process port) ---------------------------------

def reframed(reply: bytes, payload: bytes) -> bytes:
    """The reply frame `reply` with another payload, under a good CRC."""
    return lp.encode_frame(reply[1], reply[2], payload)


def payload_of(reply: bytes) -> bytes:
    return reply[1 + lp.HEADER_BYTES:-lp.CRC_BYTES]


def malformed_message(cmd, problems) -> str:
    """MalformedReply's message as a pattern (any sequence number)."""
    return (re.escape(f"board on the fake port: no well-formed reply to {cmd.name} (seq ") + r"\d+"
            + re.escape(f") in 3 attempts ({'; '.join('a reply of ' + p for p in problems)}); is it a bitstream "
                        f"of another nomac (link protocol version 2 here)?") + "$")


@pytest.mark.parametrize("extra", [-1, 1], ids=["short", "long"])
@pytest.mark.parametrize("case", COMMAND_CASES, ids=lambda case: case.id)
def test_replies_of_the_wrong_length_are_retried_then_an_error_naming_both_lengths(case, extra):
    def misbehave(number, request, reply):
        if request.cmd != case.cmd:
            return reply
        payload = payload_of(reply)
        return reframed(reply, payload[:-1] if extra < 0 else payload + b"\x5a")

    board = FakeBoard(CONFIG, MAP, misbehave=misbehave)
    with pytest.raises(MalformedReply) as raised:
        case.call(BoardSession(fake_link(board), MAP), board)
    empty = "an empty payload (no status byte)"
    first = empty if case.data_bytes + extra < 0 else \
        f"OK with {case.data_bytes + extra} data bytes, expected {case.data_bytes}"
    # A state change went through on the first attempt: the board answers its retries DUPLICATE.
    later = first if case.cmd not in lp.STATE_CHANGING else \
        empty if extra < 0 else "DUPLICATE with 1 data bytes, expected 0"
    assert re.match(malformed_message(case.cmd, [first, later, later]), str(raised.value)), str(raised.value)
    sent = [(f.cmd, f.seq) for f in board.requests if f.cmd == case.cmd]
    assert len(sent) == 3 and len(set(sent)) == 1                   # one frame, sent three times


@pytest.mark.parametrize("case", COMMAND_CASES, ids=lambda case: case.id)
def test_a_reply_of_the_wrong_length_is_retried_and_the_second_one_used(case):
    def misbehave(number, request, reply):
        if request.cmd == case.cmd and not damaged:
            damaged.append(number)
            return reframed(reply, payload_of(reply) + b"\x5a")
        return reply

    damaged = []
    result, board, link = call_on_fake_board(case, misbehave)
    assert result == case.expected
    assert link.stats.retries == 1
    sent = [(f.cmd, f.seq) for f in board.requests if f.cmd == case.cmd]
    assert len(sent) == 2 and sent[0] == sent[1]


def test_a_run_whose_reply_is_malformed_is_not_run_again_and_its_cycles_still_count():
    def misbehave(number, request, reply):
        return reframed(reply, payload_of(reply)[:-1]) if number == 1 else reply      # the first RUN reply: no status byte

    board = FakeBoard(CONFIG, MAP, misbehave=misbehave)
    outputs, cycles = BoardSession(fake_link(board), MAP).run(VECTORS)
    assert outputs.tolist() == GOLDEN_OUTPUTS and cycles == 100 * len(VECTORS)     # WAIT's, not RUN's
    assert [(f.cmd, f.seq) for f in board.requests] == [(lp.Command.WRITE_INPUTS, 0), (lp.Command.RUN, 1),
                                                        (lp.Command.RUN, 1), (lp.Command.WAIT, 2),
                                                        (lp.Command.READ_OUTPUTS, 3)]


@pytest.mark.parametrize("payload, problem", [
    (b"", "an empty payload (no status byte)"),
    (bytes([9]), "status 9, which the protocol does not define"),
    (bytes([lp.Status.DUPLICATE]), "DUPLICATE, which only WRITE, WRITE_INPUTS, RUN can get"),
    (bytes([lp.Status.BAD_CRC]) + bytes(21), "BAD_CRC with 21 data bytes, expected 0"),
], ids=["empty", "unknown-status", "duplicate", "data-after-an-error"])
def test_replies_of_the_wrong_shape_are_retried_then_an_error(payload, problem):
    board = FakeBoard(CONFIG, MAP, misbehave=lambda number, request, reply: reframed(reply, payload))
    with pytest.raises(MalformedReply, match=malformed_message(lp.Command.STATUS, [problem] * 3)):
        BoardSession(fake_link(board), MAP).status()
    assert len(board.requests) == 3


def test_a_duplicate_after_attempts_the_board_refused_is_an_older_frame_not_ours():
    def misbehave(number, request, reply):        # the board's first answer, DUPLICATE, arrives as BAD_CRC
        return reframed(reply, bytes([lp.Status.BAD_CRC])) if number == 0 else reply

    board = FakeBoard(CONFIG, MAP, misbehave=misbehave)
    board.last_changed = 0                          # an earlier session's last write had sequence number 0
    BoardSession(fake_link(board), MAP).write_words(TABLES.index, 0, [0x4321])
    assert [(f.cmd, f.seq) for f in board.requests] == [(lp.Command.WRITE, 0), (lp.Command.WRITE, 0),
                                                        (lp.Command.IDENTIFY, 1), (lp.Command.WRITE, 2)]
    assert board.memories[TABLES.index][0] == 0x4321


def test_a_board_that_answers_every_state_change_duplicate_is_refused():
    def misbehave(number, request, reply):
        return reframed(reply, bytes([lp.Status.DUPLICATE])) if request.cmd == lp.Command.WRITE else reply

    board = FakeBoard(CONFIG, MAP, misbehave=misbehave)
    with pytest.raises(BoardRejected, match="^board on the fake port: WRITE answered DUPLICATE to a new sequence "
                                            "number right after IDENTIFY cleared the last one; the board does "
                                            "not follow link protocol version 2$"):
        BoardSession(fake_link(board), MAP).write_words(TABLES.index, 0, [1])
    assert [f.cmd for f in board.requests] == [lp.Command.WRITE, lp.Command.IDENTIFY, lp.Command.WRITE]


def test_outputs_a_board_forges_under_a_good_crc_show_as_mismatches():
    def misbehave(number, request, reply):       # well formed, the right length, all zero
        return reframed(reply, bytes(len(payload_of(reply)))) if request.cmd == lp.Command.READ_OUTPUTS else reply

    report = run_config(CONFIG, fake_link(FakeBoard(CONFIG, MAP, misbehave=misbehave)), MAP, vectors=VECTORS)
    assert report.outputs.tolist() == [[0] * 5] * 2
    assert report.mismatched_vectors == sum(any(row) for row in GOLDEN_OUTPUTS) and not report.passed


def test_cli_errors_are_one_line_naming_the_value(tmp_path, capsys):
    path = save_config(CONFIG, tmp_path / "tiny.json")
    cases = [
        (["run", str(path), "--port", "/dev/nomac-no-such-port"], "serial port '/dev/nomac-no-such-port' does not exist"),
        (["build", str(path), "--board", "de10-nano"], "board 'de10-nano': not supported; choose one of icebreaker, ulx3s-85f"),
        (["run", str(path), "--board", "arty"], "board 'arty': not supported; choose one of icebreaker, ulx3s-85f"),
        (["run", str(path), "--baud", "5000000"],
         "run: baud = 5000000: must be an integer in 184..3000000 for icebreaker's 12 MHz clock"),
        (["run", str(path), "--port", "/dev/x", "--sim"], "--port and --sim: choose one"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("nomac: error: ") and message in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.json", "tiny.npz"]
