"""Progressive replacement (issue 16; model/vit/training.py `progressive`): the lookup layers
replace their float Linear block by block. Stages and their epochs by hand, the float
Linear a bypassed layer computes, a run that switches, and the plan's checks."""
from dataclasses import asdict

import numpy as np
import pytest
import torch
from torch import nn

from nomac.base.errors import ConfigError, NomacError
from nomac.model.layers.lut_training import TrainableLUTLinear
from nomac.model.vit.compression_plan import load_plan, plan_from_dict
from nomac.model.vit.digits_data import load_dataset
from nomac.model.vit.tiny_vit import TinyViT
from nomac.model.vit.training import TrainSettings, replacement_stages, stage_at, train


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    torch.set_num_threads(1)


def lut(linear: nn.Linear, learn="weight") -> TrainableLUTLinear:
    rows = np.random.default_rng(0).normal(size=(256, linear.in_features)).astype(np.float32)
    return TrainableLUTLinear.from_linear(linear, rows, codebooks=linear.in_features, centroids=4, seed=0,
                                          iterations=5, learn=learn)


def student(names=("blocks.0.fc1", "blocks.1.fc1", "head", "patch_embed"), learn="weight") -> TinyViT:
    torch.manual_seed(0)
    model = TinyViT()
    for name in names:
        model.set_submodule(name, lut(model.get_submodule(name), learn))
    return model


def test_block_i_is_stage_i_the_patch_embedding_the_first_and_the_head_the_last():
    model = student()
    stages = {name: replacement_stages(model)[model.get_submodule(name)]
              for name in ("blocks.0.fc1", "blocks.1.fc1", "head", "patch_embed")}
    assert stages == {"blocks.0.fc1": 0, "blocks.1.fc1": 1, "head": 1, "patch_embed": 0}
    # 60 epochs over 2 blocks: stage 0 for epochs 0-29, stage 1 for 30-59; 7 over 3: 0-2, 3-4, 5-6
    assert [stage_at(e, 60, 2) for e in (0, 29, 30, 59)] == [0, 0, 1, 1]
    assert [stage_at(e, 7, 3) for e in range(7)] == [0, 0, 0, 1, 1, 2, 2]


def test_a_bypassed_layer_computes_its_float_linear():
    torch.manual_seed(1)
    linear = nn.Linear(4, 3)
    layer = lut(linear, "weight+tables")
    x = torch.randn(5, 4)
    layer.bypass = True
    np.testing.assert_array_equal(layer(x).detach().numpy(), (x @ linear.weight.t() + linear.bias).detach().numpy())
    layer.bypass = False            # the lookups: not the float product
    assert not torch.allclose(layer(x), x @ linear.weight.t() + linear.bias)


def test_a_progressive_run_replaces_block_1_at_the_half_and_ends_with_every_lookup_layer():
    digits = load_dataset("digits")
    seen = []                       # per forward pass in training: which fc1 layers ran their lookups
    model = student(("blocks.0.fc1", "blocks.1.fc1"))
    for name in ("blocks.0.fc1", "blocks.1.fc1"):
        module = model.get_submodule(name)
        module.register_forward_hook(lambda m, i, o, name=name: seen.append((name, m.bypass)) if m.training else None)
    settings = TrainSettings(epochs=2, batch=1024, lr=1e-3, progressive=True)
    history = train(model, digits, settings, seed=0, progress=False)
    steps = -(-len(digits.float32("train")) // settings.batch)
    assert seen == [("blocks.0.fc1", False), ("blocks.1.fc1", True)] * steps + \
        [("blocks.0.fc1", False), ("blocks.1.fc1", False)] * steps
    assert not any(m.bypass for m in replacement_stages(model))
    plain = student(("blocks.0.fc1", "blocks.1.fc1"))
    assert train(plain, digits, TrainSettings(epochs=2, batch=1024, lr=1e-3), seed=0, progress=False)["loss"] \
        != history["loss"]
    with pytest.raises(NomacError, match="progressive = True: needs lookup layers that learn their weights"):
        train(student(("blocks.0.fc1",), learn="tables"), digits, settings, seed=0, progress=False)


def test_the_plan_option_is_checked_and_changes_one_field_of_lut_train_v1_k8():
    base, progressive = load_plan("lut_train_v1_k8"), load_plan("lut_train_v1_k8_progressive")
    assert asdict(progressive.settings) == {**asdict(base.settings), "progressive": True}
    assert progressive.rules == base.rules and base.settings.progressive is False
    document = {"format": "nomac-plan/1", "name": "p", "layers": [{"match": "blocks.*", "kind": "lut",
                                                                      "subvector": 1, "centroids": 8}],
                "training": {"method": "differentiable", "progressive": True}}
    with pytest.raises(ConfigError, match=r"training: progressive = True: needs lut layers that learn their "
                                          r"weights .* layers\[0\] learns only its tables"):
        plan_from_dict(document)
    document["training"]["progressive"] = 1
    with pytest.raises(ConfigError, match="training: progressive = 1: must be true or false"):
        plan_from_dict(document)
