# amaranth: UnusedElaboratable=no
"""The board's command handler (boards/command_handler.py) on Amaranth's simulator: its checks.

docs/spec.md section 14.4 lists the checks in order; the first that fails gives the
reply's status: (1) the frame's own status from the decoder, (2) an unknown command,
(3) the command's length, address and count rules, (4) exactly once (DUPLICATE). The
testbench plays the frame decoder (a frame and its head bytes), the frame encoder
(takes the reply and its data bytes, then releases the frame) and an idle engine.
Each check is tested alone (a frame failing only it), then frames failing two
checks, where the first one's status must win. Statuses, reply lengths and the
IDENTIFY and STATUS bytes come from the spec's tables (sections 14.4, 14.5, 14.7).
Last, a run in the background, with the testbench as the engine: which frames wait
for it (section 14.5).
"""
import struct
from dataclasses import dataclass
from functools import cache

import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from lut_cases import LutCase
from nomac.boards.board_map import board_layer, board_map
from nomac.boards.command_handler import CommandHandler
from nomac.boards.event_counters import EventCounters
from nomac.boards.link_gateware import HEAD_BYTES
from nomac.boards.link_protocol import Command, Status
from nomac.hw.engine_kinds import build_engine

# A small `lut` board: 5 RAM memories, `tables` (index 3) 24 words of 16 bits (2 bytes on the link).
# max_payload 25 is the least it allows (the IDENTIFY reply), so the payload limits of
# READ and READ_OUTPUTS can be reached: batch = (25 - 2) // D = 5 vectors.
CONFIG = LutCase("tree", 4, 5, 2, 4, {"table_reads": 2}).config()
BOARD = board_map(CONFIG, clock_hz=12_000_000, divisor=12, max_payload=25)
TABLES = next(region for region in BOARD.regions if region.name == "tables")
MEMORIES = len(BOARD.regions)
D, O, BATCH = BOARD.in_vector_bytes, BOARD.out_vector_bytes, BOARD.batch
WORD = TABLES.word_bytes
ALL_MEMORIES = 255
IDENTIFY_BYTES, STATUS_BYTES, CRC_BYTES, WAIT_BYTES = 24, 21, 4, 4

assert (MEMORIES, TABLES.index, TABLES.depth, WORD, D, O, BATCH) == (5, 3, 24, 2, 4, 5, 5)


@cache
def engine_signature():
    """The board engine's signature (the engine is elaborated once, only to be complete)."""
    engine = build_engine(board_layer(CONFIG))
    Fragment.get(engine, None)
    return engine.signature


@dataclass(frozen=True)
class Frame:
    """A decoded frame as the decoder offers it: cmd, seq, length, its status, the head bytes."""
    cmd: int
    length: int
    head: bytes = b""
    seq: int = 1
    status: int = Status.OK


@dataclass(frozen=True)
class Reply:
    cmd: int
    seq: int
    status: int
    data: bytes
    executed: int                # pulses of `executed` / `rejected` while the frame was handled
    rejected: int
    cycle: int                   # when the reply was offered


def memory_request(cmd, length: int, memory: int, addr: int, count: int, **frame) -> Frame:
    return Frame(cmd, length, struct.pack("<BII", memory, addr, count), **frame)


def count_request(cmd, length: int, count: int, **frame) -> Frame:
    return Frame(cmd, length, struct.pack("<H", count), **frame)


def run_request(length: int, count: int, slot: int = 0, **frame) -> Frame:
    return Frame(Command.RUN, length, struct.pack("<HB", count, slot), **frame)


def outputs_request(length: int, first: int, count: int, slot: int = 0, **frame) -> Frame:
    return Frame(Command.READ_OUTPUTS, length, struct.pack("<HHB", first, count, slot), **frame)


def exchange(frames, engine=None, wait: int = 1000) -> list[Reply]:
    """The handler's reply to each frame in turn (the first `wait` cycles of each); `engine`
    (an async testbench of ctx and the handler) plays the engine's streams."""
    dut = CommandHandler(BOARD, engine_signature())
    replies = []
    now = [0]

    async def clock(ctx):
        while True:
            await ctx.tick()
            now[0] += 1

    async def testbench(ctx):
        ctx.set(dut.engine.idle, 1)
        for frame in frames:
            ctx.set(dut.head, list(frame.head.ljust(HEAD_BYTES, b"\0")))
            ctx.set(dut.head_zero, sum(1 << k for k, byte in enumerate(frame.head.ljust(HEAD_BYTES, b"\0"))
                                       if byte == 0))
            ctx.set(dut.frame.payload, {"cmd": frame.cmd, "seq": frame.seq, "length": frame.length,
                                        "status": frame.status})
            ctx.set(dut.frame.valid, 1)
            executed = rejected = 0
            for _ in range(wait):
                _, _, valid, header, pulse_ok, pulse_error = await ctx.tick().sample(
                    dut.reply.valid, dut.reply.payload, dut.executed, dut.rejected)
                executed, rejected = executed + pulse_ok, rejected + pulse_error
                if valid:
                    break
            else:
                raise AssertionError(f"no reply to {frame}")
            data = []
            ctx.set(dut.data.ready, 1)
            for _ in range(1000):
                if len(data) == header.length:
                    break
                _, _, valid, byte = await ctx.tick().sample(dut.data.valid, dut.data.payload)
                data += [byte] if valid else []
            ctx.set(dut.data.ready, 0)
            ctx.set(dut.reply.ready, 1)
            _, _, released = await ctx.tick().sample(dut.frame.ready)
            assert released, f"{frame} not released with its reply"
            ctx.set(dut.reply.ready, 0)
            ctx.set(dut.frame.valid, 0)
            replies.append(Reply(header.cmd, header.seq, header.status, bytes(data), executed, rejected, now[0]))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.add_testbench(clock, background=True)
    if engine is not None:
        async def play_engine(ctx):
            await engine(ctx, dut, now)
        sim.add_testbench(play_engine, background=True)
    sim.run()
    return replies


# (frame, status, reply data bytes): each frame fails at most the one check it names.
ALONE = {
    # 1. the frame, as the decoder judged it
    "bad crc": (Frame(Command.IDENTIFY, 0, status=Status.BAD_CRC), Status.BAD_CRC, 0),
    "too long": (Frame(Command.IDENTIFY, 0, status=Status.BAD_LENGTH), Status.BAD_LENGTH, 0),
    "timeout": (Frame(Command.IDENTIFY, 0, status=Status.TIMEOUT), Status.TIMEOUT, 0),
    # 2. the command
    "cmd 0x00": (Frame(0x00, 0), Status.UNKNOWN_COMMAND, 0),
    "cmd 0x0a": (Frame(0x0A, 0), Status.UNKNOWN_COMMAND, 0),
    "cmd 0x81": (Frame(0x81, 0), Status.UNKNOWN_COMMAND, 0),
    # 3. per command
    "identify": (Frame(Command.IDENTIFY, 0), Status.OK, IDENTIFY_BYTES),
    "identify length": (Frame(Command.IDENTIFY, 1), Status.BAD_LENGTH, 0),
    "status": (Frame(Command.STATUS, 0), Status.OK, STATUS_BYTES),
    "status length": (Frame(Command.STATUS, 2), Status.BAD_LENGTH, 0),
    "wait": (Frame(Command.WAIT, 0), Status.OK, WAIT_BYTES),
    "wait length": (Frame(Command.WAIT, 1), Status.BAD_LENGTH, 0),
    "write": (memory_request(Command.WRITE, 9 + 3 * WORD, TABLES.index, 21, 3), Status.OK, 0),
    "write short": (memory_request(Command.WRITE, 8, TABLES.index, 0, 0), Status.BAD_LENGTH, 0),
    "write memory": (memory_request(Command.WRITE, 9 + WORD, MEMORIES, 0, 1), Status.BAD_ADDRESS, 0),
    "write range": (memory_request(Command.WRITE, 9 + 2 * WORD, TABLES.index, 23, 2), Status.BAD_ADDRESS, 0),
    "write high addr": (memory_request(Command.WRITE, 9 + WORD, TABLES.index, 1 << 31, 1), Status.BAD_ADDRESS, 0),
    "write no words": (memory_request(Command.WRITE, 9, TABLES.index, 0, 0), Status.BAD_LENGTH, 0),
    "write count": (memory_request(Command.WRITE, 9 + 2 * WORD + 1, TABLES.index, 0, 2), Status.BAD_LENGTH, 0),
    "read": (memory_request(Command.READ, 9, TABLES.index, 12, 12), Status.OK, 12 * WORD),
    "read length": (memory_request(Command.READ, 10, TABLES.index, 0, 1), Status.BAD_LENGTH, 0),
    "read memory": (memory_request(Command.READ, 9, MEMORIES, 0, 1), Status.BAD_ADDRESS, 0),
    "read range": (memory_request(Command.READ, 9, TABLES.index, 20, 5), Status.BAD_ADDRESS, 0),
    "read no words": (memory_request(Command.READ, 9, TABLES.index, 0, 0), Status.BAD_LENGTH, 0),
    "read payload": (memory_request(Command.READ, 9, TABLES.index, 0, 13), Status.BAD_LENGTH, 0),
    "crc": (memory_request(Command.CRC, 9, TABLES.index, 0, 24), Status.OK, CRC_BYTES),
    "crc all": (memory_request(Command.CRC, 9, ALL_MEMORIES, 0, 0), Status.OK, CRC_BYTES),
    "crc length": (memory_request(Command.CRC, 8, TABLES.index, 0, 1), Status.BAD_LENGTH, 0),
    "crc all addr": (memory_request(Command.CRC, 9, ALL_MEMORIES, 1, 0), Status.BAD_ADDRESS, 0),
    "crc all count": (memory_request(Command.CRC, 9, ALL_MEMORIES, 0, 1), Status.BAD_ADDRESS, 0),
    "crc memory": (memory_request(Command.CRC, 9, MEMORIES, 0, 1), Status.BAD_ADDRESS, 0),
    "crc range": (memory_request(Command.CRC, 9, TABLES.index, 0, 25), Status.BAD_ADDRESS, 0),
    "crc no words": (memory_request(Command.CRC, 9, TABLES.index, 3, 0), Status.BAD_LENGTH, 0),
    "write inputs": (count_request(Command.WRITE_INPUTS, 2 + 2 * D, 2), Status.OK, 0),
    "write inputs short": (Frame(Command.WRITE_INPUTS, 1, b"\x01"), Status.BAD_LENGTH, 0),
    "write inputs none": (count_request(Command.WRITE_INPUTS, 2, 0), Status.BAD_LENGTH, 0),
    "write inputs count": (count_request(Command.WRITE_INPUTS, 2 + 2 * D - 1, 2), Status.BAD_LENGTH, 0),
    "run": (run_request(3, BATCH, 1), Status.OK, 0),
    "run length": (run_request(2, 1), Status.BAD_LENGTH, 0),
    "run none": (run_request(3, 0), Status.BAD_ADDRESS, 0),
    "run batch": (run_request(3, BATCH + 1), Status.BAD_ADDRESS, 0),
    "run slot": (run_request(3, 1, 2), Status.BAD_ADDRESS, 0),
    "read outputs": (outputs_request(5, 1, 4), Status.OK, 4 * O),
    "read outputs slot 1": (outputs_request(5, 0, 4, 1), Status.OK, 4 * O),
    "read outputs length": (outputs_request(4, 0, 1), Status.BAD_LENGTH, 0),
    "read outputs none": (outputs_request(5, 1, 0), Status.BAD_ADDRESS, 0),
    "read outputs range": (outputs_request(5, 3, 3), Status.BAD_ADDRESS, 0),
    "read outputs slot": (outputs_request(5, 0, 1, 2), Status.BAD_ADDRESS, 0),
    "read outputs payload": (outputs_request(5, 0, 5), Status.BAD_LENGTH, 0),
}

# Frames failing two checks: the first in the documented order gives the status.
FIRST_WINS = {
    "frame before command": (Frame(0x42, 0, status=Status.BAD_CRC), Status.BAD_CRC),
    "frame before length": (Frame(Command.STATUS, 3, status=Status.TIMEOUT), Status.TIMEOUT),
    "command before length": (Frame(0x0A, 7), Status.UNKNOWN_COMMAND),
    "write length before address": (memory_request(Command.WRITE, 8, MEMORIES, 0, 1), Status.BAD_LENGTH),
    "write address before count": (memory_request(Command.WRITE, 9, MEMORIES, 0, 0), Status.BAD_ADDRESS),
    "write range before length": (memory_request(Command.WRITE, 10, TABLES.index, 24, 1), Status.BAD_ADDRESS),
    "read length before address": (memory_request(Command.READ, 10, MEMORIES, 0, 1), Status.BAD_LENGTH),
    "read address before payload": (memory_request(Command.READ, 9, TABLES.index, 12, 13), Status.BAD_ADDRESS),
    "crc length before all": (memory_request(Command.CRC, 10, ALL_MEMORIES, 1, 0), Status.BAD_LENGTH),
    "crc address before count": (memory_request(Command.CRC, 9, MEMORIES, 0, 0), Status.BAD_ADDRESS),
    "run length before count": (run_request(2, 0), Status.BAD_LENGTH),
    "read outputs length before range": (outputs_request(4, 0, 0), Status.BAD_LENGTH),
    "read outputs range before payload": (outputs_request(5, 1, 5), Status.BAD_ADDRESS),
}


@pytest.mark.parametrize("frame, status, data_bytes", ALONE.values(), ids=ALONE.keys())
def test_each_check_alone(frame, status, data_bytes):
    [reply] = exchange([frame])
    assert (reply.cmd, reply.seq, reply.status, len(reply.data)) == (frame.cmd, frame.seq, status, data_bytes)
    assert (reply.executed, reply.rejected) == ((1, 0) if status == Status.OK else (0, 1))


@pytest.mark.parametrize("frame, status", FIRST_WINS.values(), ids=FIRST_WINS.keys())
def test_the_first_failing_check_gives_the_status(frame, status):
    [reply] = exchange([frame])
    assert (reply.status, reply.data) == (status, b"")


def test_exactly_once():
    """4. A WRITE, WRITE_INPUTS or RUN that passed the checks and carries the seq of the last
    such frame executed (since reset or the last IDENTIFY) is answered DUPLICATE."""
    write = memory_request(Command.WRITE, 9 + WORD, TABLES.index, 0, 1, seq=7)
    frames_and_statuses = [
        (write, Status.OK),
        (write, Status.DUPLICATE),                                            # the retry
        (count_request(Command.WRITE_INPUTS, 2 + D, 1, seq=7), Status.DUPLICATE),
        (run_request(3, 0, seq=7), Status.BAD_ADDRESS),                       # the checks come first
        (Frame(Command.STATUS, 0, seq=7), Status.OK),                         # not state-changing
        (memory_request(Command.WRITE, 9 + WORD, TABLES.index, 0, 1, seq=7, status=Status.BAD_CRC), Status.BAD_CRC),
        (memory_request(Command.WRITE, 9 + WORD, TABLES.index, 1, 1, seq=8), Status.OK),
        (write, Status.OK),                                                   # 7 is no longer the last
        (Frame(Command.IDENTIFY, 0, seq=9), Status.OK),                       # forgets the last seq
        (write, Status.OK),
    ]
    replies = exchange([frame for frame, _ in frames_and_statuses])
    assert [reply.status for reply in replies] == [status for _, status in frames_and_statuses]
    assert [reply.seq for reply in replies] == [frame.seq for frame, _ in frames_and_statuses]
    assert [(reply.executed, reply.rejected) for reply in replies] == \
        [(1, 0) if status == Status.OK else (0, 1) for _, status in frames_and_statuses]


def test_a_run_goes_on_in_the_background():
    """RUN replies at once and the engine runs on: STATUS, IDENTIFY and READ_OUTPUTS of the
    other slot are answered meanwhile; READ_OUTPUTS of the run's slot, WAIT and WRITE_INPUTS
    only once its last output byte is stored. WAIT gives the run's cycles (asked twice, the
    same), the run's slot its outputs (the testbench's engine takes 2 inputs and, 300
    cycles later, gives 2 outputs)."""
    signature = engine_signature()
    lanes, elements = signature.out_lanes, BOARD.out_elements
    assert O == elements                                         # one byte an output element
    outputs = [[(37 * v + 11 * e) % 256 - 128 for e in range(elements)] for v in range(2)]
    finished = []

    async def engine(ctx, dut, now):
        ctx.set(dut.engine.i.ready, 1)
        beats = 0
        while beats < 2 * -(-D // signature.in_lanes):
            _, _, valid = await ctx.tick().sample(dut.engine.i.valid)
            beats += valid
        ctx.set(dut.engine.i.ready, 0)
        await ctx.tick().repeat(300)
        for vector in outputs:
            for first in range(0, elements, lanes):
                chunk = vector[first:first + lanes]
                ctx.set(dut.engine.o.payload, {"data": chunk + [0] * (lanes - len(chunk)),
                                               "last": first + lanes >= elements})
                ctx.set(dut.engine.o.valid, 1)
                await ctx.tick().until(dut.engine.o.ready)
        ctx.set(dut.engine.o.valid, 0)
        finished.append(now[0])

    frames = [count_request(Command.WRITE_INPUTS, 2 + 2 * D, 2, seq=1), run_request(3, 2, 0, seq=2),
              Frame(Command.STATUS, 0), Frame(Command.IDENTIFY, 0, seq=3), outputs_request(5, 0, 2, 1),
              outputs_request(5, 0, 2, 0), Frame(Command.WAIT, 0), Frame(Command.WAIT, 0),
              count_request(Command.WRITE_INPUTS, 2 + D, 1, seq=4)]
    replies = exchange(frames, engine, wait=2000)
    assert [r.status for r in replies] == [Status.OK] * len(frames)
    [done] = finished
    run = replies[1]
    assert all(r.cycle < done for r in replies[1:5])                 # RUN, STATUS, IDENTIFY, the other slot
    assert all(r.cycle > done for r in replies[5:])                  # the run's slot, WAIT, WRITE_INPUTS
    assert replies[5].data == bytes(v & 0xFF for vector in outputs for v in vector)
    (cycles,) = struct.unpack("<I", replies[6].data)
    assert replies[7].data == replies[6].data
    # From RUN's dispatch (before its reply) to the last byte stored (after the engine's last beat).
    assert done - run.cycle < cycles < replies[5].cycle - run.cycle + 3, (cycles, done, run.cycle)


def test_identify_and_status_replies():
    """IDENTIFY: version 2, config_id, max_payload, batch, memories, D, O bytes, clock, divisor
    (section 14.5). STATUS: ten u16 counters, the first seven counting replies by status and
    counting the STATUS reply itself, then the flags (bit 0 framing_error, bit 1 idle)."""
    frames = [Frame(Command.IDENTIFY, 0), Frame(0x55, 0), Frame(Command.READ, 1),
              memory_request(Command.READ, 9, MEMORIES, 0, 1), Frame(Command.STATUS, 0)]
    replies = exchange(frames)
    assert replies[0].data == struct.pack("<B8sHHBHHIH", 2, bytes.fromhex(CONFIG.config_id), 25, BATCH, MEMORIES,
                                          D, O, 12_000_000, 12)
    frames_ok, bad_crc, bad_length, unknown, bad_address, timeouts, duplicates = 2, 0, 1, 1, 1, 0, 0
    assert replies[-1].data == struct.pack("<10HB", frames_ok, bad_crc, bad_length, unknown, bad_address, timeouts,
                                           duplicates, 0, 0, 0, 0b10)


def test_the_engine_must_have_the_boards_memories():
    rom_engine = build_engine(CONFIG.layers[0])
    Fragment.get(rom_engine, None)
    with pytest.raises(ValueError, match=r"the engine's RAM memories \[\] are not the board's regions"):
        CommandHandler(BOARD, rom_engine.signature)


def test_event_counters_saturate_at_their_width_and_keep_their_constants():
    """Events raised from both sources, more than a 3-bit counter holds: each counter stops at 7;
    the constants after the counters read back unchanged."""
    counters = EventCounters(2, 3, constants=[5, 6], sources=2)

    async def read(ctx, index):
        ctx.set(counters.read_en, 1)
        ctx.set(counters.read_index, index)
        await ctx.tick().until(counters.read_valid)
        value = ctx.get(counters.read_value)
        ctx.set(counters.read_en, 0)
        return value

    async def bench(ctx):
        await ctx.tick().until(counters.ready)
        for n in range(10):
            ctx.set(counters.event0.valid, 1)
            ctx.set(counters.event0.index, 0)
            ctx.set(counters.event1.valid, n < 6)
            ctx.set(counters.event1.index, 1)
            await ctx.tick()
            ctx.set(counters.event0.valid, 0)
            ctx.set(counters.event1.valid, 0)
            await ctx.tick().repeat(5)
            assert [await read(ctx, k) for k in range(4)] == [min(n + 1, 7), min(n + 1, 6), 5, 6]

    simulator = Simulator(counters)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
