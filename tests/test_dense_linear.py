"""export_dense: a trained nn.Linear as an int8 `dense` layer (the baseline), and its bound.

Weights and bias are checked on a hand-built layer; the export's promise is checked as
a bound, as for the shift layers: the integer layer on int8 inputs differs from the
float layer with the dequantized weights only by the rounding of the activations
(and of the bias).
"""
import numpy as np
import pytest
import torch
from torch import nn

from nomac.base.errors import ConfigError
from nomac.model.config import make_config
from nomac.model.golden import run_golden
from nomac.model.layers.activations import activation_scale, quantize_activations
from nomac.model.layers.dense_linear import export_dense
from trained_linear import trained_linear


def test_weights_bias_and_out_shift_of_a_hand_built_layer():
    linear = nn.Linear(3, 2).double()
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[0.5, -1.27, 0.0], [0.004, 0.005, -0.635]], dtype=torch.float64))
        linear.bias.copy_(torch.tensor([0.1, -0.2], dtype=torch.float64))
    layer = export_dense(linear, "fc", input_scale=0.5, output_scale=0.04, hw={"lanes": 2})
    # s_w = 1.27 / 127 = 0.01: 0.5 -> 50, -1.27 -> -127, 0.004 -> 0.4 -> 0, 0.005 -> 0.5 -> 1 (half up),
    # -0.635 -> -63.5 -> -63 (half up)
    assert layer.weights.tolist() == [[50, -127, 0], [0, 1, -63]]
    # u = 0.5 * 0.01 = 0.005: bias 0.1 -> 20, -0.2 -> -40; smallest s with 0.005 * 2^s >= 0.04: 3
    assert layer.bias.tolist() == [20, -40]
    assert layer.out_shift == 3
    assert layer.extra["input_scale"] == 0.5 and layer.extra["output_scale"] == pytest.approx(0.04, rel=1e-12)
    assert layer.hw.lanes == 2 and layer.kind == "dense"


def test_out_shift_from_calibration_and_errors():
    linear = nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        linear.weight.fill_(2.0)                  # s_w = 2/127: int8 weight 127
    # x_int = 2 (x = 0.02, input_scale 0.01): acc = 254 -> s = 1 gives 127; x_int 1 -> 127 -> s = 0
    assert export_dense(linear, "fc", 0.01, calibration=np.array([[0.02]])).out_shift == 1
    assert export_dense(linear, "fc", 0.01, calibration=np.array([[0.01]])).out_shift == 0
    with pytest.raises(ConfigError, match="output_scale.*None.*give output_scale or calibration"):
        export_dense(linear, "fc", 0.01)
    with pytest.raises(ConfigError, match="input_scale.*= -1.*finite number > 0"):
        export_dense(linear, "fc", -1, output_scale=1.0)
    zero = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        zero.weight.zero_()
    assert export_dense(zero, "z", 1.0, output_scale=1.0).weights.tolist() == [[0, 0], [0, 0]]


def test_integer_layer_matches_the_dequantized_float_layer_up_to_activation_rounding():
    linear, x = trained_linear()
    input_scale = activation_scale(x)
    layer = export_dense(linear, "fc", input_scale, calibration=x, output="acc")
    weight = linear.weight.detach().numpy()
    s_w = np.abs(weight).max() / 127
    dequantized = layer.weights.astype(np.float64) * s_w
    assert np.all(np.abs(dequantized - weight) <= s_w / 2 * (1 + 1e-9))
    unit = input_scale * s_w
    y = x @ dequantized.T + linear.bias.detach().numpy()
    acc = run_golden(make_config([layer]), quantize_activations(x, input_scale))
    bound = input_scale / 2 * np.abs(dequantized).sum(axis=1) + unit / 2
    error = np.abs(acc * unit - y)
    assert np.all(error <= bound * (1 + 1e-9))
    assert error.max() > 0.2 * bound.max()
