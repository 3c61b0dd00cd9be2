"""Link gateware: CRCs, the frame decoder and the frame encoder (boards/link_protocol.py).

The decoder turns UART bytes into frames: it hunts for START, reads the header,
writes the payload into a buffer (a memory the command handler reads), keeps the
first payload bytes in registers (the command's parameters), checks the CRC and
offers the frame with a status: OK, BAD_CRC, BAD_LENGTH (more than max_payload:
the payload is not read, hunting resumes at once) or TIMEOUT (no byte for
`timeout_cycles` inside a frame). The frame stays offered until the handler is
done with it; bytes arriving meanwhile are dropped and counted (`overrun`), so a
frame's payload is never overwritten while it is used.

The encoder sends a reply: START, header, status, the data bytes from a stream,
CRC. The frame CRC is the bitwise definition of link_protocol.CrcSpec unrolled over
one byte per cycle; the memory CRC (`SerialCRC`) takes a bit per cycle. Tests compare
them with binascii and zlib.
"""
from amaranth import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from nomac.boards.link_protocol import FRAME_CRC, MEMORY_REQUEST, REPLY, START, CrcSpec, Status

HEAD_BYTES = MEMORY_REQUEST.size     # the longest command parameters (memory index, address, count)
STATUS_BITS = max(Status).bit_length()


def length_bits(max_payload: int) -> int:
    """Bits of a length the link gateware holds: a frame longer than max_payload is rejected
    as soon as its length field is in, and no reply is longer."""
    return max_payload.bit_length()


def below(value: Value, bound: int) -> Value:
    """value < bound, a constant, in a few LUTs instead of the carry chain (a logic cell per
    bit) yosys makes of a comparison: value is below the bound when, at some 1 bit of the
    bound, value has a 0 and above that bit the bound's bits."""
    value = Value.cast(value)
    width = len(value)
    if bound <= 0:
        return Const(0, 1)
    if bound >> width:
        return Const(1, 1)
    terms = [~value[i] & (value[i + 1:] == bound >> (i + 1)) if i + 1 < width else ~value[i]
             for i in range(width) if bound >> i & 1]
    return Cat(*terms).any()


def crc_next(m: Module, spec: CrcSpec, register: Value, byte: Value) -> Signal:
    """The CRC register after one more byte: the bitwise definition, unrolled into XORs.

    Each bit step is its own signal: written as one expression, every step would
    copy the previous one twice over, 2^8 times in all.
    """
    width = spec.width
    poly = int(f"{spec.poly:0{width}b}"[::-1], 2) if spec.reflected else spec.poly
    for bit in range(8):
        if spec.reflected:
            feedback = register[0] ^ byte[bit]
            shifted = Cat(register[1:], Const(0, 1))
        else:
            feedback = register[width - 1] ^ byte[7 - bit]
            shifted = Cat(Const(0, 1), register[:width - 1])
        step = Signal(width, name=f"crc_bit{bit}")
        m.d.comb += step.eq(shifted ^ (feedback.replicate(width) & Const(poly, width)))
        register = step
    return register


class CRC(wiring.Component):
    """A CRC register: `clear` restarts it, a byte with `en` high is added, `value` is the CRC so far."""

    def __init__(self, spec: CrcSpec):
        self.spec = spec
        super().__init__({"clear": In(1), "en": In(1), "byte": In(8), "value": Out(spec.width)})

    def elaborate(self, platform):
        m = Module()
        register = Signal(self.spec.width, init=self.spec.init)
        with m.If(self.clear):
            m.d.sync += register.eq(self.spec.init)
        with m.Elif(self.en):
            m.d.sync += register.eq(crc_next(m, self.spec, register, self.byte))
        m.d.comb += self.value.eq(register ^ self.spec.xorout)
        return m


class SerialCRC(wiring.Component):
    """A CRC register fed a bit per cycle: a byte on `i` is taken after its eighth bit (so it
    must stay on `i` meanwhile, as a stream's payload does). `clear` restarts it; `value` is
    the CRC so far. One XOR per tap of the polynomial instead of the byte-wide XOR tree of
    `CRC`, for a CRC that runs while no byte arrives (the memory CRC of the CRC command).
    `shift` moves `value` down a byte, so a reply sends it from `value[:8]` with no byte
    multiplexer (a register bit's LUT is otherwise mostly unused)."""

    def __init__(self, spec: CrcSpec):
        self.spec = spec
        super().__init__({"clear": In(1), "i": In(stream.Signature(8)), "shift": In(1),
                          "value": Out(spec.width)})

    def elaborate(self, platform):
        m = Module()
        spec, width = self.spec, self.spec.width
        poly = int(f"{spec.poly:0{width}b}"[::-1], 2) if spec.reflected else spec.poly
        register = Signal(width, init=spec.init)
        bit = Signal(3)                                  # the bit of the byte on `i` this cycle
        data_bit = self.i.payload.bit_select(bit if spec.reflected else ~bit, 1)
        if spec.reflected:
            feedback = register[0] ^ data_bit
            shifted = Cat(register[1:], Const(0, 1))
        else:
            feedback = register[width - 1] ^ data_bit
            shifted = Cat(Const(0, 1), register[:width - 1])
        m.d.comb += [self.i.ready.eq(bit == 7), self.value.eq(register ^ spec.xorout)]
        with m.If(self.clear):
            m.d.sync += [register.eq(spec.init), bit.eq(0)]
        with m.Elif(self.i.valid):
            m.d.sync += [register.eq(shifted ^ (feedback.replicate(width) & Const(poly, width))), bit.eq(bit + 1)]
        with m.Elif(self.shift):
            m.d.sync += register.eq(((register ^ spec.xorout) >> 8) ^ spec.xorout)
        return m


class FrameCRCPort(wiring.Signature):
    """The frame CRC register as a user drives it: `clear`, `en` with `byte`, and its `value`."""

    def __init__(self):
        super().__init__({"clear": Out(1), "en": Out(1), "byte": Out(8), "value": In(16)})


class FrameInfo(data.StructLayout):
    """A received frame as the decoder offers it (the payload itself is in the buffer);
    `length` is meaningful only when `status` is OK (then it is at most max_payload)."""

    def __init__(self, max_payload: int):
        super().__init__({"cmd": 8, "seq": 8, "length": length_bits(max_payload), "status": STATUS_BITS})


class ReplyInfo(data.StructLayout):
    """A reply as the encoder takes it: `length` data bytes follow the status on the data stream."""

    def __init__(self, max_payload: int):
        super().__init__({"cmd": 8, "seq": 8, "status": STATUS_BITS, "length": length_bits(max_payload)})


class FrameDecoder(wiring.Component):
    def __init__(self, max_payload: int, timeout_cycles: int):
        if not isinstance(max_payload, int) or not HEAD_BYTES <= max_payload <= 0xFFFF:
            raise ValueError(f"FrameDecoder: max_payload = {max_payload!r}: must be in {HEAD_BYTES}..65535")
        if not isinstance(timeout_cycles, int) or timeout_cycles < 1:
            raise ValueError(f"FrameDecoder: timeout_cycles = {timeout_cycles!r}: must be a positive integer")
        self.max_payload, self.timeout_cycles = max_payload, timeout_cycles
        super().__init__({
            "i": In(stream.Signature(8, always_ready=True)),
            "frame": Out(stream.Signature(FrameInfo(max_payload))),
            "head": Out(data.ArrayLayout(8, HEAD_BYTES)),
            "head_zero": Out(HEAD_BYTES, init=(1 << HEAD_BYTES) - 1),   # which head bytes are zero
            "buffer": In(memory.WritePort.Signature(addr_width=(max_payload - 1).bit_length(), shape=8)),
            "garbage": Out(1),           # pulses: a byte outside any frame
            "overrun": Out(1),           # pulses: a byte dropped while a frame waits for the handler
            "busy": Out(1),              # inside a frame, or holding one
            "crc": In(FrameCRCPort()),   # the encoder's use of the CRC register while a frame is held
        })

    def elaborate(self, platform):
        m = Module()
        byte, got = self.i.payload, self.i.valid
        info = self.frame.payload
        bits = len(info.length)
        # One CRC register for both directions: a reply is only sent while a frame is held, so
        # in DONE the register is the encoder's (`crc`), which clears it before its first byte.
        m.submodules.crc = crc = CRC(FRAME_CRC)
        holding = Signal()
        register = crc.value
        m.d.comb += [crc.byte.eq(Mux(holding, self.crc.byte, byte)), self.crc.value.eq(crc.value)]
        index = Signal(range(self.max_payload + 1))
        crc_wrong = Signal()                             # the CRC's low byte did not match
        quiet = Signal(range(self.timeout_cycles + 1))
        # In LENGTH_HIGH: the whole length field is above max_payload. Its low byte is in
        # `length` (or, below 256, what does not fit it is flagged as too high).
        low_too_high = Signal()
        if bits >= 8:
            too_long = ~below(Cat(info.length[:8], byte), self.max_payload + 1)
        else:
            too_long = low_too_high | (byte != 0) | ~below(info.length, self.max_payload + 1)

        m.d.comb += [self.buffer.addr.eq(index), self.buffer.data.eq(byte)]
        quiet_long = quiet == self.timeout_cycles
        m.d.sync += quiet.eq(Mux(got, 0, quiet + ~quiet_long))        # a carry in: no multiplexer

        def field(next_state, *updates, checked=True):
            """One frame byte: record it (and add it to the CRC) and go on, or give up after the timeout."""
            with m.If(got):
                m.d.sync += updates
                m.d.comb += crc.en.eq(checked)
                m.next = next_state
            with m.Elif(quiet_long):
                m.d.sync += info.status.eq(Status.TIMEOUT)
                m.next = "DONE"

        with m.FSM() as fsm:
            with m.State("HUNT"):
                with m.If(got):
                    with m.If(byte == START):
                        m.d.sync += [info.cmd.eq(0), info.seq.eq(0)]
                        m.d.comb += crc.clear.eq(1)
                        m.next = "CMD"
                    with m.Else():
                        m.d.comb += self.garbage.eq(1)
            with m.State("CMD"):
                field("SEQ", info.cmd.eq(byte))
            with m.State("SEQ"):
                field("LENGTH_LOW", info.seq.eq(byte))
            with m.State("LENGTH_LOW"):
                field("LENGTH_HIGH", info.length.eq(byte[:bits]),
                      *([low_too_high.eq(byte[bits:] != 0)] if bits < 8 else []))
            with m.State("LENGTH_HIGH"):
                field("PAYLOAD", *([info.length[8:].eq(byte)] if bits > 8 else []), index.eq(0))
                with m.If(got & (info.length[:8] == 0) & (byte == 0)):
                    m.next = "CRC_LOW"
                with m.If(got & too_long):
                    m.d.sync += info.status.eq(Status.BAD_LENGTH)
                    m.next = "DONE"
            with m.State("PAYLOAD"):
                following = index + 1
                field("PAYLOAD", index.eq(following))
                with m.If(got):
                    m.d.comb += self.buffer.en.eq(1)
                    early = index[(HEAD_BYTES - 1).bit_length():] == 0     # one test of the high bits for all
                    for k in range(HEAD_BYTES):
                        with m.If(early & (index[:(HEAD_BYTES - 1).bit_length()] == k)):
                            m.d.sync += [self.head[k].eq(byte), self.head_zero[k].eq(byte == 0)]
                    with m.If(following == info.length):
                        m.next = "CRC_LOW"
            with m.State("CRC_LOW"):
                field("CRC_HIGH", crc_wrong.eq(byte != register[:8]), checked=False)
            with m.State("CRC_HIGH"):
                field("DONE", checked=False)
                with m.If(got):
                    m.d.sync += info.status.eq(Mux(crc_wrong | (byte != register[8:]), Status.BAD_CRC, Status.OK))
            with m.State("DONE"):
                m.d.comb += [self.frame.valid.eq(1), self.overrun.eq(got), holding.eq(1)]
                m.d.comb += [crc.clear.eq(self.crc.clear), crc.en.eq(self.crc.en)]
                with m.If(self.frame.ready):
                    m.next = "HUNT"
        m.d.comb += self.busy.eq(~fsm.ongoing("HUNT"))
        return m


class FrameEncoder(wiring.Component):
    """Sends the reply on `reply` with its `length` data bytes from `data`; `reply` is taken when
    the last CRC byte leaves, so the handler keeps its data source running until then. The
    CRC register is the decoder's (`crc`): a reply is sent only while the decoder holds the
    frame it answers; the encoder clears it while it waits for a reply."""

    def __init__(self, max_payload: int):
        self.max_payload = max_payload
        super().__init__({"reply": In(stream.Signature(ReplyInfo(max_payload))),
                          "data": In(stream.Signature(8)),
                          "o": Out(stream.Signature(8)),
                          "crc": Out(FrameCRCPort()),
                          "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        info = self.reply.payload
        # The CRC register adds a sent byte a cycle later (a register between the handshake and
        # the CRC's enable): the transmitter takes the next byte 10 bit times later at the soonest.
        crc = wiring.Signature({"en": Out(1), "byte": Out(8)}).create()
        m.d.sync += [self.crc.en.eq(crc.en), self.crc.byte.eq(crc.byte)]
        left = Signal.like(info.length)
        payload_length = Cat(info.length + 1, Const(0, 16))          # the status byte, then the data
        sent = self.o.valid & self.o.ready
        m.d.comb += crc.byte.eq(self.o.payload)

        def send(value, next_state, checked=True):
            """A byte of the encoder's own: valid at once, so taken when the transmitter is ready
            (no path from the data stream to the state)."""
            m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(value), crc.en.eq(self.o.ready & checked)]
            with m.If(self.o.ready):
                m.next = next_state

        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += self.crc.clear.eq(1)
                with m.If(self.reply.valid):
                    m.next = "START"
            with m.State("START"):
                send(START, "CMD", checked=False)
            with m.State("CMD"):
                send(info.cmd | REPLY, "SEQ")
            with m.State("SEQ"):
                send(info.seq, "LENGTH_LOW")
            with m.State("LENGTH_LOW"):
                send(payload_length[:8], "LENGTH_HIGH")
            with m.State("LENGTH_HIGH"):
                send(payload_length[8:16], "STATUS")
            with m.State("STATUS"):
                send(info.status, "CRC_LOW")
                m.d.sync += left.eq(info.length)
                with m.If(self.o.ready & (info.length != 0)):
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += [self.o.valid.eq(self.data.valid), self.o.payload.eq(self.data.payload),
                             self.data.ready.eq(self.o.ready), crc.en.eq(sent)]
                with m.If(sent):
                    m.d.sync += left.eq(left - 1)
                    with m.If(left == 1):
                        m.next = "CRC_LOW"
            with m.State("CRC_LOW"):
                send(self.crc.value[:8], "CRC_HIGH", checked=False)
            with m.State("CRC_HIGH"):
                send(self.crc.value[8:], "IDLE", checked=False)
                m.d.comb += self.reply.ready.eq(self.o.ready)
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m
