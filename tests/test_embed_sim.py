"""Generated `embed` engines (hw/operators/embed.py) against the golden `embed_forward` under
cocotb: the class-token rows (no input) and the offsets' extremes planted by
`planted_offsets` (int32's ends, ties and clamp edges), x chosen to make ties and clamp
edges, random rows with input gaps and backpressure, RAM rewritten and read back,
misframed input; the slow set at 10^4 rows per design."""
from pathlib import Path

import numpy as np
import pytest

from verilator_lint import lint_problems
from nomac.hw.verilog_export import write_verilog
from nomac.model.config import load_config, make_config
from nomac.model.operator_layers import MAX_MULT, EmbedLayer
from nomac.sim.embed_stimulus import planted_offsets
from nomac.sim.runner import simulate
from sim_checks import check_report

EXAMPLE = Path(__file__).parent.parent / "model" / "configs" / "op_embed.json"


def embed_config(tokens: int, features: int, mult: int, shift: int, hw: dict, offset_limit: int = 1 << 31,
                 seed: int = 0):
    """An embed layer whose offsets lie in [-offset_limit, offset_limit) (a ROM's lanes are their width)."""
    offset = planted_offsets(tokens, features, shift, np.random.default_rng(seed), offset_limit)
    params = {"name": "embed", "kind": "embed", "tokens": tokens, "features": features, "mult": mult,
              "shift": shift, "hw": hw}
    return make_config([EmbedLayer.from_json("case", params, {"offset": offset})])


# name: (T, E, mult, shift, hw, offset_limit)
CASES = {
    "T2-E3-L1-shift0-narrow": (2, 3, 1, 0, {}, 1 << 8),
    "T3-E5-L5-in2-out3-ram-mult_max-shift62": (3, 5, MAX_MULT, 62, {"lanes": 5, "in_lanes": 2, "out_lanes": 3,
                                                                    "memory": "ram"}, 1 << 31),
    "T3-E7-L7-mult0": (3, 7, 0, 4, {"lanes": 7}, 1 << 12),
    "T2-E6-L3-in4-out5-ram": (2, 6, 12345, 20, {"lanes": 3, "in_lanes": 4, "out_lanes": 5, "memory": "ram"}, 1 << 31),
    "T17-E32-L8-in16-out4": (17, 32, 24576, 15, {"lanes": 8, "in_lanes": 16, "out_lanes": 4}, 1 << 24),
}
SLOW_CASES = {**CASES,
              "T17-E32-L1-ram": (17, 32, 24576, 15, {"memory": "ram"}, 1 << 31),
              "T3-E7-L1-in7-out2-mult_max-shift38": (3, 7, MAX_MULT, 38, {"in_lanes": 7, "out_lanes": 2}, 1 << 31)}


def test_bundled_example_matches_golden(tmp_path):
    check_report(simulate(load_config(EXAMPLE), vectors=100, work_dir=tmp_path))


@pytest.mark.parametrize("case", CASES)
def test_embed_engine_matches_golden(case, tmp_path):
    *layer, limit = CASES[case]
    check_report(simulate(embed_config(*layer, offset_limit=limit), vectors=100, seed=3, work_dir=tmp_path))


@pytest.mark.parametrize("case", CASES)
def test_verilator_lint_is_clean_with_the_waivers(case, tmp_path):
    *layer, limit = CASES[case]
    (design,) = write_verilog(embed_config(*layer, offset_limit=limit), tmp_path / "design")
    status, problems = lint_problems(design.verilog)
    assert status == 0 and not problems, f"exit {status}: {', '.join(problems)}"


@pytest.mark.slow
def test_bundled_example_matches_golden_on_10k_rows(tmp_path):
    check_report(simulate(load_config(EXAMPLE), vectors=10_000, seed=9, work_dir=tmp_path, simulator="verilator"))


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_CASES)
def test_embed_engine_matches_golden_on_10k_rows(case, tmp_path):
    *layer, limit = SLOW_CASES[case]
    check_report(simulate(embed_config(*layer, offset_limit=limit, seed=5), vectors=10_000, seed=9, work_dir=tmp_path,
                   simulator="verilator"))
