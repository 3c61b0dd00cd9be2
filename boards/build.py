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
tools' output goes to build.log.

The report (report.json beside the bitstream) says whether every clock meets its
constraint; the board map (board.json) is what a host needs to talk to the board.
"""
import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nomac.boards.board_map import DEFAULT_TIMEOUT_BYTES, board_layer
from nomac.boards.board_options import board_divisor
from nomac.boards.board_top import BoardCore, BoardTop
from nomac.boards.devices import DEFAULT_BOARD, Board, get_board
from nomac.boards.toolchain import cells_by_type, find_tool, tool_env_var, tool_version
from nomac.base.errors import NomacError
from nomac.model.config import Config
from nomac.base.output_files import write_json

__all__ = ["TOP", "BuildReport", "build_bitstream", "program_board"]

TOP = "nomac_board"
_LOG_TAIL_LINES = 30


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

    def summary(self) -> str:
        clocks = ", ".join(f"{name} {c['achieved_mhz']:.1f} MHz (needs {c['constraint_mhz']:.1f})"
                           for name, c in self.clocks.items())
        return (f"{self.bitstream}: {self.board} ({self.device}), layer {self.layer}, config {self.config_id}, "
                f"UART {self.baud:,.0f} baud\n"
                f"  {self.luts} LUT4, {self.ffs} FF, {self.brams} block RAM, {self.dsps} DSP; Fmax {clocks}; "
                f"timing {'met' if self.meets_timing else 'NOT met'} ({self.seconds:.0f} s)")


def _tool_environment(board: Board) -> dict:
    """The environment for the platform's build script: each tool it runs named by its variable."""
    tools = ("yosys", board.device.nextpnr, board.device.packer)
    return {**os.environ, **{tool_env_var(tool): find_tool(tool) for tool in tools}}


def build_bitstream(config: Config, board_name: str = DEFAULT_BOARD, *, layer_name: str | None = None,
                    out_dir=None, baud: int | None = None, max_payload: int | None = None,
                    timeout_bytes: int = DEFAULT_TIMEOUT_BYTES, seed: int = 1, progress=print) -> BuildReport:
    """Build the bitstream of `config`'s board for `board_name` into `out_dir`; return the report.
    `baud` and `max_payload` (by the board map) are checked before anything is written or run."""
    board = get_board(board_name)
    baud = board.default_baud if baud is None else baud
    divisor = board_divisor("build", board, baud)
    board_layer(config, layer_name)              # refuses a layer a board cannot hold, before any work
    core = BoardCore(config, layer_name, clock_hz=board.clock_hz, divisor=divisor, max_payload=max_payload,
                     timeout_bytes=timeout_bytes)
    out = Path(out_dir) if out_dir is not None else Path("build") / "board" / f"{core.map.layer}-{board.name}"
    out.mkdir(parents=True, exist_ok=True)
    env = _tool_environment(board)
    device = board.device
    platform = board.make_platform()
    overrides = {"script_after_synth": f"tee -q -o {TOP}.stat.json stat -json",
                 "nextpnr_opts": f"--report {TOP}.pnr.json --timing-allow-fail --seed {seed}"}
    if device.synth_options:                      # as nomac.boards.synthesis counts engines
        overrides["synth_opts"] = device.synth_options
    started = time.monotonic()
    progress(f"building {board.name} bitstream for layer {core.map.layer} (config {core.map.config_id}) "
             f"in {out} ...")
    plan = platform.build(BoardTop(core), name=TOP, do_build=False, **overrides)
    plan.extract(str(out))
    for stale in (f"{TOP}.stat.json", f"{TOP}.pnr.json", f"{TOP}{device.bitstream_suffix}"):
        (out / stale).unlink(missing_ok=True)
    log = out / "build.log"
    with open(log, "w") as output:
        result = subprocess.run(["sh", f"build_{TOP}.sh"], cwd=out, env=env, stdout=output,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    bitstream = out / f"{TOP}{device.bitstream_suffix}"
    if result.returncode != 0 or not bitstream.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:])
        raise NomacError(f"build for {board.name} failed (exit {result.returncode}, log {log}):\n{tail}")

    cells = cells_by_type(out / f"{TOP}.stat.json", TOP)
    pnr = json.loads((out / f"{TOP}.pnr.json").read_text())
    clocks = {name: {"achieved_mhz": float(figures["achieved"]), "constraint_mhz": float(figures["constraint"])}
              for name, figures in pnr.get("fmax", {}).items()}
    if not clocks:
        raise NomacError(f"build for {board.name}: nextpnr reported no clock in {out / f'{TOP}.pnr.json'}")

    report = BuildReport(
        board=board.name, device=device.name, config_id=core.map.config_id, layer=core.map.layer,
        bitstream=str(bitstream), baud=core.map.baud, clock_hz=board.clock_hz, **device.resources(cells),
        clocks=clocks,
        meets_timing=all(c["achieved_mhz"] >= c["constraint_mhz"] for c in clocks.values()),
        seconds=time.monotonic() - started, cells=cells,
        pnr_utilization={cell: numbers["used"] for cell, numbers in pnr.get("utilization", {}).items()},
        board_map=core.map.describe(),
        tools={"yosys": tool_version(env["YOSYS"], "-V"),
               "nextpnr": tool_version(env[tool_env_var(device.nextpnr)], "--version")},
        log=str(log))
    write_json(out / "board.json", core.map.describe(), "board map")
    write_json(out / "report.json", asdict(report), "build report")    # last: a complete build has one
    return report


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
