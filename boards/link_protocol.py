"""The board link protocol: one description, used by the gateware and by the host.

As in Glasgow, the frame format, the commands, the status codes, the CRCs and the
payload layouts live here once, in plain Python. `nomac.boards.link_gateware`
builds its decoder, encoder and command handler from these constants, and
`nomac.boards.host` packs and parses frames with the functions below; neither
writes a field offset or a code of its own. docs/spec.md section 14
is the same contract in prose.

A frame, in both directions (all multi-byte fields little-endian):

    START  cmd  seq  length(2)  payload(length)  crc(2)

`crc` is CRC-16/CCITT-FALSE over cmd, seq, length and payload (not START). A reply
carries the request's `cmd | REPLY`, the request's `seq`, and a payload whose first
byte is a `Status`; the command's reply data follows only when the status is OK.
The board answers every frame it sees, a bad one with an error status, and changes
nothing for a frame it rejects.
"""
import binascii
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

VERSION = 2                  # 2: RUN in the background into one of two output slots, WAIT
START = 0xA5
REPLY = 0x80                 # reply cmd = request cmd | REPLY
HEADER_BYTES = 4             # cmd, seq, length (after START)
CRC_BYTES = 2
FRAME_OVERHEAD = 1 + HEADER_BYTES + CRC_BYTES
MAX_LENGTH = 0xFFFF          # what the 16-bit length field can say; a board's own limit is lower


class Command(IntEnum):
    """Request commands. WRITE, WRITE_INPUTS and RUN change the board's state."""
    IDENTIFY = 0x01          # -> Identity
    STATUS = 0x02            # -> Counters
    WRITE = 0x03             # mem u8, addr u32, count u32, count words -> nothing
    READ = 0x04              # mem u8, addr u32, count u32 -> count words
    CRC = 0x05               # mem u8, addr u32, count u32 -> CRC-32 u32 of those words
                             # (mem ALL_MEMORIES, addr 0, count 0: of every memory, whole, in index order)
    WRITE_INPUTS = 0x06      # count u16, count input vectors -> nothing
    RUN = 0x07               # count u16, slot u8 -> nothing (the engine runs in the background)
    READ_OUTPUTS = 0x08      # first u16, count u16, slot u8 -> count output vectors
    WAIT = 0x09              # -> engine cycles u32 of the last RUN, once it is done


STATE_CHANGING = (Command.WRITE, Command.WRITE_INPUTS, Command.RUN)


class Status(IntEnum):
    """The first reply payload byte."""
    OK = 0
    BAD_CRC = 1              # the frame's CRC-16 does not match its bytes
    BAD_LENGTH = 2           # length above the board's max_payload, or not what the command needs
    UNKNOWN_COMMAND = 3
    BAD_ADDRESS = 4          # memory index, address range, or vector range out of bounds
    TIMEOUT = 5              # the frame stopped arriving before its last byte
    DUPLICATE = 6            # a state-changing frame with the sequence number of the last one
                             # executed: a retry, already done, not executed again


# Memory commands share one request header: memory index, first word address, word count.
MEMORY_REQUEST = struct.Struct("<BII")
ALL_MEMORIES = 0xFF
COUNT_REQUEST = struct.Struct("<H")         # WRITE_INPUTS (then the vectors)
RUN_REQUEST = struct.Struct("<HB")          # RUN: count, output slot
OUTPUTS_REQUEST = struct.Struct("<HHB")     # READ_OUTPUTS: first vector, count, output slot
OUTPUT_SLOTS = 2                            # a RUN fills one while the host reads the other
CRC_REPLY = struct.Struct("<I")
WAIT_REPLY = struct.Struct("<I")


@dataclass(frozen=True)
class CrcSpec:
    """A CRC in the usual catalogue terms (width, poly, init, refin = refout, xorout)."""
    width: int
    poly: int
    init: int
    reflected: bool
    xorout: int

    def update(self, register: int, data: bytes) -> int:
        """The raw register after `data` (bitwise, the definition; `value` adds xorout)."""
        top = 1 << (self.width - 1)
        mask = (1 << self.width) - 1
        poly = int(f"{self.poly:0{self.width}b}"[::-1], 2) if self.reflected else self.poly
        for byte in data:
            for bit in range(8):
                if self.reflected:
                    feedback = (register ^ (byte >> bit)) & 1
                    register = (register >> 1) ^ (poly if feedback else 0)
                else:
                    feedback = bool(register & top) ^ bool(byte & (0x80 >> bit))
                    register = ((register << 1) & mask) ^ (poly if feedback else 0)
        return register

    def value(self, data: bytes) -> int:
        return self.update(self.init, data) ^ self.xorout


FRAME_CRC = CrcSpec(width=16, poly=0x1021, init=0xFFFF, reflected=False, xorout=0)          # CRC-16/CCITT-FALSE
MEMORY_CRC = CrcSpec(width=32, poly=0x04C11DB7, init=0xFFFFFFFF, reflected=True, xorout=0xFFFFFFFF)  # CRC-32


def frame_crc(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (binascii's crc_hqx from 0xFFFF is the same function, faster)."""
    return binascii.crc_hqx(data, FRAME_CRC.init)


def memory_crc(data: bytes) -> int:
    """CRC-32 as in zlib, over memory words serialised by `pack_words`."""
    return zlib.crc32(data)


def encode_frame(cmd: int, seq: int, payload: bytes = b"") -> bytes:
    if not 0 <= cmd <= 0xFF or not 0 <= seq <= 0xFF:
        raise ValueError(f"cmd {cmd} / seq {seq}: each must fit a byte")
    if len(payload) > MAX_LENGTH:
        raise ValueError(f"payload of {len(payload)} bytes: the length field holds at most {MAX_LENGTH}")
    body = struct.pack("<BBH", cmd, seq, len(payload)) + bytes(payload)
    return bytes([START]) + body + struct.pack("<H", frame_crc(body))


@dataclass(frozen=True)
class Frame:
    cmd: int
    seq: int
    payload: bytes

    @property
    def status(self) -> int | None:
        """A reply's status byte (None for an empty payload, which no reply has)."""
        return self.payload[0] if self.payload else None

    @property
    def data(self) -> bytes:
        """A reply's data after the status byte."""
        return self.payload[1:]


class FrameReader:
    """Incremental frame parser: feed bytes, take whole frames with a good CRC.

    Bytes before a START are skipped; a frame with a bad CRC or a length above
    `max_length` is dropped and parsing resumes at the byte after its START, so a
    START inside garbage cannot hide a real frame behind it. `skipped` and
    `bad_frames` count what was thrown away.
    """

    def __init__(self, max_length: int = MAX_LENGTH):
        self.max_length = max_length
        self.buffer = bytearray()
        self.skipped = 0
        self.bad_frames = 0

    def feed(self, data: bytes) -> list[Frame]:
        self.buffer += data
        frames = []
        while True:
            start = self.buffer.find(START)
            if start < 0:
                self.skipped += len(self.buffer)
                self.buffer.clear()
                return frames
            self.skipped += start
            del self.buffer[:start]
            if len(self.buffer) < 1 + HEADER_BYTES:
                return frames
            cmd, seq, length = struct.unpack_from("<BBH", self.buffer, 1)
            if length > self.max_length:
                self.bad_frames += 1
                del self.buffer[:1]
                continue
            end = 1 + HEADER_BYTES + length + CRC_BYTES
            if len(self.buffer) < end:
                return frames
            body = bytes(self.buffer[1:end - CRC_BYTES])
            (crc,) = struct.unpack_from("<H", self.buffer, end - CRC_BYTES)
            if crc != frame_crc(body):
                self.bad_frames += 1
                del self.buffer[:1]
                continue
            frames.append(Frame(cmd, seq, body[HEADER_BYTES:]))
            del self.buffer[:end]


# --- reply data layouts -------------------------------------------------------------------

@dataclass(frozen=True)
class Identity:
    """IDENTIFY's reply: what the bitstream was built for and how big its buffers are."""
    version: int
    config_id: str               # 16 hex digits (nomac.model.config.Config.config_id)
    max_payload: int             # the longest payload the board accepts or sends
    batch: int                   # input vectors one WRITE_INPUTS / RUN may carry
    memories: int                # loadable memories (indices 0 .. memories-1)
    in_vector_bytes: int
    out_vector_bytes: int
    clock_hz: int
    divisor: int                 # clock cycles per UART bit

    LAYOUT = struct.Struct("<B8sHHBHHIH")

    def pack(self) -> bytes:
        return self.LAYOUT.pack(self.version, bytes.fromhex(self.config_id), self.max_payload, self.batch,
                                self.memories, self.in_vector_bytes, self.out_vector_bytes, self.clock_hz,
                                self.divisor)

    @classmethod
    def unpack(cls, data: bytes) -> "Identity":
        fields = list(cls.LAYOUT.unpack(data))
        fields[1] = fields[1].hex()
        return cls(*fields)

    @property
    def baud(self) -> float:
        return self.clock_hz / self.divisor


COUNTERS = ("frames_ok", "bad_crc", "bad_length", "unknown_command", "bad_address", "timeouts",
            "duplicates", "uart_errors", "overruns", "garbage_bytes")
COUNTER_BITS = 16            # each counter saturates at 2^16 - 1


@dataclass(frozen=True)
class Counters:
    """STATUS's reply: saturating event counters since reset, and two engine flags.

    frames_ok: frames executed (status OK); bad_crc .. duplicates: frames answered
    with that status; uart_errors: bytes with a low stop bit; overruns: bytes that
    arrived while a frame was being executed (dropped); garbage_bytes: bytes outside
    any frame while hunting for START.
    """
    frames_ok: int
    bad_crc: int
    bad_length: int
    unknown_command: int
    bad_address: int
    timeouts: int
    duplicates: int
    uart_errors: int
    overruns: int
    garbage_bytes: int
    engine_framing_error: bool
    engine_idle: bool

    LAYOUT = struct.Struct("<" + "H" * len(COUNTERS) + "B")

    def pack(self) -> bytes:
        flags = int(self.engine_framing_error) | int(self.engine_idle) << 1
        return self.LAYOUT.pack(*(getattr(self, name) for name in COUNTERS), flags)

    @classmethod
    def unpack(cls, data: bytes) -> "Counters":
        *counts, flags = cls.LAYOUT.unpack(data)
        return cls(*counts, engine_framing_error=bool(flags & 1), engine_idle=bool(flags & 2))

    def errors(self) -> dict:
        """The nonzero counters other than frames_ok."""
        return {name: getattr(self, name) for name in COUNTERS[1:] if getattr(self, name)}


# --- replies as the host checks them --------------------------------------------------------

# The data bytes of an OK reply, for the commands whose reply has one size; READ and
# READ_OUTPUTS answer `count` words or vectors, whose size the board map knows.
REPLY_DATA_BYTES = {Command.IDENTIFY: Identity.LAYOUT.size, Command.STATUS: Counters.LAYOUT.size,
                    Command.WRITE: 0, Command.CRC: CRC_REPLY.size, Command.WRITE_INPUTS: 0,
                    Command.RUN: 0, Command.WAIT: WAIT_REPLY.size}


def reply_problem(cmd: Command, payload: bytes, data_bytes: int) -> str | None:
    """What is wrong with `payload` as the reply to `cmd` whose OK data is `data_bytes` long, or
    None: a status byte the protocol defines, DUPLICATE only to a state-changing command, and
    data only after OK, exactly `data_bytes` of it."""
    if not payload:
        return "an empty payload (no status byte)"
    status, data = payload[0], payload[1:]
    if status not in Status._value2member_map_:
        return f"status {status}, which the protocol does not define"
    status = Status(status)
    if status == Status.DUPLICATE and cmd not in STATE_CHANGING:
        return f"DUPLICATE, which only {', '.join(c.name for c in STATE_CHANGING)} can get"
    expected = data_bytes if status == Status.OK else 0
    if len(data) != expected:
        return f"{status.name} with {len(data)} data bytes, expected {expected}"
    return None


# --- memory words and vectors as bytes ------------------------------------------------------

def word_bytes(word_bits: int) -> int:
    """Bytes a memory word takes on the link: the smallest power of two that holds it
    (so a board multiplies by shifting), little-endian, high bits zero."""
    size = 1
    while 8 * size < word_bits:
        size *= 2
    return size


def pack_words(words, word_bits: int) -> bytes:
    size = word_bytes(word_bits)
    mask = (1 << word_bits) - 1
    return b"".join((int(word) & mask).to_bytes(size, "little") for word in words)


def unpack_words(data: bytes, word_bits: int) -> list[int]:
    size = word_bytes(word_bits)
    if len(data) % size:
        raise ValueError(f"{len(data)} bytes are not a whole number of {size}-byte words")
    return [int.from_bytes(data[i:i + size], "little") for i in range(0, len(data), size)]


def element_bytes(bits: int) -> int:
    """Bytes per output element: whole bytes, little-endian two's complement (sign-extended)."""
    return -(-bits // 8)


def unpack_elements(data: bytes, bits: int, signed: bool = True) -> list[int]:
    size = element_bytes(bits)
    return [int.from_bytes(data[i:i + size], "little", signed=signed) for i in range(0, len(data), size)]
