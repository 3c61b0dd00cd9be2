"""DeButLinear: sparse forward, ALS initialisation, equalization and integer export."""
import numpy as np
import pytest
import torch
from torch import nn

from nomac.base.errors import ConfigError
from nomac.model.butterfly_chains import propose_chain
from nomac.model.butterfly_golden import butterfly_forward
from nomac.model.butterfly_spec import SparseChainWarning, support_mask
from nomac.model.layers.activations import quantize_activations
from nomac.model.layers.butterfly_linear import DeButLinear, als_fit, equalize


def seeded_linear(in_features, out_features, seed=0):
    torch.manual_seed(seed)
    return nn.Linear(in_features, out_features).double()


def test_forward_is_the_product_of_the_sparse_factors():
    torch.manual_seed(1)
    chain = propose_chain(12, 8, "bulging")
    debut = DeButLinear(8, 12, chain).double()
    x = torch.randn(5, 3, 8, dtype=torch.float64)
    dense = torch.eye(8, dtype=torch.float64)
    for k, shape in enumerate(chain):
        factor = debut.factor_matrix(k)
        assert torch.equal(factor != 0, torch.from_numpy(support_mask(shape)))   # randn weights: no zeros
        dense = factor @ dense
    assert torch.allclose(debut(x), x @ dense.T + debut.bias)
    assert torch.allclose(debut.dense_weight(), dense)


def test_forward_gathers_and_never_builds_a_dense_factor(monkeypatch):
    debut = DeButLinear(16, 16, propose_chain(16, 16))
    monkeypatch.setattr(DeButLinear, "factor_matrix", lambda *a: pytest.fail("dense factor built"))
    debut(torch.randn(4, 16)).sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in debut.factors)


def test_counts_against_the_dense_layer():
    debut = DeButLinear(16, 16, propose_chain(16, 16))
    assert debut.multiply_count() == 4 * 16 * 2 and debut.parameter_count() == 128 + 16


@pytest.mark.parametrize("style", ["monotonic", "bulging"])
def test_als_error_falls_monotonically_on_a_seeded_random_matrix(style):
    weight = np.random.default_rng(0).standard_normal((32, 32))
    _, errors = als_fit(weight, propose_chain(32, 32, style), 6, rng=np.random.default_rng(1))
    assert len(errors) == 6
    assert all(later <= earlier * (1 + 1e-12) for earlier, later in zip(errors, errors[1:])), errors
    assert errors[-1] < errors[0] < 1


def test_als_recovers_a_weight_that_is_a_chain_product():
    chain = propose_chain(16, 16, "monotonic")
    target = DeButLinear(16, 16, chain, bias=False).double()
    weight = target.dense_weight().numpy()
    _, errors = als_fit(weight, chain, 12, rng=np.random.default_rng(3))
    assert errors[-1] < 1e-6


def test_from_linear_keeps_errors_bias_and_a_calibrated_objective():
    linear = seeded_linear(16, 8)
    chain = propose_chain(8, 16)
    debut = DeButLinear.from_linear(linear, chain, sweeps=3)
    assert len(debut.als_errors) == 3
    weight = linear.weight.detach().numpy()
    relative = np.linalg.norm(weight - debut.dense_weight().numpy()) / np.linalg.norm(weight)
    assert relative == pytest.approx(debut.als_errors[-1], rel=1e-9)
    assert torch.equal(debut.bias.detach(), linear.bias.detach())
    x = torch.randn(64, 16, dtype=torch.float64)
    calibrated = DeButLinear.from_linear(linear, chain, sweeps=3, calibration=x)
    with torch.no_grad():
        on_outputs = torch.linalg.norm((linear.weight - calibrated.dense_weight()) @ x.T) / \
            torch.linalg.norm(linear.weight @ x.T)
    assert float(on_outputs) == pytest.approx(calibrated.als_errors[-1], rel=1e-9)


def test_equalize_keeps_the_product_and_balances_ranges():
    chain = propose_chain(16, 16)
    rng = np.random.default_rng(0)
    values = [rng.standard_normal((p, s)) * 10.0 ** k for k, (p, q, r, s, t) in enumerate(chain)]
    balanced = equalize(values, chain)

    def product(vals):
        debut = DeButLinear(16, 16, chain, bias=False).double()
        with torch.no_grad():
            for parameter, value in zip(debut.factors, vals):
                parameter.copy_(torch.from_numpy(value))
        return debut.dense_weight().numpy()

    assert np.allclose(product(balanced), product(values))
    peaks = [np.abs(v).max() for v in balanced]
    assert max(peaks) / min(peaks) < 10 < max(np.abs(v).max() for v in values) / min(np.abs(v).max() for v in values)


@pytest.mark.parametrize("weights", ["int8", "shift", ["int8", "shift", "shift", "int8"]])
def test_export_gives_a_layer_whose_golden_tracks_the_float_chain(weights):
    linear = seeded_linear(16, 16, seed=2)
    debut = DeButLinear.from_linear(linear, propose_chain(16, 16), sweeps=3)
    x = torch.rand(256, 16, dtype=torch.float64) * 2 - 1
    layer = debut.export("fc", input_scale=1 / 127, calibration=x, weights=weights, hw={"lanes": 2},
                         description="test")
    kinds = weights if isinstance(weights, list) else [weights] * 4
    assert [f.weights for f in layer.factors] == kinds
    assert layer.extra["input_scale"] == 1 / 127 and layer.extra["description"] == "test"
    x_int = quantize_activations(x, 1 / 127)
    y = butterfly_forward(layer, x_int).astype(np.float64) * layer.extra["output_scale"]
    with torch.no_grad():
        reference = debut(torch.from_numpy(x_int * (1 / 127))).numpy()
    error = np.linalg.norm(y - reference) / np.linalg.norm(reference)
    assert error < (0.05 if weights == "int8" else 0.6), error
    for factor in layer.factors:
        if factor.weights == "shift":
            assert (factor.shift_min, factor.shift_max) == (-7, 0)
    assert (layer.factors[0].bias == 0).all()         # the float bias goes to the last factor only


def test_export_rules():
    debut = DeButLinear(16, 16, propose_chain(16, 16))
    with pytest.raises(ConfigError, match="calibration = None: needed"):
        debut.export("fc", 0.01)
    with pytest.raises(ConfigError, match=r"weights = \['int8'\]: must be one choice or a list of 4"):
        debut.export("fc", 0.01, calibration=torch.zeros(1, 16), weights=["int8"])
    with pytest.raises(ConfigError, match="input_scale = -1: must be a finite number > 0"):
        debut.export("fc", -1, calibration=torch.zeros(1, 16))


def test_sparse_chain_warns_or_is_refused():
    chain = [(64, 64, 2, 2, 1), (128, 64, 4, 2, 2), (128, 128, 2, 2, 8), (128, 128, 2, 2, 16)]
    with pytest.warns(SparseChainWarning):
        DeButLinear(64, 128, chain)
    with pytest.raises(ConfigError, match="is not dense"):
        DeButLinear(64, 128, chain, density="refuse")
