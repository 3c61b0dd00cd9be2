"""The two training-loss options of issue 16 (model/vit/training.py): the distillation
weighting (`distill_weighting`) and the lookup layers' reconstruction loss
(`reconstruction`, LayerReconstruction), each against a hand computation, and their
defaults leaving every existing plan's loss as it was."""
import math
from dataclasses import asdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nomac.base.errors import NomacError
from nomac.model.layers.lut_training import TrainableLUTLinear
from nomac.model.vit.compression_plan import bundled_plans, load_plan
from nomac.model.vit.digits_data import load_dataset
from nomac.model.vit.tiny_vit import TinyViT
from nomac.model.vit.training import (DISTILL_WEIGHTINGS, LayerReconstruction, TrainSettings, distillation_loss,
                                      train)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    torch.set_num_threads(1)


# ---- distillation weighting -------------------------------------------------------------------

def test_distillation_weightings_against_a_hand_computation():
    # teacher logits (2 ln 3, 0) at T = 2: soft labels (3/4, 1/4); the student's (0, 0): (1/2, 1/2)
    teacher = torch.tensor([[2 * math.log(3.0), 0.0]], dtype=torch.float64)
    student = torch.zeros(1, 2, dtype=torch.float64)
    ce = torch.tensor(1.25, dtype=torch.float64)
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    hinton = distillation_loss(ce, student, teacher, TrainSettings(distill=0.5, temperature=2.0))
    assert float(hinton) == pytest.approx(0.5 * 1.25 + 0.5 * 4 * kl, rel=1e-12)
    published = distillation_loss(ce, student, teacher, TrainSettings(distill=0.5, temperature=2.0,
                                                                      distill_weighting="published"))
    assert float(published) == pytest.approx(0.2 * 1.25 + 0.8 * kl, rel=1e-12)
    # "published" does not read distill's value (only that it turns the teacher on)
    assert float(distillation_loss(ce, student, teacher, TrainSettings(distill=0.9, distill_weighting="published"))) \
        == float(published)


def test_the_default_weighting_is_the_loss_every_plan_had_bit_for_bit():
    assert TrainSettings().distill_weighting == "hinton" and DISTILL_WEIGHTINGS == ("hinton", "published")
    generator = torch.Generator().manual_seed(0)
    logits, teacher = torch.randn(128, 10, generator=generator), torch.randn(128, 10, generator=generator)
    ce = torch.rand((), generator=generator)
    settings = TrainSettings(distill=0.5)
    # the expression training.py used before the option (the one the bundled results were made with)
    target = F.softmax(teacher / settings.temperature, dim=-1)
    soft = F.kl_div(F.log_softmax(logits / settings.temperature, dim=-1), target, reduction="batchmean")
    before = (1 - settings.distill) * ce + settings.distill * settings.temperature ** 2 * soft
    assert torch.equal(distillation_loss(ce, logits, teacher, settings), before)


def test_bundled_plans_keep_their_settings_and_the_two_new_plans_change_one_field_each():
    base = asdict(load_plan("lut_train_v1_k8").settings)
    assert base["distill_weighting"] == "hinton" and base["reconstruction"] == 0.0
    for name in bundled_plans():
        if not name.endswith(("_kd28", "_recon")):     # the K = 16 pair: test_lut_table_bits.DERIVED_PLANS
            settings = load_plan(name).settings
            assert (settings.distill_weighting, settings.reconstruction) == ("hinton", 0.0), name
    kd28 = load_plan("lut_train_v1_k8_kd28")
    assert asdict(kd28.settings) == {**base, "distill_weighting": "published"}
    recon = load_plan("lut_train_v1_k8_recon")
    assert asdict(recon.settings) == {**base, "reconstruction": recon.settings.reconstruction}
    assert recon.settings.reconstruction > 0
    for plan in (kd28, recon):
        assert plan.rules == load_plan("lut_train_v1_k8").rules and plan.method == "differentiable"


# ---- layer-wise reconstruction ------------------------------------------------------------------

def two_layers(seed=0):
    """A float teacher (two nn.Linear) and its student (each a k-means TrainableLUTLinear of the
    teacher's layer), with the same module names "0" and "1"."""
    torch.manual_seed(seed)
    teacher = nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 3)).double()
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(64, 4))
    hidden = teacher[0](torch.as_tensor(x)).detach().numpy()
    student = nn.Sequential(
        TrainableLUTLinear.from_linear(teacher[0], x, codebooks=2, centroids=4, seed=seed, iterations=10,
                                       learn="weight+tables", input_gradient="linear"),
        TrainableLUTLinear.from_linear(teacher[1], hidden, codebooks=3, centroids=4, seed=seed, iterations=10))
    return teacher, student, torch.as_tensor(rng.normal(size=(5, 4)))


def hard_lut(layer: TrainableLUTLinear, x: np.ndarray) -> np.ndarray:
    """The lookup layer by hand: nearest prototype (squared L2, first minimum) per codebook,
    the sum of its table rows, plus the bias."""
    P = layer.prototypes.detach().numpy()                          # [C, K, V]
    T = layer.current_tables().detach().numpy()                    # [C, K, M]
    sub = x.reshape(len(x), layer.codebooks, layer.subvector_len)
    nearest = ((sub[:, :, None, :] - P[None]) ** 2).sum(-1).argmin(-1)     # [n, C]
    return T[np.arange(layer.codebooks)[None], nearest].sum(1) + layer.bias.detach().numpy()


def test_reconstruction_is_each_lookup_layers_squared_error_against_the_teachers_linear_on_its_input():
    teacher, student, x = two_layers()
    student.train()
    W0, b0 = teacher[0].weight.detach().numpy(), teacher[0].bias.detach().numpy()
    W1, b1 = teacher[1].weight.detach().numpy(), teacher[1].bias.detach().numpy()
    h = hard_lut(student[0], x.numpy())                            # the student's input to layer 1
    y = hard_lut(student[1], h)
    expected = (np.mean((h - (x.numpy() @ W0.T + b0)) ** 2)        # layer 0 on the image input
                + np.mean((y - (h @ W1.T + b1)) ** 2))             # layer 1 on the student's own hidden
    with LayerReconstruction(student, teacher) as reconstruction:
        assert list(reconstruction.pairs) == ["0", "1"]
        out = student(x)
        assert np.allclose(out.detach().numpy(), y, rtol=0, atol=1e-12)
        loss = reconstruction.loss()
        assert float(loss.detach()) == pytest.approx(expected, rel=1e-10)
        assert expected > 0
        # the loss trains the student's parameters, never the teacher's
        loss.backward()
        assert student[0].weight.grad is not None and student[1].tables.grad is not None
        assert all(p.grad is None for p in teacher.parameters())
        # the terms are cleared by loss(); eval-mode passes (validation) add none
        student.eval()
        student(x)
        with pytest.raises(NomacError, match="no lookup layer ran in training mode"):
            reconstruction.loss()
    assert all(not layer._forward_hooks for layer in student)      # hooks removed on leaving


def test_reconstruction_needs_a_lookup_layer_and_the_teachers_linear():
    teacher, student, _ = two_layers()
    with pytest.raises(NomacError, match="no lookup \\(lut\\) layer"):
        LayerReconstruction(teacher, teacher)
    with pytest.raises(NomacError, match="the teacher's 0 is a Sequential"):
        LayerReconstruction(student, nn.Sequential(nn.Sequential(), nn.Linear(6, 3)))


QUICK = TrainSettings(epochs=1, batch=256, lr=1e-3, distill=0.5)


def test_reconstruction_zero_trains_exactly_as_before_and_a_weight_changes_the_run():
    digits = load_dataset("digits")
    torch.manual_seed(0)
    teacher = TinyViT()
    teacher.eval()

    def student():
        torch.manual_seed(0)
        model = TinyViT()
        rows = np.random.default_rng(0).normal(size=(256, 32)).astype(np.float32)
        model.blocks[0].set_submodule("fc1", TrainableLUTLinear.from_linear(
            model.blocks[0].fc1, rows, codebooks=32, centroids=4, seed=0, iterations=5, learn="weight+tables",
            input_gradient="linear"))
        return model

    runs = {}
    for name, settings in (("default", QUICK), ("zero", TrainSettings(**{**asdict(QUICK), "reconstruction": 0.0})),
                           ("on", TrainSettings(**{**asdict(QUICK), "reconstruction": 1.0}))):
        model = student()
        runs[name] = (train(model, digits, settings, seed=0, teacher=teacher, progress=False), model)
        assert not model.blocks[0].fc1._forward_hooks
    (default, a), (zero, b), (on, c) = runs["default"], runs["zero"], runs["on"]
    assert default["loss"] == zero["loss"]
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert on["loss"] != default["loss"]
    assert not torch.equal(c.blocks[0].fc1.table_correction, a.blocks[0].fc1.table_correction)
    with pytest.raises(NomacError, match="reconstruction = 1.0: needs the float teacher"):
        train(student(), digits, TrainSettings(**{**asdict(QUICK), "reconstruction": 1.0}), seed=0, progress=False)
    with pytest.raises(NomacError, match="distill_weighting = 'published': needs distill > 0"):
        train(student(), digits, TrainSettings(epochs=1, distill_weighting="published"), seed=0, teacher=teacher,
              progress=False)
