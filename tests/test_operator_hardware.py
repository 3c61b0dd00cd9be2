"""The "hw" section of the operator layers (model/operator_layers.py, docs/spec.md section 13.9):
defaults, the rules of each choice, and refusal of a choice a kind does not have."""
import json

import numpy as np
import pytest

from nomac.base.errors import ConfigError
from nomac.model.config import load_config, make_config, save_config
from nomac.model.operator_layers import (AddLayer, AttentionLayer, GeluLayer, LayerNormLayer, OperatorHardware,
                                         PatchesLayer, SelectTokenLayer)

GELU_TABLE = {"table": np.arange(-128, 128).astype(np.int8)}
EXP_TABLE = {"exp_table": np.full(256, 1 << 15, np.int32)}
NORM_ARRAYS = {"weight": np.ones(6, np.int16), "bias": np.zeros(6, np.int32)}


def gelu(hw=None, features=10):
    params = {"name": "g", "kind": "gelu", "features": features}
    return GeluLayer.from_json("t", {**params, "hw": hw} if hw is not None else params, GELU_TABLE)


def attention(hw, tokens=3, features=12, heads=2):
    return AttentionLayer.from_json("t", {"name": "a", "kind": "attention", "tokens": tokens, "features": features,
                                          "heads": heads, "score_mult": 1, "score_shift": 0, "out_mult": 1,
                                          "out_shift": 0, "hw": hw}, EXP_TABLE)


def test_defaults_fill_every_choice():
    assert gelu().hw == OperatorHardware(in_lanes=1, out_lanes=1, lanes=1, memory="rom")
    assert gelu({"lanes": 4}).hw == OperatorHardware(in_lanes=4, out_lanes=4, lanes=4, memory="rom")
    # attention: the largest divisor of head_dim up to 4 multipliers; streams one element a beat
    assert attention({}, features=12, heads=1).hw == OperatorHardware(1, 1, 4, "rom")
    assert attention({}, features=9, heads=1).hw == OperatorHardware(1, 1, 3, "rom")
    assert attention({}, features=32, heads=2).hw == OperatorHardware(1, 1, 4, "rom")
    patches = PatchesLayer.from_json("t", {"name": "p", "kind": "patches", "height": 4, "width": 4, "patch": 2}, {})
    assert patches.hw == OperatorHardware(1, 1, 1, "none")
    add = AddLayer.from_json("t", {"name": "r", "kind": "add", "features": 5, "inputs": ["input", "input"],
                                   "mult_a": 1, "mult_b": 1, "shift": 0, "hw": {"lanes": 2, "in_lanes": 10}}, {})
    assert add.hw == OperatorHardware(10, 2, 2, "none") and add.stream_in_features == 10


@pytest.mark.parametrize("make, hw, message", [
    (gelu, {"lanes": 11}, "hw.lanes = 11: must be <= 10"),
    (gelu, {"lanes": 0}, "hw.lanes = 0: must be >= 1"),
    (gelu, {"memory": "flash"}, "hw.memory = 'flash': must be one of 'rom', 'ram'"),
    (gelu, {"in_lanes": 11}, "hw.in_lanes = 11: must be <= 10"),
    (gelu, {"table_reads": 2}, "hw key = 'table_reads': unknown; known hw keys are in_lanes, out_lanes, lanes"),
    (gelu, [], "hw = \\[\\]: must be an object of hardware choices"),
    (attention, {"lanes": 4}, "hw.lanes = 4: must divide 6 \\(head_dim = features / heads\\)"),
])
def test_bad_choices_name_the_choice_the_value_and_the_rule(make, hw, message):
    with pytest.raises(ConfigError, match=message):
        make(hw)


def test_reordering_kinds_move_one_element_a_cycle_and_kinds_without_arrays_hold_none():
    params = {"name": "s", "kind": "select_token", "tokens": 3, "features": 4, "index": 1}
    with pytest.raises(ConfigError, match="hw.lanes = 2: a select_token layer moves one element a cycle"):
        SelectTokenLayer.from_json("t", {**params, "hw": {"lanes": 2}}, {})
    with pytest.raises(ConfigError, match="hw.memory = 'ram': a select_token layer has no arrays to hold"):
        SelectTokenLayer.from_json("t", {**params, "hw": {"memory": "ram"}}, {})
    norm = {"name": "n", "kind": "layernorm", "features": 6, "norm_bits": 7, "out_shift": 3}
    with pytest.raises(ConfigError, match="hw.lanes = 4: must divide 6 \\(features\\)"):
        LayerNormLayer.from_json("t", {**norm, "hw": {"lanes": 4}}, NORM_ARRAYS)


def test_overrides_apply_and_are_saved_as_given(tmp_path):
    layer = gelu({"lanes": 2})
    config = make_config([layer]).with_hw({"memory": "ram"})
    assert config.layers[0].hw == OperatorHardware(2, 2, 2, "ram")
    with pytest.raises(ConfigError, match="hw key = 'terms_per_cycle': unknown"):
        make_config([layer]).with_hw({"terms_per_cycle": 2})
    path = save_config(config, tmp_path / "g.json")
    assert json.loads(path.read_text())["layers"][0]["hw"] == {"lanes": 2, "memory": "ram"}
    assert load_config(path).layers[0].hw == config.layers[0].hw
    # hardware choices are not arithmetic: the config id stays
    assert load_config(path).config_id == make_config([gelu()]).config_id


def test_a_whole_model_override_goes_to_the_layers_that_have_the_choice():
    patches = PatchesLayer.from_json("t", {"name": "p", "kind": "patches", "height": 4, "width": 4, "patch": 2}, {})
    model = make_config([patches, gelu(features=16)])
    ram = model.with_hw({"memory": "ram", "lanes": 2})
    assert ram.layers[0].hw == patches.hw and ram.layers[0].hw_given == {}
    assert ram.layers[1].hw == OperatorHardware(2, 2, 2, "ram")
    with pytest.raises(ConfigError, match="hw key = 'table_reads': unknown; known hw keys are in_lanes, lanes, "
                                          "memory, out_lanes"):
        model.with_hw({"table_reads": 2})
    with pytest.raises(ConfigError, match="layer 'p': hw.memory = 'ram': a patches layer has no arrays to hold"):
        model.with_hw({"memory": "ram"}, ["p"])
