# amaranth: UnusedElaboratable=no
"""Generated `attention` engines against the golden model, simulated under cocotb.

A vector is a whole sequence, so the cases are small: T = 1, 2, 3 tokens, E = 6 with
one, two and three heads, E = 12 with three, U = 1, 2 and dh multipliers, stream lanes
of 1 and wider, ROM and RAM exp tables, and rescalings with shift 0; the directed
sequences (sim/attention_stimulus.py) plant the extremes. The bundled tiny-ViT-sized
config runs in CI with few random sequences; the slow set runs 10^4 sequences per
design on Verilator.
"""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from sim_checks import check_report
from verilator_lint import lint_problems
from nomac.hw.operators.attention import AttentionEngine
from nomac.hw.verilog_export import write_verilog
from nomac.model.config import load_config, make_config
from nomac.model.operator_layers import AttentionLayer
from nomac.sim.runner import simulate

BUNDLED = Path(__file__).parent.parent / "model" / "configs" / "op_attention.json"
# 10^4 tiny-ViT sequences are ~60 M cycles, over half an hour on Verilator under cocotb: the slow
# run takes 10^3 of them; the small designs of SLOW_CASES take the full 10^4.
BUNDLED_SLOW_SEQUENCES = 1000


@dataclass(frozen=True)
class AttentionCase:
    tokens: int
    features: int
    heads: int
    hw: dict = field(default_factory=dict)
    score: tuple = (None, 20)          # (score_mult, score_shift); None: spread random deltas over the table
    out: tuple = (20480, 21)           # (out_mult, out_shift): concentrated rows saturate both ways
    seed: int = 0

    @property
    def id(self) -> str:
        hw = "-".join(f"{k}{v}" for k, v in sorted(self.hw.items()))
        return (f"T{self.tokens}-E{self.features}-H{self.heads}-s{self.score[0]}x{self.score[1]}"
                f"-o{self.out[0]}x{self.out[1]}-{hw or 'default'}")

    def layer(self):
        dh = self.features // self.heads
        score_mult, score_shift = self.score
        if score_mult is None:            # a random int8 row's deltas reach ~ sqrt(dh) * 2^14
            score_mult = round(0.06 / np.sqrt(dh) * 2 ** score_shift)
        table = np.floor(2 ** 15 * np.exp(-np.arange(256) / 24) + 0.5).astype(np.int32)
        params = {"name": "attention", "kind": "attention", "tokens": self.tokens, "features": self.features,
                  "heads": self.heads, "score_mult": score_mult, "score_shift": score_shift,
                  "out_mult": self.out[0], "out_shift": self.out[1], "hw": dict(self.hw)}
        return AttentionLayer.from_json(self.id, params, {"exp_table": table})

    def config(self):
        return make_config([self.layer()])


CI_CASES = [
    AttentionCase(3, 6, 2, {"memory": "ram", "in_lanes": 4, "out_lanes": 2}),
    AttentionCase(3, 6, 1, {"lanes": 2}, score=(3, 0)),
    AttentionCase(1, 6, 3, {"lanes": 1}, out=(1, 0)),
    AttentionCase(2, 12, 3, {"lanes": 4, "in_lanes": 12, "out_lanes": 3, "memory": "ram"}),
]
SLOW_CASES = [
    *CI_CASES,
    AttentionCase(3, 6, 3, {"in_lanes": 18, "out_lanes": 6}),
    AttentionCase(2, 6, 1, {"lanes": 6, "memory": "ram"}, out=(20480, 22)),
    AttentionCase(1, 8, 1, {"lanes": 8, "out_lanes": 3}),
    AttentionCase(3, 12, 3, {"lanes": 2, "in_lanes": 5, "out_lanes": 4, "memory": "ram"}, score=(1, 0)),
    AttentionCase(5, 16, 2, {"memory": "ram", "in_lanes": 8, "out_lanes": 8}),
]


def test_bundled_figures():
    """At the tiny ViT's size (U = 4, G = 2): recip <= 2^32 // exp_table[0] = 2^17 takes 18
    bits, so the reciprocal, one bit a cycle, takes 19 cycles and starts 4 cycles after a
    row's last exp item: hidden behind the next row's 34 score cycles. Beyond the bound:
    the idle cycle, the first row's 5-cycle score drain and the last row's reciprocal (4 + 19)."""
    engine = AttentionEngine(load_config(BUNDLED).layers[0])
    schedule = engine.core.schedule
    assert (schedule.groups, schedule.context_period, schedule.reciprocal_bits_per_cycle) == (2, 17, 1)
    assert (schedule.exp_bits, schedule.recip_bits, schedule.sum_bits) == (16, 18, 20)
    assert engine.cycles_per_vector_bound == 2 * 17 * 17 * 32 // 4 + 4 * 17 * 17 == 5780
    assert engine.cycles_per_vector == 5780 + 1 + 5 + 4 + 19 == 5809
    assert engine.acc_bits == 21                  # |c| <= 17 * 255 * 128


def test_a_group_takes_at_least_u_cycles():
    """With fewer tokens than lanes the shared rescale unit sets the context period."""
    layer = AttentionCase(2, 12, 3, {"lanes": 4}).layer()
    assert AttentionEngine(layer).core.schedule.context_period == 4


@pytest.mark.parametrize("case", CI_CASES, ids=lambda case: case.id)
def test_attention_engine_matches_golden(case, tmp_path):
    check_report(simulate(case.config(), vectors=60, seed=case.seed + 1, work_dir=tmp_path))


def test_bundled_config_matches_golden(tmp_path):
    check_report(simulate(load_config(BUNDLED), vectors=8, work_dir=tmp_path))


@pytest.mark.parametrize("case", CI_CASES[:1], ids=lambda case: case.id)
def test_verilator_lint_is_clean_with_the_waivers(case, tmp_path):
    folder = tmp_path / "design"
    write_verilog(case.config(), folder)
    (verilog,) = folder.glob("*.v")
    status, problems = lint_problems(verilog)
    assert status == 0 and not problems, f"exit {status}: {', '.join(problems)}"


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_CASES, ids=lambda case: case.id)
def test_attention_engine_matches_golden_on_10k_sequences(case, tmp_path):
    check_report(simulate(case.config(), vectors=10_000, seed=case.seed + 7, simulator="verilator",
                          work_dir=tmp_path))


@pytest.mark.slow
def test_bundled_config_matches_golden_on_many_sequences(tmp_path):
    check_report(simulate(load_config(BUNDLED), vectors=BUNDLED_SLOW_SEQUENCES, seed=11, simulator="verilator",
                          work_dir=tmp_path))
