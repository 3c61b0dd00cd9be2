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

RUN only starts the engine: it streams the input buffer through the engine into one of
two output slots in the background (its own input reader, the shared writer), while
frames go on: READ_OUTPUTS of the other slot, STATUS and IDENTIFY at once, every other
command once the run is done (WAIT for nothing else). So the host sends the next inputs
and reads the last outputs while the engine computes.
"""
from dataclasses import dataclass

from amaranth import Array, Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out, connect, flipped

from nomac.boards.board_map import BoardMap
from nomac.boards.byte_streams import BeatsToBytes, ByteReader, BytesToBeats, ByteWriter, WordPorts
from nomac.boards.event_counters import EventCounters
from nomac.boards.link_gateware import HEAD_BYTES, SerialCRC, STATUS_BITS, FrameInfo, ReplyInfo, below, length_bits
from nomac.boards.link_protocol import (ALL_MEMORIES, COUNTER_BITS, COUNTERS, CRC_REPLY, MEMORY_CRC, MEMORY_REQUEST,
                                        OUTPUT_SLOTS, OUTPUTS_REQUEST, RUN_REQUEST, WAIT_REPLY, COUNT_REQUEST,
                                        Command, Counters, Identity, Status)
from nomac.hw.buffer_memory import BufferMemory
from nomac.hw.engine import EngineSignature

__all__ = ["CommandHandler", "Events", "Source", "times"]


def times(value, constant: int):
    """value * constant as shifts and adds, so no multiplier (or DSP block) is inferred."""
    terms = [value << bit for bit in range(constant.bit_length()) if constant >> bit & 1]
    total = Const(0, 1)
    for term in terms:
        total = total + term
    return total


class Source(enum.Enum, shape=2):
    """Where the reply's data bytes come from."""
    INFO = 0         # identity, counters, CRC or cycle count (WAIT) bytes
    WORDS = 1        # memory words (READ)
    OUTPUTS = 2      # the output buffer (READ_OUTPUTS)


class Events(data.StructLayout):
    def __init__(self):
        super().__init__({"uart_error": 1, "garbage": 1, "overrun": 1})


@dataclass
class _Run:
    """The background run's state: set by RUN's dispatch, done when its outputs are stored."""
    active: Signal
    count: Signal                           # input vectors
    slot: Signal                            # the output slot it fills
    cycles: Signal                          # from its start until its last output byte was stored
    reader: ByteReader                      # the input buffer to the engine


@dataclass
class _DataPaths:
    """The byte streams between the link, the buffers and the engine (one elaboration's)."""
    byte_reader: ByteReader                 # the payload (WRITE, WRITE_INPUTS), outputs (READ_OUTPUTS)
    byte_writer: ByteWriter                 # the inputs (WRITE_INPUTS), outputs (a run)
    region_crc: SerialCRC
    words: WordPorts | None                 # None: the engine has no RAM memory
    region: Signal                          # the memory index the word ports use
    run: _Run
    slot_bits: int                          # an output slot is 2^slot_bits bytes


@dataclass
class _ReplySource:
    """The reply header and the registers that choose and hold its data bytes."""
    header: data.View
    source: Signal
    info_index: Signal


@dataclass
class _ExactlyOnce:
    """The duplicate rule's state and the verdict it gives a checked frame."""
    changes_state: Value                    # the frame's command is WRITE, WRITE_INPUTS or RUN
    last_seq: Signal                        # of the last state-changing frame executed
    last_seq_valid: Signal
    verdict: Signal
    dispatching: Signal                     # the verdict is given (counted) this cycle


class _Request:
    """A request's fields (docs/spec.md section 14.5) as views of the head bytes, and what the
    checks and the commands derive from them, each only as wide as the board map bounds it.

    A frame that passed the decoder is at most max_payload long, so a count that would
    make it longer is only flagged (`words_few`, `vectors_few`, `count_few`) and the
    arithmetic runs on the low bits: `words_bytes` is count * the selected memory's word
    bytes (when `words_few`), `end` is addr + count (when `in_span`); `first` and `count`
    are READ_OUTPUTS' (`first` also the WRITE_INPUTS and RUN count), below 2^bits(batch);
    `run_slot` and `outputs_slot` the slot bit of RUN and READ_OUTPUTS, `*_slot_ok` that the
    slot byte is below OUTPUT_SLOTS.
    """

    def __init__(self, head, head_zero, board: BoardMap, region: Signal):
        regions = board.regions

        def zero_above(first_byte, size, bit):
            """Whether the little-endian field of head bytes [first_byte, +size) is below 2^bit:
            whole bytes above `bit` by the decoder's zero flags, so their registers go unused."""
            terms = []
            for k in range(size):
                if 8 * k >= bit:
                    terms.append(head_zero[first_byte + k])
                elif 8 * k + 8 > bit:
                    terms.append(head[first_byte + k][bit - 8 * k:] == 0)
            return Cat(*terms).all() if terms else Const(1, 1)

        self.memory = head[0]
        self.addr = Cat(*(head[k] for k in range(1, 5)))
        self.words = Cat(*(head[k] for k in range(5, 9)))
        vectors = Cat(head[0], head[1])                         # WRITE_INPUTS, RUN count; READ_OUTPUTS first
        out_count = Cat(head[2], head[3])                       # READ_OUTPUTS count
        self.addr_zero, self.words_zero = zero_above(1, 4, 0), zero_above(5, 4, 0)
        self.all_memories = self.memory == ALL_MEMORIES
        batch_bits = board.batch.bit_length()
        self.vectors_few, self.count_few = zero_above(0, 2, batch_bits), zero_above(2, 2, batch_bits)
        self.first, self.count = vectors[:batch_bits], out_count[:batch_bits]
        self.outputs_end = self.first + self.count
        assert OUTPUT_SLOTS == 2
        self.run_slot, self.run_slot_ok = head[2][0], head[2][1:] == 0
        self.outputs_slot, self.outputs_slot_ok = head[4][0], head[4][1:] == 0
        bits = length_bits(board.max_payload)
        self.words_few = zero_above(5, 4, bits)
        if regions:
            span = max(r.depth for r in regions).bit_length()           # bits of the largest depth
            chosen = self.memory[:len(region)] if len(region) else Const(0, 1)
            self.depths = Array(Const(r.depth, span) for r in regions)
            shift_bits = max(r.word_bytes for r in regions).bit_length()
            shifts = Array(Const(r.word_bytes.bit_length() - 1, shift_bits) for r in regions)
            self.words_bytes = self.words[:bits] << shifts[chosen]       # word bytes are powers of two
            self.end = self.addr[:span] + self.words[:span]
            in_span = zero_above(1, 4, span) & zero_above(5, 4, span)
            fits = Cat(*(below(self.end, r.depth + 1) for r in regions))
            self.region_ok = below(self.memory, len(regions)) & in_span & fits.bit_select(chosen, 1)
        else:
            self.words_bytes = Const(0, 1)
            self.end = Const(0, 1)
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
    frame, head, head_zero, payload : the decoded frame, its first HEAD_BYTES payload bytes,
        which of them are zero, and a read port on its whole payload (held until `frame.ready`).
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
            "frame": In(stream.Signature(FrameInfo(board.max_payload))),
            "head": In(data.ArrayLayout(8, HEAD_BYTES)),
            "head_zero": In(HEAD_BYTES),
            "payload": In(memory.ReadPort.Signature(addr_width=max(1, (board.max_payload - 1).bit_length()),
                                                    shape=8)),
            "reply": Out(stream.Signature(ReplyInfo(board.max_payload))),
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
        # The command decoded once, in CHECK, for the data paths and the reply: their paths
        # start at a flip-flop, not at a comparison of the frame's cmd.
        command = {c: Signal(name=f"is_{c.name.lower()}") for c in Command}
        paths = self._data_paths(m, command)
        counters = self._counters(m)
        request = _Request(self.head, self.head_zero, self.board, paths.region)
        # The memory range's sums and comparisons are registered every cycle: the head bytes
        # hold from the payload's end on, so they are settled when the frame is offered (after
        # its CRC bytes), and CHECK's path starts at these registers.
        if self.board.regions:
            for name in ("end", "words_bytes", "region_ok"):
                value = getattr(request, name)
                registered = Signal(len(value), name=f"request_{name}")
                m.d.sync += registered.eq(value)
                setattr(request, name, registered)
        status, data_length = self._checks(m, request)
        reply = self._reply_source(m, paths, counters, command)
        run = paths.run
        once = self._exactly_once(m, status)
        self._ranges(m, request, paths, once.dispatching, command)
        m.d.comb += [counters.event0.valid.eq(once.dispatching), counters.event0.index.eq(reply.header.status)]
        # The reply's cmd and seq are the frame's, which stays offered until the reply is out.
        m.d.comb += [reply.header.cmd.eq(frame.cmd), reply.header.seq.eq(frame.seq)]

        # The command sequence: CHECK registers the verdict (the checks' status, or DUPLICATE),
        # DISPATCH gives it and starts an accepted command, which runs in COPY or CRC (or streams
        # its reply data; a RUN runs on in the background), REPLY hands the reply over and
        # releases the frame.
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.frame.valid):
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [reply.header.status.eq(once.verdict), reply.header.length.eq(data_length),
                             *(flag.eq(frame.cmd == c) for c, flag in command.items())]
                m.next = "DISPATCH"
            with m.State("DISPATCH"):
                m.d.comb += self.busy.eq(1)
                # The memory ports and buffers are free once the engine is and no run is on; IDENTIFY
                # and STATUS need neither, READ_OUTPUTS only its slot.
                free = self.engine.idle & ~run.active
                slot_busy = run.active & (request.outputs_slot == run.slot)
                with m.If(free | command[Command.IDENTIFY] | command[Command.STATUS] |
                          (command[Command.READ_OUTPUTS] & ~slot_busy)):
                    accepted = reply.header.status == Status.OK
                    m.d.sync += [reply.source.eq(Source.INFO), reply.info_index.eq(0),
                                 paths.region.eq(Mux(request.all_memories, 0, request.memory))]
                    with m.If(~accepted):
                        m.d.sync += reply.header.length.eq(0)
                    m.d.comb += [self.executed.eq(accepted), self.rejected.eq(~accepted),
                                 once.dispatching.eq(1)]
                    m.next = "REPLY"
                    with m.If(accepted):
                        with m.If(once.changes_state):
                            m.d.sync += [once.last_seq.eq(frame.seq), once.last_seq_valid.eq(1)]
                        self._start(m, request, paths, reply, once, command)
            with m.State("COPY"):
                m.d.comb += self.busy.eq(1)
                writing = paths.words.busy if paths.words is not None else Const(0, 1)
                with m.If(~paths.byte_reader.busy & ~writing):
                    m.next = "REPLY"
            with m.State("CRC"):
                m.d.comb += self.busy.eq(1)
                self._crc_regions(m, request, paths)
            with m.State("CRC_NEXT"):           # the next memory: its start comes from a state, not from `busy`
                m.d.comb += self.busy.eq(1)
                if paths.words is not None:
                    m.d.comb += paths.words.start.eq(1)
                m.next = "CRC"
            with m.State("REPLY"):
                m.d.comb += [self.busy.eq(1), self.reply.valid.eq(1), self.frame.ready.eq(self.reply.ready)]
                with m.If(self.reply.ready):
                    m.next = "IDLE"
        with m.If(run.active & (paths.byte_writer.written == times(run.count, self.board.out_vector_bytes))):
            m.d.sync += run.active.eq(0)
        with m.If(run.active):
            m.d.sync += run.cycles.eq(run.cycles + 1)
        return m

    def _data_paths(self, m, command) -> _DataPaths:
        """The input and output buffers with their byte streams to the engine, the byte reader
        and writer on the payload and the buffers, and the word ports on the
        selected memory's ports (the other memories see their enables low)."""
        board = self.board
        in_bytes, out_bytes = board.batch * board.in_vector_bytes, board.batch * board.out_vector_bytes
        signature = self.engine_signature
        # An output slot is a power of two above its bytes, so a slot's addresses are its
        # bytes' with the slot bit on top (no adder), even the end of a full slot.
        slot_bits = out_bytes.bit_length()
        # No read meets a write: WRITE_INPUTS writes the inputs only while no run reads them,
        # and READ_OUTPUTS reads only a slot no run is writing.
        m.submodules.inputs = inputs = BufferMemory(shape=8, depth=in_bytes)
        m.submodules.outputs = outputs = BufferMemory(shape=8, depth=OUTPUT_SLOTS << slot_bits)
        m.submodules.byte_reader = byte_reader = ByteReader([board.max_payload, OUTPUT_SLOTS << slot_bits])
        m.submodules.run_reader = run_reader = ByteReader([in_bytes])
        m.submodules.byte_writer = byte_writer = ByteWriter([in_bytes, out_bytes])
        m.submodules.to_beats = to_beats = BytesToBeats(board.in_elements, signature.in_lanes, signature.in_shape)
        m.submodules.to_bytes = to_bytes = BeatsToBytes(board.out_elements, signature.out_lanes, signature.out_shape)
        m.submodules.region_crc = region_crc = SerialCRC(MEMORY_CRC)
        run = _Run(active=Signal(name="run_active"), count=Signal(range(board.batch + 1), name="run_count"),
                   slot=Signal(name="run_slot"), cycles=Signal(8 * WAIT_REPLY.size, name="run_cycles"),
                   reader=run_reader)

        # The run has its own input reader, as READ_OUTPUTS reads while it runs. The payload
        # and output reads share the other reader, the input and output writes the writer
        # (WRITE_INPUTS waits for the run): their memory is chosen by the command or the run.
        m.d.comb += [byte_reader.select.eq(command[Command.READ_OUTPUTS]), byte_writer.select.eq(run.active),
                     run_reader.first.eq(0), run_reader.end.eq(times(run.count, board.in_vector_bytes))]
        connect(m, byte_reader.memory0, flipped(self.payload))
        connect(m, byte_reader.memory1, outputs.read)
        connect(m, run_reader.memory0, inputs.read)
        connect(m, byte_writer.memory0, inputs.write)
        slot_write = byte_writer.memory1
        m.d.comb += [outputs.write.addr.eq(slot_write.addr | (run.slot << slot_bits)),
                     outputs.write.data.eq(slot_write.data), outputs.write.en.eq(slot_write.en)]
        connect(m, run_reader.o, to_beats.i)
        connect(m, to_beats.o, flipped(self.engine.i))
        connect(m, flipped(self.engine.o), to_bytes.i)
        m.d.comb += [to_bytes.o.ready.eq(byte_writer.i.ready & run.active),
                     byte_writer.i.payload.eq(Mux(run.active, to_bytes.o.payload, byte_reader.o.payload)),
                     byte_writer.i.valid.eq(Mux(run.active, to_bytes.o.valid,
                                                byte_reader.o.valid & command[Command.WRITE_INPUTS]))]

        regions = board.regions
        region = Signal(range(max(1, len(regions))))
        words = None
        if regions:
            addr_width = max(max(1, (r.depth - 1).bit_length()) for r in regions)
            m.submodules.words = words = WordPorts(addr_width, [r.word_bits for r in regions])
            m.d.comb += [words.select.eq(region), words.write.eq(command[Command.WRITE])]
            for index, ram in enumerate(signature.ram_memories):
                write, read = self.engine.write_port(ram), self.engine.read_port(ram)
                ours_w, ours_r = getattr(words, f"write{index}"), getattr(words, f"read{index}")
                m.d.comb += [write.addr.eq(ours_w.addr), write.data.eq(ours_w.data), write.en.eq(ours_w.en),
                             read.addr.eq(ours_r.addr), read.en.eq(ours_r.en), ours_r.data.eq(read.data)]

        # The payload feeds the word writer (WRITE) or the input buffer (WRITE_INPUTS), the output
        # buffer the reply (READ_OUTPUTS: `_reply_source`); the run has its own reader.
        to_words = command[Command.WRITE]
        m.d.comb += byte_reader.o.ready.eq(Mux(to_words, 1, Mux(command[Command.WRITE_INPUTS], byte_writer.i.ready,
                                                                self.data.ready)))
        if words is not None:
            m.d.comb += [words.i.payload.eq(byte_reader.o.payload), words.i.valid.eq(byte_reader.o.valid & to_words)]
        return _DataPaths(byte_reader, byte_writer, region_crc, words, region, run, slot_bits)

    def _counters(self, m):
        """The counters of link_protocol.COUNTERS: the verdicts in Status order (`event0`, set by
        the caller), then the byte events (`event1`: a byte is one of them at most); after them,
        the IDENTIFY reply's bytes in counter words (little-endian, as the counters are sent)."""
        identity = self.board.identity().pack()
        size = COUNTER_BITS // 8
        words = [int.from_bytes(identity[k:k + size], "little") for k in range(0, len(identity), size)]
        m.submodules.counters = counters = EventCounters(len(COUNTERS), COUNTER_BITS, words, sources=2)
        events = self.events
        m.d.comb += [counters.event1.valid.eq(events.uart_error | events.overrun | events.garbage),
                     counters.event1.index.eq(Mux(events.uart_error, COUNTERS.index("uart_errors"),
                                                  Mux(events.overrun, COUNTERS.index("overruns"),
                                                      COUNTERS.index("garbage_bytes"))))]
        return counters

    def _checks(self, m, request: _Request):
        """The status of a frame by the checks of docs/spec.md section 14.4, in that order (the
        first that fails gives it), and the length of its reply data if it is OK. The frame is
        at most max_payload long, so a count whose data would not fit it is too many."""
        board, frame = self.board, self.frame.payload
        cmd, length = frame.cmd, frame.length
        request_bytes = MEMORY_REQUEST.size
        words_bytes = request.words_bytes
        status = Signal(STATUS_BITS)
        data_length = Signal(len(length))
        with m.If(frame.status != Status.OK):                       # 1. the frame
            m.d.comb += status.eq(frame.status)
        with m.Else():
            with m.Switch(cmd):                                     # 3. per command
                with m.Case(Command.IDENTIFY, Command.STATUS, Command.WAIT):
                    m.d.comb += status.eq(Mux(length == 0, Status.OK, Status.BAD_LENGTH))
                    m.d.comb += data_length.eq(Mux(cmd == Command.IDENTIFY, Identity.LAYOUT.size,
                                                   Mux(cmd == Command.STATUS, Counters.LAYOUT.size, WAIT_REPLY.size)))
                with m.Case(Command.WRITE):
                    with m.If(below(length, request_bytes)):
                        m.d.comb += status.eq(Status.BAD_LENGTH)
                    with m.Elif(~request.region_ok):
                        m.d.comb += status.eq(Status.BAD_ADDRESS)
                    with m.Elif(request.words_zero | ~request.words_few | (length != request_bytes + words_bytes)):
                        m.d.comb += status.eq(Status.BAD_LENGTH)
                with m.Case(Command.READ, Command.CRC):
                    with m.If(length != request_bytes):
                        m.d.comb += status.eq(Status.BAD_LENGTH)
                    with m.Elif((cmd == Command.CRC) & request.all_memories):
                        with m.If(~request.addr_zero | ~request.words_zero):
                            m.d.comb += status.eq(Status.BAD_ADDRESS)
                    with m.Elif(~request.region_ok):
                        m.d.comb += status.eq(Status.BAD_ADDRESS)
                    with m.Elif(request.words_zero | ((cmd == Command.READ) &
                                                      (~request.words_few | ~below(words_bytes, board.max_payload)))):
                        m.d.comb += status.eq(Status.BAD_LENGTH)
                    m.d.comb += data_length.eq(Mux(cmd == Command.READ, words_bytes, CRC_REPLY.size))
                with m.Case(Command.WRITE_INPUTS):
                    with m.If(below(length, COUNT_REQUEST.size) | (request.first == 0) | ~request.vectors_few |
                              (length != COUNT_REQUEST.size + times(request.first, board.in_vector_bytes))):
                        m.d.comb += status.eq(Status.BAD_LENGTH)
                with m.Case(Command.RUN):
                    with m.If(length != RUN_REQUEST.size):
                        m.d.comb += status.eq(Status.BAD_LENGTH)
                    with m.Elif((request.first == 0) | ~request.vectors_few | ~below(request.first, board.batch + 1) |
                                ~request.run_slot_ok):
                        m.d.comb += status.eq(Status.BAD_ADDRESS)
                with m.Case(Command.READ_OUTPUTS):
                    with m.If(length != OUTPUTS_REQUEST.size):
                        m.d.comb += status.eq(Status.BAD_LENGTH)
                    with m.Elif((request.count == 0) | ~request.vectors_few | ~request.count_few |
                                ~below(request.outputs_end, board.batch + 1) | ~request.outputs_slot_ok):
                        m.d.comb += status.eq(Status.BAD_ADDRESS)
                    with m.Elif(~below(request.count, (board.max_payload - 1) // board.out_vector_bytes + 1)):
                        m.d.comb += status.eq(Status.BAD_LENGTH)
                    m.d.comb += data_length.eq(times(request.count, board.out_vector_bytes))
                with m.Default():                                   # 2. the command
                    m.d.comb += status.eq(Status.UNKNOWN_COMMAND)
        return status, data_length

    def _exactly_once(self, m, checked_status) -> _ExactlyOnce:
        """4. Exactly once: a state-changing frame carrying the sequence number of the last one
        executed is a retry of it (its reply was lost) and is not executed again. The verdict
        is the checked status, or DUPLICATE for such a retry (CHECK registers it: the last
        sequence number only changes in DISPATCH)."""
        frame = self.frame.payload
        cmd = frame.cmd
        last_seq = Signal(8)
        last_seq_valid = Signal()
        changes_state = (cmd == Command.WRITE) | (cmd == Command.WRITE_INPUTS) | (cmd == Command.RUN)
        duplicate = changes_state & last_seq_valid & (last_seq == frame.seq)
        verdict = Signal(STATUS_BITS)
        m.d.comb += verdict.eq(Mux((checked_status == Status.OK) & duplicate, Status.DUPLICATE, checked_status))
        dispatching = Signal()
        return _ExactlyOnce(changes_state, last_seq, last_seq_valid, verdict, dispatching)

    def _reply_source(self, m, paths: _DataPaths, counters, command) -> _ReplySource:
        """The reply's data bytes: picked by index from the counter memory's words (identity,
        counters) or from the last run's cycle count (WAIT), or shifted out of the CRC register
        (INFO), or streamed from the memory words or the output buffer."""
        reply = self.reply.payload
        source = Signal(Source)
        info_index = Signal(range(Identity.LAYOUT.size + 1))
        # Each reply's bytes are picked by index first and the reply chosen last: choosing
        # among whole replies first would multiplex every bit of the longest one.
        info_byte = Signal(8)
        info_valid = Signal(init=1)
        # IDENTIFY, STATUS: each byte's word is read from the counter memory when the encoder is
        # ready for the byte, and taken from the memory's data in the cycle it arrives (the
        # transmitter stays ready until given a byte), so no word is copied into a register
        # (IDENTIFY's words are the constants after the counters)
        counter = info_index[1:]
        with m.If(command[Command.IDENTIFY] | command[Command.STATUS]):
            with m.If(command[Command.STATUS] & (counter == len(COUNTERS))):
                m.d.comb += info_byte.eq(Cat(self.engine.framing_error, self.engine.idle))
            with m.Else():
                m.d.comb += [info_byte.eq(counters.read_value.word_select(info_index[0], 8)),
                             info_valid.eq(counters.read_valid),
                             counters.read_en.eq(self.data.ready & (source == Source.INFO)),
                             counters.read_index.eq(Mux(command[Command.IDENTIFY], counter + len(COUNTERS), counter))]
        with m.Elif(command[Command.WAIT]):     # picked, not shifted: a WAIT asked again gets the same bytes
            m.d.comb += info_byte.eq(paths.run.cycles.word_select(info_index[:2], 8))
        with m.Else():                          # CRC: the CRC register holds it
            m.d.comb += [info_byte.eq(paths.region_crc.value[:8]),
                         paths.region_crc.shift.eq(self.data.ready & (source == Source.INFO))]
        with m.Switch(source):
            with m.Case(Source.INFO):
                m.d.comb += [self.data.valid.eq(info_valid), self.data.payload.eq(info_byte)]
                with m.If(self.data.valid & self.data.ready):
                    m.d.sync += info_index.eq(info_index + 1)
            with m.Case(Source.WORDS):
                if paths.words is not None:
                    connect(m, paths.words.o, flipped(self.data))
            with m.Case(Source.OUTPUTS):
                m.d.comb += [self.data.valid.eq(paths.byte_reader.o.valid),
                             self.data.payload.eq(paths.byte_reader.o.payload)]
        return _ReplySource(reply, source, info_index)

    def _start(self, m, request: _Request, paths: _DataPaths, reply: _ReplySource, once: _ExactlyOnce, command):
        """DISPATCH of an accepted frame: start its command's data path and pick the next state
        (the paths' addresses are set by `_ranges`, whatever the state)."""
        byte_reader, words = paths.byte_reader, paths.words
        with m.If(command[Command.IDENTIFY]):
            m.d.sync += once.last_seq_valid.eq(0)
        with m.Elif(command[Command.WRITE]):
            m.d.comb += byte_reader.start.eq(1)
            if words is not None:
                m.d.comb += words.start.eq(1)
            m.next = "COPY"
        with m.Elif(command[Command.WRITE_INPUTS]):
            m.d.comb += [byte_reader.start.eq(1), paths.byte_writer.start.eq(1)]
            m.next = "COPY"
        with m.Elif(command[Command.READ] | command[Command.CRC]):
            if words is not None:
                m.d.comb += words.start.eq(1)
            m.d.comb += paths.region_crc.clear.eq(1)
            with m.If(command[Command.READ]):
                m.d.sync += reply.source.eq(Source.WORDS)
            with m.Else():
                m.next = "CRC"
        with m.Elif(command[Command.RUN]):                  # the reply goes at once, the run goes on
            run = paths.run
            m.d.comb += [run.reader.start.eq(1), paths.byte_writer.start.eq(1)]
            m.d.sync += [run.active.eq(1), run.count.eq(request.first), run.slot.eq(request.run_slot),
                         run.cycles.eq(0)]
        with m.Elif(command[Command.READ_OUTPUTS]):
            m.d.comb += byte_reader.start.eq(1)
            m.d.sync += reply.source.eq(Source.OUTPUTS)

    def _ranges(self, m, request: _Request, paths: _DataPaths, dispatching: Value, command):
        """The address ranges of the data paths, by command, not by state: `first` is latched on
        `start`, `end` is used as it is, so it holds while a path runs (it comes from the frame
        held and the command, both fixed until the reply is out, and the memory `region`). CRC of
        ALL_MEMORIES starts memory 0 when dispatching, then memory `region` in CRC_NEXT."""
        frame, out_bytes = self.frame.payload, self.board.out_vector_bytes
        with m.If(command[Command.WRITE]):
            m.d.comb += [paths.byte_reader.first.eq(MEMORY_REQUEST.size), paths.byte_reader.end.eq(frame.length)]
        with m.Elif(command[Command.WRITE_INPUTS]):
            m.d.comb += [paths.byte_reader.first.eq(COUNT_REQUEST.size), paths.byte_reader.end.eq(frame.length)]
        with m.Else():                          # READ_OUTPUTS: in its slot
            top = request.outputs_slot << paths.slot_bits
            m.d.comb += [paths.byte_reader.first.eq(times(request.first, out_bytes) | top),
                         paths.byte_reader.end.eq(times(request.outputs_end, out_bytes) | top)]
        if paths.words is not None:
            starting = Mux(dispatching, 0, paths.region)              # the memory a start now reads
            # An accepted CRC of ALL_MEMORIES has address 0 (its check), so `addr` is every first word.
            m.d.comb += [paths.words.first.eq(request.addr),
                         paths.words.end.eq(Mux(request.all_memories, request.depths[starting], request.end))]

    def _crc_regions(self, m, request: _Request, paths: _DataPaths):
        """The CRC state: the words stream through the CRC, memory after memory for ALL_MEMORIES
        (CRC_NEXT starts the next one); the CRC register then holds the reply's value until the
        next READ or CRC."""
        words, region_crc, region = paths.words, paths.region_crc, paths.region
        if words is not None:
            all_memories = request.all_memories
            connect(m, words.o, region_crc.i)
            with m.If(~words.busy):
                with m.If(all_memories & (region != len(self.board.regions) - 1)):
                    m.d.sync += region.eq(region + 1)
                    m.next = "CRC_NEXT"
                with m.Else():
                    m.next = "REPLY"
        else:
            m.next = "REPLY"
