"""Link gateware in Amaranth's simulator, against written definitions.

The UART against the 8N1 waveform written out bit by bit, the CRC units against
binascii/zlib, the byte/beat converters against docs/spec.md section 3, the frame decoder
against frames built by link_protocol (the host's side), and the whole board core
answering IDENTIFY, WRITE, READ and CRC with values computed from the config.
"""
import binascii
import random
import zlib

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module, Signal, signed
from amaranth.sim import Simulator

from lut_cases import LutCase
from nomac.boards import link_protocol as lp
from nomac.boards.board_top import BoardCore
from nomac.boards.byte_streams import BeatsToBytes, BytesToBeats
from nomac.boards.link_gateware import CRC, FrameDecoder, SerialCRC, below
from nomac.boards.uart import UARTReceiver, UARTTransmitter


def waveform(data: bytes, divisor: int) -> list[int]:
    """The line level per clock cycle: start bit 0, eight data bits LSB first, stop bit 1."""
    levels = []
    for byte in data:
        for bit in [0, *((byte >> i) & 1 for i in range(8)), 1]:
            levels += [bit] * divisor
    return levels


def run(dut, bench):
    simulator = Simulator(dut)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()


def record_line(dut, line, bench, until: float | None = None) -> list[int]:
    """Run `bench` on `dut` and return the level of the `line` signal at every clock edge
    (until the bench ends, or until `until` seconds)."""
    levels = []

    async def monitor(ctx):
        async for _, _, level in ctx.tick().sample(line):
            levels.append(level)

    simulator = Simulator(dut)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.add_testbench(monitor, background=True)
    if until is None:
        simulator.run()
    else:
        simulator.run_until(until)
    return levels


@pytest.mark.parametrize("divisor", [2, 4, 12])
def test_transmitter_sends_8n1_back_to_back(divisor):
    tx = UARTTransmitter(divisor)
    data = bytes([0x00, 0xA5, 0xFF, 0x3C])
    async def bench(ctx):
        ctx.set(tx.i.valid, 1)
        for byte in data:
            ctx.set(tx.i.payload, byte)
            await ctx.tick().until(tx.i.ready)
        ctx.set(tx.i.valid, 0)

    line = record_line(tx, tx.tx, bench, until=1e-8 * (len(data) * 10 * divisor + 20))
    first = line.index(0)
    assert all(level == 1 for level in line[:first])
    assert line[first:first + len(data) * 10 * divisor] == waveform(data, divisor)
    assert set(line[first + len(data) * 10 * divisor:]) == {1}


@pytest.mark.parametrize("divisor", [2, 3, 4, 12])
def test_receiver_decodes_bytes_rejects_bad_stop_bits_and_glitches(divisor):
    rx = UARTReceiver(divisor)
    data = bytes([0x55, 0x00, 0xFF, 0xA5, 0x81])
    bad = waveform(b"\x42", divisor)
    bad[-divisor:] = [0] * divisor                          # stop bit low: a framing error (a break)
    levels = ([1] * 5 + waveform(data[:3], divisor) + [1] * 7 + [0] + [1] * 30   # a one-cycle glitch
              + bad + [1] * 3 * divisor + waveform(data[3:], divisor) + [1] * 3 * divisor)
    got, errors = [], []

    async def bench(ctx):
        for level in levels:
            ctx.set(rx.rx, level)
            _, _, valid, byte, error = await ctx.tick().sample(rx.o.valid, rx.o.payload, rx.frame_error)
            if valid:
                got.append(byte)
            if error:
                errors.append(len(got))

    run(rx, bench)
    assert bytes(got) == data
    assert errors == [3]


async def clear_crc(ctx, crc, reference):
    """Pulse `clear`; the value is then the CRC of no bytes."""
    ctx.set(crc.clear, 1)
    await ctx.tick()
    ctx.set(crc.clear, 0)
    assert ctx.get(crc.value) == reference(b"")


def test_crc_units_match_binascii_and_zlib():
    rng = random.Random(11)
    data = bytes(rng.randrange(256) for _ in range(40))
    for spec, reference in ((lp.FRAME_CRC, lambda d: binascii.crc_hqx(d, 0xFFFF)), (lp.MEMORY_CRC, zlib.crc32)):
        crc = CRC(spec)

        async def bench(ctx):
            await clear_crc(ctx, crc, reference)
            for n, byte in enumerate(data):
                ctx.set(crc.byte, byte)
                ctx.set(crc.en, 1)
                await ctx.tick()
                assert ctx.get(crc.value) == reference(data[:n + 1])

        run(crc, bench)


def test_below_compares_with_every_constant_bound():
    value = Signal(4)
    bounds = range(-1, 19)
    checks = [below(value, bound) for bound in bounds]

    async def bench(ctx):
        for v in range(16):
            ctx.set(value, v)
            assert [ctx.get(check) for check in checks] == [int(v < bound) for bound in bounds]

    simulator = Simulator(Module())
    simulator.add_testbench(bench)
    simulator.run()


@pytest.mark.parametrize("spec, reference", [(lp.MEMORY_CRC, zlib.crc32),
                                             (lp.FRAME_CRC, lambda d: binascii.crc_hqx(d, 0xFFFF))])
def test_serial_crc_takes_a_byte_per_eight_cycles_and_matches_the_reference(spec, reference):
    rng = random.Random(12)
    data = bytes([0x00, 0xFF, 0x80, 0x01] + [rng.randrange(256) for _ in range(12)])
    crc = SerialCRC(spec)

    async def bench(ctx):
        await clear_crc(ctx, crc, reference)
        for n, byte in enumerate(data):
            ctx.set(crc.i.payload, byte)
            ctx.set(crc.i.valid, 1)
            for cycle in range(8):
                _, _, ready = await ctx.tick().sample(crc.i.ready)
                assert ready == (cycle == 7)
            if n % 3 == 2:                                  # a gap between bytes
                ctx.set(crc.i.valid, 0)
                await ctx.tick().repeat(2)
            assert ctx.get(crc.value) == reference(data[:n + 1])
        ctx.set(crc.i.valid, 0)
        value = reference(data)
        for _ in range(spec.width // 8):                    # `shift` sends the value from its low byte
            assert ctx.get(crc.value) & 0xFF == value & 0xFF
            ctx.set(crc.shift, 1)
            await ctx.tick()
            value >>= 8
        ctx.set(crc.shift, 0)
        await ctx.tick().repeat(3)                          # shifted out whole, it holds 0
        assert ctx.get(crc.value) == 0

    run(crc, bench)


@pytest.mark.parametrize("lanes, expected", [
    (3, [([1, -2, 3], 0), ([-4, 5, 0], 1), ([-128, 127, 0], 0), ([9, -9, 0], 1)]),
    (1, [([value], int(k == 4)) for vector in ([1, -2, 3, -4, 5], [-128, 127, 0, 9, -9])
         for k, value in enumerate(vector)])])
def test_bytes_to_beats_frames_vectors_with_zeroed_unused_lanes(lanes, expected):
    dut = BytesToBeats(elements=5, lanes=lanes)
    vectors = [[1, -2, 3, -4, 5], [-128, 127, 0, 9, -9]]
    beats = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for vector in vectors:
            for value in vector:
                ctx.set(dut.i.payload, value & 0xFF)
                ctx.set(dut.i.valid, 1)
                await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        for _ in range(4):
            await ctx.tick()

    async def monitor(ctx):
        async for _, _, valid, data, last in ctx.tick().sample(dut.o.valid, dut.o.payload.data, dut.o.payload.last):
            if valid:
                beats.append(([int(x) for x in data], last))

    simulator = Simulator(dut)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.add_testbench(monitor, background=True)
    simulator.run_until(1e-6)
    assert beats == expected


@pytest.mark.parametrize("lanes, width, beats, expected", [
    (2, 19, [([-2, 0x20000], 0), ([5, 0], 1)], [0xFE, 0xFF, 0xFF, 0x00, 0x00, 0x02, 0x05, 0x00, 0x00]),
    (1, 8, [([-2], 0), ([127], 0), ([-128], 1)], [0xFE, 0x7F, 0x80])])
def test_beats_to_bytes_sign_extends_wide_elements_and_skips_unused_lanes(lanes, width, beats, expected):
    dut = BeatsToBytes(elements=3, lanes=lanes, element_shape=signed(width))
    got = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for data, last in beats:
            ctx.set(dut.i.payload, {"data": data, "last": last})
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        for _ in range(12):
            await ctx.tick()

    async def monitor(ctx):
        async for _, _, valid, byte in ctx.tick().sample(dut.o.valid, dut.o.payload):
            if valid:
                got.append(byte)

    top = Module()                      # one lane of bytes has no registers, so no domain of its own
    top.domains.sync = ClockDomain()
    top.submodules.dut = dut
    simulator = Simulator(top)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.add_testbench(monitor, background=True)
    simulator.run_until(1e-6)
    assert bytes(got) == bytes(expected)


def test_frame_decoder_statuses_head_and_payload():
    decoder = FrameDecoder(max_payload=16, timeout_cycles=30)
    good = lp.encode_frame(0x04, 7, bytes(range(10, 22)))
    bad_crc = bytearray(lp.encode_frame(0x03, 8, b"\x01\x02"))
    bad_crc[-1] ^= 1
    too_long = lp.encode_frame(0x03, 9, bytes(17))[:5]          # its header only: hunting resumes after it
    truncated = lp.encode_frame(0x05, 10, bytes(9))[:8]
    stream = [*good, *bad_crc, 0x00, *too_long, *good, *truncated]
    frames, writes = [], []

    async def bench(ctx):
        for byte in stream:
            ctx.set(decoder.i.payload, byte)
            ctx.set(decoder.i.valid, 1)
            await ctx.tick()
            ctx.set(decoder.i.valid, 0)
            await ctx.tick().repeat(2)
            if ctx.get(decoder.frame.valid):
                frames.append((ctx.get(decoder.frame.payload.cmd), ctx.get(decoder.frame.payload.seq),
                               ctx.get(decoder.frame.payload.length), ctx.get(decoder.frame.payload.status),
                               [ctx.get(decoder.head[k]) for k in range(9)]))
                ctx.set(decoder.frame.ready, 1)
                await ctx.tick()
                ctx.set(decoder.frame.ready, 0)
        for _ in range(40):
            await ctx.tick()
            if ctx.get(decoder.frame.valid):
                frames.append((ctx.get(decoder.frame.payload.cmd), ctx.get(decoder.frame.payload.seq),
                               ctx.get(decoder.frame.payload.length), ctx.get(decoder.frame.payload.status), None))
                break

    async def buffer(ctx):
        async for _, _, en, addr, data in ctx.tick().sample(decoder.buffer.en, decoder.buffer.addr,
                                                            decoder.buffer.data):
            if en:
                writes.append((addr, data))

    simulator = Simulator(decoder)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.add_testbench(buffer, background=True)
    simulator.run_until(1e-5)
    head = list(range(10, 19))
    assert frames == [(0x04, 7, 12, lp.Status.OK, head),
                      (0x03, 8, 2, lp.Status.BAD_CRC, [1, 2, *head[2:]]),
                      (0x03, 9, 17, lp.Status.BAD_LENGTH, [1, 2, *head[2:]]),
                      (0x04, 7, 12, lp.Status.OK, head),
                      (0x05, 10, 9, lp.Status.TIMEOUT, None)]
    assert writes[:12] == [(k, 10 + k) for k in range(12)]


class CoreHarness:
    """A board core in Amaranth's simulator, talked to over its real rx/tx pins."""

    def __init__(self, core, divisor=4):
        self.core, self.divisor = core, divisor

    def exchange(self, frames: list[bytes], gap: int = 2500) -> list[lp.Frame]:
        core, d = self.core, self.divisor
        received = bytearray()

        async def driver(ctx):
            ctx.set(core.rx, 1)
            await ctx.tick().repeat(10)
            for frame in frames:
                for level in waveform(frame, d):
                    ctx.set(core.rx, level)
                    await ctx.tick()
                await ctx.tick().repeat(gap)

        levels = record_line(core, core.tx, driver)
        position = 0
        while position < len(levels):                        # decode 8N1 from the recorded line
            if levels[position] == 0:
                bits = [levels[position + d // 2 + d * k] for k in range(1, 9)]
                received.append(sum(bit << k for k, bit in enumerate(bits)))
                position += 10 * d - d // 2
            else:
                position += 1
        return lp.FrameReader().feed(bytes(received))


def test_board_core_answers_identify_write_read_and_crc():
    config = LutCase("tree", 4, 5, 2, 4, {"table_reads": 2}).config()
    core = BoardCore(config, clock_hz=12_000_000, divisor=4, timeout_bytes=16, blank=True)
    tables = next(r for r in core.map.regions if r.name == "tables")
    words = tables.words(core.layer.tables)
    assert (tables.depth, tables.word_bits, tables.word_bytes) == (24, 16, 2)
    write = lp.MEMORY_REQUEST.pack(tables.index, 3, 4) + lp.pack_words(words[3:7], 16)
    replies = CoreHarness(core).exchange([
        lp.encode_frame(lp.Command.IDENTIFY, 1),
        lp.encode_frame(lp.Command.WRITE, 2, write),
        lp.encode_frame(lp.Command.READ, 3, lp.MEMORY_REQUEST.pack(tables.index, 2, 6)),
        lp.encode_frame(lp.Command.CRC, 4, lp.MEMORY_REQUEST.pack(tables.index, 3, 4)),
        lp.encode_frame(lp.Command.WRITE, 5, lp.MEMORY_REQUEST.pack(tables.index, 22, 4) + bytes(8)),
        lp.encode_frame(0x3F, 6),
        lp.encode_frame(lp.Command.STATUS, 7),
        lp.encode_frame(lp.Command.READ, 8, lp.MEMORY_REQUEST.pack(tables.index, 0, tables.depth)),
    ])
    assert [(r.cmd, r.seq, r.status) for r in replies] == [
        (0x81, 1, 0), (0x83, 2, 0), (0x84, 3, 0), (0x85, 4, 0), (0x83, 5, lp.Status.BAD_ADDRESS),
        (0xBF, 6, lp.Status.UNKNOWN_COMMAND), (0x82, 7, 0), (0x84, 8, 0)]
    # the frames after the WRITE (other lengths, other commands) wrote nothing
    assert lp.unpack_words(replies[7].data, 16) == [0] * 3 + words[3:7] + [0] * (tables.depth - 7)
    assert lp.Counters.unpack(replies[6].data) == lp.Counters(
        frames_ok=5, bad_crc=0, bad_length=0, unknown_command=1, bad_address=1, timeouts=0, duplicates=0,
        uart_errors=0, overruns=0, garbage_bytes=0, engine_framing_error=False, engine_idle=True)
    identity = lp.Identity.unpack(replies[0].data)
    assert identity.config_id == config.config_id and identity.memories == len(core.map.regions)
    assert lp.unpack_words(replies[2].data, 16) == [0, *words[3:7], 0]     # blank memory around the write
    assert lp.CRC_REPLY.unpack(replies[3].data)[0] == zlib.crc32(lp.pack_words(words[3:7], 16))
    assert np.all(np.asarray(words[3:7]) != 0)
