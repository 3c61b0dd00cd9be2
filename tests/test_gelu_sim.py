"""Generated `gelu` engines (hw/operators/gelu.py) against the golden table lookup under cocotb:
every table entry in every lane position, random rows with input gaps and backpressure,
RAM rewritten and read back, misframed input; the slow set at 10^4 rows per design."""
from pathlib import Path

import numpy as np
import pytest

from nomac.model.config import load_config, make_config
from nomac.model.operator_layers import GeluLayer
from nomac.sim.runner import simulate
from sim_checks import check_report

EXAMPLE = Path(__file__).parent.parent / "model" / "configs" / "op_gelu.json"


def gelu_config(features: int, hw: dict, seed: int = 0):
    table = np.random.default_rng(seed).integers(-128, 128, 256).astype(np.int8)
    table[0], table[255] = -128, 127
    return make_config([GeluLayer.from_json("case", {"name": "g", "kind": "gelu", "features": features, "hw": hw},
                                            {"table": table})])


CASES = {
    "E37-L4-in3-out5-ram": (37, {"lanes": 4, "in_lanes": 3, "out_lanes": 5, "memory": "ram"}),
    "E1": (1, {}),
    "E64-L8": (64, {"lanes": 8}),
}
SLOW_CASES = {**CASES, "E7-L7-ram": (7, {"lanes": 7, "memory": "ram"}), "E64-L1-ram": (64, {"memory": "ram"})}


def test_bundled_example_matches_golden(tmp_path):
    check_report(simulate(load_config(EXAMPLE), vectors=100, work_dir=tmp_path))


@pytest.mark.parametrize("case", CASES)
def test_gelu_engine_matches_golden(case, tmp_path):
    features, hw = CASES[case]
    check_report(simulate(gelu_config(features, hw), vectors=100, seed=3, work_dir=tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_CASES)
def test_gelu_engine_matches_golden_on_10k_rows(case, tmp_path):
    features, hw = SLOW_CASES[case]
    check_report(simulate(gelu_config(features, hw, seed=5), vectors=10_000, seed=9, work_dir=tmp_path,
                   simulator="verilator"))
