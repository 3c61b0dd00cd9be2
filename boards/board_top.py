"""A board for one config: its engine with RAM tables, the UART link, and the board's pins.

`BoardCore` is everything but the pins: UART receiver -> frame decoder -> command
handler (with the engine) -> frame encoder -> UART transmitter, with two pins `rx`
and `tx`. The simulated board (sim/board_bench.py) is this core as Verilog; a real
board is `BoardTop`, the same core on an amaranth-boards platform (the FTDI UART
pins, two LEDs, the board oscillator as clock; the boards are in
`nomac.boards.devices`). Nothing in either depends on the layer kind: the engine
comes from `build_engine` and the memories from its `memories`
(nomac.boards.board_map), or, for a whole model, the engine is the network engine
and the map the network board's (nomac.boards.network_board).

The board oscillator clocks everything (12 MHz on an iCEBreaker, 25 MHz on a
ULX3S): the engines' Fmax is well above both, and at any UART rate a board can use
the link, not the engine, limits throughput, so a PLL would only cost timing margin.
"""
from amaranth import Elaboratable, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out, connect

from nomac.boards.board_map import DEFAULT_TIMEOUT_BYTES, BoardMap, board_layer, board_map
from nomac.boards.command_handler import CommandHandler
from nomac.boards.link_gateware import FrameDecoder, FrameEncoder
from nomac.boards.uart import MIN_DIVISOR, UARTReceiver, UARTTransmitter
from nomac.hw.buffer_memory import BufferMemory
from nomac.hw.engine_kinds import build_engine
from nomac.model.config import Config

__all__ = ["LED_CYCLES_LOG2", "SIM_DIVISOR", "BoardCore", "BoardTop"]

LED_CYCLES_LOG2 = 20          # an LED stays lit for about 2^20 cycles (87 ms at 12 MHz) after an event
# The simulated board: an iCEBreaker whose UART runs at MIN_DIVISOR cycles per bit, so a
# simulation spends few cycles per byte; frames, commands and replies are the real ones.
SIM_DIVISOR = MIN_DIVISOR


class BoardCore(wiring.Component):
    """The engine of `config`'s hardware layer behind the UART link; pins `rx`, `tx`
    (`BoardCore.of_engine`: another engine, such as the network engine, with its map).

    `blank` starts every loadable memory at zero instead of the config's arrays, so
    a board only computes the layer once the host has loaded it (the simulated board
    does this, which makes every `nomac run --sim` a test of the upload too).
    `busy` is high while a frame is inside (being received, executed or answered);
    `executed` / `rejected` pulse for each frame answered OK / with an error.
    """

    def __init__(self, config: Config, layer_name: str | None = None, *, clock_hz: int, divisor: int,
                 max_payload: int | None = None, timeout_bytes: int = DEFAULT_TIMEOUT_BYTES,
                 blank: bool = False):
        layer = board_layer(config, layer_name)
        self.layer, self.blank = layer, blank
        engine = build_engine(layer)
        if blank:
            for parameters in engine.memories:
                if parameters.writable:
                    parameters.init = [0] * parameters.depth
        self._hold(engine, board_map(config, layer_name, clock_hz=clock_hz, divisor=divisor,
                                     max_payload=max_payload, timeout_bytes=timeout_bytes, engine=engine))

    @classmethod
    def of_engine(cls, engine: wiring.Component, board: BoardMap, *, blank: bool) -> "BoardCore":
        """The core of any engine on the engine contract with its board map (the network board:
        nomac.boards.network_board); `board.regions` must be the engine's RAM memories, in order.
        `layer` is None; `blank` says whether the engine's memories start at zero (the engine
        decides that, not the core)."""
        core = cls.__new__(cls)
        core.layer, core.blank = None, blank
        core._hold(engine, board)
        return core

    def _hold(self, engine: wiring.Component, board: BoardMap):
        self.engine, self.map = engine, board
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "busy": Out(1),
                          "executed": Out(1), "rejected": Out(1)})

    def elaborate(self, platform):
        m = Module()
        board = self.map
        m.submodules.receiver = receiver = UARTReceiver(board.divisor)
        m.submodules.transmitter = transmitter = UARTTransmitter(board.divisor)
        m.submodules.decoder = decoder = FrameDecoder(board.max_payload, board.timeout_cycles)
        m.submodules.encoder = encoder = FrameEncoder(board.max_payload)
        m.submodules.handler = handler = CommandHandler(board, self.engine.signature)
        m.submodules.engine = self.engine
        # The decoder writes the payload before it offers the frame, the handler reads it only
        # while the frame is offered (the decoder then writes nothing), so no read meets a write.
        m.submodules.payload = payload = BufferMemory(shape=8, depth=board.max_payload)

        m.d.comb += [receiver.rx.eq(self.rx), self.tx.eq(transmitter.tx)]
        connect(m, receiver.o, decoder.i)
        connect(m, decoder.buffer, payload.write)
        connect(m, decoder.frame, handler.frame)
        connect(m, handler.payload, payload.read)
        connect(m, handler.engine, self.engine)
        connect(m, handler.reply, encoder.reply)
        connect(m, handler.data, encoder.data)
        connect(m, encoder.o, transmitter.i)
        connect(m, encoder.crc, decoder.crc)
        m.d.comb += [handler.head.eq(decoder.head), handler.head_zero.eq(decoder.head_zero),
                     handler.events.uart_error.eq(receiver.frame_error),
                     handler.events.garbage.eq(decoder.garbage),
                     handler.events.overrun.eq(decoder.overrun),
                     self.busy.eq(receiver.busy | decoder.busy | handler.busy | encoder.busy | transmitter.busy),
                     self.executed.eq(handler.executed), self.rejected.eq(handler.rejected)]
        return m


class BoardTop(Elaboratable):
    """`BoardCore` on a platform: the FTDI UART, LED 1 (green on an iCEBreaker) lit after
    frames executed, LED 0 (red) after frames rejected."""

    def __init__(self, core: BoardCore):
        self.core = core

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buffer = rx_buffer = io.Buffer("i", uart.rx)
        m.submodules.tx_buffer = tx_buffer = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(rx_buffer.i), tx_buffer.o.eq(core.tx)]
        # One free-running prescaler; an event lights its LED for two to three of its periods.
        prescaler = Signal(LED_CYCLES_LOG2 - 1)
        tick = prescaler == 0
        m.d.sync += prescaler.eq(prescaler + 1)
        for index, event in ((0, core.rejected), (1, core.executed)):
            lit = Signal(2, name=f"led{index}_periods")
            with m.If(event):
                m.d.sync += lit.eq(3)
            with m.Elif(tick & (lit != 0)):
                m.d.sync += lit.eq(lit - 1)
            m.submodules[f"led{index}_buffer"] = led = io.Buffer("o", platform.request("led", index, dir="-"))
            m.d.comb += led.o.eq(lit != 0)
        return m
