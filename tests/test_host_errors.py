"""The host driver (boards/host.py) on every error path, against a Python board behind a pty.

Each test makes the fake board (tests/fake_board.py) misbehave in one way and checks
that the host retries what a retry can fix, and otherwise stops with the error
that names the problem: no such port, a bitstream for another config or other
options, replies that never complete, a board that stops answering, refusals, and
read-back CRCs that never match.
"""
import pytest

from fake_board import FakeBoard
from lut_cases import LutCase
from nomac.boards import link_protocol as lp
from nomac.boards.board_map import board_layer, board_map
from nomac.boards.host import (BoardConnection, BoardNotAnswering, BoardRejected, BoardSession, BoardTimeout,
                               NoSuchPort, UploadVerifyError, WrongBitstream, run_config)
from nomac.cli import main
from nomac.model.config import save_config

CONFIG = LutCase("tree", 4, 5, 2, 4, {"table_reads": 2}).config()
MAP = board_map(CONFIG, clock_hz=12_000_000, divisor=12)


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

    tables = next(r for r in MAP.regions if r.name == "tables")
    with FakeBoard(CONFIG, MAP, misbehave=misbehave) as board, connect(board) as link:
        session = BoardSession(link, MAP)
        session.check_identity()
        session.write_words(tables.index, 2, [0x1234, 0x5678])
        assert session.read_words(tables.index, 1, 4) == [0, 0x1234, 0x5678, 0]
    assert link.stats.retries == 1
    assert [(f.cmd, f.seq) for f in board.requests[1:3]] == [(lp.Command.WRITE, 1)] * 2   # same seq resent


def test_a_duplicate_to_a_first_attempt_is_cleared_and_the_frame_sent_again():
    tables = next(r for r in MAP.regions if r.name == "tables")
    with FakeBoard(CONFIG, MAP) as board, connect(board) as link:
        board.last_changed = 0                  # an earlier session's last write had sequence number 0
        BoardSession(link, MAP).write_words(tables.index, 0, [0x4321])
    assert [(f.cmd, f.seq) for f in board.requests] == [(lp.Command.WRITE, 0), (lp.Command.IDENTIFY, 1),
                                                        (lp.Command.WRITE, 2)]
    assert board.memories[tables.index][0] == 0x4321


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


def test_cli_errors_are_one_line_naming_the_value(tmp_path, capsys):
    path = save_config(CONFIG, tmp_path / "tiny.json")
    cases = [
        (["run", str(path), "--port", "/dev/nomac-no-such-port"], "serial port '/dev/nomac-no-such-port' does not exist"),
        (["build", str(path), "--board", "de10-nano"], "board 'de10-nano': not supported; choose one of icebreaker, ulx3s-85f"),
        (["run", str(path), "--board", "arty"], "board 'arty': not supported; choose one of icebreaker, ulx3s-85f"),
        (["run", str(path), "--baud", "5000000"], "baud = 5000000: icebreaker's 12 MHz clock cannot make it"),
        (["run", str(path), "--port", "/dev/x", "--sim"], "--port and --sim: choose one"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("nomac: error: ") and message in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.json", "tiny.npz"]
