"""The board's command handler: executes decoded frames against an engine and answers them.

It knows an engine only through the engine contract (`nomac.hw.engine.EngineSignature`):
the vector streams `i`/`o`, `idle`, `framing_error`, and per RAM memory a write port
and a read-back port, usable while `idle`. The memories are the link's memory
indices, in `BoardMap.regions` order, so every engine kind works on a board without
board code of its own.

Each frame goes through CHECK, which checks it in the order docs/spec.md section 14.4
gives (into registers, to keep the paths short), and DISPATCH, which adds the
duplicate rule and decides its status; a rejected frame changes nothing but the
counters. Accepted commands run their data path (components of
`nomac.boards.byte_streams`), then REPLY hands the reply to the encoder with its
data source, and the frame is released only when the reply's last byte is out.
"""
from dataclasses import dataclass

from amaranth import Array, Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from nomac.boards.board_map import BoardMap
from nomac.boards.byte_streams import (BeatsToBytes, ByteReader, BytesToBeats, ByteWriter, WordReader,
                                       WordWriter)
from nomac.boards.event_counters import EventCounters
from nomac.boards.link_gateware import CRC, HEAD_BYTES, FrameInfo, ReplyInfo
from nomac.boards.link_protocol import (ALL_MEMORIES, COUNTER_BITS, COUNTERS, CRC_REPLY, MEMORY_CRC, MEMORY_REQUEST,
                                        OUTPUTS_REQUEST, RUN_REPLY, COUNT_REQUEST, Command, Counters,
                                        Identity, Status)
from nomac.hw.engine import EngineSignature

__all__ = ["CommandHandler", "Events", "Source", "times"]

_CYCLE_BITS = 32


def times(value, constant: int):
    """value * constant as shifts and adds, so no multiplier (or DSP block) is inferred."""
    terms = [value << bit for bit in range(constant.bit_length()) if constant >> bit & 1]
    total = Const(0, 1)
    for term in terms:
        total = total + term
    return total


class Source(enum.Enum, shape=2):
    """Where the reply's data bytes come from."""
    INFO = 0         # identity, counters, CRC or cycle count bytes
    WORDS = 1        # memory words (READ)
    OUTPUTS = 2      # the output buffer (READ_OUTPUTS)


class Events(data.StructLayout):
    def __init__(self):
        super().__init__({"uart_error": 1, "garbage": 1, "overrun": 1})


@dataclass
class _DataPaths:
    """The byte streams between the link, the buffers and the engine (one elaboration's)."""
    payload_reader: ByteReader
    input_writer: ByteWriter
    input_reader: ByteReader
    output_writer: ByteWriter
    output_reader: ByteReader
    region_crc: CRC
    word_reader: WordReader | None          # None: the engine has no RAM memory
    word_writer: WordWriter | None
    region: Signal                          # the memory index the word reader and writer use
    all_regions: Signal                     # a CRC over every memory is running


@dataclass
class _ReplySource:
    """The reply header and the registers that choose and hold its data bytes."""
    header: data.View
    source: Signal
    info_index: Signal
    counter_loaded: Signal
    crc_value: Signal
    cycles: Signal


@dataclass
class _ExactlyOnce:
    """The duplicate rule's state and the verdict it gives a checked frame."""
    changes_state: Value                    # the frame's command is WRITE, WRITE_INPUTS or RUN
    last_seq: Signal                        # of the last state-changing frame executed
    last_seq_valid: Signal
    verdict: Signal
    dispatching: Signal                     # the verdict is given (counted) this cycle


class _Request:
    """A request's fields (docs/spec.md section 14.5) as views of the head bytes, and the
    memory range they name, for the checks and the commands.

    `words_bytes` is count * the selected memory's word bytes; `region_ok` says whether
    the memory index and [addr, addr + count) are inside the engine's memories.
    """

    def __init__(self, cmd, head, regions, region: Signal):
        self.memory = head[0]
        self.addr = Cat(*(head[k] for k in range(1, 5)))
        self.words = Cat(*(head[k] for k in range(5, 9)))
        self.vectors = Cat(head[0], head[1])                    # WRITE_INPUTS, RUN count; READ_OUTPUTS first
        self.out_count = Cat(head[2], head[3])                  # READ_OUTPUTS count
        self.words_fit = self.words[16:] == 0
        self.every_region = (cmd == Command.CRC) & (self.memory == ALL_MEMORIES)
        if regions:
            span = max(r.depth for r in regions).bit_length()           # bits of the largest depth
            chosen = self.memory[:len(region)] if len(region) else Const(0, 1)
            self.depths = Array(Const(r.depth, span) for r in regions)
            shift_bits = max(r.word_bytes for r in regions).bit_length()
            shifts = Array(Const(r.word_bytes.bit_length() - 1, shift_bits) for r in regions)
            self.words_bytes = self.words[:16] << shifts[chosen]        # word bytes are powers of two
            self.region_ok = ((self.memory < len(regions)) & (self.addr[span:] == 0) & (self.words[span:] == 0) &
                              (self.addr[:span] + self.words[:span] <= self.depths[chosen]))
        else:
            self.words_bytes = Const(0, 1)
            self.region_ok = Const(0, 1)


class CommandHandler(wiring.Component):
    """Executes the frames of the board link (docs/spec.md section 14) on an engine.

    Parameters
    ----------
    board : BoardMap
        The board's memories, vector sizes and buffers.
    engine : EngineSignature
        The engine's signature; its RAM memories must be the board's regions, in order.

    Members
    -------
    frame, head, payload : the decoded frame, its first HEAD_BYTES payload bytes and a
        read port on its whole payload (held until `frame.ready`).
    reply, data : the reply header and its data bytes, for the frame encoder.
    engine : :py:`In(engine)`, the engine's ports.
    events : byte-level events for the counters.
    busy : a frame is inside. executed / rejected : pulse per frame answered OK / not OK.
    """

    def __init__(self, board: BoardMap, engine: EngineSignature):
        self.board, self.engine_signature = board, engine
        names = [memory.layout.name for memory in engine.ram_memories]
        if names != [region.name for region in board.regions]:
            raise ValueError(f"CommandHandler: the engine's RAM memories {names} are not the board's regions "
                             f"{[region.name for region in board.regions]}")
        super().__init__({
            "frame": In(stream.Signature(FrameInfo())),
            "head": In(data.ArrayLayout(8, HEAD_BYTES)),
            "payload": In(memory.ReadPort.Signature(addr_width=max(1, (board.max_payload - 1).bit_length()),
                                                    shape=8)),
            "reply": Out(stream.Signature(ReplyInfo())),
            "data": Out(stream.Signature(8)),
            "engine": In(engine),
            "events": In(Events()),
            "busy": Out(1),
            "executed": Out(1),          # pulses: a frame executed (status OK)
            "rejected": Out(1),          # pulses: a frame answered with an error status
        })

    def elaborate(self, platform):
        m = Module()
        frame = self.frame.payload
        paths = self._data_paths(m)
        counters, verdict_events = self._counters(m)
        request = _Request(frame.cmd, self.head, self.board.regions, paths.region)
        status, data_length = self._checks(m, request)
        checked_status = Signal(8)
        checked_length = Signal(16)
        once = self._exactly_once(m, checked_status)
        m.d.comb += verdict_events.eq(Mux(once.dispatching, Const(1, len(Status)) << once.verdict[:3], 0))
        reply = self._reply_source(m, paths, counters)

        # The command sequence: CHECK registers the checks' result, DISPATCH gives the
        # verdict and starts an accepted command, which runs in COPY, CRC or RUN (or
        # streams its reply data), REPLY hands the reply over and releases the frame.
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.frame.valid):
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [checked_status.eq(status), checked_length.eq(data_length)]
                m.next = "DISPATCH"
            with m.State("DISPATCH"):
                m.d.comb += self.busy.eq(1)
                with m.If(self.engine.idle):        # memory ports and buffers are free once the engine is
                    verdict = once.verdict
                    m.d.sync += [reply.header.cmd.eq(frame.cmd), reply.header.seq.eq(frame.seq),
                                 reply.header.status.eq(verdict),
                                 reply.header.length.eq(Mux(verdict == Status.OK, checked_length, 0)),
                                 reply.source.eq(Source.INFO), reply.info_index.eq(0),
                                 paths.region.eq(request.memory), reply.counter_loaded.eq(0)]
                    m.d.comb += [self.executed.eq(verdict == Status.OK), self.rejected.eq(verdict != Status.OK),
                                 once.dispatching.eq(1)]
                    m.next = "REPLY"
                    with m.If(verdict == Status.OK):
                        with m.If(once.changes_state):
                            m.d.sync += [once.last_seq.eq(frame.seq), once.last_seq_valid.eq(1)]
                        self._start(m, request, paths, reply, once)
            with m.State("COPY"):
                m.d.comb += self.busy.eq(1)
                writing = paths.word_writer.busy if paths.word_writer is not None else Const(0, 1)
                with m.If(~paths.payload_reader.busy & ~writing):
                    m.next = "REPLY"
            with m.State("CRC"):
                m.d.comb += self.busy.eq(1)
                self._crc_regions(m, request, paths, reply)
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += reply.cycles.eq(reply.cycles + 1)
                with m.If(paths.output_writer.written == times(request.vectors, self.board.out_vector_bytes)):
                    m.next = "REPLY"
            with m.State("REPLY"):
                m.d.comb += [self.busy.eq(1), self.reply.valid.eq(1), self.frame.ready.eq(self.reply.ready)]
                with m.If(self.reply.ready):
                    m.next = "IDLE"
        return m

    def _data_paths(self, m) -> _DataPaths:
        """The input and output buffers with their byte streams to the engine, the payload
        reader, and the word reader and writer on the selected memory's ports (the other
        memories see their enables low)."""
        board = self.board
        in_bytes, out_bytes = board.batch * board.in_vector_bytes, board.batch * board.out_vector_bytes
        signature = self.engine_signature
        m.submodules.inputs = inputs = memory.Memory(shape=8, depth=in_bytes, init=[])
        m.submodules.outputs = outputs = memory.Memory(shape=8, depth=out_bytes, init=[])
        m.submodules.payload_reader = payload_reader = ByteReader(board.max_payload)
        m.submodules.input_writer = input_writer = ByteWriter(in_bytes)
        m.submodules.input_reader = input_reader = ByteReader(in_bytes)
        m.submodules.to_beats = to_beats = BytesToBeats(board.in_elements, signature.in_lanes, signature.in_shape)
        m.submodules.to_bytes = to_bytes = BeatsToBytes(board.out_elements, signature.out_lanes, signature.out_shape)
        m.submodules.output_writer = output_writer = ByteWriter(out_bytes)
        m.submodules.output_reader = output_reader = ByteReader(out_bytes)
        m.submodules.region_crc = region_crc = CRC(MEMORY_CRC)

        connect(m, payload_reader.memory, flipped(self.payload))
        connect(m, input_writer.memory, inputs.write_port())
        connect(m, input_reader.memory, inputs.read_port())
        connect(m, input_reader.o, to_beats.i)
        connect(m, to_beats.o, flipped(self.engine.i))
        connect(m, flipped(self.engine.o), to_bytes.i)
        connect(m, to_bytes.o, output_writer.i)
        connect(m, output_writer.memory, outputs.write_port())
        connect(m, output_reader.memory, outputs.read_port())

        regions = board.regions
        region = Signal(range(max(1, len(regions))))
        word_reader = word_writer = None
        if regions:
            addr_width = max(max(1, (r.depth - 1).bit_length()) for r in regions)
            m.submodules.word_reader = word_reader = WordReader(addr_width, [r.word_bits for r in regions])
            m.submodules.word_writer = word_writer = WordWriter(addr_width, [r.word_bits for r in regions])
            m.d.comb += [word_reader.select.eq(region), word_writer.select.eq(region)]
            for index, ram in enumerate(signature.ram_memories):
                write, read = self.engine.write_port(ram), self.engine.read_port(ram)
                ours_w, ours_r = getattr(word_writer, f"memory{index}"), getattr(word_reader, f"memory{index}")
                m.d.comb += [write.addr.eq(ours_w.addr), write.data.eq(ours_w.data), write.en.eq(ours_w.en),
                             read.addr.eq(ours_r.addr), read.en.eq(ours_r.en), ours_r.data.eq(read.data)]

        # The payload reader feeds the word writer (WRITE) or the input buffer (WRITE_INPUTS).
        to_words = self.frame.payload.cmd == Command.WRITE
        m.d.comb += [input_writer.i.payload.eq(payload_reader.o.payload),
                     input_writer.i.valid.eq(payload_reader.o.valid & ~to_words),
                     payload_reader.o.ready.eq(Mux(to_words, 1, input_writer.i.ready))]
        if word_writer is not None:
            m.d.comb += [word_writer.i.payload.eq(payload_reader.o.payload),
                         word_writer.i.valid.eq(payload_reader.o.valid & to_words)]
        all_regions = Signal()
        return _DataPaths(payload_reader, input_writer, input_reader, output_writer, output_reader, region_crc,
                          word_reader, word_writer, region, all_regions)

    def _counters(self, m):
        """The counters of link_protocol.COUNTERS: the verdicts in Status order (`verdict_events`,
        one bit per status), then the byte events."""
        m.submodules.counters = counters = EventCounters(len(COUNTERS), COUNTER_BITS)
        verdict_events = Signal(len(Status))
        m.d.comb += counters.events.eq(Cat(verdict_events, self.events.uart_error, self.events.overrun,
                                           self.events.garbage))
        return counters, verdict_events

    def _checks(self, m, request: _Request):
        """The status of a frame by the checks of docs/spec.md section 14.4, in that order (the
        first that fails gives it), and the length of its reply data if it is OK."""
        board, frame = self.board, self.frame.payload
        cmd, length = frame.cmd, frame.length
        request_bytes = MEMORY_REQUEST.size
        words = request.words
        status = Signal(8)
        data_length = Signal(16)
        with m.If(frame.status != Status.OK):                       # 1. the frame
            m.d.comb += status.eq(frame.status)
        with m.Else():
            with m.Switch(cmd):                                     # 3. per command
                with m.Case(Command.IDENTIFY, Command.STATUS):
                    m.d.comb += status.eq(Mux(length == 0, Status.OK, Status.BAD_LENGTH))
                    m.d.comb += data_length.eq(Mux(cmd == Command.IDENTIFY, Identity.LAYOUT.size,
                                                   Counters.LAYOUT.size))
                with m.Case(Command.WRITE):
                    with m.If(length < request_bytes):
                        m.d.comb += status.eq(Status.BAD_LENGTH)
                    with m.Elif(~request.region_ok):
                        m.d.comb += status.eq(Status.BAD_ADDRESS)
                    with m.Elif((words == 0) | ~request.words_fit | (length != request_bytes + request.words_bytes)):
                        m.d.comb += status.eq(Status.BAD_LENGTH)
                with m.Case(Command.READ, Command.CRC):
                    with m.If(length != request_bytes):
                        m.d.comb += status.eq(Status.BAD_LENGTH)
                    with m.Elif(request.every_region):
                        with m.If((request.addr != 0) | (words != 0)):
                            m.d.comb += status.eq(Status.BAD_ADDRESS)
                    with m.Elif(~request.region_ok):
                        m.d.comb += status.eq(Status.BAD_ADDRESS)
                    with m.Elif((words == 0) | ((cmd == Command.READ) &
                                                (~request.words_fit |
                                                 (1 + request.words_bytes > board.max_payload)))):
                        m.d.comb += status.eq(Status.BAD_LENGTH)
                    m.d.comb += data_length.eq(Mux(cmd == Command.READ, request.words_bytes, CRC_REPLY.size))
                with m.Case(Command.WRITE_INPUTS):
                    with m.If((length < COUNT_REQUEST.size) | (request.vectors == 0) |
                              (length != COUNT_REQUEST.size + times(request.vectors, board.in_vector_bytes))):
                        m.d.comb += status.eq(Status.BAD_LENGTH)
                with m.Case(Command.RUN):
                    with m.If(length != COUNT_REQUEST.size):
                        m.d.comb += status.eq(Status.BAD_LENGTH)
                    with m.Elif((request.vectors == 0) | (request.vectors > board.batch)):
                        m.d.comb += status.eq(Status.BAD_ADDRESS)
                    m.d.comb += data_length.eq(RUN_REPLY.size)
                with m.Case(Command.READ_OUTPUTS):
                    out_count = request.out_count
                    with m.If(length != OUTPUTS_REQUEST.size):
                        m.d.comb += status.eq(Status.BAD_LENGTH)
                    with m.Elif((out_count == 0) | (request.vectors + out_count > board.batch)):
                        m.d.comb += status.eq(Status.BAD_ADDRESS)
                    with m.Elif(1 + times(out_count, board.out_vector_bytes) > board.max_payload):
                        m.d.comb += status.eq(Status.BAD_LENGTH)
                    m.d.comb += data_length.eq(times(out_count, board.out_vector_bytes))
                with m.Default():                                   # 2. the command
                    m.d.comb += status.eq(Status.UNKNOWN_COMMAND)
        return status, data_length

    def _exactly_once(self, m, checked_status) -> _ExactlyOnce:
        """4. Exactly once: a state-changing frame carrying the sequence number of the last one
        executed is a retry of it (its reply was lost) and is not executed again. The verdict
        is the checked status, or DUPLICATE for such a retry."""
        frame = self.frame.payload
        cmd = frame.cmd
        last_seq = Signal(8)
        last_seq_valid = Signal()
        changes_state = (cmd == Command.WRITE) | (cmd == Command.WRITE_INPUTS) | (cmd == Command.RUN)
        duplicate = changes_state & last_seq_valid & (last_seq == frame.seq)
        verdict = Signal(8)
        m.d.comb += verdict.eq(Mux((checked_status == Status.OK) & duplicate, Status.DUPLICATE, checked_status))
        dispatching = Signal()
        return _ExactlyOnce(changes_state, last_seq, last_seq_valid, verdict, dispatching)

    def _reply_source(self, m, paths: _DataPaths, counters) -> _ReplySource:
        """The reply's data bytes: picked by index from the identity, the counters, the CRC or
        the cycle count (INFO), or streamed from the memory words or the output buffer."""
        board = self.board
        reply = self.reply.payload
        source = Signal(Source)
        info_index = Signal(range(Identity.LAYOUT.size + 1))
        crc_value = Signal(32)
        cycles = Signal(_CYCLE_BITS)
        # Each reply's bytes are picked by index first and the reply chosen last: choosing
        # among whole replies first would multiplex every bit of the longest one.
        identity = Array(Const(byte, 8) for byte in board.identity().pack())
        info_byte = Signal(8)
        info_valid = Signal(init=1)
        # STATUS: each counter is fetched from the counter memory for its two bytes
        counter_value, counter_loaded = Signal(COUNTER_BITS), Signal(range(len(COUNTERS) + 1))
        counter = info_index[1:]
        with m.Switch(reply.cmd):
            with m.Case(Command.IDENTIFY):
                m.d.comb += info_byte.eq(identity[info_index])
            with m.Case(Command.STATUS):
                with m.If(counter == len(COUNTERS)):
                    m.d.comb += info_byte.eq(Cat(self.engine.framing_error, self.engine.idle))
                with m.Else():
                    m.d.comb += [info_byte.eq(counter_value.word_select(info_index[0], 8)),
                                 info_valid.eq(counter_loaded == counter + 1)]
                    with m.If((counter_loaded != counter + 1) & (source == Source.INFO) & self.reply.valid):
                        m.d.comb += [counters.read_en.eq(1), counters.read_index.eq(counter)]
                    with m.If(counters.read_valid):
                        m.d.sync += [counter_value.eq(counters.read_value), counter_loaded.eq(counter + 1)]
            with m.Case(Command.CRC):
                m.d.comb += info_byte.eq(crc_value.word_select(info_index[:2], 8))
            with m.Case(Command.RUN):
                m.d.comb += info_byte.eq(cycles.word_select(info_index[:2], 8))
        with m.Switch(source):
            with m.Case(Source.INFO):
                m.d.comb += [self.data.valid.eq(info_valid), self.data.payload.eq(info_byte)]
                with m.If(self.data.valid & self.data.ready):
                    m.d.sync += info_index.eq(info_index + 1)
            with m.Case(Source.WORDS):
                if paths.word_reader is not None:
                    connect(m, paths.word_reader.o, flipped(self.data))
            with m.Case(Source.OUTPUTS):
                connect(m, paths.output_reader.o, flipped(self.data))
        if paths.word_reader is not None:
            m.d.comb += [paths.region_crc.byte.eq(paths.word_reader.o.payload)]
        return _ReplySource(reply, source, info_index, counter_loaded, crc_value, cycles)

    def _start(self, m, request: _Request, paths: _DataPaths, reply: _ReplySource, once: _ExactlyOnce):
        """DISPATCH of an accepted frame: start its command's data path and pick the next state."""
        board = self.board
        cmd, length = self.frame.payload.cmd, self.frame.payload.length
        payload_reader, word_reader, word_writer = paths.payload_reader, paths.word_reader, paths.word_writer
        with m.Switch(cmd):
            with m.Case(Command.IDENTIFY):
                m.d.sync += once.last_seq_valid.eq(0)
            with m.Case(Command.WRITE):
                m.d.comb += [payload_reader.start.eq(1), payload_reader.first.eq(MEMORY_REQUEST.size),
                             payload_reader.count.eq(length - MEMORY_REQUEST.size)]
                if word_writer is not None:
                    m.d.comb += [word_writer.start.eq(1), word_writer.first.eq(request.addr)]
                m.next = "COPY"
            with m.Case(Command.WRITE_INPUTS):
                m.d.comb += [payload_reader.start.eq(1),
                             payload_reader.first.eq(COUNT_REQUEST.size),
                             payload_reader.count.eq(length - COUNT_REQUEST.size),
                             paths.input_writer.start.eq(1)]
                m.next = "COPY"
            with m.Case(Command.READ, Command.CRC):
                if word_reader is not None:
                    m.d.comb += [word_reader.start.eq(1), word_reader.first.eq(request.addr),
                                 word_reader.count.eq(request.words)]
                    with m.If(request.every_region):
                        m.d.comb += [word_reader.first.eq(0), word_reader.count.eq(request.depths[0])]
                        m.d.sync += paths.region.eq(0)
                m.d.sync += paths.all_regions.eq(request.every_region)
                m.d.comb += paths.region_crc.clear.eq(1)
                with m.If(cmd == Command.READ):
                    m.d.sync += reply.source.eq(Source.WORDS)
                with m.Else():
                    m.next = "CRC"
            with m.Case(Command.RUN):
                m.d.comb += [paths.input_reader.start.eq(1), paths.input_reader.first.eq(0),
                             paths.input_reader.count.eq(times(request.vectors, board.in_vector_bytes)),
                             paths.output_writer.start.eq(1)]
                m.d.sync += reply.cycles.eq(0)
                m.next = "RUN"
            with m.Case(Command.READ_OUTPUTS):
                m.d.comb += [paths.output_reader.start.eq(1),
                             paths.output_reader.first.eq(times(request.vectors, board.out_vector_bytes)),
                             paths.output_reader.count.eq(times(request.out_count, board.out_vector_bytes))]
                m.d.sync += reply.source.eq(Source.OUTPUTS)

    def _crc_regions(self, m, request: _Request, paths: _DataPaths, reply: _ReplySource):
        """The CRC state: the words stream through the CRC, memory after memory for ALL_MEMORIES."""
        word_reader, region_crc, region = paths.word_reader, paths.region_crc, paths.region
        if word_reader is not None:
            m.d.comb += [word_reader.o.ready.eq(1), region_crc.en.eq(word_reader.o.valid)]
            with m.If(~word_reader.busy):
                with m.If(paths.all_regions & (region != len(self.board.regions) - 1)):
                    m.d.sync += region.eq(region + 1)
                    m.d.comb += [word_reader.start.eq(1), word_reader.first.eq(0),
                                 word_reader.count.eq(request.depths[region + 1])]
                with m.Else():
                    m.d.sync += reply.crc_value.eq(region_crc.value)
                    m.next = "REPLY"
        else:
            m.d.sync += reply.crc_value.eq(region_crc.value)
            m.next = "REPLY"

