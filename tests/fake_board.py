"""A board written in Python, to drive the host driver into its error paths.

It speaks the link protocol from nomac.boards.link_protocol (IDENTIFY, STATUS, WRITE,
READ, CRC, WRITE_INPUTS, RUN with the golden model into an output slot, READ_OUTPUTS,
WAIT; a run is done at once, in 100 cycles a vector) and lets a test
decide, reply by reply, what really goes back on the wire: `misbehave(number,
request, reply)` returns the bytes to send (the reply itself, something damaged,
or b"" for silence). `with FakeBoard(...) as board` serves it behind a
pseudo-terminal (`board.port`), for the host's own serial port code; `FakePort(board)`
is an in-process stand-in for that port, without a pty or a thread, so that a fuzz
case takes milliseconds.
"""
import os
import select
import threading
import time
import tty

import numpy as np

from nomac.boards import link_protocol as lp
from nomac.boards.link_protocol import Command, Status
from nomac.model.golden import run_golden


class FakeBoard:
    def __init__(self, config, board_map, *, identity=None, misbehave=None):
        self.config, self.map = config, board_map
        self.identity = identity or board_map.identity()
        self.misbehave = misbehave or (lambda number, request, reply: reply)
        self.memories = {r.index: [0] * r.depth for r in board_map.regions}
        self.inputs = np.zeros((board_map.batch, board_map.in_elements), np.int8)
        self.outputs = [b""] * lp.OUTPUT_SLOTS
        self.cycles = 0
        self.requests = []
        self.last_changed = None
        self.reader = lp.FrameReader(max_length=board_map.max_payload)

    def __enter__(self):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = os.ttyname(self.slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
        os.close(self.master)
        os.close(self.slave)

    def _serve(self):
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.02)
            if ready:
                sent = self.receive(os.read(self.master, 4096))
                if sent:
                    os.write(self.master, sent)

    def receive(self, data: bytes) -> bytes:
        """The bytes that go back on the wire for `data` from the host."""
        sent = b""
        for frame in self.reader.feed(data):
            self.requests.append(frame)
            reply = lp.encode_frame(frame.cmd | lp.REPLY, frame.seq, self.execute(frame))
            sent += self.misbehave(len(self.requests) - 1, frame, reply)
        return sent

    def execute(self, frame) -> bytes:
        """The reply payload (status, then data) of a well-formed request."""
        cmd, payload = frame.cmd, frame.payload
        if cmd in lp.STATE_CHANGING and frame.seq == self.last_changed:
            return bytes([Status.DUPLICATE])
        if cmd == Command.IDENTIFY:
            self.last_changed = None
            return bytes([Status.OK]) + self.identity.pack()
        if cmd == Command.STATUS:
            counters = lp.Counters(len(self.requests), *([0] * 9), engine_framing_error=False, engine_idle=True)
            return bytes([Status.OK]) + counters.pack()
        if cmd in (Command.WRITE, Command.READ, Command.CRC):
            index, first, count = lp.MEMORY_REQUEST.unpack_from(payload)
            if cmd == Command.CRC and index == lp.ALL_MEMORIES:
                data = b"".join(lp.pack_words(self.memories[r.index], r.word_bits) for r in self.map.regions)
                return bytes([Status.OK]) + lp.CRC_REPLY.pack(lp.memory_crc(data))
            if index >= len(self.map.regions) or first + count > self.map.regions[index].depth:
                return bytes([Status.BAD_ADDRESS])
            region = self.map.regions[index]
            if cmd == Command.WRITE:
                self.memories[index][first:first + count] = lp.unpack_words(payload[lp.MEMORY_REQUEST.size:],
                                                                            region.word_bits)
                self.last_changed = frame.seq
                return bytes([Status.OK])
            data = lp.pack_words(self.memories[index][first:first + count], region.word_bits)
            return bytes([Status.OK]) + (data if cmd == Command.READ else lp.CRC_REPLY.pack(lp.memory_crc(data)))
        if cmd == Command.WRITE_INPUTS:
            (count,) = lp.COUNT_REQUEST.unpack_from(payload)
            self.inputs[:count] = np.frombuffer(payload[2:], np.int8).reshape(count, -1)
            self.last_changed = frame.seq
            return bytes([Status.OK])
        if cmd == Command.RUN:
            count, slot = lp.RUN_REQUEST.unpack_from(payload)
            outputs = run_golden(self.config, self.inputs[:count], self.map.layer)
            size = lp.element_bytes(self.map.out_bits)
            self.outputs[slot] = b"".join(int(v).to_bytes(size, "little", signed=True) for v in outputs.ravel())
            self.cycles = 100 * count
            self.last_changed = frame.seq
            return bytes([Status.OK])
        if cmd == Command.READ_OUTPUTS:
            first, count, slot = lp.OUTPUTS_REQUEST.unpack_from(payload)
            size = self.map.out_vector_bytes
            return bytes([Status.OK]) + self.outputs[slot][first * size:(first + count) * size]
        if cmd == Command.WAIT:
            return bytes([Status.OK]) + lp.WAIT_REPLY.pack(self.cycles)
        return bytes([Status.UNKNOWN_COMMAND])


class FakePort:
    """pyserial's read / write / flush / in_waiting / timeout, answered by a FakeBoard in process.

    A reply is there as soon as its request is written; `read` with nothing to read waits
    out `timeout`, as a serial port does, so silence costs the host its real timeout.
    """

    def __init__(self, board: FakeBoard):
        self.board = board
        self.port = "the fake port"
        self.timeout = 0.05
        self.pending = bytearray()

    @property
    def in_waiting(self) -> int:
        return len(self.pending)

    def write(self, data: bytes):
        self.pending += self.board.receive(bytes(data))

    def flush(self):
        pass

    def read(self, size: int = 1) -> bytes:
        if not self.pending:
            time.sleep(self.timeout)
            return b""
        chunk = bytes(self.pending[:size])
        del self.pending[:size]
        return chunk

    def close(self):
        pass
