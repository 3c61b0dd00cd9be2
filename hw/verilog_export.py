"""`nomac verilog`: a config layer -> Verilog, manifest.json and memory init files.

The manifest (docs/spec.md section 6) is everything a testbench or a host needs to drive
the design without Python: port names, lanes, widths, memory layouts, figures.
Same config in, same bytes out: no source paths or times are written.
"""
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import amaranth
from amaranth.hdl import Shape

from nomac.base import __version__
from nomac.base.output_files import check_folder_target, json_text, replaced_folder
from nomac.hw.engine import Engine
from nomac.hw.engine_kinds import build_engine, hardware_layers
from nomac.hw.flat_verilog import FlatPorts, flat_rtlil, rtlil_to_verilog
from nomac.hw.latency import measure_latency
from nomac.hw.multiplier_count import count_multipliers
from nomac.hw.vector_stream import beats_per_vector
from nomac.model.config import Config

__all__ = ["GeneratedDesign", "manifest_for", "write_layer", "is_design_folder",
           "check_verilog_target", "write_verilog"]

MANIFEST_FORMAT = "nomac-manifest/1"


@dataclass
class GeneratedDesign:
    folder: Path
    verilog: Path
    manifest: dict


def manifest_for(config: Config, layer, engine: Engine, top: str, netlist: str) -> dict:
    """The manifest of `engine` (built from `layer`), whose flat RTLIL is `netlist`."""
    hw = layer.hw
    out_bits = Shape.cast(engine.out_shape).width

    def stream(prefix, lanes, lane_bits, elements):
        return {"valid": f"{prefix}_valid", "ready": f"{prefix}_ready", "data": f"{prefix}_data",
                "last": f"{prefix}_last", "lanes": lanes, "lane_bits": lane_bits, "signed": True,
                "elements": elements, "beats": beats_per_vector(elements, lanes)}

    memories = []
    for memory in engine.memories:
        entry = {**memory.describe(), "init_file": f"{memory.layout.name}.hex"}
        if memory.writable:
            entry["write"] = {field: f"{memory.write_name}_{field}" for field in ("addr", "data", "en")}
            entry["read"] = {field: f"{memory.read_name}_{field}" for field in ("addr", "data", "en")}
        memories.append(entry)
    memory_bits = sum(m["depth"] * m["word_bits"] for m in memories)
    return {
        "format": MANIFEST_FORMAT,
        "config_id": config.config_id,
        "generator": f"nomac {__version__}, amaranth {amaranth.__version__}",
        "top": top,
        "verilog": f"{top}.v",
        "clock": "clk", "reset": "rst", "reset_active_high": True,
        "streams": {"in": stream("i", hw.in_lanes, 8, engine.in_elements),
                    "out": stream("o", hw.out_lanes, out_bits, engine.out_elements)},
        "status": {"idle": "idle", "framing_error": "framing_error"},
        "memories": memories,
        "memory_bits": memory_bits,
        "acc_bits": engine.acc_bits,
        "cycles_per_vector": engine.cycles_per_vector,
        "cycles_per_vector_bound": engine.cycles_per_vector_bound,
        "cycles_per_vector_bound_rule": engine.cycles_per_vector_bound_rule,
        "latency_cycles": measure_latency(build_engine(layer), engine.in_elements),
        "multipliers": count_multipliers(netlist, top),
        "layers": [{**layer.params_json(), "hw": dataclasses.asdict(hw)}],
        **({"stages": stages} if (stages := engine.describe_stages()) else {}),
    }


def write_layer(config: Config, layer, folder: Path) -> GeneratedDesign:
    """Write one layer's design into `folder` as it goes (see `write_verilog` for whole results)."""
    folder.mkdir(parents=True, exist_ok=True)
    engine = build_engine(layer)
    top = f"nomac_{layer.kind}_{layer.name}"
    netlist = flat_rtlil(FlatPorts(engine), top)
    verilog_path = folder / f"{top}.v"
    verilog_path.write_text(rtlil_to_verilog(netlist, top))
    for memory in engine.memories:
        digits = max(1, -(-memory.word_bits // 4))
        (folder / f"{memory.layout.name}.hex").write_text(
            "".join(f"{word:0{digits}x}\n" for word in memory.init))
    manifest = manifest_for(config, layer, engine, top, netlist)
    (folder / "manifest.json").write_text(json_text(manifest, f"{folder / 'manifest.json'}"))
    return GeneratedDesign(folder=folder, verilog=verilog_path, manifest=manifest)


def is_design_folder(folder: Path) -> bool:
    """An earlier `write_verilog` result: one design, or one design per sub-folder."""
    entries = list(folder.iterdir())
    return (folder / "manifest.json").is_file() or bool(entries) and all(
        entry.is_dir() and (entry / "manifest.json").is_file() for entry in entries)


def check_verilog_target(out_dir) -> Path:
    """Refuse, before any work, an `out_dir` that cannot take a design (see nomac.base.output_files)."""
    return check_folder_target(out_dir, "Verilog output folder", is_design_folder)


def write_verilog(config: Config, out_dir, layer_name: str | None = None) -> list[GeneratedDesign]:
    """Generate one layer (or every hardware layer) of a config into `out_dir`.

    One layer goes straight into `out_dir`; several go into one sub-folder each. The
    whole result appears at once when complete and replaces an earlier one; a folder
    holding anything else is refused.
    """
    out_dir = Path(out_dir)
    layers = hardware_layers(config, layer_name)
    with replaced_folder(out_dir, "Verilog output folder", is_design_folder) as staging:
        if len(layers) == 1:
            designs = [write_layer(config, layers[0], staging)]
        else:
            designs = [write_layer(config, layer, staging / layer.name) for layer in layers]
    return [dataclasses.replace(design, folder=out_dir / design.folder.relative_to(staging),
                                verilog=out_dir / design.verilog.relative_to(staging)) for design in designs]
