"""The board's command handler: executes decoded frames against an engine and answers them.

It knows an engine only through the engine contract (hw/verilog_export.py): the
vector streams `i`/`o`, `idle`, `framing_error`, and per RAM memory a write port
`<memory>_write` and a read-back port `<memory>_read`, usable while `idle`. The
memories are the link's memory indices, in `BoardMap.regions` order, so every
engine kind works on a board without board code of its own.

Each frame goes through CHECK, which checks it in the order docs/spec.md section 14.4
gives (into registers, to keep the paths short), and DISPATCH, which
adds the duplicate rule and decides its status; a rejected frame changes nothing but
the counters. Accepted commands run their data path (components of
`nomac.boards.byte_streams`), then REPLY hands the reply to the encoder with its
data source, and the frame is released only when the reply's last byte is out.
"""
from amaranth import Array, Cat, Const, Module, Mux, Signal
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


class CommandHandler(wiring.Component):
    def __init__(self, board: BoardMap, engine):
        self.board = board
        engine_members = engine.signature.members
        in_beat = engine_members["i"].signature.members["payload"].shape["data"].shape
        out_beat = engine_members["o"].signature.members["payload"].shape["data"].shape
        self.in_lanes, self.in_shape = in_beat.length, in_beat.elem_shape
        self.out_lanes, self.out_shape = out_beat.length, out_beat.elem_shape
        for region in board.regions:
            for port in (f"{region.name}_write", f"{region.name}_read"):
                if port not in engine_members:
                    raise ValueError(f"CommandHandler: the engine has no port {port!r} for memory {region.name!r}")
        super().__init__({
            "frame": In(stream.Signature(FrameInfo())),
            "head": In(data.ArrayLayout(8, HEAD_BYTES)),
            "payload": In(memory.ReadPort.Signature(addr_width=max(1, (board.max_payload - 1).bit_length()),
                                                    shape=8)),
            "reply": Out(stream.Signature(ReplyInfo())),
            "data": Out(stream.Signature(8)),
            "engine": In(engine.signature),
            "events": In(Events()),
            "busy": Out(1),
            "executed": Out(1),          # pulses: a frame executed (status OK)
            "rejected": Out(1),          # pulses: a frame answered with an error status
        })

    def elaborate(self, platform):
        m = Module()
        board = self.board
        regions = board.regions
        frame, head = self.frame.payload, self.head
        cmd, length = frame.cmd, frame.length
        D, O = board.in_vector_bytes, board.out_vector_bytes
        in_bytes, out_bytes = board.batch * D, board.batch * O

        # --- buffers and data paths ------------------------------------------------------
        m.submodules.inputs = inputs = memory.Memory(shape=8, depth=in_bytes, init=[])
        m.submodules.outputs = outputs = memory.Memory(shape=8, depth=out_bytes, init=[])
        m.submodules.payload_reader = payload_reader = ByteReader(board.max_payload)
        m.submodules.input_writer = input_writer = ByteWriter(in_bytes)
        m.submodules.input_reader = input_reader = ByteReader(in_bytes)
        m.submodules.to_beats = to_beats = BytesToBeats(board.in_elements, self.in_lanes, self.in_shape)
        m.submodules.to_bytes = to_bytes = BeatsToBytes(board.out_elements, self.out_lanes, self.out_shape)
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

        # Memory regions: the selected engine memory's write and read-back ports (the others
        # see their enables low). `region` holds the memory index of the running command.
        region = Signal(range(max(1, len(regions))))
        word_reader = word_writer = None
        if regions:
            addr_width = max(max(1, (r.depth - 1).bit_length()) for r in regions)
            m.submodules.word_reader = word_reader = WordReader(addr_width, [r.word_bits for r in regions])
            m.submodules.word_writer = word_writer = WordWriter(addr_width, [r.word_bits for r in regions])
            m.d.comb += [word_reader.select.eq(region), word_writer.select.eq(region)]
            for index, r in enumerate(regions):
                write, read = getattr(self.engine, f"{r.name}_write"), getattr(self.engine, f"{r.name}_read")
                ours_w, ours_r = getattr(word_writer, f"memory{index}"), getattr(word_reader, f"memory{index}")
                m.d.comb += [write.addr.eq(ours_w.addr), write.data.eq(ours_w.data), write.en.eq(ours_w.en),
                             read.addr.eq(ours_r.addr), read.en.eq(ours_r.en), ours_r.data.eq(read.data)]

        # The payload reader feeds the word writer (WRITE) or the input buffer (WRITE_INPUTS).
        to_words = cmd == Command.WRITE
        m.d.comb += [input_writer.i.payload.eq(payload_reader.o.payload),
                     input_writer.i.valid.eq(payload_reader.o.valid & ~to_words),
                     payload_reader.o.ready.eq(Mux(to_words, 1, input_writer.i.ready))]
        if word_writer is not None:
            m.d.comb += [word_writer.i.payload.eq(payload_reader.o.payload),
                         word_writer.i.valid.eq(payload_reader.o.valid & to_words)]

        # --- counters (link_protocol.COUNTERS): the verdicts in Status order, then byte events --
        m.submodules.counters = counters = EventCounters(len(COUNTERS), COUNTER_BITS)
        verdict_events = Signal(len(Status))
        m.d.comb += counters.events.eq(Cat(verdict_events, self.events.uart_error, self.events.overrun,
                                           self.events.garbage))
        framing_error, idle = self.engine.framing_error, self.engine.idle

        # --- parameters and checks (CHECK, registered for DISPATCH) ------------------------------
        mem = head[0]
        addr = Cat(*(head[k] for k in range(1, 5)))
        words = Cat(*(head[k] for k in range(5, 9)))
        vectors = Cat(head[0], head[1])                     # WRITE_INPUTS, RUN count; READ_OUTPUTS first
        out_count = Cat(head[2], head[3])                   # READ_OUTPUTS count
        request = MEMORY_REQUEST.size
        small_words = words[:16]
        words_fit = words[16:] == 0
        every_region = (cmd == Command.CRC) & (mem == ALL_MEMORIES)
        all_regions = Signal()             # a CRC over every memory is running
        if regions:
            span = max(r.depth for r in regions).bit_length()           # bits of the largest depth
            chosen = mem[:len(region)] if len(region) else Const(0, 1)
            depths = Array(Const(r.depth, span) for r in regions)
            shift_bits = max(r.word_bytes for r in regions).bit_length()
            shifts = Array(Const(r.word_bytes.bit_length() - 1, shift_bits) for r in regions)
            words_bytes = small_words << shifts[chosen]                 # word bytes are powers of two
            region_ok = ((mem < len(regions)) & (addr[span:] == 0) & (words[span:] == 0) &
                         (addr[:span] + words[:span] <= depths[chosen]))
        else:
            words_bytes = Const(0, 1)
            region_ok = Const(0, 1)

        status = Signal(8)
        data_length = Signal(16)
        with m.If(frame.status != Status.OK):
            m.d.comb += status.eq(frame.status)
        with m.Else():
            with m.Switch(cmd):
                with m.Case(Command.IDENTIFY, Command.STATUS):
                    m.d.comb += status.eq(Mux(length == 0, Status.OK, Status.BAD_LENGTH))
                    m.d.comb += data_length.eq(Mux(cmd == Command.IDENTIFY, Identity.LAYOUT.size,
                                                   Counters.LAYOUT.size))
                with m.Case(Command.WRITE):
                    with m.If(length < request):
                        m.d.comb += status.eq(Status.BAD_LENGTH)
                    with m.Elif(~region_ok):
                        m.d.comb += status.eq(Status.BAD_ADDRESS)
                    with m.Elif((words == 0) | ~words_fit | (length != request + words_bytes)):
                        m.d.comb += status.eq(Status.BAD_LENGTH)
                with m.Case(Command.READ, Command.CRC):
                    with m.If(length != request):
                        m.d.comb += status.eq(Status.BAD_LENGTH)
                    with m.Elif(every_region):
                        with m.If((addr != 0) | (words != 0)):
                            m.d.comb += status.eq(Status.BAD_ADDRESS)
                    with m.Elif(~region_ok):
                        m.d.comb += status.eq(Status.BAD_ADDRESS)
                    with m.Elif((words == 0) | ((cmd == Command.READ) &
                                                (~words_fit | (1 + words_bytes > board.max_payload)))):
                        m.d.comb += status.eq(Status.BAD_LENGTH)
                    m.d.comb += data_length.eq(Mux(cmd == Command.READ, words_bytes, CRC_REPLY.size))
                with m.Case(Command.WRITE_INPUTS):
                    with m.If((length < COUNT_REQUEST.size) | (vectors == 0) |
                              (length != COUNT_REQUEST.size + times(vectors, D))):
                        m.d.comb += status.eq(Status.BAD_LENGTH)
                with m.Case(Command.RUN):
                    with m.If(length != COUNT_REQUEST.size):
                        m.d.comb += status.eq(Status.BAD_LENGTH)
                    with m.Elif((vectors == 0) | (vectors > board.batch)):
                        m.d.comb += status.eq(Status.BAD_ADDRESS)
                    m.d.comb += data_length.eq(RUN_REPLY.size)
                with m.Case(Command.READ_OUTPUTS):
                    with m.If(length != OUTPUTS_REQUEST.size):
                        m.d.comb += status.eq(Status.BAD_LENGTH)
                    with m.Elif((out_count == 0) | (vectors + out_count > board.batch)):
                        m.d.comb += status.eq(Status.BAD_ADDRESS)
                    with m.Elif(1 + times(out_count, O) > board.max_payload):
                        m.d.comb += status.eq(Status.BAD_LENGTH)
                    m.d.comb += data_length.eq(times(out_count, O))
                with m.Default():
                    m.d.comb += status.eq(Status.UNKNOWN_COMMAND)
        checked_status = Signal(8)
        checked_length = Signal(16)

        # Exactly once: a state-changing frame carrying the sequence number of the last one
        # executed is a retry of it (its reply was lost) and is not executed again.
        last_seq = Signal(8)
        last_seq_valid = Signal()
        changes_state = (cmd == Command.WRITE) | (cmd == Command.WRITE_INPUTS) | (cmd == Command.RUN)
        duplicate = changes_state & last_seq_valid & (last_seq == frame.seq)
        verdict = Signal(8)
        m.d.comb += verdict.eq(Mux((checked_status == Status.OK) & duplicate, Status.DUPLICATE, checked_status))
        dispatching = Signal()
        m.d.comb += verdict_events.eq(Mux(dispatching, Const(1, len(Status)) << verdict[:3], 0))

        # --- reply data ------------------------------------------------------------------------
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
                    m.d.comb += info_byte.eq(Cat(framing_error, idle))
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
                if word_reader is not None:
                    connect(m, word_reader.o, flipped(self.data))
            with m.Case(Source.OUTPUTS):
                connect(m, output_reader.o, flipped(self.data))
        if word_reader is not None:
            m.d.comb += [region_crc.byte.eq(word_reader.o.payload)]

        # --- the command sequence ---------------------------------------------------------------
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
                with m.If(idle):                    # memory ports and buffers are free once the engine is
                    m.d.sync += [reply.cmd.eq(cmd), reply.seq.eq(frame.seq), reply.status.eq(verdict),
                                 reply.length.eq(Mux(verdict == Status.OK, checked_length, 0)),
                                 source.eq(Source.INFO), info_index.eq(0), region.eq(mem), counter_loaded.eq(0)]
                    m.d.comb += [self.executed.eq(verdict == Status.OK), self.rejected.eq(verdict != Status.OK),
                                 dispatching.eq(1)]
                    m.next = "REPLY"
                    with m.If(verdict == Status.OK):
                        with m.If(changes_state):
                            m.d.sync += [last_seq.eq(frame.seq), last_seq_valid.eq(1)]
                        with m.Switch(cmd):
                            with m.Case(Command.IDENTIFY):
                                m.d.sync += last_seq_valid.eq(0)
                            with m.Case(Command.WRITE):
                                m.d.comb += [payload_reader.start.eq(1), payload_reader.first.eq(request),
                                             payload_reader.count.eq(length - request)]
                                if word_writer is not None:
                                    m.d.comb += [word_writer.start.eq(1), word_writer.first.eq(addr)]
                                m.next = "COPY"
                            with m.Case(Command.WRITE_INPUTS):
                                m.d.comb += [payload_reader.start.eq(1),
                                             payload_reader.first.eq(COUNT_REQUEST.size),
                                             payload_reader.count.eq(length - COUNT_REQUEST.size),
                                             input_writer.start.eq(1)]
                                m.next = "COPY"
                            with m.Case(Command.READ, Command.CRC):
                                if word_reader is not None:
                                    m.d.comb += [word_reader.start.eq(1), word_reader.first.eq(addr),
                                                 word_reader.count.eq(words)]
                                    with m.If(every_region):
                                        m.d.comb += [word_reader.first.eq(0), word_reader.count.eq(depths[0])]
                                        m.d.sync += region.eq(0)
                                m.d.sync += all_regions.eq(every_region)
                                m.d.comb += region_crc.clear.eq(1)
                                with m.If(cmd == Command.READ):
                                    m.d.sync += source.eq(Source.WORDS)
                                with m.Else():
                                    m.next = "CRC"
                            with m.Case(Command.RUN):
                                m.d.comb += [input_reader.start.eq(1), input_reader.first.eq(0),
                                             input_reader.count.eq(times(vectors, D)), output_writer.start.eq(1)]
                                m.d.sync += cycles.eq(0)
                                m.next = "RUN"
                            with m.Case(Command.READ_OUTPUTS):
                                m.d.comb += [output_reader.start.eq(1), output_reader.first.eq(times(vectors, O)),
                                             output_reader.count.eq(times(out_count, O))]
                                m.d.sync += source.eq(Source.OUTPUTS)
            with m.State("COPY"):
                m.d.comb += self.busy.eq(1)
                writing = word_writer.busy if word_writer is not None else Const(0, 1)
                with m.If(~payload_reader.busy & ~writing):
                    m.next = "REPLY"
            with m.State("CRC"):
                m.d.comb += self.busy.eq(1)
                if word_reader is not None:
                    m.d.comb += [word_reader.o.ready.eq(1), region_crc.en.eq(word_reader.o.valid)]
                    with m.If(~word_reader.busy):
                        with m.If(all_regions & (region != len(regions) - 1)):
                            m.d.sync += region.eq(region + 1)
                            m.d.comb += [word_reader.start.eq(1), word_reader.first.eq(0),
                                         word_reader.count.eq(depths[region + 1])]
                        with m.Else():
                            m.d.sync += crc_value.eq(region_crc.value)
                            m.next = "REPLY"
                else:
                    m.d.sync += crc_value.eq(region_crc.value)
                    m.next = "REPLY"
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += cycles.eq(cycles + 1)
                with m.If(output_writer.written == times(vectors, O)):
                    m.next = "REPLY"
            with m.State("REPLY"):
                m.d.comb += [self.busy.eq(1), self.reply.valid.eq(1), self.frame.ready.eq(self.reply.ready)]
                with m.If(self.reply.ready):
                    m.next = "IDLE"
        return m
