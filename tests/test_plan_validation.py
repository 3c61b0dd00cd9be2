"""Compression plans (model/vit/compression_plan.py) are validated at load like configs: the
file (model/json_files.py), every field's type and range, unknown fields, and rule
patterns against the tiny ViT's layer names. No torch model is built or trained here.

Each case edits a valid plan written by the test (not a bundled one, so the cases stay
put when the bundled plans change) and asserts that the message names the place, the
field, the value and the rule.
"""
import json
from dataclasses import fields

import pytest

from nomac.base.errors import ConfigError, NomacError
from nomac.model.vit.compression_plan import (SETTINGS, bundled_plans, load_plan, plan_from_dict,
                                              train_settings)
from nomac.model.vit.tiny_vit import ViTShape
from nomac.model.vit.training import TrainSettings

# The names the default tiny ViT gives its nn.Linear modules (model/vit/tiny_vit.py docstring):
# patch_embed, then qkv, proj, fc1, fc2 of blocks 0 and 1, then head.
VIT_LINEARS = ["patch_embed", "blocks.0.qkv", "blocks.0.proj", "blocks.0.fc1", "blocks.0.fc2",
               "blocks.1.qkv", "blocks.1.proj", "blocks.1.fc1", "blocks.1.fc2", "head"]


def base_plan() -> dict:
    return {"format": "nomac-plan/1", "name": "p", "description": "a test plan",
            "layers": [{"match": "blocks.*.qkv", "kind": "lut", "subvector": 2, "centroids": 16},
                       {"match": "blocks.*.proj", "kind": "shift", "variant": "PS", "weight_bits": 4},
                       {"match": "blocks.*", "kind": "butterfly", "style": "bulging", "radix": 2},
                       {"match": "*", "kind": "dense"}],
            "training": {"method": "finetune", "epochs": 3, "lr": 0.001, "distill": 0.5}}


def write_plan(folder, document) -> str:
    path = folder / "plan.json"
    path.write_text(json.dumps(document))
    return path


def rejection(path) -> str:
    with pytest.raises(NomacError) as caught:
        load_plan(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    return message


def test_the_base_plan_loads_with_every_option_filled_in(tmp_path):
    plan = load_plan(write_plan(tmp_path, base_plan()))
    assert [rule.kind for rule in plan.rules] == ["lut", "shift", "butterfly", "dense"]
    assert plan.rules[0].options == {"subvector": 2, "codebooks": None, "centroids": 16, "encoder": "l2",
                                     "learn": "tables", "input_gradient": "soft", "soft_distance": "encoder",
                                     "table_bits": 8}
    assert plan.rules[1].options == {"variant": "PS", "weight_bits": 4}
    assert plan.rules[2].options == {"style": "bulging", "radix": 2, "sweeps": 5}
    assert (plan.method, plan.settings.epochs, plan.settings.lr, plan.settings.distill) == ("finetune", 3, 0.001, 0.5)
    assert plan.kinds(VIT_LINEARS) == {"patch_embed": "dense", "head": "dense",
                                       **{f"blocks.{i}.{part}": kind for i in (0, 1) for part, kind in
                                          (("qkv", "lut"), ("proj", "shift"), ("fc1", "butterfly"),
                                           ("fc2", "butterfly"))}}


def test_every_bundled_plan_loads():
    plans = bundled_plans()
    assert len(plans) >= 15
    for name, path in plans.items():
        plan = load_plan(name)
        assert plan.name == name and plan.source == f"model/vit/plans/{path.name}"     # not the checkout's path


def test_the_settings_rules_cover_exactly_the_training_settings():
    assert sorted(SETTINGS) == sorted(f.name for f in fields(TrainSettings))


def test_the_default_layer_names_are_the_tiny_vits():
    assert ViTShape().linear_names() == VIT_LINEARS


def edit_rule(index, **changes):
    def edit(document):
        document["layers"][index].update(changes)
    return edit


def drop_option(index, key):
    def edit(document):
        del document["layers"][index][key]
    return edit


def training(**changes):
    def edit(document):
        document["training"].update(changes)
    return edit


def top(**changes):
    def edit(document):
        document.update(changes)
    return edit


L0, L1, L2 = "layers[0]", "layers[1]", "layers[2]"
BAD = [
    # training settings
    ("negative epochs", training(epochs=-1), ["training: epochs = -1", "must be >= 0"]),
    ("fractional epochs", training(epochs=1.5), ["training: epochs = 1.5", "must be an integer"]),
    ("boolean epochs", training(epochs=True), ["training: epochs = True", "must be an integer"]),
    ("too many epochs", training(epochs=10**7), ["training: epochs = 10000000", "must be <= 1000000"]),
    ("zero learning rate", training(lr=0), ["training: lr = 0", "must be a number > 0"]),
    ("negative learning rate", training(lr=-0.1), ["training: lr = -0.1", "must be a number > 0"]),
    ("learning rate as text", training(lr="0.001"), ["training: lr = '0.001'", "must be a number"]),
    ("boolean learning rate", training(lr=False), ["training: lr = False", "must be a number"]),
    ("distill above 1", training(distill=1.5), ["training: distill = 1.5", "must be a number >= 0 and <= 1"]),
    ("scale of 1", training(scale=1), ["training: scale = 1", "must be a number >= 0 and < 1"]),
    ("average of 1", training(average=1.0), ["training: average = 1.0", "must be a number >= 0 and < 1"]),
    ("zero temperature", training(temperature=0.0), ["training: temperature = 0.0", "must be a number > 0"]),
    ("zero batch", training(batch=0), ["training: batch = 0", "must be >= 1"]),
    ("negative rotation", training(rotate=-0.1), ["training: rotate = -0.1", "must be a number >= 0"]),
    ("unknown setting", training(epoch=3), ["training setting 'epoch': unknown", "epochs"]),
    ("unknown distillation weighting", training(distill_weighting="t2"),
     ["training: distill_weighting = 't2'", "must be one of 'hinton', 'published'"]),
    ("distillation weighting not a string", training(distill_weighting=0.8),
     ["training: distill_weighting = 0.8", "must be one of 'hinton', 'published'"]),
    ("published weighting without a teacher", training(distill=0, distill_weighting="published"),
     ["training: distill_weighting = 'published'", "needs distill > 0"]),
    ("negative reconstruction", training(reconstruction=-0.5), ["training: reconstruction = -0.5", "must be a number >= 0"]),
    ("reconstruction as text", training(reconstruction="1"), ["training: reconstruction = '1'", "must be a number"]),
    ("boolean reconstruction", training(reconstruction=True), ["training: reconstruction = True", "must be a number"]),
    ("reconstruction without a lut layer", lambda document: (document["layers"].pop(0),
                                                             document["training"].update(reconstruction=2)),
     ["training: reconstruction = 2", "needs a lut layer to reconstruct", "this plan has none"]),
    ("zero tau_anneal", training(tau_anneal=0), ["training: tau_anneal = 0", "must be a number > 0"]),
    ("tau_anneal as text", training(tau_anneal="10"), ["training: tau_anneal = '10'", "must be a number"]),
    ("tau_anneal without a lut layer", lambda document: (document["layers"].pop(0),
                                                         document["training"].update(tau_anneal=4)),
     ["training: tau_anneal = 4", "needs a lut layer with a distance encoder", "this plan has none"]),
    ("tau_anneal with only a tree encoder", lambda document: (document["layers"][0].update(encoder="tree"),
                                                              document["training"].update(tau_anneal=4)),
     ["training: tau_anneal = 4", "needs a lut layer with a distance encoder"]),
    ("unknown method", training(method="sgd"), ["training.method = 'sgd'", "must be one of none, finetune"]),
    ("training not an object", top(training=[1]), ["training = [1]", "must be an object"]),
    # layer rules and their options
    ("centroids not a power of two", edit_rule(0, centroids=12), [L0, "centroids = 12", "power of two in 2..256"]),
    ("unknown encoder", edit_rule(0, encoder="l3"), [L0, "encoder = 'l3'", "'l2', 'l1', 'tree'"]),
    ("unknown learn", edit_rule(0, learn="all"), [L0, "learn = 'all'", "'tables', 'weight', 'weight+tables'"]),
    ("linear input gradient with tables", edit_rule(0, input_gradient="linear"),
     [L0, "input_gradient = 'linear'", "needs learned weights"]),
    ("table entries too narrow", edit_rule(0, table_bits=1), [L0, "table_bits = 1", "must be >= 2"]),
    ("table entries too wide", edit_rule(0, table_bits=9), [L0, "table_bits = 9", "must be <= 8"]),
    ("unknown soft distance", edit_rule(0, soft_distance="cosine"),
     [L0, "soft_distance = 'cosine'", "'encoder', 'l2', 'l1'"]),
    ("soft distance with a tree encoder", edit_rule(0, encoder="tree", soft_distance="l1"),
     [L0, "soft_distance = 'l1'", "must be 'encoder' with encoder 'tree'"]),
    ("zero subvector", edit_rule(0, subvector=0), [L0, "subvector = 0", "must be >= 1"]),
    ("boolean subvector", edit_rule(0, subvector=True), [L0, "subvector = True", "must be an integer"]),
    ("subvector and codebooks", edit_rule(0, codebooks=16), [L0, "exactly one of \"subvector\" and \"codebooks\""]),
    ("neither subvector nor codebooks", drop_option(0, "subvector"), [L0, "exactly one of"]),
    ("weight_bits beyond 6", edit_rule(1, weight_bits=7), [L1, "weight_bits = 7", "must be <= 6"]),
    ("unknown shift variant", edit_rule(1, variant="X"), [L1, "variant = 'X'", "'Q', 'PS'"]),
    ("unknown butterfly style", edit_rule(2, style="zigzag"), [L2, "style = 'zigzag'", "'monotonic', 'bulging'"]),
    ("radix 1", edit_rule(2, radix=1), [L2, "radix = 1", "must be >= 2"]),
    ("negative sweeps", edit_rule(2, sweeps=-1), [L2, "sweeps = -1", "must be >= 0"]),
    ("unknown option", edit_rule(1, bits=4), [L1, "option 'bits': unknown for kind shift", "variant, weight_bits"]),
    ("unknown kind", edit_rule(0, kind="conv"), [L0, "kind = 'conv'", "must be one of dense, lut, shift, butterfly"]),
    ("pattern not a string", edit_rule(3, match=3), ["layers[3]: rule =", "must be an object with a \"match\""]),
    ("empty pattern", edit_rule(3, match=""), ["layers[3]: rule =", "\"match\" pattern"]),
    ("rule not an object", top(layers=["*"]), [L0, "rule = '*'", "must be an object"]),
    ("layers not a list", top(layers={"match": "*"}), ["layers = {'match': '*'}", "must be a list of rules"]),
    # a pattern that matches nothing would silently leave every layer dense
    ("pattern of no layer", edit_rule(0, match="block.*.qkv"),
     [L0, "match = 'block.*.qkv'", "matches no layer of the model", "its layers are " + ", ".join(VIT_LINEARS)]),
    ("block beyond the model's depth", edit_rule(2, match="blocks.2.*"),
     [L2, "match = 'blocks.2.*'", "matches no layer"]),
    # the budget
    ("budget not an object", top(budget=100), ["budget = 100", "must be an object such as"]),
    ("unknown budget", top(budget={"weight_bytes": 10}), ["budget: field = 'weight_bytes'", "unknown", "table_bytes"]),
    ("negative table budget", top(budget={"table_bytes": -1}), ["budget: table_bytes = -1", "must be >= 0"]),
    ("fractional table budget", top(budget={"table_bytes": 1.5}), ["budget: table_bytes = 1.5", "must be an integer"]),
    # the plan as a whole
    ("wrong format", top(format="nomac-plan/2"), ["format = 'nomac-plan/2'", "must be 'nomac-plan/1'"]),
    ("name not an identifier", top(name="1p"), ["name = '1p'", "must be an identifier"]),
    ("description not a string", top(description=3), ["description = 3", "must be a string"]),
    ("unknown top-level field", top(plan="x"), ["field = 'plan'", "unknown", "format, name, description"]),
]


@pytest.mark.parametrize("edit, parts", [pytest.param(e, p, id=i) for i, e, p in BAD])
def test_a_bad_plan_is_refused_naming_the_field_value_and_rule(tmp_path, edit, parts):
    document = base_plan()
    edit(document)
    message = rejection(write_plan(tmp_path, document))
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


@pytest.mark.parametrize("text, parts", [
    ('{"format": "nomac-plan/1", "name": "p", "training": {"lr": NaN}}', ["JSON value = 'NaN'", "is not JSON"]),
    ('{"format": "nomac-plan/1", "name": "p", "training": {"lr": 1e999}}', ["JSON number = '1e999'", "must be finite"]),
    ('{"format": "nomac-plan/1", "name": "p", "name": "q"}', ["JSON key = 'name'", "appears twice"]),
    ('{"format": "nomac-plan/1", "name": "p", "training": {"epochs": 1' + "0" * 200 + "}}",
     ["JSON number", "may have at most 100 digits"]),
    ("[" * 50_000, ["JSON nesting", "may be at most 32 levels deep"]),
    ('{"format": "nomac-plan/1", "name": "p",', ["JSON line 1 column 40", "must be valid JSON"]),
])
def test_a_malformed_plan_file_is_refused_like_a_config(tmp_path, text, parts):
    path = tmp_path / "plan.json"
    path.write_text(text)
    message = rejection(path)
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


def test_a_plan_not_in_utf8_and_a_missing_plan(tmp_path):
    path = tmp_path / "plan.json"
    path.write_bytes(b'{"name": "\xff"}')
    assert "byte 10 = b'\\xff': a plan file must be UTF-8 text" in rejection(path)
    message = rejection(tmp_path / "nothing.json")
    assert "cannot be read (No such file or directory); bundled plans are" in message and "lut_train" in message


def test_patterns_are_checked_against_the_names_given():
    """A deeper model has more blocks; its names make "blocks.3.fc1" a valid pattern."""
    document = {**base_plan(), "layers": [{"match": "blocks.3.fc1", "kind": "shift"}]}
    with pytest.raises(ConfigError, match=r"layers\[0\]: match = 'blocks.3.fc1': matches no layer"):
        plan_from_dict(document, "plan.json")
    plan = plan_from_dict(document, "plan.json", ViTShape(depth=4).linear_names())
    assert plan.rule_for("blocks.3.fc1").kind == "shift" and plan.rule_for("blocks.2.fc1").kind == "dense"


def test_epoch_overrides_follow_the_plan_rules(tmp_path):
    plan = load_plan(write_plan(tmp_path, base_plan()))
    assert plan.with_epochs(7).settings == TrainSettings(epochs=7, lr=0.001, distill=0.5)
    assert plan.with_epochs(0).trains is False
    for value, rule in ((-1, "must be >= 0"), (2.5, "must be an integer"), (True, "must be an integer")):
        with pytest.raises(ConfigError) as caught:
            plan.with_epochs(value)
        assert str(caught.value) == f"--epochs: epochs = {value!r}: {rule}"


def test_float_epoch_overrides_keep_the_other_settings():
    teacher = TrainSettings(epochs=400, lr=0.004)
    assert train_settings({"epochs": 12}, "--float-epochs", teacher) == TrainSettings(epochs=12, lr=0.004)
    with pytest.raises(ConfigError, match=r"^--float-epochs: epochs = -2: must be >= 0$"):
        train_settings({"epochs": -2}, "--float-epochs", teacher)
