"""Generated `shift` and `dense` designs: manifest vs Verilog, memory images, lint, multipliers, widths.

What a testbench or host reads from a generated folder is checked against the design:
the manifest's ports against the Verilog's port declarations, the .hex files against
the memory organisation the engines document (written out here as index formulas,
independent of MemoryLayout), and accumulator widths against bounds worked out by hand.
"""
import re

import numpy as np
import pytest
from amaranth.back import rtlil

from matrix_cases import MatrixCase
from verilator_lint import lint_problems
from nomac.hw.memory_layout import MemoryLayout
from nomac.hw.engine_kinds import build_engine
from nomac.hw.flat_verilog import FlatPorts
from nomac.hw.verilog_export import write_verilog
from nomac.model.config import make_config
from nomac.model.dense_spec import DenseLayer
from nomac.model.shift_spec import ShiftLayer
from test_verilog import (address_bits, ceil_div, lane, read_hex, top_ports, twos_complement_width)

CASES = {
    "shift_rom": MatrixCase("shift", 10, 7, {"lanes": 3, "terms_per_cycle": 4, "in_lanes": 3, "out_lanes": 2},
                            shifts=(-15, 0)),
    "shift_ram_acc": MatrixCase("shift", 6, 5, {"lanes": 2, "terms_per_cycle": 3, "memory": "ram",
                                                "bias_bits": 14}, shifts=(-5, -2), output="acc"),
    "shift_one_shift": MatrixCase("shift", 4, 3, {"lanes": 3, "terms_per_cycle": 4, "memory": "ram",
                                                  "pipeline": False}, shifts=(-2, -2)),
    "dense_rom": MatrixCase("dense", 9, 5, {"lanes": 2, "terms_per_cycle": 2, "out_lanes": 3}),
    "dense_ram_acc": MatrixCase("dense", 8, 6, {"lanes": 3, "terms_per_cycle": 8, "memory": "ram", "in_lanes": 3},
                                output="acc"),
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("designs")
    cache = {}

    def get(name):
        if name not in cache:
            config = CASES[name].config()
            (design,) = write_verilog(config, root / name)
            cache[name] = (config, config.layers[0], design.manifest, design.folder)
        return cache[name]
    return get


@pytest.mark.parametrize("name", CASES)
def test_manifest_names_exactly_the_ports_of_the_verilog(name, generated):
    config, layer, manifest, folder = generated(name)
    hw = layer.hw
    D, M, U, T = layer.in_features, layer.out_features, hw.lanes, hw.terms_per_cycle
    G, S = ceil_div(M, U), ceil_div(D, T)
    top = f"nomac_{layer.kind}_{layer.name}"
    assert (manifest["top"], manifest["config_id"]) == (top, config.config_id)

    out_bits = 8 if layer.output == "int8" else manifest["acc_bits"]
    streams = manifest["streams"]
    assert {k: streams["in"][k] for k in ("lanes", "lane_bits", "elements", "beats")} == \
        {"lanes": hw.in_lanes, "lane_bits": 8, "elements": D, "beats": ceil_div(D, hw.in_lanes)}
    assert {k: streams["out"][k] for k in ("lanes", "lane_bits", "elements", "beats")} == \
        {"lanes": hw.out_lanes, "lane_bits": out_bits, "elements": M, "beats": ceil_div(M, hw.out_lanes)}

    expected = {"clk": ("input", 1), "rst": ("input", 1), "idle": ("output", 1), "framing_error": ("output", 1)}
    for key, into in (("in", "input"), ("out", "output")):
        back = "output" if into == "input" else "input"
        s = streams[key]
        expected.update({s["valid"]: (into, 1), s["ready"]: (back, 1), s["last"]: (into, 1),
                         s["data"]: (into, s["lanes"] * s["lane_bits"])})
    for memory in manifest["memories"]:
        assert memory["memory"] == hw.memory
        if hw.memory == "ram":
            bits = address_bits(memory["depth"])
            write, read = memory["write"], memory["read"]
            expected.update({write["addr"]: ("input", bits), write["data"]: ("input", memory["word_bits"]),
                             write["en"]: ("input", 1), read["addr"]: ("input", bits),
                             read["data"]: ("output", memory["word_bits"]), read["en"]: ("input", 1)})
    assert top_ports((folder / f"{top}.v").read_text(), top) == expected

    # Memories: a word of U*T entries per (group, step), a word of U biases per group.
    bias_lane = hw.bias_bits if hw.memory == "ram" else \
        twos_complement_width(int(layer.bias.min()), int(layer.bias.max()))
    if layer.kind == "shift":
        amount_bits = max(1, (layer.shift_max - layer.shift_min).bit_length())
        shapes = {"sign": (G * S, 2 * U * T), "shift": (G * S, amount_bits * U * T)}
    else:
        shapes = {"weights": (G * S, 8 * U * T)}
    shapes["bias"] = (G, bias_lane * U)
    assert {m["name"]: (m["depth"], m["word_bits"]) for m in manifest["memories"]} == shapes
    assert manifest["memory_bits"] == sum(depth * bits for depth, bits in shapes.values())

    # Throughput: G * S loop cycles unless a stream is slower; the bound is D*M / (U*T).
    assert manifest["cycles_per_vector"] == max(G * S, ceil_div(D, hw.in_lanes), ceil_div(M, hw.out_lanes))
    assert manifest["cycles_per_vector_bound"] == ceil_div(D * M, U * T)
    assert manifest["cycles_per_vector_bound_rule"] == "ceil(D*M/(U*T))"
    assert manifest["layers"][0]["hw"]["lanes"] == U


@pytest.mark.parametrize("name", CASES)
def test_memory_images_follow_the_documented_organisation(name, generated):
    _, layer, manifest, folder = generated(name)
    D, M, U, T = layer.in_features, layer.out_features, layer.hw.lanes, layer.hw.terms_per_cycle
    G, S = ceil_div(M, U), ceil_div(D, T)
    entries = {m["name"]: m for m in manifest["memories"]}
    words = {n: read_hex(folder / m["init_file"], m["word_bits"]) for n, m in entries.items()}

    # word g*S + s, lane u*T + t holds entry [g*U + u, s*T + t]; zero past M and D. The shift
    # memory holds shift - shift_min as unsigned lanes; the sign memory 2-bit two's complement.
    arrays = {"sign": (layer.sign, 2, True, 0), "shift": (layer.shift, entries.get("shift", {}).get("lane_bits"),
                                                         False, layer.shift_min)} \
        if layer.kind == "shift" else {"weights": (layer.weights, 8, True, 0)}
    for memory, (array, bits, signed, offset) in arrays.items():
        assert entries[memory]["offset"] == offset
        for g in range(G):
            for s in range(S):
                for u in range(U):
                    for t in range(T):
                        m, d = g * U + u, s * T + t
                        want = int(array[m, d]) - offset if m < M and d < D else 0
                        assert lane(words[memory][g * S + s], u * T + t, bits, signed) == want, (memory, g, s, u, t)
    bits = entries["bias"]["lane_bits"]
    for g in range(G):
        for u in range(U):
            want = int(layer.bias[g * U + u]) if g * U + u < M else 0
            assert lane(words["bias"][g], u, bits, True) == want


@pytest.mark.parametrize("name", CASES)
def test_host_packs_the_init_files_from_the_manifest_alone(name, generated):
    _, layer, manifest, folder = generated(name)
    for entry in manifest["memories"]:
        layout = MemoryLayout.from_manifest(entry)
        assert layout.words(layer.arrays()[entry["array"]]) == \
            read_hex(folder / entry["init_file"], entry["word_bits"])


@pytest.mark.parametrize("name", ["shift_rom", "shift_ram_acc", "shift_one_shift", "dense_ram_acc"])
def test_verilator_lint_is_clean_with_the_waivers(name, generated):
    _, _, manifest, folder = generated(name)
    status, problems = lint_problems(folder / manifest["verilog"])
    assert status == 0 and not problems, f"exit {status}: {', '.join(problems)}"


def multiplier_cells(layer) -> int:
    text = rtlil.convert(FlatPorts(build_engine(layer)))
    return len(re.findall(r"^\s*cell \$mul ", text, re.M))


@pytest.mark.parametrize("case, products", [
    (MatrixCase("shift", 12, 7, {"lanes": 3, "terms_per_cycle": 4}, shifts=(-15, 0)), 0),
    (MatrixCase("shift", 12, 7, {"lanes": 7, "terms_per_cycle": 12, "memory": "ram", "pipeline": False}), 0),
    (MatrixCase("dense", 12, 7, {"lanes": 3, "terms_per_cycle": 4}), 3 * 4),
    (MatrixCase("dense", 12, 7, {"lanes": 1, "terms_per_cycle": 1, "memory": "ram"}), 1),
], ids=lambda value: value.id if isinstance(value, MatrixCase) else str(value))
def test_shift_engines_have_no_multiplier_and_dense_one_per_term(case, products):
    assert multiplier_cells(case.layer()) == products


# ---------------------------------------------------------------- accumulator widths


def acc_bits(layer, folder) -> int:
    (design,) = write_verilog(make_config([layer]), folder)
    if layer.output == "acc":
        assert design.manifest["streams"]["out"]["lane_bits"] == design.manifest["acc_bits"]
    return design.manifest["acc_bits"]


def shift_layer(sign, shift, bias, p0, p1, hw):
    sign = np.array(sign, np.int8)
    M, D = sign.shape
    params = {"name": "w", "kind": "shift", "in_features": D, "out_features": M, "shift_min": p0,
              "shift_max": p1, "out_shift": 0, "output": "acc", "hw": hw}
    return ShiftLayer.from_json("w", params, {"sign": sign, "shift": np.array(shift, np.int8),
                                              "bias": np.array(bias, np.int32)})


def dense_layer(weights, bias, hw):
    weights = np.array(weights, np.int8)
    M, D = weights.shape
    params = {"name": "w", "kind": "dense", "in_features": D, "out_features": M, "out_shift": 0,
              "output": "acc", "hw": hw}
    return DenseLayer.from_json("w", params, {"weights": weights, "bias": np.array(bias, np.int32)})


def test_shift_rom_width_from_the_largest_terms(tmp_path):
    # p0 = -3: two weights +1 at shift 0 are x << 3 each, in [-1024, 1016]; the sum of both with
    # bias 0 spans [-2048, 2032]: 12 bits (-2048..2047). A bias of 16 reaches 2048: 13 bits.
    assert acc_bits(shift_layer([[1, 1]], [[0, 0]], [0], -3, 0, {"terms_per_cycle": 1}), tmp_path / "a") == 12
    assert acc_bits(shift_layer([[1, 1]], [[0, 0]], [16], -3, 0, {"terms_per_cycle": 2}), tmp_path / "b") == 13
    # zero signs add nothing: only the bias -5 and one term -1 << 0 in [-127, 128] -> [-132, 123]: 9 bits
    assert acc_bits(shift_layer([[0, -1, 0]], [[0, -3, 0]], [-5], -3, 0, {}), tmp_path / "c") == 9


@pytest.mark.parametrize("bias_bits, p0, p1, D", [(2, 0, 0, 1), (13, -15, 0, 3), (32, -7, -1, 8)])
def test_shift_ram_width_covers_any_loadable_weights_and_bias(bias_bits, p0, p1, D, tmp_path):
    # any sign and any shift in [p0, p1] can be loaded: |term| <= 128 << (p1 - p0)
    big = D * 128 << (p1 - p0)
    lo, hi = -(1 << (bias_bits - 1)) - big, (1 << (bias_bits - 1)) - 1 + big
    layer = shift_layer(np.zeros((2, D)), np.full((2, D), p0), [0, 0], p0, p1,
                        {"memory": "ram", "bias_bits": bias_bits})
    # (2, 0, 0, 1): [-130, 129] -> 9; (13, -15, 0, 3): +-(4096 + 3 * 2^22) -> 25; (32, -7, -1, 8): 2^31 + 2^16 -> 33
    assert acc_bits(layer, tmp_path) == twos_complement_width(lo, hi) == {2: 9, 13: 25, 32: 33}[bias_bits]


def test_dense_widths(tmp_path):
    # ROM: bias 5 + 127 * 127 + (-128) * (-128) = 32518 and 5 - 127 * 128 - 128 * 127 = -32507: 16 bits;
    # a bias of 300 reaches 32813: 17 bits.
    assert acc_bits(dense_layer([[127, -128]], [5], {}), tmp_path / "a") == 16
    assert acc_bits(dense_layer([[127, -128]], [300], {}), tmp_path / "b") == 17
    # RAM: any int8 weights: terms in [-16256, 16384]; 4 of them and a 10-bit bias:
    # [-512 - 65024, 511 + 65536] = [-65536, 66047] -> 18 bits
    layer = dense_layer(np.zeros((1, 4)), [0], {"memory": "ram", "bias_bits": 10})
    assert acc_bits(layer, tmp_path / "c") == twos_complement_width(-65536, 66047) == 18


@pytest.mark.parametrize("name", CASES)
def test_the_manifest_counts_the_multipliers(name, generated):
    """docs/spec.md section 6.2: a dense engine has U*T products of two signals, a shift engine none."""
    _, layer, manifest, _ = generated(name)
    assert manifest["multipliers"] == (layer.hw.lanes * layer.hw.terms_per_cycle if layer.kind == "dense" else 0)
