"""`nomac bench`: what each engine costs and how fast it runs, measured.

For every config: cycles per vector measured in simulation (cocotb, full-rate
streams) against the design's own figure and its kind's lower bound (lut: the
table-read bound ceil(C*M/R); shift and dense: ceil(D*M/(U*T)); each operator its own,
docs/spec.md section 13.10; `--operators` measures the bundled op_*.json); for a lut engine the
R each device's block RAM would allow and the bound that gives; and, per device,
LUT/FF/BRAM/DSP of the engine synthesized out of context plus its Fmax after
place-and-route (`nomac.boards.synthesis`). An engine that synthesizes but does not
fit the device (more DSP blocks than it has, say) keeps its resource counts and gets
a note instead of an Fmax. Prints tables, writes JSON and a PNG.
"""
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nomac.boards.block_ram import max_table_reads
from nomac.boards.devices import DEVICES
from nomac.boards.synthesis import synthesize
from nomac.base.errors import NomacError
from nomac.model.config import load_config
from nomac.model.operator_layers import OPERATOR_KINDS
from nomac.base.output_files import replaced_file, write_json
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
    bound_rule: str = "ceil(C*M/R)"


# How an operator's parameters show in a shape: "attention T17 E32 H4 L8".
OPERATOR_SHAPE = {"height": "H", "width": "W", "patch": "p", "tokens": "T", "features": "E", "heads": "H",
                  "index": "i"}


def shape_of(layer) -> str:
    """The layer's shape and parallelism in a few tokens, e.g. "l2 D32 M32 C8 K16 R4"."""
    D, M, hw = layer.in_features, layer.out_features, layer.hw
    if layer.kind in OPERATOR_KINDS:
        sizes = " ".join(f"{letter}{getattr(layer, key)}" for key, letter in OPERATOR_SHAPE.items()
                         if key in layer.PARAMS)
        return f"{layer.kind} {sizes} L{hw.lanes}"
    if layer.kind == "lut":
        return f"{layer.encoder} D{D} M{M} C{layer.codebooks} K{layer.centroids} R{hw.table_reads}"
    shifts = f" p{layer.shift_min}..{layer.shift_max}" if layer.kind == "shift" else ""
    return f"{layer.kind} D{D} M{M}{shifts} U{hw.lanes} T{hw.terms_per_cycle}"


def load_bench_configs(paths, kinds) -> list[tuple]:
    """(config, name) of every path, each read and checked before the first simulation starts;
    a config's first layer is the one benchmarked, so it must be one of `kinds`."""
    loaded = []
    for path in map(Path, paths):
        config = load_config(path)
        if config.layers[0].kind not in kinds:
            raise NomacError(f"{path}: first layer '{config.layers[0].name}' is a {config.layers[0].kind} layer; "
                             f"this benchmark measures {' or '.join(kinds)} layers")
        loaded.append((config, path.stem))
    return loaded


def measure_config(config, name: str, devices, *, vectors: int, work_dir: Path, synth: bool, progress=print,
                   dsp: bool = True):
    """The figures of a config's first layer, reported under `name` (`dsp=False`: no DSP inference)."""
    layer = config.layers[0]
    progress(f"  {name}: simulating ...")
    report = simulate(config, vectors=vectors, work_dir=work_dir / "sim")
    figures = EngineFigures(
        config=name, layer=layer.name, shape=shape_of(layer),
        cycles_per_vector=report.cycles_per_vector,
        design_cycles_per_vector=report.manifest["cycles_per_vector"],
        bound=report.manifest["cycles_per_vector_bound"], latency_cycles=report.latency_cycles,
        mismatches=report.mismatched_vectors, bound_rule=report.manifest["cycles_per_vector_bound_rule"])
    for device in devices:
        entry = {}
        if layer.kind == "lut":
            C, K, M = layer.codebooks, layer.centroids, layer.out_features
            reads = max_table_reads(device, C, K, M)
            entry = {"max_table_reads": reads, "bound_at_max_reads": -(-C * M // reads) if reads else None}
        if synth:
            progress(f"  {name}: synthesizing for {device} ...")
            entry.update(synthesized(layer, device, work_dir / "synth" / name, figures.cycles_per_vector, dsp))
        figures.devices[device] = entry
    return figures


def synthesized(layer, device: str, work_dir: Path, cycles_per_vector: float, dsp: bool = True) -> dict:
    """Resources and Fmax. When place-and-route fails: the resources and nextpnr's reason;
    when synthesis itself fails (a tool crash): no figures, and the tool's last words."""
    try:
        result = synthesize(layer, device, work_dir=work_dir, dsp=dsp)
    except NomacError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        if "failed (exit" not in lines[0]:       # not a tool run that failed: a real error
            raise
        if "nextpnr" not in lines[0]:
            return {"luts": None, "ffs": None, "brams": None, "dsps": None, "fmax_mhz": None,
                    "vectors_per_second": None, "note": f"no figures: {lines[0]} ... {lines[-1]}"}
        result = synthesize(layer, device, work_dir=work_dir, place_and_route=False, dsp=dsp)
        reason = next((line for line in lines if line.startswith("ERROR")), lines[0])
        return {"luts": result.luts, "ffs": result.ffs, "brams": result.brams, "dsps": result.dsps,
                "fmax_mhz": None, "vectors_per_second": None, "note": f"does not fit: {reason}"}
    entry = {"luts": result.luts, "ffs": result.ffs, "brams": result.brams, "dsps": result.dsps,
             "fmax_mhz": result.fmax_mhz, "vectors_per_second": result.fmax_mhz * 1e6 / cycles_per_vector}
    if result.fallbacks:
        entry["note"] = "; ".join(result.fallbacks)
    return entry


def device_columns(entry: dict) -> str:
    """LUT4, FF, BRAM, DSP, Fmax and vectors/s of a device entry, "-" where there is no figure."""
    def shown(key, width, spec=""):
        value = entry[key]
        return f"{'-' if value is None else format(value, spec):>{width}}"
    return " ".join((shown("luts", 6), shown("ffs", 6), shown("brams", 5), shown("dsps", 4),
                     shown("fmax_mhz", 9, ".1f"), shown("vectors_per_second", 10, ".0f")))


def format_tables(rows: list[EngineFigures]) -> str:
    rules = " or ".join(dict.fromkeys(row.bound_rule for row in rows))
    lines = [f"cycles per vector (measured in simulation; bound = {rules})",
             f"{'config':<16} {'shape':<28} {'measured':>8} {'design':>6} {'bound':>5} {'latency':>7} "
             f"{'mismatch':>8}  R allowed by block RAM (bound)"]
    for row in rows:
        allowed = ", ".join(f"{d}: R={e['max_table_reads']} ({e['bound_at_max_reads']})"
                            for d, e in row.devices.items() if "max_table_reads" in e) or "-"
        lines.append(f"{row.config:<16} {row.shape:<28} {row.cycles_per_vector:>8.2f} "
                     f"{row.design_cycles_per_vector:>6} {row.bound:>5} {row.latency_cycles:>7} "
                     f"{row.mismatches:>8}  {allowed}")
    if any("luts" in e for row in rows for e in row.devices.values()):
        lines += ["", "resources of the engine alone and Fmax after place-and-route",
                  f"{'config':<16} {'device':<11} {'LUT4':>6} {'FF':>6} {'BRAM':>5} {'DSP':>4} "
                  f"{'Fmax MHz':>9} {'vectors/s':>10}"]
        notes = []
        for row in rows:
            for device, e in row.devices.items():
                lines.append(f"{row.config:<16} {device:<11} {device_columns(e)}")
                if "note" in e:
                    notes.append(f"  {row.config} on {device}: {e['note']}")
        lines += notes
    return "\n".join(lines)


def save(rows: list[EngineFigures], folder: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = [write_json(folder / "bench.json", [asdict(r) for r in rows], "benchmark table")]
    synthesized = [r for r in rows if any("luts" in e for e in r.devices.values())]
    if synthesized:
        devices = list(synthesized[0].devices)
        figure, axes = plt.subplots(1, 2, figsize=(10, 4))
        width = 0.8 / len(devices)
        for i, device in enumerate(devices):
            xs = [j + i * width for j in range(len(synthesized))]
            axes[0].bar(xs, [r.devices[device]["luts"] or 0 for r in synthesized], width, label=device)
            axes[1].bar(xs, [r.devices[device]["fmax_mhz"] or 0 for r in synthesized], width, label=device)
        for axis, title in zip(axes, ("LUT4 (engine alone)", "Fmax (MHz)")):
            axis.set_xticks([j + width * (len(devices) - 1) / 2 for j in range(len(synthesized))],
                            [r.config for r in synthesized], rotation=20)
            axis.set_title(title)
            axis.legend()
        figure.tight_layout()
        with replaced_file(folder / "bench.png", "benchmark plot") as temporary:
            figure.savefig(temporary, dpi=100, format="png")
        paths.append(folder / "bench.png")
        plt.close(figure)
    return paths


def run_benchmark(configs, devices=tuple(DEVICES), *, vectors: int = 64, out_dir="build/bench",
                  synth: bool = True, progress=print, kinds=("lut", "shift", "dense")) -> list[EngineFigures]:
    out_dir = Path(out_dir)
    loaded = load_bench_configs(configs, kinds)
    progress(f"nomac bench: {len(loaded)} configs on {', '.join(devices)}")
    rows = [measure_config(config, name, devices, vectors=vectors, work_dir=out_dir, synth=synth, progress=progress)
            for config, name in loaded]
    print(format_tables(rows))
    for path in save(rows, out_dir):
        print(f"wrote {path}")
    return rows
