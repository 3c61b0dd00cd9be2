"""`nomac report`: the accuracy table of the compressed tiny ViTs, with bytes and operations.

For every plan and seed it runs (or resumes) `pipeline.run_plan`, then prints and
saves (`report.md`, `report.json`, `report.png`, `report_pareto.png` in the output folder):
- test accuracy of the float teacher, of each compressed float model (quantization-aware:
  activations on their int8 grids) and of its integer-only config, and how often the
  float and the integer model predict the same class; mean and range over seeds; and the
  integer-only accuracy on the validation split, the one to choose a recipe by;
- integer-only accuracy against table bytes (the Pareto plot) of the plans with lookup
  tables: every seed a point, every plan's mean a marker, the plans no other plan beats with
  fewer or equal bytes joined; the plans without tables and the float teacher as lines;
- model bytes, split into weights (dense int8, shift sign+exponent, butterfly factors)
  and tables (lut tables and prototypes or thresholds), plus biases and operator
  constants;
- operations per image: multiply-accumulates with weights, table lookups, additions
  (lookup-accumulate, shift-add), and the multiplies the operators need
  (attention's Q K^T and A V between activations, LayerNorm, dyadic rescaling).
"""
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from nomac.base.output_files import replaced_file, write_json, write_text
from nomac.model.config import load_config
from nomac.model.dataflow import run_dataflow

__all__ = ["REPORT_PLANS", "LABELS", "Costs", "layer_rows", "config_costs", "summarize", "run_missing_in_parallel",
           "run_report", "format_report", "plot_report", "pareto_front", "plot_pareto"]

REPORT_PLANS = ("dense", "lut_kmeans", "lut_train", "lut_train_lin", "lut_kmeans_k32", "lut_train_k32_lin",
                "lut_train_k32_corrected", "lut_kmeans_k64", "lut_train_k64_lin", "lut_kmeans_v1_k8", "lut_train_v1_k8",
                "lut_lutnn_v1_k8", "shift", "butterfly", "mixed")
LABELS = {"dense": "int8 dense", "lut_kmeans": "LUT, k-means only", "lut_train": "LUT, differentiable",
          "lut_train_lin": "LUT, differentiable, linear input gradient",
          "lut_kmeans_k32": "LUT K=32, k-means only",
          "lut_train_k32_lin": "LUT K=32, differentiable, linear input gradient",
          "lut_train_k32_corrected": "LUT K=32, differentiable, table correction, averaged",
          "lut_kmeans_k64": "LUT K=64, k-means only", "lut_train_k64": "LUT K=64, differentiable",
          "lut_train_k64_lin": "LUT K=64, differentiable, linear input gradient",
          "lut_kmeans_v1_k8": "LUT 1-element subvectors K=8, k-means only",
          "lut_train_v1_k8": "LUT 1-element subvectors K=8, differentiable, table correction, averaged",
          "lut_lutnn_v1_k8": "LUT 1-element subvectors K=8, LUT-NN recipe (soft input gradient, learned temperature)",
          "lut_train_v1_k8_l1soft": "LUT 1-element subvectors K=8, differentiable, L1 soft distances",
          "lut_train_v1_k8_anneal": "LUT 1-element subvectors K=8, differentiable, temperature annealed x10",
          "lut_train_v1_k8_progressive": "LUT 1-element subvectors K=8, differentiable, replaced block by block",
          "lut_train_v1_k8_kd28": "LUT 1-element subvectors K=8, differentiable, 0.2 CE + 0.8 KD",
          "lut_train_v1_k8_recon": "LUT 1-element subvectors K=8, differentiable, layer reconstruction",
          "lut_train_v1_k8_t6": "LUT 1-element subvectors K=8, differentiable, 6-bit table entries",
          "lut_train_v1_k8_t4": "LUT 1-element subvectors K=8, differentiable, 4-bit table entries",
          "lut_train_ice40": "LUT 1-element subvectors K=8 (fc2 pairs), differentiable, iCEBreaker tables",
          "lut_train_ice40_t4": "LUT 1-element subvectors K=8 (fc2 pairs), differentiable, 4-bit table entries",
          "lut_train_ice40_k16_t4": "LUT 1-element subvectors K=16 (fc2 pairs), differentiable, 4-bit table entries",
          "lut_train_ice40_k16_t3": "LUT 1-element subvectors K=16 (fc2 pairs), differentiable, 3-bit table entries",
          "lut_train_ice40_k16_t2": "LUT 1-element subvectors K=16 (fc2 pairs), differentiable, 2-bit table entries",
          "lut_train_ice40_k4": "LUT 1-element subvectors K=4 (fc2 pairs), differentiable",
          "lut_train_v2_k16_t4": "LUT 2-element subvectors K=16 (fc2 on 4), differentiable, 4-bit table entries",
          "lut_train_v1_k16_t4": "LUT 1-element subvectors K=16, differentiable, 4-bit table entries",
          "lut_train_ice40_all_k16_t4": "LUT every Linear, K=16 in the blocks, 4-bit table entries",
          "lut_train_ice40_k16_t4_recon": "LUT K=16 (fc2 pairs), 4-bit table entries, layer reconstruction",
          "lut_train_ice40_k16_t4_kd28": "LUT K=16 (fc2 pairs), 4-bit table entries, 0.2 CE + 0.8 KD",
          "lut_train_ice40_all": "LUT every Linear, iCEBreaker tables",
          "lut_train_ice40_all_t4": "LUT every Linear, iCEBreaker tables, 4-bit table entries",
          "shift": "shift (DeepShift-Q)", "butterfly": "butterfly (DeBut)", "mixed": "mixed plan"}


@dataclass
class Costs:
    """Per image: bytes of the config and operations of one forward pass."""
    weight_bytes: int = 0
    table_bytes: int = 0
    other_bytes: int = 0          # biases, LayerNorm/embedding constants, GELU and exp tables
    weight_macs: int = 0          # int8 x int8 multiply-accumulates with weights (dense, butterfly int8)
    lookups: int = 0              # table entries read (lut)
    adds: int = 0                 # additions of lookup-accumulate and shift-add
    encoder_ops: int = 0          # lut encoding: distance terms (l2: a square each) or comparisons (tree)
    activation_macs: int = 0      # attention: Q K^T and A V, activation x activation
    operator_multiplies: int = 0  # LayerNorm, dyadic rescaling (constant multipliers)


def layer_rows(config) -> dict[str, int]:
    """How many rows (tokens) each layer maps per image, from one run of the dataflow."""
    x = np.zeros((1, config.layers[0].in_features), dtype=np.int8)
    _, values = run_dataflow(config, x, _forward(), keep=True)
    edges = {}
    previous = "input"
    for layer in config.layers:
        source = getattr(layer, "inputs", None) or (previous,)
        edges[layer.name] = values[source[0]].shape[1] // layer.in_features
        previous = layer.name
    return edges


def _forward():
    from nomac.model.golden import FORWARD
    return FORWARD


def config_costs(config) -> Costs:
    costs = Costs()
    rows = layer_rows(config)
    for layer in config.layers:
        R = rows[layer.name]
        kind = layer.kind
        bias_bytes = 4 * getattr(layer, "out_features", 0)
        if kind == "dense":
            D, M = layer.in_features, layer.out_features
            costs.weight_bytes += D * M
            costs.other_bytes += bias_bytes
            costs.weight_macs += R * D * M
        elif kind == "lut":
            C, K, M, V = layer.codebooks, layer.centroids, layer.out_features, layer.subvector_len
            costs.table_bytes += layer.table_bytes
            costs.other_bytes += bias_bytes
            costs.lookups += R * C * M
            costs.adds += R * C * M
            costs.encoder_ops += R * (C * K * V if layer.encoder != "tree" else C * layer.levels)
        elif kind == "shift":
            D, M = layer.in_features, layer.out_features
            bits = 2 + max(1, (layer.shift_max - layer.shift_min).bit_length())
            costs.weight_bytes += math.ceil(D * M * bits / 8)
            costs.other_bytes += bias_bytes
            costs.adds += R * D * M
        elif kind == "butterfly":
            for index, factor in enumerate(layer.factors):
                p, q, r, s, t = factor["shape"] if isinstance(factor, dict) else factor.shape
                weights = factor["weights"] if isinstance(factor, dict) else factor.weights
                costs.other_bytes += 4 * p
                if weights == "shift":
                    costs.weight_bytes += math.ceil(p * s * 6 / 8)
                    costs.adds += R * p * s
                else:
                    costs.weight_bytes += p * s
                    costs.weight_macs += R * p * s
        elif kind == "attention":
            T, E = layer.tokens, layer.features
            costs.activation_macs += R * 2 * T * T * E            # per head T*T*dh, twice, H heads
            costs.lookups += R * layer.heads * T * T               # exp table
            costs.operator_multiplies += R * (layer.heads * T * T + T * E)   # e * recip, rescale
            costs.other_bytes += 4 * 256
        elif kind == "layernorm":
            E = layer.features
            costs.operator_multiplies += R * 3 * E                 # d^2, d * inv, n * weight
            costs.other_bytes += 6 * E
        elif kind == "gelu":
            costs.lookups += R * layer.features
            costs.other_bytes += 256
        elif kind == "add":
            costs.operator_multiplies += R * 2 * layer.features
        elif kind == "embed":
            costs.operator_multiplies += R * (layer.tokens - 1) * layer.features
            costs.other_bytes += 4 * layer.tokens * layer.features
    return costs


def summarize(results: list[dict]) -> dict:
    """Mean, min and max of each accuracy over seeds."""
    out = {}
    for key in ("float_teacher_accuracy", "float_accuracy", "int_accuracy", "agreement",
                "float_ops_accuracy", "float_ops_agreement", "int_val_accuracy"):
        values = [r[key] for r in results]
        out[key] = {"mean": float(np.mean(values)), "min": float(min(values)), "max": float(max(values))}
    out["seeds"] = [r["seed"] for r in results]
    out["deterministic"] = all(r["deterministic"] for r in results)
    return out


def _saved_result(out_dir: Path, plan_name: str, seed: int) -> dict | None:
    saved = out_dir / f"{plan_name}_seed{seed}.result.json"
    if saved.exists() and (out_dir / f"{plan_name}_seed{seed}.json").exists():
        return json.loads(saved.read_text())
    return None


def _train_float_job(data_name: str, seed: int, out_dir: Path, float_settings):
    from nomac.model.vit.digits_data import load_dataset
    from nomac.model.vit.pipeline import train_float
    train_float(load_dataset(data_name), seed, out_dir, float_settings, progress=False)


def _run_plan_job(plan_name: str, data_name: str, seed: int, out_dir: Path, float_settings) -> str:
    from nomac.model.vit.compression_plan import load_plan
    from nomac.model.vit.digits_data import load_dataset
    from nomac.model.vit.pipeline import run_plan
    lines = []
    run_plan(load_plan(plan_name), load_dataset(data_name), seed, out_dir, float_settings=float_settings,
             progress=False, log=lines.append)
    return "\n".join(lines)


def run_missing_in_parallel(missing: list, data_name: str, out_dir: Path, jobs: int, float_settings, log=print):
    """Run the (plan, seed) pairs in `jobs` worker processes (each trains on one torch thread):
    first the float teachers they need, one per seed, so no two workers write the same
    checkpoint; then the plans."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context
    seeds = sorted({seed for _, seed in missing})
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        list(pool.map(_train_float_job, [data_name] * len(seeds), seeds, [out_dir] * len(seeds),
                      [float_settings] * len(seeds)))
        log(f"float teachers ready for seeds {seeds}; {len(missing)} plan runs on {jobs} processes")
        for line in pool.map(_run_plan_job, [p for p, _ in missing], [data_name] * len(missing),
                             [s for _, s in missing], [out_dir] * len(missing), [float_settings] * len(missing)):
            log(line)


def run_report(plans, seeds, data_name: str, out_dir, *, progress: bool = True, log=print, jobs: int = 1,
               float_settings=None) -> dict:
    """Train or resume every plan for every seed (in `jobs` processes), then tabulate; returns
    the report as a dict."""
    from nomac.model.vit.compression_plan import load_plan
    from nomac.model.vit.digits_data import load_dataset
    from nomac.model.vit.pipeline import FLOAT_SETTINGS, build_float, run_plan
    float_settings = float_settings or FLOAT_SETTINGS
    out_dir = Path(out_dir)
    data = load_dataset(data_name)
    loaded = {plan_name: load_plan(plan_name) for plan_name in plans}
    model = build_float(data, seed=seeds[0] if seeds else 0)      # every plan within its budget before any run
    for plan in loaded.values():
        plan.check_budget(model)
    missing = [(plan_name, seed) for plan_name, plan in loaded.items() for seed in seeds
               if _saved_result(out_dir, plan.name, seed) is None]
    if jobs > 1 and missing:
        run_missing_in_parallel(missing, data_name, out_dir, jobs, float_settings, log)
    rows = {}
    for plan in loaded.values():
        results = []
        for seed in seeds:
            saved = _saved_result(out_dir, plan.name, seed)
            if saved is None:
                saved = asdict(run_plan(plan, data, seed, out_dir, float_settings=float_settings,
                                        progress=progress, log=log))
            results.append(saved)
        costs = config_costs(load_config(results[0]["config"]))
        rows[plan.name] = {"label": LABELS.get(plan.name, plan.name), "results": results,
                           "summary": summarize(results), "costs": asdict(costs),
                           "kinds": results[0]["kinds"], "parameters": results[0]["parameters"]}
    report = {"dataset": data_name, "sizes": data.sizes(), "seeds": list(seeds), "plans": rows}
    write_json(out_dir / "report.json", report, "accuracy report")
    text = format_report(report)
    write_text(out_dir / "report.md", text, "accuracy report")
    plot_report(report, out_dir / "report.png")
    plot_pareto(report, out_dir / "report_pareto.png")
    log(text)
    log(f"written: {out_dir / 'report.md'}, {out_dir / 'report.json'}, {out_dir / 'report.png'}, "
        f"{out_dir / 'report_pareto.png'}")
    return report


def _pct(stat: dict) -> str:
    if stat["min"] == stat["max"]:
        return f"{100 * stat['mean']:.2f}"
    return f"{100 * stat['mean']:.2f} ({100 * stat['min']:.2f}-{100 * stat['max']:.2f})"


def format_report(report: dict) -> str:
    plans = report["plans"]
    seeds = ", ".join(map(str, report["seeds"]))
    lines = [f"Tiny ViT on {report['dataset']} ({report['sizes']['test']} test images), seeds {seeds}: "
             "test accuracy % (mean, range over seeds)", "",
             "| model | float (quantization-aware) | integer-only | float/integer agree | "
             "float operators | float operators/integer agree | integer-only, validation | deterministic |",
             "|---|---|---|---|---|---|---|---|"]
    first = next(iter(plans.values()))
    lines.append(f"| float (teacher) | {_pct(first['summary']['float_teacher_accuracy'])} | | | | | | |")
    for row in plans.values():
        s = row["summary"]
        lines.append(f"| {row['label']} | {_pct(s['float_accuracy'])} | {_pct(s['int_accuracy'])} | "
                     f"{_pct(s['agreement'])} | {_pct(s['float_ops_accuracy'])} | {_pct(s['float_ops_agreement'])} | "
                     f"{_pct(s['int_val_accuracy'])} | {'yes' if s['deterministic'] else 'NO'} |")
    lines += ["", "float (quantization-aware): the compressed PyTorch model as trained, every quantized tensor "
              "taken from its integer layer; float operators: the same weights with float LayerNorm, softmax, "
              "GELU and adds on int8 grids."]
    lines += ["", "Bytes of the integer config and operations per image:", "",
              "| model | weight bytes | table bytes | other bytes | weight MACs | lookups | adds | encoder ops | "
              "activation MACs | operator multiplies |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in plans.values():
        c = row["costs"]
        lines.append(f"| {row['label']} | {c['weight_bytes']:,} | {c['table_bytes']:,} | {c['other_bytes']:,} | "
                     f"{c['weight_macs']:,} | {c['lookups']:,} | {c['adds']:,} | {c['encoder_ops']:,} | "
                     f"{c['activation_macs']:,} | {c['operator_multiplies']:,} |")
    lines += ["", "Kinds per Linear:", ""]
    for row in plans.values():
        kinds = ", ".join(f"{name} {kind}" for name, kind in row["kinds"].items())
        lines.append(f"- {row['label']}: {kinds}")
    return "\n".join(lines) + "\n"


def pareto_front(points: list[tuple[int, float]]) -> list[int]:
    """Indices of the (bytes, accuracy) points that no other point beats: none has fewer or
    equal bytes and a higher accuracy, or fewer bytes and the same; by bytes, then accuracy."""
    front = []
    for i, (b, a) in enumerate(points):
        if not any((b2 <= b and a2 > a) or (b2 < b and a2 == a) for j, (b2, a2) in enumerate(points) if j != i):
            front.append(i)
    return sorted(front, key=lambda i: points[i])


PARETO_MARKERS = ("o", "s", "^", "D")


def plot_pareto(report: dict, path: Path):
    """Integer-only test accuracy against table bytes for the plans with lookup tables: each
    seed a dot, each plan's mean a marker (named in the legend), the Pareto front of the means
    joined; the plans without tables (dense, shift, ...) and the float teacher as lines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plans = list(report["plans"].values())
    fig, ax = plt.subplots(figsize=(11.0, 5.5), dpi=110)
    lookups = [row for row in plans if row["costs"]["table_bytes"] > 0]
    means = [(row["costs"]["table_bytes"], 100 * row["summary"]["int_accuracy"]["mean"]) for row in lookups]
    for index, (row, (table_bytes, mean)) in enumerate(zip(lookups, means)):
        seeds = [100 * r["int_accuracy"] for r in row["results"]]
        ax.scatter([table_bytes / 1000] * len(seeds), seeds, s=10, color="gray", alpha=0.6)
        # ten colours, then the next marker: no two plans' means look alike
        ax.scatter([table_bytes / 1000], [mean], s=40, zorder=3, color=f"C{index % 10}",
                   marker=PARETO_MARKERS[index // 10 % len(PARETO_MARKERS)], label=f"{row['label']}: {mean:.2f}%")
    front = pareto_front(means)
    ax.plot([means[i][0] / 1000 for i in front], [means[i][1] for i in front], color="C3", linewidth=1,
            label="Pareto front of the means")
    for row in (row for row in plans if row["costs"]["table_bytes"] == 0):
        mean = 100 * row["summary"]["int_accuracy"]["mean"]
        ax.axhline(mean, color="gray", linestyle=":", linewidth=1, label=f"{row['label']} (no tables): {mean:.2f}%")
    teacher = 100 * plans[0]["summary"]["float_teacher_accuracy"]["mean"]
    ax.axhline(teacher, color="black", linestyle="--", linewidth=1, label=f"float teacher: {teacher:.2f}%")
    ax.set_xlim(left=0)
    ax.set_xlabel("table bytes (kB): lut tables and prototypes")
    ax.set_ylabel("integer-only test accuracy (%)")
    ax.set_title(f"tiny ViT on {report['dataset']}: accuracy per table budget, seeds "
                 f"{', '.join(map(str, report['seeds']))}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, borderaxespad=0)
    fig.tight_layout()
    with replaced_file(path, "Pareto plot") as temporary:
        fig.savefig(temporary, format="png")
    plt.close(fig)


def plot_report(report: dict, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plans = list(report["plans"].values())
    labels = [row["label"] for row in plans]
    x = np.arange(len(plans))
    fig, ax = plt.subplots(figsize=(max(9.0, 0.8 * len(plans)), 5.5), dpi=110)
    for offset, key, name in ((-0.2, "float_accuracy", "float (quantization-aware)"),
                              (0.2, "int_accuracy", "integer-only")):
        stats = [row["summary"][key] for row in plans]
        means = np.array([100 * s["mean"] for s in stats])
        errors = np.array([[100 * (s["mean"] - s["min"]) for s in stats], [100 * (s["max"] - s["mean"]) for s in stats]])
        ax.bar(x + offset, means, 0.4, yerr=errors, capsize=3, label=name)
    teacher = 100 * plans[0]["summary"]["float_teacher_accuracy"]["mean"]
    ax.axhline(teacher, color="black", linestyle="--", linewidth=1, label=f"float teacher {teacher:.2f}%")
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    lowest = min(100 * row["summary"][key]["min"] for row in plans for key in ("float_accuracy", "int_accuracy"))
    ax.set_ylim(max(0, 10 * math.floor((lowest - 5) / 10)), 100)       # the differences are a few points
    ax.set_title(f"tiny ViT on {report['dataset']}, seeds {', '.join(map(str, report['seeds']))}")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    with replaced_file(path, "accuracy plot") as temporary:
        fig.savefig(temporary, format="png")
    plt.close(fig)
