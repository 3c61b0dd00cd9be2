"""The soft-assignment options of issue 16 (model/layers/lut_training.py, model/vit/training.py):
`soft_distance` (the soft assignment on L1 or L2 distances whatever the encoder's) and the
temperature schedule `tau_anneal`, each against a hand computation, neither touching the hard
forward pass the integer model computes, and their defaults leaving every run as it was."""
from dataclasses import asdict

import numpy as np
import pytest
import torch
from torch import nn

from nomac.base.errors import NomacError
from nomac.model.layers.lut_training import TrainableLUTLinear
from nomac.model.vit.compression_plan import bundled_plans, load_plan
from nomac.model.vit.digits_data import load_dataset
from nomac.model.vit.tiny_vit import TinyViT
from nomac.model.vit.training import TrainSettings, tau_schedule, train


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    torch.set_num_threads(1)


def layer(soft_distance="encoder", encoder="l2", seed=0):
    torch.manual_seed(seed)
    linear = nn.Linear(4, 3).double()
    x = np.random.default_rng(seed).normal(size=(64, 4))
    return TrainableLUTLinear.from_linear(linear, x, codebooks=2, centroids=4, encoder=encoder, seed=seed,
                                          iterations=10, learn="weight", soft_distance=soft_distance)


def soft_by_hand(lut: TrainableLUTLinear, x: np.ndarray, metric: str, tau: float) -> np.ndarray:
    """softmax_k(-d tau) per codebook, d squared L2 or L1, written out."""
    P = lut.prototypes.detach().numpy()
    sub = x.reshape(len(x), lut.codebooks, lut.subvector_len)[:, :, None, :] - P[None]
    d = (sub ** 2).sum(-1) if metric == "l2" else np.abs(sub).sum(-1)
    e = np.exp(-d * tau - (-d * tau).max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_the_soft_assignment_softens_the_named_distance_and_the_hard_one_stays_the_encoders():
    x = torch.as_tensor(np.random.default_rng(1).normal(size=(7, 4)))
    for encoder, soft_distance, metric in (("l2", "encoder", "l2"), ("l2", "l1", "l1"), ("l1", "l2", "l2"),
                                          ("l1", "encoder", "l1")):
        lut = layer(soft_distance, encoder)
        assert lut.soft_metric == metric
        # tau starts at 1 / the median nearest distance of the soft metric (calibration rows)
        rows = torch.as_tensor(np.random.default_rng(0).normal(size=(64, 4)))
        nearest = lut.distances(rows, metric=metric).min(-1).values.detach()
        assert float(lut.tau.detach()) == pytest.approx(1 / float(nearest.median()), rel=1e-12)
        lut.train()
        a = lut.assignment(x)
        hard_metric = lut.distances(x).argmin(-1)                    # the encoder's distance, first minimum
        # (hard + soft) - soft in float: the one-hot to rounding
        assert torch.allclose(a.detach(), nn.functional.one_hot(hard_metric, 4).double(), rtol=0, atol=1e-15)
        # the gradient is the soft assignment's: d(sum a * g)/dx equals that of softmax(-d_soft tau)
        g = torch.as_tensor(np.random.default_rng(2).normal(size=a.shape))
        x1 = x.clone().requires_grad_(True)
        (lut.assignment(x1) * g).sum().backward()
        x2 = x.clone().requires_grad_(True)
        soft = torch.softmax(-lut.distances(x2, metric=metric) * lut.tau.detach(), dim=-1)
        (soft * g).sum().backward()
        assert torch.allclose(x1.grad, x2.grad, rtol=1e-10, atol=1e-12)
        expected = soft_by_hand(lut, x.numpy(), metric, float(lut.tau.detach()))
        assert np.allclose(lut.soft_assignment(lut.distances(x, metric=metric)).detach().numpy(), expected,
                           rtol=1e-10, atol=1e-12)


def test_the_schedules_factor_scales_the_inverse_temperature_and_nothing_else():
    lut = layer()
    x = torch.as_tensor(np.random.default_rng(3).normal(size=(5, 4)))
    d = lut.distances(x)
    base = lut.soft_assignment(d).detach().numpy()
    lut.tau_scale = 4.0
    scaled = lut.soft_assignment(d).detach().numpy()
    assert np.allclose(scaled, soft_by_hand(lut, x.numpy(), "l2", 4 * float(lut.tau.detach())), rtol=1e-10, atol=1e-12)
    assert not np.allclose(base, scaled)
    lut.train()
    hard = lut.assignment(x).detach()
    lut.tau_scale = 1.0
    assert torch.allclose(lut.assignment(x).detach(), hard, rtol=0, atol=1e-15)   # the forward value is the hard one


def test_the_schedule_is_geometric_from_one_to_tau_anneal():
    assert tau_schedule(10.0, 0, 60) == 1.0
    assert tau_schedule(10.0, 59, 60) == pytest.approx(10.0, rel=1e-15)
    assert tau_schedule(10.0, 59, 60) == 10.0 ** (59 / 59)
    factors = [tau_schedule(8.0, e, 4) for e in range(4)]
    assert factors == [8.0 ** (e / 3) for e in range(4)] and factors[-1] == 8.0
    assert all(b / a == pytest.approx(2.0, rel=1e-12) for a, b in zip(factors, factors[1:]))
    assert tau_schedule(5.0, 0, 1) == 1.0                              # a one-epoch run stays at its tau
    assert TrainSettings().tau_anneal == 1.0


QUICK = TrainSettings(epochs=2, batch=256, lr=1e-3)


def quick_student(soft_distance="encoder"):
    torch.manual_seed(0)
    model = TinyViT()
    rows = np.random.default_rng(0).normal(size=(256, 32)).astype(np.float32)
    model.blocks[0].set_submodule("fc1", TrainableLUTLinear.from_linear(
        model.blocks[0].fc1, rows, codebooks=32, centroids=4, seed=0, iterations=5, learn="weight",
        soft_distance=soft_distance))
    return model


def test_defaults_train_exactly_as_before_and_each_option_changes_the_run():
    digits = load_dataset("digits")
    runs = {}
    for name, settings, soft in (("default", QUICK, "encoder"),
                                 ("explicit", TrainSettings(**{**asdict(QUICK), "tau_anneal": 1.0}), "encoder"),
                                 ("anneal", TrainSettings(**{**asdict(QUICK), "tau_anneal": 10.0}), "encoder"),
                                 ("l1", QUICK, "l1")):
        model = quick_student(soft)
        runs[name] = (train(model, digits, settings, seed=0, progress=False), model)
    (default, a), (explicit, b) = runs["default"], runs["explicit"]
    assert default["loss"] == explicit["loss"]
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert runs["anneal"][1].blocks[0].fc1.tau_scale == 10.0           # the last epoch's factor
    for name in ("anneal", "l1"):
        assert runs[name][0]["loss"] != default["loss"], name
        assert not torch.equal(runs[name][1].blocks[0].fc1.prototypes, a.blocks[0].fc1.prototypes), name
    with pytest.raises(NomacError, match="tau_anneal = 4.0: the model has no lookup layer"):
        torch.manual_seed(0)
        train(TinyViT(), digits, TrainSettings(epochs=1, tau_anneal=4.0), seed=0, progress=False)


def test_the_option_plans_change_one_field_of_lut_train_v1_k8_and_lutnn_is_its_recipe():
    base = load_plan("lut_train_v1_k8")
    for name in bundled_plans():
        plan = load_plan(name)
        if name != "lut_train_v1_k8_anneal":
            assert plan.settings.tau_anneal == 1.0, name
        if name != "lut_train_v1_k8_l1soft":
            assert all(rule.options.get("soft_distance", "encoder") == "encoder" for rule in plan.rules), name
    anneal, l1soft, lutnn = (load_plan(n) for n in ("lut_train_v1_k8_anneal", "lut_train_v1_k8_l1soft",
                                                    "lut_lutnn_v1_k8"))
    assert asdict(anneal.settings) == {**asdict(base.settings), "tau_anneal": 10.0} and anneal.rules == base.rules
    assert l1soft.settings == base.settings
    assert l1soft.rules[0].options == {**base.rules[0].options, "soft_distance": "l1"}
    assert l1soft.rules[1:] == base.rules[1:]
    # LUT-NN: learned prototypes and weights (no table correction), soft input gradient, learned
    # temperature, no weight averaging; the layers and everything else as lut_train_v1_k8
    assert lutnn.rules[0].options == {**base.rules[0].options, "learn": "weight", "input_gradient": "soft"}
    assert asdict(lutnn.settings) == {**asdict(base.settings), "average": 0.0}
