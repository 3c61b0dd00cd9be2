"""cocotb drivers for the ports a manifest describes (docs/spec.md sections 3 and 6).

Small classes with one job each, as in cocotbext-axi: a source that sends vectors
as beats (random gaps on `valid` are one argument), a sink that takes them (random
backpressure on `ready` is one argument) and checks the stream rules on the way,
and a writer for memory write ports. They know ports only through the manifest.

Handshakes are sampled right after the rising edge, when the simulator still shows
the values the edge saw, the same convention as cocotbext-axi.
"""
import random

from cocotb.simtime import get_sim_time
from cocotb.triggers import RisingEdge

CLOCK_PERIOD_NS = 10


def current_cycle() -> int:
    """Rising edges since time 0 (the clock starts at 0 with period CLOCK_PERIOD_NS)."""
    return int(get_sim_time("ns")) // CLOCK_PERIOD_NS


async def hand_byte_to_host_tx(dut, clock, value: int):
    """Offer a byte on the board bench's host-side transmitter (host_tx, valid/ready) and
    return on the clock edge that took it."""
    dut.host_tx.value = value
    dut.host_tx_valid.value = 1
    while True:
        await RisingEdge(clock)
        if dut.host_tx_ready.value:
            break
    dut.host_tx_valid.value = 0


def pack_lanes(values, lane_bits: int) -> int:
    """Lane i at bits [w*i + w-1 : w*i], two's complement."""
    mask = (1 << lane_bits) - 1
    word = 0
    for lane, value in enumerate(values):
        word |= (int(value) & mask) << (lane_bits * lane)
    return word


def unpack_lanes(word: int, lanes: int, lane_bits: int, signed: bool) -> list[int]:
    mask, sign = (1 << lane_bits) - 1, 1 << (lane_bits - 1)
    values = []
    for lane in range(lanes):
        value = (word >> (lane_bits * lane)) & mask
        values.append(value - (1 << lane_bits) if signed and value & sign else value)
    return values


class VectorSource:
    """Sends vectors on a manifest stream, `gap` = chance of an idle cycle before a beat."""

    def __init__(self, dut, stream: dict, clock):
        self.valid, self.ready = dut[stream["valid"]], dut[stream["ready"]]
        self.data, self.last = dut[stream["data"]], dut[stream["last"]]
        self.lanes, self.lane_bits, self.elements = stream["lanes"], stream["lane_bits"], stream["elements"]
        self.clock = clock
        self.first_transfer = None        # cycle of the first accepted beat
        self.valid.value = 0

    def beats(self, vector, last_on_beat=None):
        """(word, last) per beat; `last_on_beat` moves `last` to another beat (None: the final one)."""
        count = -(-self.elements // self.lanes)
        final = count - 1 if last_on_beat is None else last_on_beat
        for b in range(count):
            lanes = list(vector[b * self.lanes:(b + 1) * self.lanes])
            lanes += [0] * (self.lanes - len(lanes))
            yield pack_lanes(lanes, self.lane_bits), int(b == final)

    async def send(self, vectors, rng: random.Random, gap: float = 0.0, last_on_beat=None):
        for vector in vectors:
            for word, last in self.beats(vector, last_on_beat):
                while gap and rng.random() < gap:
                    self.valid.value = 0
                    await RisingEdge(self.clock)
                self.data.value, self.last.value, self.valid.value = word, last, 1
                while True:
                    await RisingEdge(self.clock)
                    if self.ready.value:
                        break
                if self.first_transfer is None:
                    self.first_transfer = current_cycle()
        self.valid.value = 0


class VectorSink:
    """Receives vectors from a manifest stream, `backpressure` = chance `ready` is low.

    Checks on every beat what docs/spec.md section 3 promises: `last` exactly on the final
    beat of each vector, zeros in the unused lanes of the final beat, and a payload
    held steady while `valid` is high and `ready` low. Violations are counted and
    described in `protocol_errors`.
    """

    def __init__(self, dut, stream: dict, clock):
        self.valid, self.ready = dut[stream["valid"]], dut[stream["ready"]]
        self.data, self.last = dut[stream["data"]], dut[stream["last"]]
        self.lanes, self.lane_bits = stream["lanes"], stream["lane_bits"]
        self.signed, self.elements = stream["signed"], stream["elements"]
        self.clock = clock
        self.protocol_errors: list[str] = []
        self.completed_at: list[int] = []  # cycle of each vector's final beat
        self.ready.value = 0

    async def receive(self, count: int, rng: random.Random, backpressure: float = 0.0,
                      timeout_cycles: int = 100_000):
        vectors, current, beat = [], [], 0
        count_beats = -(-self.elements // self.lanes)
        stalled = None                      # (word, last) offered but not taken last cycle
        idle_cycles = 0
        while len(vectors) < count:
            ready = not (backpressure and rng.random() < backpressure)
            self.ready.value = int(ready)
            await RisingEdge(self.clock)
            if not self.valid.value:
                if stalled is not None:
                    self._error("valid dropped while a beat waited for ready")
                stalled = None
                idle_cycles += 1
                if idle_cycles > timeout_cycles:
                    raise TimeoutError(f"no output beat for {timeout_cycles} cycles "
                                       f"({len(vectors)} of {count} vectors received)")
                continue
            idle_cycles = 0
            word, last = self.data.value.to_unsigned(), int(self.last.value)
            if stalled is not None and stalled != (word, last):
                self._error(f"payload changed while waiting for ready: {stalled} -> {(word, last)}")
            if not ready:
                stalled = (word, last)
                continue
            stalled = None
            lanes = unpack_lanes(word, self.lanes, self.lane_bits, self.signed)
            if last != (beat == count_beats - 1):
                self._error(f"vector {len(vectors)} beat {beat}: last = {last}")
            if beat == count_beats - 1:
                used = self.elements - beat * self.lanes
                if any(lanes[used:]):
                    self._error(f"vector {len(vectors)}: unused lanes of the final beat are {lanes[used:]}, not 0")
                lanes = lanes[:used]
            current += lanes
            beat += 1
            if beat == count_beats:
                vectors.append(current)
                self.completed_at.append(current_cycle())
                current, beat = [], 0
        self.ready.value = 0
        return vectors

    def _error(self, text: str):
        if len(self.protocol_errors) < 20:
            self.protocol_errors.append(text)


class MemoryPort:
    """Writes and reads back a manifest RAM through its host ports, one word per cycle.

    Both ports may only be used while the engine is idle; their enables are held low
    otherwise (an undriven enable would be X in simulation).
    """

    def __init__(self, dut, memory: dict, clock):
        write, read = memory["write"], memory["read"]
        self.w_addr, self.w_data, self.w_en = dut[write["addr"]], dut[write["data"]], dut[write["en"]]
        self.r_addr, self.r_data, self.r_en = dut[read["addr"]], dut[read["data"]], dut[read["en"]]
        self.clock = clock
        self.w_en.value = 0
        self.r_en.value = 0

    async def write(self, words: list[int]):
        for address, word in enumerate(words):
            self.w_addr.value, self.w_data.value, self.w_en.value = address, word, 1
            await RisingEdge(self.clock)
        self.w_en.value = 0

    async def read(self, count: int) -> list[int]:
        """Words 0 .. count-1. Edge k registers the word at the address set before it; right
        after edge k+1 the sampled read data is still that word (pre-edge values)."""
        words = []
        for address in range(count + 1):
            self.r_addr.value, self.r_en.value = min(address, count - 1), int(address < count)
            await RisingEdge(self.clock)
            if address:
                words.append(self.r_data.value.to_unsigned())
        self.r_en.value = 0
        return words
