"""Generated `select_token` engines against the golden model, simulated under cocotb.

The bundled tiny ViT size (T = 17, E = 32, the class token) and odd sizes: 3 tokens
of 5 features taking each token, one token, one feature, the last token, at input
lanes that put the token at several offsets of a core beat (min(in_lanes,
out_lanes) wide), including the cases where its final output beat leaves a cycle
after the input beat that held it (the core's "deferred" beat, also across the end
of the vector), and output lanes narrower than the input's. The directed rows
(sim/select_token_stimulus.py) name their positions and tokens; the bench checks
that the measured cycles per vector are the design's. The slow set runs 10^4 random
sequences per design.
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
from nomac.model.int_ops import select_token_forward
from nomac.model.operator_layers import SelectTokenLayer
from nomac.sim.runner import simulate

EXAMPLE = Path(__file__).parent.parent / "model" / "configs" / "op_select_token.json"


@dataclass(frozen=True)
class SelectTokenCase:
    tokens: int
    features: int
    index: int
    hw: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        hw = "-".join(f"{k}{v}" for k, v in sorted(self.hw.items()))
        return f"select-T{self.tokens}-E{self.features}-i{self.index}-{hw or 'default'}"

    def layer(self):
        return SelectTokenLayer.from_json(self.id, {"name": "select", "kind": "select_token", "tokens": self.tokens,
                                                    "features": self.features, "index": self.index,
                                                    "hw": dict(self.hw)}, {})

    def config(self):
        return make_config([self.layer()])


CI_CASES = [
    SelectTokenCase(17, 32, 0, {"in_lanes": 8, "out_lanes": 3}),
    SelectTokenCase(17, 32, 3, {"in_lanes": 5, "out_lanes": 8}),       # deferred final beat
    SelectTokenCase(3, 5, 0, {"in_lanes": 3, "out_lanes": 1}),
    SelectTokenCase(3, 5, 1, {"in_lanes": 4, "out_lanes": 5}),         # deferred final beat
    SelectTokenCase(3, 5, 2, {"in_lanes": 4, "out_lanes": 3}),         # deferred, into the next vector
    SelectTokenCase(3, 5, 2, {"in_lanes": 2, "out_lanes": 5}),
    SelectTokenCase(1, 5, 0, {"in_lanes": 2, "out_lanes": 4}),
    SelectTokenCase(4, 1, 3, {"in_lanes": 3}),
    SelectTokenCase(1, 1, 0),
]
SLOW_CASES = [SelectTokenCase(17, 32, 0), SelectTokenCase(17, 32, 0, {"in_lanes": 8, "out_lanes": 8}),
              SelectTokenCase(17, 32, 16, {"in_lanes": 5, "out_lanes": 7}),   # deferred, into the next vector
              SelectTokenCase(17, 32, 16, {"in_lanes": 5, "out_lanes": 3}),
              SelectTokenCase(3, 5, 0), SelectTokenCase(3, 5, 1, {"in_lanes": 4, "out_lanes": 5}),
              SelectTokenCase(3, 5, 2, {"in_lanes": 4, "out_lanes": 3}), SelectTokenCase(1, 1, 0),
              SelectTokenCase(4, 1, 3, {"in_lanes": 3})]


@pytest.mark.parametrize("case", CI_CASES, ids=lambda case: case.id)
def test_select_token_engine_matches_golden(case, tmp_path):
    check_report(simulate(case.config(), vectors=60, seed=3, work_dir=tmp_path))


def test_example_config_matches_golden(tmp_path):
    check_report(simulate(load_config(EXAMPLE), vectors=60, work_dir=tmp_path))


def test_example_figures():
    """The tiny ViT size at one lane: every element read, one a cycle; the class token leaves
    as it arrives (its 32 elements, then the output register)."""
    engine = build_engine(load_config(EXAMPLE).layers[0])
    assert (engine.cycles_per_vector, engine.cycles_per_vector_bound, engine.cycles_per_vector_bound_rule) == \
        (17 * 32, 17 * 32, "ceil(T*E/in_lanes)")
    assert measure_latency(engine, engine.in_elements) == 32


# Every token offset of a core beat, at core widths from 1 to wider than a token, on Amaranth's simulator.
SWEEP = [SelectTokenCase(T, E, index, {"in_lanes": A, "out_lanes": B})
         for T, E in ((3, 5), (4, 3), (2, 7)) for index in range(T)
         for A, B in ((1, 1), (2, 3), (4, 4), (6, 2), (5, 7)) if B <= E] + \
        [SelectTokenCase(17, 32, index, {"in_lanes": A, "out_lanes": B})      # tokens longer than the gearboxes
         for index in (0, 3, 16) for A, B in ((5, 3), (8, 1), (5, 7))]


@pytest.mark.parametrize("case", SWEEP, ids=lambda case: case.id)
def test_select_token_engine_is_exact_at_full_rate(case):
    """Position codes through the engine with no gaps: the token, and one vector every cycles_per_vector."""
    layer = case.layer()
    engine = build_engine(layer)
    x = (np.arange(6 * layer.in_features).reshape(6, -1) % 256 - 128).astype(np.int8)
    expected = stream_beats(select_token_forward(layer, x), layer.hw.out_lanes)
    finished = []
    taken = stream_through(engine, stream_beats(x, layer.hw.in_lanes), len(expected),
                           background=[final_beats(engine.o, finished)])
    assert taken == expected
    assert intervals(finished, skip=2) == [engine.cycles_per_vector] * 3


@pytest.mark.parametrize("case", CI_CASES, ids=lambda case: case.id)
def test_select_token_engine_has_no_multiplier(case):
    assert not re.search(r"^\s*cell \$mul ", rtlil.convert(FlatPorts(build_engine(case.layer()))), re.M)


@pytest.mark.parametrize("case", CI_CASES, ids=lambda case: case.id)
def test_verilator_lint_is_clean_with_the_waivers(case, tmp_path):
    (design,) = write_verilog(case.config(), tmp_path / "design")
    status, problems = lint_problems(design.verilog)
    assert status == 0 and not problems, f"exit {status}: {', '.join(problems)}"


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_CASES, ids=lambda case: case.id)
def test_select_token_engine_matches_golden_on_10k_vectors(case, tmp_path):
    check_report(simulate(case.config(), vectors=10_000, seed=7, simulator="verilator", work_dir=tmp_path))
