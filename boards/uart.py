"""UART receiver and transmitter (8 data bits, no parity, 1 stop bit) with byte streams.

The boards' FTDI channel is a plain asynchronous serial line. The baud rate is a
divisor, clock cycles per bit, fixed when the gateware is built: 12 MHz / 12 gives
1 Mbaud on an iCEBreaker, 25 MHz / 25 the same on a ULX3S; the simulated board uses 2
cycles per bit. The receiver samples each bit in its middle (as amaranth-stdio's
AsyncSerialRX does) behind a two-flop synchronizer; the transmitter starts the next
byte in the cycle the previous stop bit ends, so a byte takes exactly 10 bit times.
"""
from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

# At 2 cycles per bit the receiver samples each bit in its second cycle and sees the next
# start bit in the cycle after a stop bit's sample: exact on an ideal line (a simulation,
# both ends on one clock). A real line needs margin: boards use 4 or more (board_top).
MIN_DIVISOR = 2


def _check_divisor(divisor):
    if not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        raise ValueError(f"UART divisor = {divisor!r}: must be an integer >= {MIN_DIVISOR} "
                         f"(clock cycles per bit)")


class UARTReceiver(wiring.Component):
    """Bytes from the `rx` line on `o`.

    `o` has no backpressure (`always_ready`): a byte is valid for one cycle (in the
    middle of its stop bit), whoever wants it takes it then; its payload is the shift
    register itself, so it holds until the next byte's start bit. `frame_error` pulses
    instead when a byte's stop bit is low (the byte is dropped); the receiver then
    waits for the line to go idle. `busy`: inside a byte.
    """

    def __init__(self, divisor: int):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({"rx": In(1, init=1),
                          "o": Out(stream.Signature(8, always_ready=True)),
                          "frame_error": Out(1),
                          "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)
        timer = Signal(range(self.divisor))
        # The data bits come in at the top; a 1 put there at the start bit reaches bit 0 with the
        # eighth, so no counter of bits is needed.
        shift = Signal(9)
        m.d.comb += self.o.payload.eq(shift[1:])
        m.d.sync += [self.o.valid.eq(0), self.frame_error.eq(0)]
        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(self.divisor - 1), shift.eq(1 << 8)]
                    with m.If(line):                      # a glitch, not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [shift.eq(Cat(shift[1:], line)), timer.eq(self.divisor - 1)]
                    with m.If(shift[1]):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(line):
                        m.d.sync += self.o.valid.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += self.frame_error.eq(1)
                        m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m


class UARTTransmitter(wiring.Component):
    """Bytes taken from `i` sent on the `tx` line, back to back."""

    def __init__(self, divisor: int):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1, init=1), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        # Start, 8 data bits LSB first, stop, then a marker 1, shifted out from bit 0 with zeros
        # behind: the marker alone left is the idle line, and no counter of bits is needed.
        frame = Signal(11, init=1)
        timer = Signal(range(self.divisor))
        bit_ends = timer == 0
        idle = frame[1:] == 0
        stop = frame[1] & (frame[2:] == 0)              # the stop bit is on the line
        m.d.comb += [self.tx.eq(frame[0]), self.busy.eq(~idle),
                     self.i.ready.eq(idle | (stop & bit_ends))]
        with m.If(~idle):
            with m.If(bit_ends):
                m.d.sync += [frame.eq(frame[1:]), timer.eq(self.divisor - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [frame.eq(Cat(0, self.i.payload, 1, 1)), timer.eq(self.divisor - 1)]
        return m
