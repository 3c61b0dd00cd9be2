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
CRC. Both CRCs are the bitwise definitions of link_protocol.CrcSpec unrolled over
one byte per cycle; tests compare them with binascii and zlib.
"""
from amaranth import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from nomac.boards.link_protocol import FRAME_CRC, MEMORY_REQUEST, REPLY, START, CrcSpec, Status

HEAD_BYTES = MEMORY_REQUEST.size     # the longest command parameters (memory index, address, count)


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


class FrameInfo(data.StructLayout):
    """A received frame as the decoder offers it (the payload itself is in the buffer)."""

    def __init__(self):
        super().__init__({"cmd": 8, "seq": 8, "length": 16, "status": 8})


class ReplyInfo(data.StructLayout):
    """A reply as the encoder takes it: `length` data bytes follow the status on the data stream."""

    def __init__(self):
        super().__init__({"cmd": 8, "seq": 8, "status": 8, "length": 16})


class FrameDecoder(wiring.Component):
    def __init__(self, max_payload: int, timeout_cycles: int):
        if not isinstance(max_payload, int) or not HEAD_BYTES <= max_payload <= 0xFFFF:
            raise ValueError(f"FrameDecoder: max_payload = {max_payload!r}: must be in {HEAD_BYTES}..65535")
        if not isinstance(timeout_cycles, int) or timeout_cycles < 1:
            raise ValueError(f"FrameDecoder: timeout_cycles = {timeout_cycles!r}: must be a positive integer")
        self.max_payload, self.timeout_cycles = max_payload, timeout_cycles
        super().__init__({
            "i": In(stream.Signature(8, always_ready=True)),
            "frame": Out(stream.Signature(FrameInfo())),
            "head": Out(data.ArrayLayout(8, HEAD_BYTES)),
            "buffer": In(memory.WritePort.Signature(addr_width=(max_payload - 1).bit_length(), shape=8)),
            "garbage": Out(1),           # pulses: a byte outside any frame
            "overrun": Out(1),           # pulses: a byte dropped while a frame waits for the handler
            "busy": Out(1),              # inside a frame, or holding one
        })

    def elaborate(self, platform):
        m = Module()
        byte, got = self.i.payload, self.i.valid
        info = self.frame.payload
        register = Signal(16)
        updated = crc_next(m, FRAME_CRC, register, byte)
        index = Signal(range(self.max_payload + 1))
        crc_low = Signal(8)
        quiet = Signal(range(self.timeout_cycles + 1))
        position = Signal(HEAD_BYTES)                    # one-hot: the head byte the next payload byte fills
        length = Cat(info.length[:8], byte)              # in LENGTH_HIGH: the whole length field

        m.d.comb += [self.buffer.addr.eq(index), self.buffer.data.eq(byte)]
        m.d.sync += quiet.eq(Mux(got, 0, Mux(quiet == self.timeout_cycles, quiet, quiet + 1)))

        def field(next_state, *updates, checked=True):
            """One frame byte: record it (and add it to the CRC) and go on, or give up after the timeout."""
            with m.If(got):
                m.d.sync += [*updates, *([register.eq(updated)] if checked else [])]
                m.next = next_state
            with m.Elif(quiet == self.timeout_cycles):
                m.d.sync += info.status.eq(Status.TIMEOUT)
                m.next = "DONE"

        with m.FSM() as fsm:
            with m.State("HUNT"):
                with m.If(got):
                    with m.If(byte == START):
                        m.d.sync += [register.eq(FRAME_CRC.init), info.cmd.eq(0), info.seq.eq(0),
                                     info.length.eq(0)]
                        m.next = "CMD"
                    with m.Else():
                        m.d.comb += self.garbage.eq(1)
            with m.State("CMD"):
                field("SEQ", info.cmd.eq(byte))
            with m.State("SEQ"):
                field("LENGTH_LOW", info.seq.eq(byte))
            with m.State("LENGTH_LOW"):
                field("LENGTH_HIGH", info.length[:8].eq(byte))
            with m.State("LENGTH_HIGH"):
                field("PAYLOAD", info.length[8:].eq(byte), index.eq(0), position.eq(1))
                with m.If(got & (length == 0)):
                    m.next = "CRC_LOW"
                with m.If(got & (length > self.max_payload)):
                    m.d.sync += info.status.eq(Status.BAD_LENGTH)
                    m.next = "DONE"
            with m.State("PAYLOAD"):
                field("PAYLOAD", index.eq(index + 1), position.eq(position << 1))
                with m.If(got):
                    m.d.comb += self.buffer.en.eq(1)
                    for k in range(HEAD_BYTES):
                        with m.If(position[k]):
                            m.d.sync += self.head[k].eq(byte)
                    with m.If(index == info.length - 1):
                        m.next = "CRC_LOW"
            with m.State("CRC_LOW"):
                field("CRC_HIGH", crc_low.eq(byte), checked=False)
            with m.State("CRC_HIGH"):
                field("DONE", checked=False)
                with m.If(got):
                    m.d.sync += info.status.eq(Mux(Cat(crc_low, byte) == register, Status.OK, Status.BAD_CRC))
            with m.State("DONE"):
                m.d.comb += [self.frame.valid.eq(1), self.overrun.eq(got)]
                with m.If(self.frame.ready):
                    m.next = "HUNT"
        m.d.comb += self.busy.eq(~fsm.ongoing("HUNT"))
        return m


class FrameEncoder(wiring.Component):
    """Sends the reply on `reply` with its `length` data bytes from `data`; `reply` is taken when
    the last CRC byte leaves, so the handler keeps its data source running until then."""

    def __init__(self):
        super().__init__({"reply": In(stream.Signature(ReplyInfo())),
                          "data": In(stream.Signature(8)),
                          "o": Out(stream.Signature(8)),
                          "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        info = self.reply.payload
        m.submodules.crc = crc = CRC(FRAME_CRC)
        left = Signal(16)
        sent = self.o.valid & self.o.ready
        m.d.comb += crc.byte.eq(self.o.payload)

        def send(value, next_state, checked=True):
            m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(value), crc.en.eq(sent & checked)]
            with m.If(sent):
                m.next = next_state

        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += crc.clear.eq(1)
                with m.If(self.reply.valid):
                    m.next = "START"
            with m.State("START"):
                send(START, "CMD", checked=False)
            with m.State("CMD"):
                send(info.cmd | REPLY, "SEQ")
            with m.State("SEQ"):
                send(info.seq, "LENGTH_LOW")
            with m.State("LENGTH_LOW"):
                send((info.length + 1)[:8], "LENGTH_HIGH")
            with m.State("LENGTH_HIGH"):
                send((info.length + 1)[8:16], "STATUS")
            with m.State("STATUS"):
                send(info.status, "CRC_LOW")
                m.d.sync += left.eq(info.length)
                with m.If(sent & (info.length != 0)):
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += [self.o.valid.eq(self.data.valid), self.o.payload.eq(self.data.payload),
                             self.data.ready.eq(self.o.ready), crc.en.eq(sent)]
                with m.If(sent):
                    m.d.sync += left.eq(left - 1)
                    with m.If(left == 1):
                        m.next = "CRC_LOW"
            with m.State("CRC_LOW"):
                send(crc.value[:8], "CRC_HIGH", checked=False)
            with m.State("CRC_HIGH"):
                send(crc.value[8:], "IDLE", checked=False)
                m.d.comb += self.reply.ready.eq(sent)
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m
