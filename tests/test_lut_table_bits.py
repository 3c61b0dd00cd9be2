"""Narrow table entries (a lut layer's `table_bits`, docs/spec.md section 7): the config's
range check, the packed byte count a budget uses, export's rounding and saturation, and the
plan option. The engines' bit-exactness with narrow entries is in test_lut_sim.py (CI cases
t4 and t6) and the quantization-aware forward pass in test_vit_model.py."""
from dataclasses import replace

import numpy as np
import pytest

from nomac.base.errors import ConfigError
from nomac.model.config import load_config, make_config, save_config
from nomac.model.golden import run_golden
from nomac.model.layers.lut_linear import LUTLinear
from nomac.model.lut_spec import LutLayer, lut_table_bytes
from nomac.model.vit.compression_plan import load_plan, plan_from_dict
from nomac.model.vit.tiny_vit import TinyViT
from nomac.model.layers.activations import activation_scale
from test_lut_linear import seeded_linear, structured_inputs


def layer(table_bits=None, tables=None):
    rng = np.random.default_rng(0)
    params = {"name": "fc", "kind": "lut", "in_features": 4, "out_features": 3, "codebooks": 2, "centroids": 2,
              "encoder": "l1", "out_shift": 1}
    if table_bits is not None:
        params["table_bits"] = table_bits
    arrays = {"tables": rng.integers(-8, 8, (2, 2, 3)).astype(np.int8) if tables is None else tables,
              "bias": np.array([5, -7, 0], np.int32),
              "prototypes": rng.integers(-128, 128, (2, 2, 2)).astype(np.int8)}
    return LutLayer.from_json("fc.json: layer 'fc'", params, arrays)


def test_entries_must_fit_the_bits_and_the_bits_their_range():
    tables = np.zeros((2, 2, 3), np.int8)
    tables[1, 0, 2] = 8
    assert layer(5, tables).table_bits == 5
    with pytest.raises(ConfigError) as caught:
        layer(4, tables)
    assert str(caught.value) == ("fc.json: layer 'fc': array 'tables'[1, 0, 2] = 8: table_bits = 4: an entry "
                                 "must lie in -8..7")
    tables[1, 0, 2] = -9
    with pytest.raises(ConfigError, match=r"array 'tables'\[1, 0, 2\] = -9: table_bits = 4"):
        layer(4, tables)
    for bits in (1, 9):
        with pytest.raises(ConfigError, match=f"table_bits = {bits}"):
            layer(bits)


def test_the_bits_are_saved_only_when_not_eight_and_change_the_config_id(tmp_path):
    assert "table_bits" not in layer().params_json() and "table_bits" not in layer(8).params_json()
    narrow = make_config([layer(4)])
    assert narrow.layers[0].params_json()["table_bits"] == 4
    assert narrow.config_id != make_config([layer(8)]).config_id == make_config([layer()]).config_id
    loaded = load_config(save_config(narrow, tmp_path / "fc.json"))
    assert loaded.layers[0].table_bits == 4 and loaded.config_id == narrow.config_id


def test_table_bytes_count_packed_entries_and_byte_wide_encoder_arrays():
    # 4 codebooks x 8 prototypes x 32 outputs of 4 bits = 512 bytes, plus 4 x 8 int8 prototypes
    assert lut_table_bytes(4, 8, 32, 1, "l2", 4) == 512 + 32
    assert lut_table_bytes(4, 8, 32, 1, "l2") == 1024 + 32
    # 1 x 2 x 3 = 6 entries of 6 bits = 36 bits: 5 bytes; tree: 1 threshold, 1 split dimension
    assert lut_table_bytes(1, 2, 3, 4, "tree", 6) == 5 + 1 + 1
    assert layer(4).table_bytes == lut_table_bytes(2, 2, 3, 2, "l1", 4) == 6 + 8


def exported(table_bits, **options):
    linear = seeded_linear(16, 8)
    calibration = structured_inputs(800, 16)
    lut = LUTLinear.from_linear(linear, calibration, 4, 16, "l2")
    lut.table_bits = table_bits
    s_in = activation_scale(calibration)
    return lut, lut.export("fc", s_in, calibration=calibration, **options), calibration, s_in


def test_export_rounds_to_the_largest_out_shift_the_bits_hold():
    lut, narrow, calibration, s_in = exported(4)
    T, b = lut.tables.detach().double().numpy(), lut.bias.detach().double().numpy()
    peak = float(lut(calibration).detach().abs().max())
    s_out = narrow.extra["output_scale"]
    assert s_out == pytest.approx(max(peak / 127, np.abs(T).max() / 7), rel=1e-12)
    for shift, fits in ((narrow.out_shift, True), (narrow.out_shift + 1, False)):
        scaled = np.floor(T * 2 ** shift / s_out + 0.5)
        assert (scaled.min() >= -8 and scaled.max() <= 7) == fits
    unit = s_out / 2 ** narrow.out_shift
    assert narrow.table_bits == 4 and np.array_equal(narrow.tables, np.floor(T / unit + 0.5))
    assert np.array_equal(narrow.bias, np.floor(b / unit + 0.5))
    wide = exported(8)[1]
    assert wide.table_bits == 8 and "table_bits" not in wide.params_json()


def test_narrow_entries_saturate_where_int8_ones_are_refused():
    lut, auto, calibration, s_in = exported(4)
    T = lut.tables.detach().double().numpy()
    small = float(np.abs(T).max()) / 20                   # the peak entry is 20 units: 4 bits cannot hold it
    narrow = lut.export("fc", s_in, output_scale=small, output="acc")
    assert narrow.out_shift == 0
    assert np.array_equal(narrow.tables, np.clip(np.floor(T / small + 0.5), -8, 7))
    assert narrow.tables.min() == -8 or narrow.tables.max() == 7
    x_int = np.clip(np.floor(calibration[:50] / s_in + 0.5), -128, 127).astype(np.int8)
    assert run_golden(make_config([narrow]), x_int).shape == (50, 8)
    lut.table_bits = 8
    with pytest.raises(ConfigError, match="output_scale = .*too small"):
        lut.export("fc", s_in, output_scale=float(np.abs(T).max()) / 200)


def test_the_plan_option_is_checked_and_the_budget_counts_its_bits():
    def document(**options):
        return {"format": "nomac-plan/1", "name": "narrow", "training": {"method": "none"},
                "layers": [{"match": "blocks.*.qkv", "kind": "lut", "subvector": 1, "centroids": 8, **options}]}
    model = TinyViT()
    names = model.shape.linear_names()
    # qkv 32 -> 96: 32 codebooks x 8 prototypes x 96 outputs, 6 bits an entry, and 32 x 8 prototypes
    assert plan_from_dict(document(table_bits=6)).table_bytes(model, names) == \
        {"blocks.0.qkv": 32 * 8 * 96 * 6 // 8 + 32 * 8, "blocks.1.qkv": 32 * 8 * 96 * 6 // 8 + 32 * 8}
    assert plan_from_dict(document()).rules[0].options["table_bits"] == 8
    for bits in (1, 9, "4"):
        with pytest.raises(ConfigError, match="table_bits"):
            plan_from_dict(document(table_bits=bits))


# (plan, base, what it changes in the base's lut rules, by match pattern or "*" for all of them,
# what it changes in the training settings, budget, table bytes worked out by hand)
K16 = {"centroids": 16, "table_bits": 4}
# K = 8 at 8 bits, per block: the tables of qkv 32 codebooks x 8 x 96, proj 32 x 8 x 32, fc1
# 32 x 8 x 64 and fc2 64 x 8 x 32 (on pairs: 32 x 8 x 32), then 32 x 8 prototypes a layer (fc2 64
# x 8, or 32 x 8 x 2 on pairs); the patch embedding 4 x 16 x 32 entries and 64 prototypes, the
# head (pairs) 16 x 8 x 10 and 16 x 8 x 2
K8_TABLES, K8_PAIRS_TABLES, K8_PROTOTYPES = 24_576 + 8_192 + 16_384 + 16_384, 24_576 + 8_192 + 16_384 + 8_192, 1_280
# K = 16 at 4 bits: per block qkv 32 codebooks x 16 x 96 entries of half a byte + 32 x 16 prototypes,
# proj 32 x 16 x 32 / 2 + 512, fc1 32 x 16 x 64 / 2 + 512, fc2 (pairs) 32 x 16 x 32 / 2 + 32 x 16 x 2
K16_T4_BLOCK = (24_576 + 512) + (8_192 + 512) + (16_384 + 512) + (8_192 + 1_024)
DERIVED_PLANS = (
    # entry bits alone: the tables x bits / 8, the prototypes as they were
    ("lut_train_v1_k8_t6", "lut_train_v1_k8", {"*": {"table_bits": 6}}, {}, 120 * 1024,
     2 * (K8_TABLES * 6 // 8 + K8_PROTOTYPES)),
    ("lut_train_v1_k8_t4", "lut_train_v1_k8", {"*": {"table_bits": 4}}, {}, None, 2 * (K8_TABLES // 2 + K8_PROTOTYPES)),
    ("lut_train_ice40_t4", "lut_train_ice40", {"*": {"table_bits": 4}}, {}, 64 * 1024,
     2 * (K8_PAIRS_TABLES // 2 + K8_PROTOTYPES)),
    ("lut_train_ice40_all_t4", "lut_train_ice40_all", {"*": {"table_bits": 4}}, {}, 64 * 1024,
     2 * (K8_PAIRS_TABLES // 2 + K8_PROTOTYPES) + (2_048 // 2 + 64) + (1_280 // 2 + 256)),
    ("lut_train_ice40_k16_t4", "lut_train_ice40", {"*": K16}, {}, 120 * 1024, 2 * K16_T4_BLOCK),
    ("lut_train_ice40_k16_t3", "lut_train_ice40", {"*": {"centroids": 16, "table_bits": 3}}, {}, 120 * 1024,
     2 * ((24_576 + 8_192 + 16_384 + 8_192) * 3 // 4 + 512 * 3 + 1_024)),
    ("lut_train_ice40_k16_t2", "lut_train_ice40", {"*": {"centroids": 16, "table_bits": 2}}, {}, 64 * 1024,
     2 * ((24_576 + 8_192 + 16_384 + 8_192) // 2 + 512 * 3 + 1_024)),
    # K = 4 at 8 bits: the tables of K = 16 at 4 bits halved, a quarter of the prototypes
    ("lut_train_ice40_k4", "lut_train_ice40", {"*": {"centroids": 4}}, {}, 64 * 1024,
     2 * ((24_576 + 8_192 + 16_384 + 8_192) // 2 + 128 * 3 + 256)),
    # 16 codebooks of pairs (fc2: of 4) instead of 32: half the tables, the same prototype bytes
    ("lut_train_v2_k16_t4", "lut_train_ice40", {"blocks.*.fc2": {**K16, "subvector": 4}, "blocks.*": {**K16, "subvector": 2}},
     {}, 64 * 1024, 2 * ((24_576 + 8_192 + 16_384 + 8_192) // 2 + 512 * 3 + 1_024)),
    # fc2 on 64 codebooks of one element: 64 x 16 x 32 / 2 + 64 x 16
    ("lut_train_v1_k16_t4", "lut_train_v1_k8", {"*": K16}, {}, None, 2 * (K16_T4_BLOCK - 9_216 + 16_384 + 1_024)),
    # the patch embedding 4 codebooks x 16 x 32 / 2 + 64, the head (pairs) 16 x 8 x 10 / 2 + 16 x 8 x 2
    ("lut_train_ice40_all_k16_t4", "lut_train_ice40_all",
     {"blocks.*.fc2": K16, "blocks.*": K16, "patch_embed": {"table_bits": 4}, "head": {"table_bits": 4}}, {},
     120 * 1024, 2 * K16_T4_BLOCK + (1_024 + 64) + (640 + 256)),
    ("lut_train_ice40_k16_t4_recon", "lut_train_ice40_k16_t4", {}, {"reconstruction": 1.0}, 120 * 1024,
     2 * K16_T4_BLOCK),
    ("lut_train_ice40_k16_t4_kd28", "lut_train_ice40_k16_t4", {}, {"distill_weighting": "published"}, 120 * 1024,
     2 * K16_T4_BLOCK),
)


@pytest.mark.parametrize("name, base_name, layer_changes, setting_changes, budget, table_bytes", DERIVED_PLANS)
def test_the_derived_plans_change_what_they_say_and_fit_their_budgets(
        name, base_name, layer_changes, setting_changes, budget, table_bytes):
    model = TinyViT()
    plan, base = load_plan(name), load_plan(base_name)
    assert plan.settings == replace(base.settings, **setting_changes)
    assert [rule.match for rule in plan.rules] == [rule.match for rule in base.rules]
    for rule, base_rule in zip(plan.rules, base.rules):
        changed = layer_changes.get(rule.match, layer_changes.get("*", {})) if rule.kind == "lut" else {}
        assert rule.options == {**base_rule.options, **changed}, (name, rule.match)
    assert plan.table_budget == budget
    if budget is not None:
        plan.check_budget(model)
    assert sum(plan.table_bytes(model, model.shape.linear_names()).values()) == table_bytes
