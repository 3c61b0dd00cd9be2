"""Generated designs (hw/verilog_export.py): files, manifest, memory images, lint, netlist.

What a testbench or a host reads from a generated folder is checked against what the
design really is: the manifest's ports against the port declarations of the Verilog,
its memory descriptions against the .hex files, and the .hex files against the
memory organisation each engine documents, written out here as index formulas
(independent of `MemoryLayout`). Expected widths are worked out from docs/spec.md section 2
in the test or by hand in a comment.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import rtlil

import nomac
from lut_cases import LutCase
from verilator_lint import WAIVERS, lint_problems
from nomac.hw.memory_layout import MemoryLayout
from nomac.hw.engine_kinds import build_engine
from nomac.hw.flat_verilog import FlatPorts
from nomac.hw.verilog_export import write_verilog
from nomac.model.config import make_config, save_config
from nomac.model.lut_spec import LutLayer

REPO = Path(__file__).resolve().parent.parent

# Designs shared by the tests below; together they cover every encoder, ROM and RAM,
# M not a multiple of R, P > 1 prototypes per word, V = 1 (1-bit split dimensions),
# int8 and acc outputs, several input/output lane counts.
CASES = {
    "l2_rom": LutCase("l2", 12, 7, 3, 16, {"table_reads": 3, "encoder_lanes": 4}),
    "l2_ram_acc": LutCase("l2", 8, 5, 2, 4, {"table_reads": 2, "encoder_lanes": 4, "memory": "ram",
                                             "in_lanes": 3}, output="acc"),
    "l1_rom": LutCase("l1", 8, 5, 2, 4, {"table_reads": 5, "out_lanes": 2}),
    "l1_ram": LutCase("l1", 8, 10, 2, 8, {"table_reads": 4, "encoder_lanes": 2, "memory": "ram",
                                          "bias_bits": 16, "in_lanes": 3, "out_lanes": 4}),
    "tree_rom": LutCase("tree", 12, 7, 3, 16, {"table_reads": 5, "in_lanes": 5, "out_lanes": 2}),
    "tree_ram": LutCase("tree", 6, 5, 2, 8, {"table_reads": 2, "memory": "ram", "bias_bits": 13},
                        output="acc"),
    "tree_v1_ram": LutCase("tree", 3, 4, 3, 4, {"table_reads": 4, "memory": "ram", "pipeline": False}),
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """name -> (layer, manifest, folder), each design generated once per module."""
    root = tmp_path_factory.mktemp("designs")
    cache = {}

    def get(name):
        if name not in cache:
            config = CASES[name].config()
            (design,) = write_verilog(config, root / name)
            cache[name] = (config, config.layers[0], design.manifest, design.folder)
        return cache[name]
    return get


def ceil_div(a, b):
    return -(-a // b)


def twos_complement_width(lo: int, hi: int) -> int:
    """Bits of the narrowest two's complement type holding lo..hi (1 for {0}).

    A value v >= 0 needs v.bit_length() + 1 bits, a value v < 0 needs
    (-v - 1).bit_length() + 1 bits.
    """
    return max(1, *((v.bit_length() if v >= 0 else (-v - 1).bit_length()) + 1 for v in (lo, hi)))


def address_bits(depth: int) -> int:
    """Bits to address `depth` words (at least one: Verilog has no zero-width port)."""
    return max(1, (depth - 1).bit_length())


def read_hex(path: Path, word_bits: int) -> list[int]:
    lines = path.read_text().splitlines()
    digits = ceil_div(word_bits, 4)
    assert all(re.fullmatch(f"[0-9a-f]{{{digits}}}", line) for line in lines), \
        f"{path.name}: every line must be {digits} lower-case hex digits"
    return [int(line, 16) for line in lines]


def lane(word: int, index: int, bits: int, signed: bool) -> int:
    value = (word >> (bits * index)) & ((1 << bits) - 1)
    return value - (1 << bits) if signed and value >> (bits - 1) else value


def top_ports(verilog: str, top: str) -> dict[str, tuple[str, int]]:
    """name -> (direction, width) from the port declarations of module `top`."""
    start = verilog.index(f"module {top}(")
    body = verilog[start:verilog.index("endmodule", start)]
    header = body[body.index("(") + 1:body.index(");")]
    listed = [name.strip() for name in header.split(",")]
    ports = {}
    for direction, msb, lsb, name in re.findall(
            r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?(?:\[(\d+):(\d+)\]\s*)?(\S+)\s*;",
            body, re.M):
        assert name not in ports, f"port {name} declared twice"
        assert lsb in ("", "0"), f"port {name}: [{msb}:{lsb}]"
        ports[name] = (direction, int(msb) + 1 if msb else 1)
    assert sorted(listed) == sorted(ports), "module header and port declarations disagree"
    return ports


# ---------------------------------------------------------------- determinism


def test_same_config_gives_the_same_bytes_in_any_folder_and_process(tmp_path):
    config = CASES["l2_ram_acc"].config()
    write_verilog(config, tmp_path / "first")
    write_verilog(config, tmp_path / "second" / "deeper")
    # A fresh interpreter with another hash seed, from the config saved to disk.
    save_config(config, tmp_path / "config" / "fc.json")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-m", "nomac", "verilog", str(tmp_path / "config" / "fc.json"),
                    "-o", str(tmp_path / "third")], check=True, env=env, capture_output=True)

    first = {p.name: p.read_bytes() for p in (tmp_path / "first").iterdir()}
    assert sorted(first) == sorted(["nomac_lut_fc.v", "manifest.json", "prototypes.hex",
                                    "tables.hex", "bias.hex"])
    for other in (tmp_path / "second" / "deeper", tmp_path / "third"):
        assert {p.name: p.read_bytes() for p in other.iterdir()} == first, other

    machine_paths = {str(tmp_path), str(REPO), str(Path.home()), sys.prefix, os.getcwd(),
                     str(Path(nomac.__file__).parent)}
    for name in ("nomac_lut_fc.v", "manifest.json"):
        text = first[name].decode()
        for path in machine_paths:
            assert path not in text, f"{name} contains the machine path {path}"
        assert not re.search(r"(?<![\w/])/(?:tmp|home|root|usr|work|opt|var)/", text), name


# ---------------------------------------------------------------- manifest vs Verilog


@pytest.mark.parametrize("name", CASES)
def test_manifest_names_exactly_the_ports_of_the_verilog(name, generated):
    config, layer, manifest, folder = generated(name)
    hw = layer.hw
    top = f"nomac_lut_{layer.name}"

    assert manifest["format"] == "nomac-manifest/1"
    assert manifest["config_id"] == config.config_id
    assert manifest["top"] == top
    assert (folder / f"{top}.v").is_file()
    assert manifest["reset_active_high"] is True

    # Widths from docs/spec.md section 6: int8 input lanes; output lanes are int8 or the accumulator.
    out_bits = 8 if layer.output == "int8" else manifest["acc_bits"]
    streams = manifest["streams"]
    assert {k: streams["in"][k] for k in ("lanes", "lane_bits", "elements")} == \
        {"lanes": hw.in_lanes, "lane_bits": 8, "elements": layer.in_features}
    assert {k: streams["out"][k] for k in ("lanes", "lane_bits", "elements")} == \
        {"lanes": hw.out_lanes, "lane_bits": out_bits, "elements": layer.out_features}

    expected = {manifest["clock"]: ("input", 1), manifest["reset"]: ("input", 1)}
    for key, into in (("in", "input"), ("out", "output")):
        back = "output" if into == "input" else "input"
        s = streams[key]
        expected.update({s["valid"]: (into, 1), s["ready"]: (back, 1), s["last"]: (into, 1),
                         s["data"]: (into, s["lanes"] * s["lane_bits"])})
    expected.update({manifest["status"]["idle"]: ("output", 1),
                     manifest["status"]["framing_error"]: ("output", 1)})
    for memory in manifest["memories"]:
        assert memory["memory"] == hw.memory
        if hw.memory == "ram":
            write = memory["write"]
            expected.update({write["addr"]: ("input", address_bits(memory["depth"])),
                             write["data"]: ("input", memory["word_bits"]),
                             write["en"]: ("input", 1)})
            read = memory["read"]           # read-back: address and enable in, the word out
            expected.update({read["addr"]: ("input", address_bits(memory["depth"])),
                             read["data"]: ("output", memory["word_bits"]),
                             read["en"]: ("input", 1)})
        else:
            assert "write" not in memory and "read" not in memory
    assert len(expected) == 12 + (6 * len(manifest["memories"]) if hw.memory == "ram" else 0)

    verilog = (folder / f"{top}.v").read_text()
    assert top_ports(verilog, top) == expected

    # Memories: names, depths and word widths from each engine's documented organisation.
    C, K, M, V = layer.codebooks, layer.centroids, layer.out_features, layer.subvector_len
    R, P, L, G = hw.table_reads, hw.encoder_lanes, layer.levels, ceil_div(M, hw.table_reads)
    bias_lane = hw.bias_bits if hw.memory == "ram" else \
        twos_complement_width(int(layer.bias.min()), int(layer.bias.max()))
    shapes = {"tables": (C * K * G, 8 * R), "bias": (G, R * bias_lane)}
    if layer.encoder == "tree":
        shapes["split_dims"] = (C, L * max(1, (V - 1).bit_length()))
        shapes.update({f"thresholds_level{l}": (C << l, 8) for l in range(L)})
    else:
        shapes["prototypes"] = (C * K // P, 8 * P * V)
    assert {m["name"]: (m["depth"], m["word_bits"]) for m in manifest["memories"]} == shapes
    assert manifest["memory_bits"] == sum(depth * bits for depth, bits in shapes.values())
    assert {m["init_file"] for m in manifest["memories"]} == {f"{n}.hex" for n in shapes}

    # Throughput: the slowest stage (LutHardware: C * ceil(M / R) table words, K / P
    # prototype words per codebook, one codebook per cycle for a tree, one beat a cycle).
    encoder = C if layer.encoder == "tree" else C * K // P
    assert manifest["cycles_per_vector"] == max(C * G, encoder, ceil_div(layer.in_features, hw.in_lanes),
                                                ceil_div(M, hw.out_lanes))
    assert manifest["cycles_per_vector_bound"] == ceil_div(C * M, R)
    assert isinstance(manifest["latency_cycles"], int) and manifest["latency_cycles"] > 0
    assert manifest["layers"][0]["name"] == layer.name
    assert manifest["layers"][0]["hw"]["memory"] == hw.memory


# ---------------------------------------------------------------- memory images


@pytest.mark.parametrize("name", CASES)
def test_memory_images_follow_the_documented_organisation(name, generated):
    _, layer, manifest, folder = generated(name)
    C, K, M, V = layer.codebooks, layer.centroids, layer.out_features, layer.subvector_len
    R, P, L = layer.hw.table_reads, layer.hw.encoder_lanes, layer.levels
    G = ceil_div(M, R)
    entries = {m["name"]: m for m in manifest["memories"]}
    words = {n: read_hex(folder / m["init_file"], m["word_bits"]) for n, m in entries.items()}
    for n, m in entries.items():
        assert len(words[n]) == m["depth"], n

    # tables: word (g*C + c)*K + k holds outputs g*R .. g*R+R-1 of row tables[c, k].
    for g in range(G):
        for c in range(C):
            for k in range(K):
                word = words["tables"][(g * C + c) * K + k]
                for r in range(R):
                    m_index = g * R + r
                    want = int(layer.tables[c, k, m_index]) if m_index < M else 0
                    assert lane(word, r, 8, True) == want, ("tables", g, c, k, r)

    # bias: word g lane r is bias[g*R + r], in lanes of the manifest's width.
    bits = entries["bias"]["lane_bits"]
    for g in range(G):
        for r in range(R):
            want = int(layer.bias[g * R + r]) if g * R + r < M else 0
            assert lane(words["bias"][g], r, bits, True) == want, ("bias", g, r)

    if layer.encoder == "tree":
        dim_bits = max(1, (V - 1).bit_length())
        assert entries["split_dims"]["lane_bits"] == dim_bits
        for c in range(C):
            for level in range(L):
                assert lane(words["split_dims"][c], level, dim_bits, False) == layer.split_dims[c, level]
        for level in range(L):
            nodes = 1 << level
            for c in range(C):
                for i in range(nodes):
                    word = words[f"thresholds_level{level}"][c * nodes + i]
                    assert lane(word, 0, 8, True) == layer.thresholds[c, nodes - 1 + i], (level, c, i)
    else:
        for c in range(C):
            for j in range(K // P):
                word = words["prototypes"][c * (K // P) + j]
                for p in range(P):
                    for v in range(V):
                        assert lane(word, p * V + v, 8, True) == layer.prototypes[c, j * P + p, v], \
                            ("prototypes", c, j, p, v)


@pytest.mark.parametrize("name", CASES)
def test_host_packs_the_init_files_from_the_manifest_alone(name, generated):
    _, layer, manifest, folder = generated(name)
    arrays = layer.arrays()
    for entry in manifest["memories"]:
        layout = MemoryLayout.from_manifest(entry)
        assert layout.words(arrays[entry["array"]]) == read_hex(folder / entry["init_file"], entry["word_bits"])


# ---------------------------------------------------------------- lint


LINT_CASES = ["l2_rom", "l2_ram_acc", "l1_rom", "l1_ram", "tree_rom", "tree_ram"]


@pytest.mark.parametrize("name", LINT_CASES)
def test_verilator_lint_is_clean_with_the_waivers(name, generated):
    _, _, manifest, folder = generated(name)
    status, problems = lint_problems(folder / manifest["verilog"])
    assert status == 0 and not problems, f"exit {status}: {', '.join(problems)}"


def test_every_waiver_gives_its_reason():
    lines = WAIVERS.read_text().splitlines()
    assert lines[0].strip() == "`verilator_config"
    waivers = [i for i, line in enumerate(lines) if line.strip().startswith("lint_off")]
    assert waivers
    for i in waivers:
        assert re.fullmatch(r"lint_off -rule [A-Z0-9_]+", lines[i].strip()), \
            f"line {i + 1}: a waiver names one rule, never all of them: {lines[i]!r}"
        reason = lines[i - 1].strip()
        assert reason.startswith("//") and len(reason) > 10, f"line {i + 1}: no reason before {lines[i]!r}"


# ---------------------------------------------------------------- no multipliers


def multiplier_cells(layer) -> int:
    text = rtlil.convert(FlatPorts(build_engine(layer)))
    return len(re.findall(r"^\s*cell \$mul ", text, re.M))


@pytest.mark.parametrize("case, squares", [
    (LutCase("l1", 12, 7, 3, 16, {"encoder_lanes": 4}), 0),
    (LutCase("l1", 12, 7, 3, 16, {"encoder_lanes": 2, "memory": "ram", "pipeline": False}), 0),
    (LutCase("tree", 12, 7, 3, 16), 0),
    (LutCase("tree", 12, 7, 3, 16, {"memory": "ram", "pipeline": False}), 0),
    (LutCase("l2", 12, 7, 3, 16, {"encoder_lanes": 4}), 4 * 4),      # P * V
    (LutCase("l2", 12, 7, 3, 16, {"encoder_lanes": 1, "memory": "ram"}), 1 * 4),
    (LutCase("l2", 12, 7, 3, 16, {"encoder_lanes": 2, "pipeline": False}), 2 * 4),
], ids=lambda value: value.id if isinstance(value, LutCase) else str(value))
def test_multipliers_only_square_l2_differences(case, squares):
    assert multiplier_cells(case.config().layers[0]) == squares


# ---------------------------------------------------------------- accumulator width


def tree_config(tables, bias, hw, output="acc"):
    """A tree layer with V = 1 whose arrays besides tables and bias do not matter here."""
    C, K, M = tables.shape
    params = {"name": "acc", "kind": "lut", "in_features": C, "out_features": M, "codebooks": C,
              "centroids": K, "encoder": "tree", "out_shift": 0, "output": output, "hw": hw}
    arrays = {"tables": tables.astype(np.int8), "bias": np.asarray(bias, dtype=np.int32),
              "split_dims": np.zeros((C, K.bit_length() - 1), np.int32),
              "thresholds": np.zeros((C, K - 1), np.int8)}
    return make_config([LutLayer.from_json("layer 'acc'", params, arrays)])


def generated_acc_bits(config, folder):
    (design,) = write_verilog(config, folder)
    manifest = design.manifest
    if config.layers[0].output == "acc":
        assert manifest["streams"]["out"]["lane_bits"] == manifest["acc_bits"]
    return manifest["acc_bits"]


def test_rom_accumulator_holds_partial_sums_beyond_the_final_range(tmp_path):
    # Bias 0; codebooks 0 and 1 add +127, codebooks 2 and 3 add -127, whatever the code.
    # Partial sums in accumulation order: 0, 127, 254, 127, 0. Every final sum is 0 (1 bit),
    # but 254 needs 9 bits (8-bit two's complement stops at 127; 9-bit at 255).
    tables = np.empty((4, 2, 3), np.int64)
    tables[0:2], tables[2:4] = 127, -127
    assert generated_acc_bits(tree_config(tables, [0, 0, 0], {"table_reads": 3}), tmp_path) == 9


def test_rom_accumulator_covers_every_output_and_code(tmp_path):
    # Bias [-1000, 0, 1000]; both codebooks have entries -128 (code 0) and 127 (code 1).
    # Output 0 reaches -1000 - 2*128 = -1256, output 2 reaches 1000 + 2*127 = 1254:
    # 11 bits hold -1024..1023, 12 bits hold -2048..2047, so 12.
    tables = np.empty((2, 2, 3), np.int64)
    tables[:, 0, :], tables[:, 1, :] = -128, 127
    assert generated_acc_bits(tree_config(tables, [-1000, 0, 1000], {"table_reads": 2}, "int8"),
                              tmp_path) == 12


@pytest.mark.parametrize("bias_bits, C", [(2, 1), (13, 3), (32, 8)])
def test_ram_accumulator_covers_any_loadable_tables_and_bias(bias_bits, C, tmp_path):
    # Any bias of bias_bits bits and any int8 entries can be loaded later:
    # (2, 1): [-130, 128] -> 9 bits; (13, 3): [-4480, 4476] -> 14; (32, 8): [-2^31 - 1024, 2^31 + 1015] -> 33.
    lo = -(1 << (bias_bits - 1)) - 128 * C
    hi = (1 << (bias_bits - 1)) - 1 + 127 * C
    tables = np.zeros((C, 2, 3), np.int64)
    config = tree_config(tables, [0, 0, 0], {"table_reads": 3, "memory": "ram", "bias_bits": bias_bits})
    assert generated_acc_bits(config, tmp_path) == twos_complement_width(lo, hi) == \
        {2: 9, 13: 14, 32: 33}[bias_bits]
