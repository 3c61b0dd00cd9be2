"""The simulated board: the board core under cocotb, its UART bridged to a pseudo-terminal.

The bench opens a pseudo-terminal (os.openpty), publishes the terminal's path, and
moves bytes between it and the design, so a host program that opens the path with
pyserial (the unmodified host driver, or a test sending raw frames) talks to the
gateware exactly as to a board on /dev/ttyUSB1. The design is the board core
wrapped in `SimulatedBoardTop` (sim/simulated_board.py): a second UART pair in
simulation-only gateware plays the part of the board's FTDI chip, so the core's
`rx`/`tx` pins carry real 8N1 bits (only the bit time is short, a few cycles) while
this Python code handles whole bytes: `host_tx` takes a byte to send, `host_rx`
pulses with each byte received.

Simulated time stops while the board is quiet: when no frame is inside the design
and no bit is on either wire (`busy` low) and the host has sent nothing, the bench
waits for the host in select() without advancing the clock. A busy design runs on
without host bytes, so the link's own timeouts fire in simulated time.

The plan (JSON, path in NOMAC_BOARD_PLAN) gives the divisor, where to publish the
port, the file whose appearance ends the session, a wall-clock limit, and where to
write the report: every request and reply frame seen on the wires with the cycles
its first byte started and its last byte ended (to within the receiver's few
cycles of synchronizer delay), for throughput figures.
"""
import json
import os
import select
import time
import tty
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, FallingEdge, First, ReadOnly, RisingEdge, Timer

from nomac.boards.link_protocol import FRAME_OVERHEAD, FrameReader
from nomac.sim.drivers import hand_byte_to_host_tx

CLOCK_PERIOD_NS = 10
BYTE_BITS = 10
BUSY_POLL_BYTES = 64        # while the design is busy, the host's bytes are looked for this often
SHORT_PAYLOAD = 8           # frames up to this payload are logged with it (RUN's slot, WAIT's cycles)


def cycle() -> int:
    return int(get_sim_time("ns")) // CLOCK_PERIOD_NS


class WireLog:
    """Frames seen on one wire, with the cycles their first byte started and last byte ended
    (and short payloads)."""

    def __init__(self, direction: str):
        self.direction = direction
        self.reader = FrameReader()
        self.first_start = None
        self.frames = []
        self.bytes = 0

    def byte(self, value: int, started: int, ended: int):
        if not self.reader.buffer:
            self.first_start = started
        self.bytes += 1
        for frame in self.reader.feed(bytes([value])):
            self.frames.append({"dir": self.direction, "cmd": frame.cmd, "seq": frame.seq,
                                "bytes": len(frame.payload) + FRAME_OVERHEAD, "start": self.first_start,
                                "end": ended,
                                "payload": frame.payload.hex() if len(frame.payload) <= SHORT_PAYLOAD else None})
        if not self.reader.buffer:
            self.first_start = None


class PtyBridge:
    def __init__(self, dut, plan: dict):
        self.dut, self.plan = dut, plan
        self.clock = dut.clk
        self.byte_cycles = BYTE_BITS * plan["divisor"]
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.pending = bytearray()              # host bytes not yet on the wire
        self.requests, self.replies = WireLog("request"), WireLog("reply")
        self.stop_file = Path(plan["stop_file"])
        self.deadline = time.monotonic() + plan["max_seconds"]
        dut.host_tx_valid.value = 0

    @property
    def port(self) -> str:
        return os.ttyname(self.slave)

    def poll_host(self, wait: float = 0.0):
        ready, _, _ = select.select([self.master], [], [], wait)
        if ready:
            try:
                self.pending += os.read(self.master, 65536)
            except (BlockingIOError, OSError):
                pass

    async def send_byte(self, value: int):
        """Hand a byte to the host-side transmitter; return shortly before it can take the next one."""
        await hand_byte_to_host_tx(self.dut, self.clock, value)
        started = cycle()
        await self.cycles(self.byte_cycles - 2)
        self.requests.byte(value, started, started + self.byte_cycles)

    async def cycles(self, count: int):
        """About `count` cycles, ending between two rising edges (a Timer, so cocotb does not count
        the edges one by one; then the falling edge, so that what we drive next is not written in
        the time step of a rising edge, where its order against the edge is undefined)."""
        await Timer(count * CLOCK_PERIOD_NS, "ns")
        await FallingEdge(self.clock)

    async def watch_replies(self):
        divisor = self.plan["divisor"]
        # host_rx pulses in the middle of the stop bit, after a two-flop synchronizer
        offset = BYTE_BITS * divisor - divisor // 2 + 2
        while True:
            await RisingEdge(self.dut.host_rx_valid)
            await ReadOnly()                    # the payload changes in the same step as valid
            value = int(self.dut.host_rx.value)
            os.write(self.master, bytes([value]))
            started = cycle() - offset
            self.replies.byte(value, started, started + self.byte_cycles)

    def finished(self) -> bool:
        return self.stop_file.exists() or time.monotonic() > self.deadline

    async def run(self):
        cocotb.start_soon(self.watch_replies())
        while not self.finished():
            if not self.pending and not int(self.dut.busy.value):
                self.poll_host(0.02)               # quiet: wait for the host, the clock stands still
                continue
            self.poll_host()
            if self.pending:
                value = self.pending.pop(0)
                await self.send_byte(value)
            else:
                # Busy with nothing to send (a frame executing, a reply going out): run until the
                # design is quiet, looking at the host every BUSY_POLL_BYTES byte times.
                poll = Timer(BUSY_POLL_BYTES * self.byte_cycles * CLOCK_PERIOD_NS, "ns")
                await First(FallingEdge(self.dut.busy), poll)
                await FallingEdge(self.clock)

    def report(self) -> dict:
        return {"divisor": self.plan["divisor"], "cycles": cycle(), "bytes_in": self.requests.bytes,
                "bytes_out": self.replies.bytes, "frames": self.requests.frames + self.replies.frames,
                "host_frame_errors": int(self.dut.host_frame_errors.value),
                "timed_out": time.monotonic() > self.deadline}


@cocotb.test()
async def board_bench(dut):
    plan = json.loads(Path(os.environ["NOMAC_BOARD_PLAN"]).read_text())
    # Inputs are set before the first clock edge and reset is held long enough for the
    # UART's (reset-less) input synchronizers to fill with the idle line level.
    dut.rst.value = 1
    bridge = PtyBridge(dut, plan)
    Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns", impl="gpi").start()
    await ClockCycles(dut.clk, 8)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    Path(plan["port_file"] + ".tmp").write_text(bridge.port)
    os.replace(plan["port_file"] + ".tmp", plan["port_file"])
    try:
        await bridge.run()
    finally:
        Path(plan["report"]).write_text(json.dumps(bridge.report()))
        os.close(bridge.master)
        os.close(bridge.slave)
