# amaranth: UnusedElaboratable=no
"""Generated `layernorm` engines (hw/operators/layernorm.py) against the golden `layernorm_forward`
under cocotb: rows of one value (variance 0), one element off the rest, -128/127
alternations and halves, rows on rounding ties and saturating both ways, random rows with
input gaps and backpressure, RAM rewritten with weight and bias extremes, misframed input.
Sizes: E = 2, 3, 5, 24 (not a power of two) and the bundled E = 32; lanes 1, 2 and E; G = 1
and 8; out_shift 0 and large; the slow set at 10^4 rows per design."""
import math
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Fragment

from verilator_lint import lint_problems
from nomac.hw.operators.layernorm import LayerNormEngine, LayerNormWidths
from nomac.hw.verilog_export import write_verilog
from nomac.model.config import load_config, make_config
from nomac.model.operator_layers import LayerNormLayer
from nomac.sim.runner import simulate
from sim_checks import check_report

EXAMPLE = Path(__file__).parent.parent / "model" / "configs" / "op_layernorm.json"


def layernorm_config(E: int, G: int, out_shift: int, hw: dict, seed: int = 0):
    """Weights and biases scaled so that outputs span the int8 range at this out_shift (and
    saturate for the outlying rows), with the int16 and int32 ends planted."""
    rng = np.random.default_rng(seed)
    weight_limit = min(1 << 15, 1 << max(0, out_shift - G + 6))
    bias_limit = min(1 << 31, 1 << (out_shift + 7))
    weight = rng.integers(-weight_limit, weight_limit, E)
    bias = rng.integers(-bias_limit, bias_limit, E)
    weight[0], weight[-1] = (1 << 15) - 1, -(1 << 15)
    bias[-1] = (1 << 31) - 1
    params = {"name": "norm", "kind": "layernorm", "features": E, "norm_bits": G, "out_shift": out_shift, "hw": hw}
    layer = LayerNormLayer.from_json("case", params, {"weight": weight.astype(np.int16), "bias": bias.astype(np.int32)})
    return make_config([layer])


# name: (E, G, out_shift, hw)
CASES = {
    "E2-G1-shift0-L1-ram": (2, 1, 0, {"memory": "ram"}),
    "E3-G8-shift32-L3-ram": (3, 8, 32, {"lanes": 3, "memory": "ram"}),
    "E5-G1-shift62-L1": (5, 1, 62, {}),
    "E5-G8-shift9-L5-in2-out3-ram": (5, 8, 9, {"lanes": 5, "in_lanes": 2, "out_lanes": 3, "memory": "ram"}),
    "E24-G7-shift20-L2-in3-out4-ram": (24, 7, 20, {"lanes": 2, "in_lanes": 3, "out_lanes": 4, "memory": "ram"}),
    "E24-G1-shift4-L24": (24, 1, 4, {"lanes": 24}),
}
SLOW_CASES = {**CASES,
              "E2-G8-shift30-L2-ram": (2, 8, 30, {"lanes": 2, "memory": "ram"}),
              "E24-G8-shift0-L1-ram": (24, 8, 0, {"memory": "ram"}),
              "E32-G7-shift21-L4-ram": (32, 7, 21, {"lanes": 4, "memory": "ram"})}


def fits(shape, values) -> bool:
    lo, hi = (-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed else (0, (1 << shape.width) - 1)
    return lo <= min(values) and max(values) <= hi


@pytest.mark.parametrize("E, G", [(2, 1), (2, 8), (3, 8), (5, 1), (24, 7), (32, 7), (1024, 8)])
def test_the_widths_hold_every_intermediate(E, G):
    """The bounds behind the register widths, on the rows that reach them (halves of -128 and
    127, one element off by 255 or by 1) and random rows, in exact Python integers."""
    widths = LayerNormWidths.of(E, G)
    rng = np.random.default_rng(E)
    rows = [[-128] * (E // 2) + [127] * (E - E // 2), [127] + [-128] * (E - 1), [-128] + [127] * (E - 1),
            [1] + [0] * (E - 1), [-128] * E, *rng.integers(-128, 128, (50, E)).tolist(),
            *np.where(rng.random((50, E)) < 0.1, 127, -128).tolist()]
    for row in rows:
        S, P = sum(row), sum(x * x for x in row)
        V = E * P - S * S
        r = math.isqrt(V << (2 * G))
        inv = (1 << 32) // r if r else 0
        d = [E * x - S for x in row]
        n = [(e * inv + (1 << (31 - 2 * G))) >> (32 - 2 * G) for e in d]
        assert fits(widths.sum, [S]) and fits(widths.squares, [P]) and fits(widths.variance, [V])
        assert (V << (2 * G)).bit_length() <= widths.radicand_bits and r.bit_length() <= widths.root_bits
        assert fits(widths.inv, [inv]) and fits(widths.deviation, d) and fits(widths.product, [e * inv for e in d])
        assert fits(widths.normalized, n)
        assert fits(widths.output_acc, [v * w + b for v in n for w in (-(1 << 15), (1 << 15) - 1)
                                        for b in (-(1 << 31), (1 << 31) - 1)])


def test_bundled_example_runs_at_the_bound():
    engine = LayerNormEngine(load_config(EXAMPLE).layers[0])
    Fragment.get(engine, None)                 # elaborates (and so uses) the core and its units
    assert (engine.cycles_per_vector, engine.cycles_per_vector_bound) == (32, 32)


def test_bundled_example_matches_golden(tmp_path):
    check_report(simulate(load_config(EXAMPLE), vectors=100, work_dir=tmp_path))


@pytest.mark.parametrize("case", CASES)
def test_layernorm_engine_matches_golden(case, tmp_path):
    check_report(simulate(layernorm_config(*CASES[case]), vectors=100, seed=3, work_dir=tmp_path))


@pytest.mark.parametrize("case", ["E3-G8-shift32-L3-ram", "E24-G7-shift20-L2-in3-out4-ram"])
def test_verilator_lint_is_clean_with_the_waivers(case, tmp_path):
    (design,) = write_verilog(layernorm_config(*CASES[case]), tmp_path / "design")
    status, problems = lint_problems(design.verilog)
    assert status == 0 and not problems, f"exit {status}: {', '.join(problems)}"


@pytest.mark.slow
def test_bundled_example_matches_golden_on_10k_rows(tmp_path):
    check_report(simulate(load_config(EXAMPLE), vectors=10_000, seed=9, work_dir=tmp_path, simulator="verilator"))


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_CASES)
def test_layernorm_engine_matches_golden_on_10k_rows(case, tmp_path):
    check_report(simulate(layernorm_config(*SLOW_CASES[case]), vectors=10_000, seed=9, work_dir=tmp_path,
                   simulator="verilator"))
