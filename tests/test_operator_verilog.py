"""Generated operator designs (hw/operators/, docs/spec.md sections 6 and 13.10): the files
`nomac verilog` writes for every bundled operator, ROM and RAM, what the manifest says
about streams and memories, and a clean `verilator --lint-only -Wall`."""
import json
from pathlib import Path

import pytest

from nomac.cli import main
from nomac.model.config import load_config, save_config
from nomac.model.operator_layers import OPERATOR_KINDS
from verilator_lint import lint_problems

CONFIGS = Path(__file__).resolve().parent.parent / "model" / "configs"
# (kind, hw overrides): every kind as bundled, and with RAM where it has arrays
CASES = [(kind, {}) for kind in OPERATOR_KINDS] + \
        [(kind, {"memory": "ram"}) for kind in ("embed", "layernorm", "gelu", "attention")]


def case_id(case):
    kind, hw = case
    return kind + "".join(f"-{key}={value}" for key, value in hw.items())


@pytest.fixture(scope="module")
def designs(tmp_path_factory):
    root = tmp_path_factory.mktemp("operators")
    cache = {}

    def get(case):
        name = case_id(case)
        if name not in cache:
            kind, hw = case
            config = load_config(CONFIGS / f"op_{kind}.json").with_hw(hw)
            path = save_config(config, root / f"{name}.json")
            assert main(["verilog", str(path), "-o", str(root / name)]) == 0
            cache[name] = (config.layers[0], json.loads((root / name / "manifest.json").read_text()), root / name)
        return cache[name]
    return get


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_verilog_manifest_and_init_files(case, designs):
    layer, manifest, folder = designs(case)
    top = f"nomac_{layer.kind}_{layer.name}"
    assert manifest["top"] == top and (folder / f"{top}.v").is_file()
    streams = manifest["streams"]
    in_elements = 2 * layer.features if layer.kind == "add" else layer.in_features
    assert (streams["in"]["elements"], streams["out"]["elements"]) == (in_elements, layer.out_features)
    assert (streams["in"]["lanes"], streams["out"]["lanes"]) == (layer.hw.in_lanes, layer.hw.out_lanes)
    assert streams["out"]["lane_bits"] == 8
    assert [m["array"] for m in manifest["memories"]] == list(layer.arrays())
    for memory in manifest["memories"]:
        assert memory["memory"] == layer.hw.memory
        assert ("write" in memory) == (layer.hw.memory == "ram")
        lines = (folder / memory["init_file"]).read_text().splitlines()
        assert len(lines) == memory["depth"]
    assert manifest["layers"][0]["hw"] == {"in_lanes": layer.hw.in_lanes, "out_lanes": layer.hw.out_lanes,
                                           "lanes": layer.hw.lanes, "memory": layer.hw.memory}
    assert manifest["cycles_per_vector"] >= manifest["cycles_per_vector_bound"] >= 1
    assert manifest["latency_cycles"] >= 1


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_verilator_lint_is_clean_with_the_waivers(case, designs):
    _, manifest, folder = designs(case)
    status, problems = lint_problems(folder / manifest["verilog"])
    assert status == 0 and not problems, f"exit {status}: {', '.join(problems)}"


# Products of two signals each design has (docs/spec.md sections 6.2 and 13.10): attention's U
# multipliers and the probability's; layernorm's d * inv and n * weight per lane and S * S;
# the others multiply by constants only, or not at all.
MULTIPLIERS = {"attention": lambda hw: hw.lanes + 1, "layernorm": lambda hw: 2 * hw.lanes + 1}


@pytest.mark.parametrize("case", CASES + [("attention", {"lanes": 2}), ("layernorm", {"lanes": 2})], ids=case_id)
def test_the_manifest_counts_the_multipliers(case, designs):
    layer, manifest, _ = designs(case)
    assert manifest["multipliers"] == MULTIPLIERS.get(layer.kind, lambda hw: 0)(layer.hw)


@pytest.mark.parametrize("command", [["build"], ["run", "--sim"]])
def test_an_operator_config_goes_to_the_network_board_which_refuses_it_before_any_work(command, tmp_path, capsys):
    """A config with an operator is a whole model (docs/spec.md section 12): the network board
    takes it, and refuses this one (64 output bytes) for the board's limits (40)."""
    out = tmp_path / "out"
    assert main([command[0], str(CONFIGS / "op_gelu.json"), *command[1:], *(["-o", str(out)] if command == ["build"]
                                                                              else [])]) == 2
    assert "layer 'gelu' output bytes = 64: must equal the network bitstream's output_bytes (40)" in \
        capsys.readouterr().err
    assert not out.exists()


def test_bench_measures_an_operator_without_synthesis(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--operators", str(CONFIGS / "op_gelu.json"), "--no-synth", "--vectors", "8",
                 "-o", str(out)]) == 0
    (row,) = json.loads((out / "bench.json").read_text())
    assert {k: row[k] for k in ("shape", "cycles_per_vector", "design_cycles_per_vector", "bound", "bound_rule",
                                "mismatches")} == \
        {"shape": "gelu E64 L1", "cycles_per_vector": 64.0, "design_cycles_per_vector": 64, "bound": 64,
         "bound_rule": "ceil(E/L)", "mismatches": 0}
    assert main(["bench", "--operators", "--compare", "--no-synth", "-o", str(out)]) == 2
    assert "--compare and --operators: choose one benchmark" in capsys.readouterr().err
    assert main(["bench", "--operators", str(CONFIGS / "dense_small.json"), "--no-synth", "-o", str(out)]) == 2
    assert "this benchmark measures patches or embed" in capsys.readouterr().err
