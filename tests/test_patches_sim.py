"""Generated `patches` engines against the golden model, simulated under cocotb.

The bundled tiny ViT size (8x8, p = 2) and odd sizes (a 6x9 image in 3x3 patches,
p = 1 and p = H = W, which make the reordering the identity, a single pixel, a
12x8 image whose strips are wider than high) at stream lanes of 1, 3, 8 and values
dividing nothing. The directed rows (sim/patches_stimulus.py) name their positions,
so any misplaced or stale pixel is a mismatch; the bench checks that the measured
cycles per vector are H*W. The slow set runs 10^4 random images per design.
"""
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import rtlil

from amaranth_streams import final_beats, intervals, stream_beats, stream_through
from sim_checks import check_report
from verilator_lint import lint_problems
from nomac.hw.engine_kinds import build_engine
from nomac.hw.flat_verilog import FlatPorts
from nomac.hw.latency import measure_latency
from nomac.hw.verilog_export import write_verilog
from nomac.model.config import load_config, make_config
from nomac.model.int_ops import patches_forward
from nomac.model.operator_layers import PatchesLayer
from nomac.sim.runner import simulate

EXAMPLE = Path(__file__).parent.parent / "model" / "configs" / "op_patches.json"


@dataclass(frozen=True)
class PatchesCase:
    height: int
    width: int
    patch: int
    hw: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        hw = "-".join(f"{k}{v}" for k, v in sorted(self.hw.items()))
        return f"patches-{self.height}x{self.width}-p{self.patch}-{hw or 'default'}"

    def layer(self):
        return PatchesLayer.from_json(self.id, {"name": "patches", "kind": "patches", "height": self.height,
                                                "width": self.width, "patch": self.patch, "hw": dict(self.hw)}, {})

    def config(self):
        return make_config([self.layer()])


CI_CASES = [
    PatchesCase(8, 8, 2, {"in_lanes": 8, "out_lanes": 3}),
    PatchesCase(6, 9, 3, {"in_lanes": 3, "out_lanes": 8}),
    PatchesCase(4, 4, 1, {"in_lanes": 5, "out_lanes": 7}),
    PatchesCase(4, 4, 4, {"in_lanes": 16, "out_lanes": 1}),
    PatchesCase(1, 1, 1),
    PatchesCase(12, 8, 4, {"in_lanes": 7, "out_lanes": 5}),
]
SLOW_CASES = [PatchesCase(8, 8, 2), PatchesCase(8, 8, 2, {"in_lanes": 8, "out_lanes": 8}),
              PatchesCase(6, 9, 3, {"in_lanes": 5, "out_lanes": 3}), PatchesCase(4, 4, 4, {"in_lanes": 3}),
              PatchesCase(4, 4, 1, {"out_lanes": 8}), PatchesCase(1, 1, 1),
              PatchesCase(12, 8, 4, {"in_lanes": 1, "out_lanes": 7})]


@pytest.mark.parametrize("case", CI_CASES, ids=lambda case: case.id)
def test_patches_engine_matches_golden(case, tmp_path):
    check_report(simulate(case.config(), vectors=60, seed=3, work_dir=tmp_path))


def test_example_config_matches_golden(tmp_path):
    check_report(simulate(load_config(EXAMPLE), vectors=60, work_dir=tmp_path))


def test_example_figures():
    """The tiny ViT size: one pixel a cycle; the last strip (2 rows, 16 pixels) leaves after the whole image."""
    engine = build_engine(load_config(EXAMPLE).layers[0])
    assert (engine.cycles_per_vector, engine.cycles_per_vector_bound, engine.cycles_per_vector_bound_rule) == \
        (64, 64, "H*W")
    assert measure_latency(engine, engine.in_elements) == 64 + 16


# Small images at every patch size dividing them and several stream widths, on Amaranth's simulator.
SWEEP = [PatchesCase(H, W, p, {"in_lanes": A, "out_lanes": B})
         for H, W in ((2, 6), (6, 3), (4, 4)) for p in range(1, 7) if H % p == 0 and W % p == 0
         for A, B in ((1, 1), (3, 2), (5, 8))]


@pytest.mark.parametrize("case", SWEEP, ids=lambda case: case.id)
def test_patches_engine_is_exact_at_full_rate(case):
    """Position codes through the engine with no gaps: patch order, and one image every H*W cycles."""
    layer = case.layer()
    engine = build_engine(layer)
    x = (np.arange(6 * layer.in_features).reshape(6, -1) % 256 - 128).astype(np.int8)
    expected = stream_beats(patches_forward(layer, x), layer.hw.out_lanes)
    finished = []
    taken = stream_through(engine, stream_beats(x, layer.hw.in_lanes), len(expected),
                           background=[final_beats(engine.o, finished)])
    assert taken == expected
    assert intervals(finished, skip=2) == [engine.cycles_per_vector] * 3


@pytest.mark.parametrize("case", CI_CASES, ids=lambda case: case.id)
def test_patches_engine_has_no_multiplier(case):
    assert not re.search(r"^\s*cell \$mul ", rtlil.convert(FlatPorts(build_engine(case.layer()))), re.M)


@pytest.mark.parametrize("case", CI_CASES, ids=lambda case: case.id)
def test_verilator_lint_is_clean_with_the_waivers(case, tmp_path):
    (design,) = write_verilog(case.config(), tmp_path / "design")
    status, problems = lint_problems(design.verilog)
    assert status == 0 and not problems, f"exit {status}: {', '.join(problems)}"


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_CASES, ids=lambda case: case.id)
def test_patches_engine_matches_golden_on_10k_vectors(case, tmp_path):
    check_report(simulate(case.config(), vectors=10_000, seed=7, simulator="verilator", work_dir=tmp_path))
