"""One host call per link command on a small `lut` board, with what it must return.

The host tests (test_host_errors.py, test_host_reply_fuzz.py) make the fake board
(fake_board.py) answer each command badly and check that the call either returns
its `expected` result or raises a NomacError. Reply sizes and results come from
the spec's command table (docs/spec.md, "Board link") and from zlib and the golden
model, not from the host code.
"""
import struct
import zlib
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from fake_board import FakeBoard, FakePort
from lut_cases import LutCase
from nomac.boards import link_protocol as lp
from nomac.boards.board_map import board_map
from nomac.boards.host import BoardConnection, BoardSession
from nomac.boards.link_protocol import Command
from nomac.model.golden import run_golden

CONFIG = LutCase("tree", 4, 5, 2, 4, {"table_reads": 2}).config()
MAP = board_map(CONFIG, clock_hz=12_000_000, divisor=12)
TABLES = next(r for r in MAP.regions if r.name == "tables")      # 24 words of 16 bits: 2 bytes on the link
TABLE_WORDS = list(range(1000, 1024))
VECTORS = np.array([[-128, 127, -128, 127], [127, -128, 127, -128]], np.int8)     # different outputs
GOLDEN_OUTPUTS = run_golden(CONFIG, VECTORS).tolist()          # 2 vectors of 5 int8 outputs
QUIET_COUNTERS = lp.Counters(0, *([0] * 9), engine_framing_error=False, engine_idle=True)


def fake_link(board: FakeBoard, timeout: float = 0.005, retries: int = 2) -> BoardConnection:
    """The host's connection to `board` through the in-process port (no pty, no thread)."""
    return BoardConnection(FakePort(board), port_name="the fake port", baud=1_000_000, timeout=timeout,
                           retries=retries)


def _identify(session, board):
    return session.check_identity()


def _status(session, board):
    return replace(session.status(), frames_ok=0)       # frames_ok counts the fake's requests, retries too


def _write(session, board):
    session.write_words(TABLES.index, 2, [0x1234, 0x5678])
    return board.memories[TABLES.index][:5]


def _read(session, board):
    board.memories[TABLES.index] = list(TABLE_WORDS)
    return session.read_words(TABLES.index, 1, 3)


def _crc(session, board):
    board.memories[TABLES.index] = list(TABLE_WORDS)
    return session.memory_crc(TABLES.index)


def _run(session, board):
    return session.run(VECTORS)[0].tolist()


@dataclass(frozen=True)
class CommandCase:
    cmd: Command
    data_bytes: int                     # its OK reply's data here, by the spec's command table
    call: Callable                      # call(session, board) -> result; sends `cmd` (among others)
    expected: object

    @property
    def id(self) -> str:
        return self.cmd.name


COMMAND_CASES = [
    CommandCase(Command.IDENTIFY, 24, _identify, MAP.identity()),     # 1 + 8 + 2 + 2 + 1 + 2 + 2 + 4 + 2
    CommandCase(Command.STATUS, 21, _status, QUIET_COUNTERS),         # 10 counters u16, flags u8
    CommandCase(Command.WRITE, 0, _write, [0, 0, 0x1234, 0x5678, 0]),
    CommandCase(Command.READ, 6, _read, TABLE_WORDS[1:4]),            # 3 words of 2 bytes
    CommandCase(Command.CRC, 4, _crc, zlib.crc32(struct.pack("<24H", *TABLE_WORDS))),
    CommandCase(Command.WRITE_INPUTS, 0, _run, GOLDEN_OUTPUTS),
    CommandCase(Command.RUN, 0, _run, GOLDEN_OUTPUTS),
    CommandCase(Command.READ_OUTPUTS, 10, _run, GOLDEN_OUTPUTS),      # 2 vectors of 5 one-byte outputs
    CommandCase(Command.WAIT, 4, _run, GOLDEN_OUTPUTS),
]


def call_on_fake_board(case: CommandCase, misbehave, **link_options):
    """case.call on a fresh fake board answering through `misbehave`; (result, board, link)."""
    board = FakeBoard(CONFIG, MAP, misbehave=misbehave)
    link = fake_link(board, **link_options)
    return case.call(BoardSession(link, MAP), board), board, link
