"""The network board on a platform: the network core behind the UART, clocked by the PLL.

`NetworkTop` is `BoardTop` (the FTDI UART pins and the two LEDs around a `BoardCore`)
with the `sync` domain made by `PllClock` instead of the platform's oscillator: the
network engine runs at the highest clock that meets timing (`nomac build` measures
it, nomac.boards.build), and the UART's divisor is computed for that clock.

The table memory is the one the device has (docs/spec.md section 16.2): on an
iCE40UP5K the four SPRAMs (`SpramTableMemory`: its block RAM is far too small for 16K
64-bit words), elsewhere block RAM (the network engine's own `TableMemory`).
"""
from amaranth import ClockDomain, Elaboratable, Module

from nomac.base.errors import NomacError
from nomac.boards.board_map import DEFAULT_TIMEOUT_BYTES
from nomac.boards.board_top import BoardCore, BoardTop
from nomac.boards.devices import Device
from nomac.boards.ice40_spram import SPRAM_WORDS, SpramTableMemory
from nomac.boards.network_board import network_board_core
from nomac.boards.pll import PllClock
from nomac.hw.network.unit import NetworkLimits

__all__ = ["NetworkTop", "table_memory_name", "check_table_memory", "device_table_memory", "network_top"]


def table_memory_name(device: Device) -> str:
    """What holds the table memory on `device`: "SPRAM" (iCE40UP5K) or "block RAM"."""
    return "SPRAM" if device.name == "ice40-up5k" else "block RAM"


def check_table_memory(device: Device, limits: NetworkLimits):
    """NomacError when the limits' table memory does not fit what `device` holds it in."""
    if table_memory_name(device) == "SPRAM" and limits.table_words > SPRAM_WORDS:
        raise NomacError(f"network limits: table_words = {limits.table_words}: the {device.name}'s SPRAM holds "
                         f"{SPRAM_WORDS} words of 64 bits (four SB_SPRAM256KA of 16K x 16)")


def device_table_memory(device: Device, limits: NetworkLimits):
    """The table memory component for `device` (None: the engine's block-RAM TableMemory)."""
    check_table_memory(device, limits)
    return SpramTableMemory(limits.table_words) if table_memory_name(device) == "SPRAM" else None


class NetworkTop(Elaboratable):
    """`core` (a network board core) on a platform, its `sync` domain from `pll` (an Ice40Pll or
    Ecp5Pll of nomac.boards.pll, for the platform's oscillator)."""

    def __init__(self, core: BoardCore, pll):
        self.core, self.pll = core, pll

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync")
        m.submodules.clock = PllClock(self.pll, "sync")
        m.submodules.board = BoardTop(self.core)
        return m


def network_top(device: Device, limits: NetworkLimits, pll, *, divisor: int, max_payload: int | None = None,
                timeout_bytes: int = DEFAULT_TIMEOUT_BYTES) -> NetworkTop:
    """The top of a network board for `device` built for `limits`, clocked by `pll`, its UART at
    `divisor` cycles of the PLL's clock per bit."""
    clock_hz = pll.output_hz
    if clock_hz.denominator != 1:
        raise NomacError(f"network board: PLL output {float(clock_hz)} Hz: must be a whole number of Hz "
                         f"(the board map and IDENTIFY carry clock_hz as an integer)")
    core = network_board_core(limits, clock_hz=int(clock_hz), divisor=divisor, max_payload=max_payload,
                              timeout_bytes=timeout_bytes, table_memory=device_table_memory(device, limits))
    return NetworkTop(core, pll)
