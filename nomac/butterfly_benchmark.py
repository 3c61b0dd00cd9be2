"""Figures of `butterfly` engines: cycles against the bound, resources, Fmax, and cost
against the dense layer of the same (M, D).

For every config: cycles per vector measured in simulation (cocotb, full-rate
streams) against the design's figure and the bound max_k ceil(p_k*s_k/lanes_k); per
device the engine's LUT/FF/BRAM/DSP out of context and its Fmax after place and
route (`nomac.boards.synthesis`); weights and multiplies (or shifts) per vector of
the chain against M*D of the dense layer. Prints tables and writes JSON.

    nomac bench --butterfly [CONFIG ...] [--no-synth]
"""
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nomac.boards.devices import DEVICES
from nomac.boards.synthesis import synthesize
from nomac.base.errors import NomacError
from nomac.model.butterfly_spec import chain_parameters
from nomac.benchmark import load_bench_configs
from nomac.base.output_files import write_json
from nomac.sim.runner import simulate

EXAMPLES = ("butterfly_mono32", "butterfly_bulge32", "butterfly_shift32")


@dataclass
class ButterflyFigures:
    config: str
    chain: list
    weights: list
    lanes: list
    cycles_per_vector: float
    design_cycles_per_vector: int
    bound: int
    latency_cycles: int
    mismatches: int
    chain_weights: int          # sum of p*s: weights, and multiplies (or shifts) per vector
    dense_weights: int          # M*D
    devices: dict = field(default_factory=dict)


def measure(config, name: str, devices, *, vectors: int, work_dir: Path, synth: bool, progress=print):
    layer = config.layers[0]
    progress(f"  {name}: simulating ...")
    report = simulate(config, vectors=vectors, work_dir=work_dir / "sim")
    figures = ButterflyFigures(
        config=name, chain=[list(s) for s in layer.shapes], weights=[f.weights for f in layer.factors],
        lanes=list(layer.hw.lanes), cycles_per_vector=report.cycles_per_vector,
        design_cycles_per_vector=report.manifest["cycles_per_vector"],
        bound=report.manifest["cycles_per_vector_bound"], latency_cycles=report.latency_cycles,
        mismatches=report.mismatched_vectors, chain_weights=chain_parameters(layer.shapes),
        dense_weights=layer.in_features * layer.out_features)
    if synth:
        for device in devices:
            progress(f"  {name}: synthesizing for {device} ...")
            work = work_dir / "synth" / name
            try:
                result, problem = synthesize(layer, device, work_dir=work), None
            except NomacError as error:      # e.g. more multipliers than the device has DSP blocks
                result = synthesize(layer, device, work_dir=work, place_and_route=False)
                problem = str(error).splitlines()[-2] if len(str(error).splitlines()) > 1 else str(error)
            figures.devices[device] = dict(luts=result.luts, ffs=result.ffs, brams=result.brams, dsps=result.dsps,
                                           fmax_mhz=result.fmax_mhz, problem=problem,
                                           vectors_per_second=result.fmax_mhz * 1e6 / figures.cycles_per_vector
                                           if result.fmax_mhz else None)
    return figures


def format_tables(rows) -> str:
    lines = ["cycles per vector (measured in simulation; bound = max_k ceil(p_k*s_k/lanes_k)); "
             "weights = multiplies per vector",
             f"{'config':<18} {'measured':>8} {'design':>6} {'bound':>5} {'latency':>7} {'mismatch':>8} "
             f"{'weights':>7} {'dense':>6}"]
    for row in rows:
        lines.append(f"{row.config:<18} {row.cycles_per_vector:>8.2f} {row.design_cycles_per_vector:>6} "
                     f"{row.bound:>5} {row.latency_cycles:>7} {row.mismatches:>8} {row.chain_weights:>7} "
                     f"{row.dense_weights:>6}")
    if any(row.devices for row in rows):
        lines += ["", "resources of the engine alone and Fmax after place-and-route",
                  f"{'config':<18} {'device':<11} {'LUT4':>6} {'FF':>6} {'BRAM':>5} {'DSP':>4} "
                  f"{'Fmax MHz':>9} {'vectors/s':>10}"]
        for row in rows:
            for device, e in row.devices.items():
                speed = f"{e['fmax_mhz']:>9.1f} {e['vectors_per_second']:>10.0f}" if e["fmax_mhz"] else \
                    f"  does not place: {e['problem']}"
                lines.append(f"{row.config:<18} {device:<11} {e['luts']:>6} {e['ffs']:>6} {e['brams']:>5} "
                             f"{e['dsps']:>4} {speed}")
    return "\n".join(lines)


def run_butterfly_benchmark(configs, devices=tuple(DEVICES), *, vectors: int = 64, out_dir="build/bench",
                            synth: bool = True, progress=print) -> list[ButterflyFigures]:
    out_dir = Path(out_dir)
    loaded = load_bench_configs(configs, ("butterfly",))
    progress(f"nomac bench: {len(loaded)} butterfly configs on {', '.join(devices)}")
    rows = [measure(config, name, devices, vectors=vectors, work_dir=out_dir, synth=synth, progress=progress)
            for config, name in loaded]
    print(format_tables(rows))
    path = write_json(out_dir / "butterfly.json", [asdict(r) for r in rows], "butterfly benchmark table")
    print(f"wrote {path}")
    return rows
