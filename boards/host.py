"""Host driver: talk to a board over its serial port, load a layer, run vectors on it.

A Python API first, the command line second (`nomac run`: nomac/board_run.py, which
also runs the same code against the simulated board of sim/):

    with BoardConnection.open("/dev/ttyUSB1", baud=1_000_000) as link:
        board = BoardSession(link, board_map(config, clock_hz=..., divisor=...))
        board.check_identity()               # WrongBitstream unless built for this config
        board.load(layer)                    # every RAM memory, verified by read-back CRC
        outputs = board.run(vectors)         # int8 [N, D] in, [N, M] out

`run_config` does all of it for a config, compares with the golden model and
returns a `RunReport`. Frames are the ones of nomac.boards.link_protocol. Every
request waits for its reply (stop and wait); a reply that does not come in time,
a reply of the wrong length or shape, or a frame the board rejected as damaged
(BAD_CRC, TIMEOUT), is retried with the same sequence number, which the board
recognises (DUPLICATE) if it had executed the frame already. A DUPLICATE when no
earlier attempt can have run means the board remembers an older frame with that
number: the host clears it (IDENTIFY) and sends the frame again under a new one.
Errors name the port, the command and what to check. Every argument is checked
(nomac.boards.board_options) before a port is opened.
"""
import errno
import time
from dataclasses import dataclass, field

import numpy as np

from nomac.boards import board_options as options
from nomac.boards import link_protocol as lp
from nomac.boards.board_map import BoardMap, board_layer
from nomac.boards.link_protocol import Command, Status
from nomac.base.errors import NomacError

DEFAULT_TIMEOUT = 1.0        # seconds to wait for a reply, on top of its time on the wire
DEFAULT_RETRIES = 3
CLI_COMMAND = "run"          # where argument errors come from, as the CLI names the command


class BoardError(NomacError):
    """Something went wrong talking to a board."""


class NoSuchPort(BoardError):
    pass


class WrongBitstream(BoardError):
    """The board answers, but its bitstream was built for another config or other options."""


class BoardTimeout(BoardError):
    """Bytes came back, but no complete reply to a command, on every attempt."""


class BoardNotAnswering(BoardError):
    """Nothing at all came back on every attempt."""


class BoardRejected(BoardError):
    """The board refused a well-formed frame (BAD_LENGTH, BAD_ADDRESS, UNKNOWN_COMMAND): retrying
    cannot help; the host and the bitstream disagree about the board's map."""


class MalformedReply(BoardError):
    """Replies with a good CRC but the wrong length or shape for their command, on every attempt."""


class UploadVerifyError(BoardError):
    """A memory's read-back CRC differs from what was sent, on every attempt."""


@dataclass
class LinkStatistics:
    frames: int = 0              # requests answered
    retries: int = 0             # requests sent again
    bytes_sent: int = 0
    bytes_received: int = 0
    stale_replies: int = 0       # replies to earlier attempts or other sequence numbers, skipped
    damaged_bytes: int = 0       # bytes outside good frames (garbage, bad CRC)


class BoardConnection:
    """Frames over a serial port (or anything with pyserial's read/write/timeout/in_waiting).

    `transact` sends one request and returns its reply's data; see the module text
    for the retry rules. `port_name` only appears in messages.
    """

    def __init__(self, port, *, port_name: str = "", baud: float = 1_000_000, timeout: float = DEFAULT_TIMEOUT,
                 retries: int = DEFAULT_RETRIES, max_payload: int = lp.MAX_LENGTH):
        _check_link_options(baud, timeout, retries)
        self.port, self.port_name, self.baud = port, port_name or getattr(port, "port", "?"), baud
        self.timeout, self.retries = timeout, retries
        self.reader = lp.FrameReader(max_length=max_payload)
        self.seq = 0
        self.stats = LinkStatistics()
        self.answered = 0            # replies ever received on this connection

    @classmethod
    def open(cls, port_name: str, *, baud: int = 1_000_000, timeout: float = DEFAULT_TIMEOUT,
             retries: int = DEFAULT_RETRIES) -> "BoardConnection":
        """Open a serial port (8N1, no flow control); NoSuchPort names the ports that exist."""
        import serial
        _check_link_options(baud, timeout, retries)
        try:
            port = serial.Serial(port_name, baudrate=baud, timeout=0.05, write_timeout=max(timeout, 1.0))
        except serial.SerialException as e:
            if isinstance(e.__context__, OSError) and e.__context__.errno in (errno.ENOENT, errno.ENXIO) \
                    or e.errno in (errno.ENOENT, errno.ENXIO):
                raise NoSuchPort(f"serial port {port_name!r} does not exist; ports here: "
                                 f"{_available_ports()} (a board shows up as its FTDI channel, "
                                 f"e.g. /dev/ttyUSB1; or use --sim for the simulated board)") from None
            raise BoardError(f"serial port {port_name!r} cannot be opened: {e}") from None
        return cls(port, port_name=port_name, baud=baud, timeout=timeout, retries=retries)

    def close(self):
        self.port.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def wire_seconds(self, nbytes: int) -> float:
        return nbytes * 10 / self.baud

    def transact(self, cmd: Command, payload: bytes = b"", reply_bytes: int | None = None) -> bytes:
        """Send `cmd` and return the data of its OK reply (b"" for a DUPLICATE of a state change).

        `reply_bytes` is the OK data length of READ and READ_OUTPUTS (count words or
        vectors); every other command's is lp.REPLY_DATA_BYTES. A reply of another length
        or shape (lp.reply_problem) is retried for every command, as a lost reply is: the
        request reached the board, but whether it ran is unknown. IDENTIFY, STATUS, READ,
        CRC, READ_OUTPUTS and WAIT change nothing, so asking again is harmless. WRITE,
        WRITE_INPUTS and RUN go again with the same sequence number, which the board
        answers DUPLICATE, without executing it again, if it had executed it: the words
        and inputs are written once, and a RUN runs once.
        """
        cmd = Command(cmd)
        data_bytes = lp.REPLY_DATA_BYTES[cmd] if reply_bytes is None else reply_bytes
        data = self._exchange(cmd, payload, data_bytes)
        if data is not _STALE_DUPLICATE:
            return data
        # The board remembers an older frame with this sequence number (another session, or 256
        # frames ago). IDENTIFY clears that memory; then the frame goes again under a new number.
        self._exchange(Command.IDENTIFY, b"", lp.REPLY_DATA_BYTES[Command.IDENTIFY])
        data = self._exchange(cmd, payload, data_bytes)
        if data is _STALE_DUPLICATE:
            raise BoardRejected(f"board on {self.port_name}: {cmd.name} answered DUPLICATE to a new sequence "
                                f"number right after IDENTIFY cleared the last one; the board does not follow "
                                f"link protocol version {lp.VERSION}")
        return data

    def _exchange(self, cmd: Command, payload: bytes, data_bytes: int):
        """One request under a new sequence number, with its retries: the reply's OK data, b""
        when a DUPLICATE says an earlier attempt ran, or _STALE_DUPLICATE when none can have."""
        seq, self.seq = self.seq, (self.seq + 1) & 0xFF
        frame = lp.encode_frame(cmd, seq, payload)
        wait = self.timeout + self.wire_seconds(len(frame) + lp.FRAME_OVERHEAD + 1 + data_bytes)
        heard = False                 # any byte at all during this request
        may_have_run = False          # an attempt the board may have executed without our knowing
        malformed = False
        problems = []
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
            self._discard_input()
            self._write(frame)
            reply, got_bytes = self._wait_reply(cmd, seq, wait)
            heard |= got_bytes
            if reply is None:
                problems.append("no reply" if not got_bytes else "no complete reply")
                may_have_run = True
                continue
            self.answered += 1
            self.stats.frames += 1
            problem = lp.reply_problem(cmd, reply.payload, data_bytes)
            if problem:
                problems.append(f"a reply of {problem}")
                may_have_run = malformed = True
                continue
            status = Status(reply.status)
            if status == Status.OK:
                return reply.data
            if status == Status.DUPLICATE:        # reply_problem lets it through for state changes only
                return b"" if may_have_run else _STALE_DUPLICATE
            if status in (Status.BAD_CRC, Status.TIMEOUT):
                problems.append(f"board saw a damaged frame ({status.name})")
                continue
            raise BoardRejected(f"board on {self.port_name}: {cmd.name} (seq {seq}, {len(payload)} payload bytes) "
                                f"refused with {status.name}; the bitstream and this host disagree about the board "
                                f"(wrong config or options?)")
        what = f"{cmd.name} (seq {seq})"
        if malformed:
            raise MalformedReply(f"board on {self.port_name}: no well-formed reply to {what} in {self.retries + 1} "
                                 f"attempts ({'; '.join(problems)}); is it a bitstream of another nomac (link "
                                 f"protocol version {lp.VERSION} here)?")
        if not heard:
            if self.answered == 0:
                raise BoardNotAnswering(
                    f"no board answered on {self.port_name} at {self.baud:g} baud: {self.retries + 1} attempts of "
                    f"{wait:.2f} s at {what}; is the bitstream loaded (nomac build ... --program), is the baud "
                    f"rate the bitstream's, is it the board's UART channel?")
            raise BoardNotAnswering(f"board on {self.port_name} stopped answering: nothing in {self.retries + 1} "
                                    f"attempts of {wait:.2f} s at {what}, after {self.answered} replies")
        raise BoardTimeout(f"board on {self.port_name}: no good reply to {what} in {self.retries + 1} attempts of "
                           f"{wait:.2f} s ({'; '.join(problems)})")

    def _discard_input(self):
        waiting = self.port.in_waiting
        if waiting:
            self.stats.stale_replies += len(self.reader.feed(self.port.read(waiting)))
        self.reader.buffer.clear()

    def _write(self, frame: bytes):
        try:
            self.port.write(frame)
            self.port.flush()
        except Exception as e:        # pyserial raises SerialException / SerialTimeoutException
            raise BoardNotAnswering(f"board on {self.port_name}: cannot write to the port ({e})") from None
        self.stats.bytes_sent += len(frame)

    def _wait_reply(self, cmd: Command, seq: int, wait: float):
        deadline = time.monotonic() + wait
        got_bytes = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None, got_bytes
            self.port.timeout = min(left, 0.05)
            try:
                chunk = self.port.read(max(1, self.port.in_waiting))
            except Exception as e:
                raise BoardNotAnswering(f"board on {self.port_name}: the port failed while reading ({e})") from None
            if not chunk:
                continue
            got_bytes = True
            self.stats.bytes_received += len(chunk)
            skipped = self.reader.skipped
            for reply in self.reader.feed(chunk):
                if reply.cmd == cmd | lp.REPLY and reply.seq == seq:
                    return reply, got_bytes
                self.stats.stale_replies += 1
            self.stats.damaged_bytes += self.reader.skipped - skipped


_STALE_DUPLICATE = object()     # _exchange's answer to a DUPLICATE no attempt of ours can have caused


def _check_link_options(baud, timeout, retries):
    where = "board connection"
    options.check_line_baud(where, baud)
    options.check_timeout(where, timeout)
    options.check_retries(where, retries)


def _available_ports() -> str:
    try:
        from serial.tools import list_ports
        names = sorted(p.device for p in list_ports.comports())
    except Exception:
        names = []
    return ", ".join(names) if names else "none found"


@dataclass
class LoadReport:
    memories: int
    words: int
    bytes: int                   # memory word bytes sent (payload, first attempt)
    frames: int
    reloads: int                 # memories sent again after a CRC mismatch
    seconds: float


class BoardSession:
    """The commands of a board whose map the host knows (from the config and options)."""

    def __init__(self, link: BoardConnection, board: BoardMap, *, progress=None):
        self.link, self.map = link, board
        self.progress = progress          # None, or a callable(total_bytes, description) -> tqdm-like bar
        self.identity = None
        link.reader.max_length = board.max_payload

    def identify(self) -> lp.Identity:
        return lp.Identity.unpack(self.link.transact(Command.IDENTIFY))

    def check_identity(self) -> lp.Identity:
        """IDENTIFY, then WrongBitstream unless the bitstream was built for this config and options."""
        identity = self.identify()
        expected = self.map.identity()
        port = self.link.port_name
        if identity.version != lp.VERSION:
            raise WrongBitstream(f"board on {port} speaks link protocol version {identity.version}, this host "
                                 f"{lp.VERSION}; rebuild the bitstream with this nomac")
        if identity.config_id != expected.config_id:
            raise WrongBitstream(self.wrong_id_message(identity.config_id))
        differences = [f"{name} {getattr(identity, name)} (host expects {getattr(expected, name)})"
                       for name in ("max_payload", "batch", "memories", "in_vector_bytes", "out_vector_bytes")
                       if getattr(identity, name) != getattr(expected, name)]
        if differences:
            raise WrongBitstream(f"board on {port} is built for config {identity.config_id} but with other "
                                 f"board options: {', '.join(differences)}")
        self.identity = identity
        return identity

    def wrong_id_message(self, found: str) -> str:
        """What to tell a user whose board reports config_id `found` instead of the map's."""
        return (f"board on {self.link.port_name} runs a bitstream built for config {found}, not "
                f"{self.map.config_id} (layer '{self.map.layer}'); build and load the bitstream for this config "
                f"(nomac build CONFIG --board ...)")

    def status(self) -> lp.Counters:
        return lp.Counters.unpack(self.link.transact(Command.STATUS))

    # --- memories ----------------------------------------------------------------------------

    def _region(self, index: int):
        if not 0 <= index < len(self.map.regions):
            raise BoardError(f"memory index {index}: the board has {len(self.map.regions)} loadable memories")
        return self.map.regions[index]

    def write_words(self, index: int, first: int, words) -> int:
        """Write words at `first`, in as many frames as needed; returns the frames sent."""
        region = self._region(index)
        per_frame = (self.map.max_payload - lp.MEMORY_REQUEST.size) // region.word_bytes
        frames = 0
        for start in range(0, len(words), per_frame):
            chunk = words[start:start + per_frame]
            self.link.transact(Command.WRITE, lp.MEMORY_REQUEST.pack(index, first + start, len(chunk))
                               + lp.pack_words(chunk, region.word_bits))
            frames += 1
        return frames

    def read_words(self, index: int, first: int, count: int) -> list[int]:
        region = self._region(index)
        per_frame = (self.map.max_payload - 1) // region.word_bytes
        words = []
        for start in range(first, first + count, per_frame):
            n = min(per_frame, first + count - start)
            data = self.link.transact(Command.READ, lp.MEMORY_REQUEST.pack(index, start, n),
                                      reply_bytes=n * region.word_bytes)
            words += lp.unpack_words(data, region.word_bits)
        return words

    def memory_crc(self, index: int, first: int = 0, count: int | None = None) -> int:
        region = self._region(index)
        count = region.depth - first if count is None else count
        (crc,) = lp.CRC_REPLY.unpack(self.link.transact(Command.CRC, lp.MEMORY_REQUEST.pack(index, first, count)))
        return crc

    def load(self, layer, *, attempts: int = 3) -> LoadReport:
        """Write every loadable memory from the layer's arrays and check each by read-back CRC."""
        arrays = layer.arrays()
        return self.upload([(region, region.words(arrays[region.array])) for region in self.map.regions],
                           attempts=attempts)

    def upload(self, plans, *, attempts: int = 3, description: str = "loading tables") -> LoadReport:
        """Write words from address 0 of each (region, words) of `plans`, each checked by the CRC
        of the words written read back, sent again up to `attempts` times (UploadVerifyError)."""
        started = time.monotonic()
        total = sum(len(words) * region.word_bytes for region, words in plans)
        bar = self.progress(total, description) if self.progress else None
        frames = reloads = 0
        for region, words in plans:
            expected = lp.memory_crc(lp.pack_words(words, region.word_bits))
            for attempt in range(attempts):
                frames += self.write_words(region.index, 0, words)
                got = self.memory_crc(region.index, 0, len(words))
                frames += 1
                if got == expected:
                    break
                reloads += 1
            else:
                raise UploadVerifyError(f"board on {self.link.port_name}: memory '{region.name}' reads back with "
                                        f"CRC {got:08x}, not {expected:08x}, after {attempts} uploads")
            if bar is not None:
                bar.update(len(words) * region.word_bytes)
        if bar is not None:
            bar.close()
        return LoadReport(memories=len(plans), words=sum(len(w) for _, w in plans), bytes=total, frames=frames,
                          reloads=reloads, seconds=time.monotonic() - started)

    # --- vectors -----------------------------------------------------------------------------

    def run(self, vectors: np.ndarray, *, on_batch=None) -> tuple[np.ndarray, int]:
        """Outputs of int8 vectors [N, D] computed on the board, and the engine cycles it reported.

        Pipelined (docs/spec.md section 14.6): batch k runs into output slot k mod 2 in the
        background while the host reads batch k - 1's outputs from the other slot and sends
        batch k + 1's inputs, which the board takes once run k is done (WAIT then gives its
        cycles). So the link's bytes go while the engine computes.
        """
        board = self.map
        vectors = options.check_vectors(CLI_COMMAND, vectors, board.in_elements)
        out_size = lp.element_bytes(board.out_bits)
        outputs, cycles = [], 0

        def collect(slot: int, count: int):
            outputs.append(self._read_outputs(slot, count))
            if on_batch:
                on_batch(count)

        running = None                     # (slot, vectors) of the run whose outputs are not read yet
        for k, start in enumerate(range(0, len(vectors), board.batch)):
            batch = vectors[start:start + board.batch]
            self.link.transact(Command.WRITE_INPUTS, lp.COUNT_REQUEST.pack(len(batch)) + batch.tobytes())
            if running is not None:
                cycles += self._wait()
            slot = k % lp.OUTPUT_SLOTS
            self.link.transact(Command.RUN, lp.RUN_REQUEST.pack(len(batch), slot))
            if running is not None:
                collect(*running)
            running = (slot, len(batch))
        cycles += self._wait()
        collect(*running)
        result = np.concatenate(outputs)
        return (result.astype(np.int8) if out_size == 1 else result), cycles

    def _wait(self) -> int:
        """The cycles of the last run, once it is done."""
        return lp.WAIT_REPLY.unpack(self.link.transact(Command.WAIT))[0]

    def _read_outputs(self, slot: int, count: int) -> np.ndarray:
        """Output vectors [0, count) of `slot`, in as many READ_OUTPUTS as the payload needs."""
        board = self.map
        per_read = (board.max_payload - 1) // board.out_vector_bytes
        parts = []
        for first in range(0, count, per_read):
            n = min(per_read, count - first)
            data = self.link.transact(Command.READ_OUTPUTS, lp.OUTPUTS_REQUEST.pack(first, n, slot),
                                      reply_bytes=n * board.out_vector_bytes)
            parts.append(np.array(lp.unpack_elements(data, board.out_bits), dtype=np.int64)
                         .reshape(n, board.out_elements))
        return np.concatenate(parts)


def link_lines(link: LinkStatistics, counters) -> list[str]:
    """A run summary's lines on the link's frames and the board's counters (None: not read)."""
    lines = [f"  link: {link.frames} frames, {link.retries} retries, {link.bytes_sent} bytes out, "
             f"{link.bytes_received} in"]
    if counters is not None:
        errors = counters.errors()
        lines.append(f"  board counters: {counters.frames_ok} frames ok"
                     + (", " + ", ".join(f"{k} {v}" for k, v in errors.items()) if errors else ", no errors"))
    return lines


@dataclass
class RunReport:
    """What `run_config` did and measured."""
    port: str
    config_id: str
    layer: str
    vectors: int
    mismatched_vectors: int | None        # None when not compared with the golden model
    mismatches: list
    load: LoadReport
    run_seconds: float
    engine_cycles: int
    link: LinkStatistics
    counters: lp.Counters | None
    projection: dict = field(default_factory=dict)   # throughput at the real baud (simulated board)
    outputs: np.ndarray | None = field(default=None, repr=False)

    @property
    def passed(self) -> bool:
        return not self.mismatched_vectors

    def summary(self) -> str:
        lines = [f"layer {self.layer} (config {self.config_id}) on {self.port}: {self.vectors} vectors, "
                 + ("not compared" if self.mismatched_vectors is None
                    else f"{self.mismatched_vectors} mismatches against the golden model"),
                 f"  tables: {self.load.memories} memories, {self.load.bytes} bytes in {self.load.frames} frames, "
                 f"verified by read-back CRC, {self.load.reloads} reloads, {self.load.seconds:.2f} s "
                 f"({self.load.bytes / max(self.load.seconds, 1e-9):,.0f} bytes/s wall clock)",
                 f"  vectors: {self.run_seconds:.2f} s ({self.vectors / max(self.run_seconds, 1e-9):,.1f} "
                 f"vectors/s wall clock), {self.engine_cycles} engine cycles reported by the board"]
        lines += link_lines(self.link, self.counters)
        if self.projection:
            p = self.projection
            lines.append(f"  at {p['baud']:,.0f} baud on a {p['clock_hz'] / 1e6:g} MHz {p['board']} (from simulated "
                         f"cycles): table upload {p['upload_bytes_per_s']:,.0f} bytes/s, inference "
                         f"{p['vectors_per_s']:,.1f} vectors/s; link bound {p['link_bytes_per_s']:,.0f} bytes/s")
        for problem in self.mismatches[:3]:
            lines.append(f"  ! vector {problem['vector']}: expected {problem['expected']}, got {problem['got']}")
        return "\n".join(lines)


def tqdm_progress(total: int, description: str, unit: str = "B"):
    from tqdm import tqdm
    return tqdm(total=total, desc=description, unit=unit, unit_scale=unit == "B", leave=False)


def run_vectors(vectors, count: int, seed: int, in_features: int) -> np.ndarray:
    """`vectors` once checked, or `count` seeded random int8 vectors (the first all 127, the second
    all -128, the extremes a layer must handle)."""
    options.check_count(CLI_COMMAND, count)
    options.check_seed(CLI_COMMAND, seed)
    if vectors is not None:
        return options.check_vectors(CLI_COMMAND, vectors, in_features)
    vectors = np.random.default_rng(seed).integers(-128, 128, (count, in_features)).astype(np.int8)
    vectors[:1] = 127
    vectors[1:2] = -128
    return vectors


def run_config(config, link: BoardConnection, board: BoardMap, *, vectors=None, count: int = 256, seed: int = 1,
               layer_name: str | None = None, compare: bool = True, progress=None) -> RunReport:
    """Identify, load, run `vectors` (or `count` seeded random int8 vectors), compare with the golden."""
    from nomac.model.golden import run_golden
    vectors = run_vectors(vectors, count, seed, board.in_elements)
    layer = board_layer(config, layer_name)
    session = BoardSession(link, board, progress=progress)
    session.check_identity()
    load = session.load(layer)
    started = time.monotonic()
    bar = progress(len(vectors), "running vectors", unit=" vectors") if progress else None
    outputs, cycles = session.run(vectors, on_batch=bar.update if bar is not None else None)
    if bar is not None:
        bar.close()
    seconds = time.monotonic() - started
    mismatched, mismatches = None, []
    if compare:
        expected = np.asarray(run_golden(config, vectors, layer.name), dtype=np.int64)
        wrong = np.flatnonzero(np.any(outputs.astype(np.int64) != expected, axis=1))
        mismatched = int(len(wrong))
        mismatches = [{"vector": int(n), "expected": expected[n].tolist(), "got": outputs[n].tolist()}
                      for n in wrong[:10]]
    counters = session.status()
    return RunReport(port=link.port_name, config_id=board.config_id, layer=layer.name, vectors=len(vectors),
                     mismatched_vectors=mismatched, mismatches=mismatches, load=load, run_seconds=seconds,
                     engine_cycles=cycles, link=link.stats, counters=counters, outputs=outputs)
