"""`nomac bench`: what each engine costs and how fast it runs, measured.

For every config: cycles per vector measured in simulation (cocotb, full-rate
streams) against the design's own figure and the table-read bound ceil(C*M/R); the
R each device's block RAM would allow and the bound that gives; and, per device,
LUT/FF/BRAM/DSP of the engine synthesized out of context plus its Fmax after
place-and-route (`nomac.boards.synthesis`). Prints tables, writes JSON and a PNG.
"""
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nomac.boards.block_ram import max_table_reads
from nomac.boards.synthesis import DEVICES, synthesize
from nomac.model.config import load_config
from nomac.sim.runner import simulate


@dataclass
class EngineFigures:
    config: str
    layer: str
    shape: str
    cycles_per_vector: float
    design_cycles_per_vector: int
    bound: int
    latency_cycles: int
    mismatches: int
    devices: dict = field(default_factory=dict)   # device -> figures


def measure(config_path: Path, devices, *, vectors: int, work_dir: Path, synth: bool, progress=print):
    config = load_config(config_path)
    layer = config.layers[0]
    C, K, M, R = layer.codebooks, layer.centroids, layer.out_features, layer.hw.table_reads
    progress(f"  {config_path.name}: simulating ...")
    report = simulate(config, vectors=vectors, work_dir=work_dir / "sim")
    figures = EngineFigures(
        config=config_path.stem, layer=layer.name,
        shape=f"{layer.encoder} D{layer.in_features} M{M} C{C} K{K} R{R}",
        cycles_per_vector=report.cycles_per_vector,
        design_cycles_per_vector=report.manifest["cycles_per_vector"],
        bound=report.manifest["cycles_per_vector_bound"], latency_cycles=report.latency_cycles,
        mismatches=report.mismatched_vectors)
    for device in devices:
        reads = max_table_reads(device, C, K, M)
        entry = {"max_table_reads": reads, "bound_at_max_reads": -(-C * M // reads) if reads else None}
        if synth:
            progress(f"  {config_path.name}: synthesizing for {device} ...")
            result = synthesize(layer, device, work_dir=work_dir / "synth" / config_path.stem)
            entry.update(luts=result.luts, ffs=result.ffs, brams=result.brams, dsps=result.dsps,
                         fmax_mhz=result.fmax_mhz,
                         vectors_per_second=result.fmax_mhz * 1e6 / figures.cycles_per_vector)
        figures.devices[device] = entry
    return figures


def format_tables(rows: list[EngineFigures]) -> str:
    lines = ["cycles per vector (measured in simulation; bound = ceil(C*M/R))",
             f"{'config':<16} {'shape':<28} {'measured':>8} {'design':>6} {'bound':>5} {'latency':>7} "
             f"{'mismatch':>8}  R allowed by block RAM (bound)"]
    for row in rows:
        allowed = ", ".join(f"{d}: R={e['max_table_reads']} ({e['bound_at_max_reads']})"
                            for d, e in row.devices.items())
        lines.append(f"{row.config:<16} {row.shape:<28} {row.cycles_per_vector:>8.2f} "
                     f"{row.design_cycles_per_vector:>6} {row.bound:>5} {row.latency_cycles:>7} "
                     f"{row.mismatches:>8}  {allowed}")
    if any("luts" in e for row in rows for e in row.devices.values()):
        lines += ["", "resources of the engine alone and Fmax after place-and-route",
                  f"{'config':<16} {'device':<11} {'LUT4':>6} {'FF':>6} {'BRAM':>5} {'DSP':>4} "
                  f"{'Fmax MHz':>9} {'vectors/s':>10}"]
        for row in rows:
            for device, e in row.devices.items():
                lines.append(f"{row.config:<16} {device:<11} {e['luts']:>6} {e['ffs']:>6} {e['brams']:>5} "
                             f"{e['dsps']:>4} {e['fmax_mhz']:>9.1f} {e['vectors_per_second']:>10.0f}")
    return "\n".join(lines)


def save(rows: list[EngineFigures], folder: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "bench.json"]
    paths[0].write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    synthesized = [r for r in rows if any("luts" in e for e in r.devices.values())]
    if synthesized:
        devices = list(synthesized[0].devices)
        figure, axes = plt.subplots(1, 2, figsize=(10, 4))
        width = 0.8 / len(devices)
        for i, device in enumerate(devices):
            xs = [j + i * width for j in range(len(synthesized))]
            axes[0].bar(xs, [r.devices[device]["luts"] for r in synthesized], width, label=device)
            axes[1].bar(xs, [r.devices[device]["fmax_mhz"] for r in synthesized], width, label=device)
        for axis, title in zip(axes, ("LUT4 (engine alone)", "Fmax (MHz)")):
            axis.set_xticks([j + width * (len(devices) - 1) / 2 for j in range(len(synthesized))],
                            [r.config for r in synthesized], rotation=20)
            axis.set_title(title)
            axis.legend()
        figure.tight_layout()
        paths.append(folder / "bench.png")
        figure.savefig(paths[1], dpi=100)
        plt.close(figure)
    return paths


def run_benchmark(configs, devices=tuple(DEVICES), *, vectors: int = 64, out_dir="build/bench",
                  synth: bool = True, progress=print) -> list[EngineFigures]:
    out_dir = Path(out_dir)
    rows = [measure(Path(path), devices, vectors=vectors, work_dir=out_dir, synth=synth, progress=progress)
            for path in configs]
    print(format_tables(rows))
    for path in save(rows, out_dir):
        print(f"wrote {path}")
    return rows
