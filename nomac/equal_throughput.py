"""`nomac bench --compare`: shift vs dense vs lut engines of one layer at equal throughput.

The bundled examples compute the same seeded Linear(32, 32) (`model/examples/lut.py`,
`model/examples/matrix.py`). At each lane count N the engines get N output lanes:
table_reads R = N for lut (C = 8 codebooks: 8 * 32 / N cycles a vector), lanes U = N
with T = 4 terms a cycle for shift and dense (32 * 32 / (4 N) cycles). So each row of a
group has the same D, M, output lanes and cycles per vector, and the resources and Fmax
are what that throughput costs with each kind of arithmetic: table lookups (lut,
no multiplier), shifts (shift, no multiplier), or int8 products (dense: in DSP
blocks, and again, as `dense_small-nodsp`, synthesized with DSP inference off so that
its multipliers are built from LUTs, as where the DSPs are taken or too few).
"""
from pathlib import Path

from nomac.benchmark import EngineFigures, device_columns, measure_config, save
from nomac.boards.devices import DEVICES
from nomac.model.config import load_config
from nomac.model.examples.source_layer import CONFIG_DIR

# name: (bundled example, the hw key that sets its output lanes, DSP inference on)
ENGINES = {"lut_l1_small": ("lut_l1_small", "table_reads", True),
           "lut_tree_small": ("lut_tree_small", "table_reads", True),
           "shift_q5_small": ("shift_q5_small", "lanes", True),
           "dense_small": ("dense_small", "lanes", True),
           "dense_small-nodsp": ("dense_small", "lanes", False)}
DEFAULT_LANES = (2, 4)


def comparison_configs(lanes: int) -> dict:
    """{name: (config, DSP inference on)} of every compared engine with `lanes` output lanes."""
    return {name: (load_config(CONFIG_DIR / f"{stem}.json").with_hw({key: lanes}), dsp)
            for name, (stem, key, dsp) in ENGINES.items()}


def format_comparison(groups: dict[int, list[EngineFigures]]) -> str:
    lines = ["equal throughput: same D, M, output lanes and cycles per vector in each group",
             f"{'lanes':>5} {'config':<22} {'shape':<28} {'cycles':>6} {'bound':>5} {'device':<11} "
             f"{'LUT4':>6} {'FF':>6} {'BRAM':>5} {'DSP':>4} {'Fmax MHz':>9} {'vectors/s':>10}"]
    notes = []
    for lanes, rows in groups.items():
        for row in rows:
            head = f"{lanes:>5} {row.config:<22} {row.shape:<28} {row.cycles_per_vector:>6.0f} {row.bound:>5}"
            synthesized = {device: e for device, e in row.devices.items() if "luts" in e}
            if not synthesized:
                lines.append(head)
            for device, e in synthesized.items():
                lines.append(f"{head} {device:<11} {device_columns(e)}")
                if "note" in e:
                    notes.append(f"  lanes {lanes}, {row.config} on {device}: {e['note']}")
    return "\n".join(lines + notes)


def run_comparison(lanes=DEFAULT_LANES, devices=tuple(DEVICES), *, vectors: int = 64,
                   out_dir="build/bench/compare", synth: bool = True, progress=print) -> dict[int, list]:
    """Measure every compared engine at each lane count; print the table, save JSON (and PNG)."""
    out_dir = Path(out_dir)
    groups = {}
    for n in lanes:
        work = out_dir / f"lanes{n}"
        groups[n] = [measure_config(config, f"{name}@{n}", devices, vectors=vectors, work_dir=work,
                                    synth=synth, progress=progress, dsp=dsp)
                     for name, (config, dsp) in comparison_configs(n).items()]
    print(format_comparison(groups))
    for path in save([row for rows in groups.values() for row in rows], out_dir):
        print(f"wrote {path}")
    return groups
