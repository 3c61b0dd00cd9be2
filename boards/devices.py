"""The FPGAs nomac builds for and the boards that carry them: one `Device` per FPGA, one `Board` per board.

A board's amaranth-boards platform already knows its oscillator, its pins and its
FPGA, so a `Board` reads them from there (its default clock, its FTDI UART). A
`Device` keeps what no platform says: how yosys and nextpnr are asked for the
FPGA, how its cells count as LUT4 sites, flip-flops, block RAMs and DSP blocks,
and the shapes its block RAMs come in.
"""
from dataclasses import dataclass
from functools import cached_property

from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from nomac.base.errors import NomacError

__all__ = ["BOARDS", "DEFAULT_BOARD", "DEVICES", "BlockRam", "Board", "Device", "PackagePin", "get_board",
           "harness_board"]


@dataclass(frozen=True)
class BlockRam:
    """A device's block RAMs: how many there are, and the shapes one can take."""
    blocks: int
    shapes: tuple          # (read width in bits, depth in words) per configuration


@dataclass(frozen=True)
class PackagePin:
    """One package pin and the I/O attributes its board's platform gives it (IO_TYPE on ECP5)."""
    name: str
    attrs: dict


@dataclass(frozen=True)
class Device:
    """One FPGA: how to synthesize and place for it, how to count its cells, its block RAMs."""
    name: str
    family: str                      # "ice40" or "ecp5": the yosys / nextpnr flavour
    synth_options: str               # yosys synth_<family> options: DSP inference on
    synth_options_without_dsp: str   # the same with multipliers built from logic
    nextpnr_args: tuple              # the part and package, as nextpnr takes them
    packer: str                      # the tool that turns nextpnr's output into a bitstream
    bitstream_suffix: str
    default_target_mhz: float        # nextpnr's --freq for an engine alone when none is asked for
    lut_weights: dict                # cell type -> LUT4s it occupies
    ff_prefixes: tuple
    brams: tuple                     # block-RAM cell types
    dsps: tuple                      # DSP cell types
    block_ram: BlockRam

    def synth(self, dsp: bool = True) -> str:
        """The yosys synthesis command, without -top / -json."""
        options = self.synth_options if dsp else self.synth_options_without_dsp
        return f"synth_{self.family} {options}".rstrip()

    @property
    def nextpnr(self) -> str:
        return f"nextpnr-{self.family}"

    @property
    def constraints_suffix(self) -> str:
        return ".pcf" if self.family == "ice40" else ".lpf"

    def constraints(self, pins: dict) -> str:
        """The pin constraints text placing each top-level port on its `PackagePin`."""
        if self.family == "ice40":
            return "".join(f"set_io {port} {pin.name}\n" for port, pin in pins.items())
        return "".join(f'LOCATE COMP "{port}" SITE "{pin.name}";\n'
                       + (f'IOBUF PORT "{port}"' + "".join(f" {key}={value}" for key, value in pin.attrs.items())
                          + ";\n" if pin.attrs else "")
                       for port, pin in pins.items())

    def constraints_args(self, path) -> list:
        return [f"--{self.constraints_suffix[1:]}", str(path)]

    def resources(self, cells: dict) -> dict:
        """LUT4 sites, flip-flops, block RAMs and DSP blocks among yosys's cell counts by type."""
        def count(types):
            return sum(n for cell_type, n in cells.items() if cell_type in types)

        return {"luts": sum(n * self.lut_weights.get(cell_type, 0) for cell_type, n in cells.items()),
                "ffs": sum(n for cell_type, n in cells.items() if cell_type.startswith(self.ff_prefixes)),
                "brams": count(self.brams), "dsps": count(self.dsps)}


ICE40_UP5K = Device(
    name="ice40-up5k", family="ice40", synth_options="-dsp", synth_options_without_dsp="",
    nextpnr_args=("--up5k", "--package", "sg48"), packer="icepack", bitstream_suffix=".bin",
    default_target_mhz=48.0,
    # SB_CARRY sits beside the SB_LUT4 that computes the sum bit: no LUT of its own.
    lut_weights={"SB_LUT4": 1}, ff_prefixes=("SB_DFF",), brams=("SB_RAM40_4K",), dsps=("SB_MAC16",),
    # 30 SB_RAM40_4K of 4 kbit (iCE40 memory usage guide, TN1250).
    block_ram=BlockRam(30, ((16, 256), (8, 512), (4, 1024), (2, 2048))))

ECP5_85F = Device(
    name="ecp5-85f", family="ecp5", synth_options="", synth_options_without_dsp="-nodsp",
    nextpnr_args=("--85k", "--package", "CABGA381"), packer="ecppack", bitstream_suffix=".bit",
    default_target_mhz=125.0,
    # A CCU2C carry cell is both LUT4s of a slice; a TRELLIS_DPR16X4 (16x4 distributed
    # RAM) takes three slices, two for storage and one for the write port (ECP5 family
    # data sheet, FPGA-DS-02012, "Distributed RAM"): six LUT4 sites.
    lut_weights={"LUT4": 1, "CCU2C": 2, "TRELLIS_DPR16X4": 6}, ff_prefixes=("TRELLIS_FF",),
    brams=("DP16KD", "PDPW16KD"), dsps=("MULT18X18D", "ALU54B"),
    # 208 DP16KD of 18 kbit, 36 bits wide as pseudo-dual-port (FPGA-TN-02032).
    block_ram=BlockRam(208, ((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384))))

DEVICES = {device.name: device for device in (ICE40_UP5K, ECP5_85F)}


@dataclass(frozen=True)
class Board:
    """A supported FPGA board: its amaranth-boards platform and the `Device` on it."""
    name: str
    platform: type                   # the amaranth-boards platform class
    device: Device
    default_baud: int = 1_000_000

    def make_platform(self):
        return self.platform()

    @cached_property
    def clock_hz(self) -> int:
        """The board oscillator (the platform's default clock), which clocks the whole design."""
        return round(self.make_platform().default_clk_frequency)

    def pin(self, resource: str, subsignal: str | None = None) -> PackagePin:
        """The single pin of the platform's `resource` #0 (or of its `subsignal`), with its attributes."""
        found = self.make_platform().lookup(resource, 0)
        attrs = dict(found.attrs)
        if subsignal is not None:
            found = next(io for io in found.ios if io.name == subsignal)
            attrs.update(found.attrs)
        (pins,) = found.ios
        (name,) = pins.names
        return PackagePin(name, attrs)


BOARDS = {board.name: board for board in (Board("icebreaker", ICEBreakerPlatform, ICE40_UP5K),
                                          Board("ulx3s-85f", ULX3S_85F_Platform, ECP5_85F))}
DEFAULT_BOARD = "icebreaker"      # what `nomac build` and `nomac run` target without --board


def get_board(name: str) -> Board:
    if name not in BOARDS:
        raise NomacError(f"board {name!r}: not supported; choose one of {', '.join(BOARDS)}")
    return BOARDS[name]


def harness_board(device: Device) -> Board:
    """The board whose pins an engine placed alone on `device` uses (its first carrier)."""
    return next(board for board in BOARDS.values() if board.device is device)
