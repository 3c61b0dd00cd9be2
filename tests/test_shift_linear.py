"""DeepShift-Q / -PS modules, convert_to_shift, and the export to `shift` configs.

The rounding rules are checked on hand-picked weights whose expected sign and shift are
worked out in comments (the power of two nearest |w| in the log domain, clamped to the
b-bit range), and next to the half-points 2^(p+1/2) against that definition evaluated
in 60-digit decimals. The export's promise is checked as a bound: a trained layer converted
to DeepShift-Q and evaluated in integer arithmetic (the golden model on int8 inputs)
differs from the float DeepShift-Q layer by at most the rounding of the activations.
"""
import math
from decimal import Decimal, localcontext

import numpy as np
import pytest
import torch
from torch import nn

from nomac.base.errors import ConfigError
from nomac.model.config import make_config
from nomac.model.golden import run_golden
from nomac.model.layers.activations import activation_scale, quantize_activations
from nomac.model.layers.shift_linear import (ShiftLinearPS, ShiftLinearQ, convert_to_shift, ps_shift_range,
                                             q_shift_range, round_to_power_of_two)
from trained_linear import double_linear, trained_linear

LN2 = math.log(2)


# ---------------------------------------------------------------- the rounding rules

def test_shift_ranges_follow_the_weight_bits():
    assert [q_shift_range(b) for b in (2, 3, 4, 5, 6)] == [(-1, 0), (-3, 0), (-7, 0), (-15, 0), (-31, 0)]
    assert [ps_shift_range(b) for b in (3, 5)] == [(-2, 0), (-14, 0)]


def test_q_rounds_in_the_log_domain_and_clamps():
    weights = torch.tensor([0.3, -0.7, 0.0, 1e-9, 2.5, 0.75, -0.375, 0.5, -2 ** -15], dtype=torch.float64)
    sign, shift = round_to_power_of_two(weights, -15, 0)
    # log2: -1.74 -> -2; -0.51 -> -1; 0 -> sign 0, shift p0; -29.9 -> -30 -> clamp -15;
    # 1.32 -> 1 -> clamp 0; -0.415 -> 0; -1.415 -> -1 (0.375 is nearer 0.5 than 0.25 in log2);
    # powers of two keep their shift: -1, -15
    assert sign.tolist() == [1, -1, 0, 1, 1, 1, -1, 1, -1]
    assert shift.tolist() == [-2, -1, -15, -15, 0, 0, -1, -1, -15]


def nearest_shift(weight) -> int:
    """The definition: the p with 2^(p - 1/2) < |w| < 2^(p + 1/2) (no float lies on an
    irrational bound), the bounds evaluated in 60-digit decimals; |w| is exact in Decimal."""
    magnitude = abs(Decimal(float(weight)))
    with localcontext() as context:
        context.prec = 60
        root_two = Decimal(2).sqrt()
        p = 0
        while magnitude < Decimal(2) ** p / root_two:
            p -= 1
        while magnitude > Decimal(2) ** p * root_two:
            p += 1
        return p


def half_point_neighbours(dtype, powers=range(-10, 1)):
    """For each p, the float nearest 2^(p+1/2) and the floats one step below and above it, both signs."""
    weights = []
    for p in powers:
        nearest = dtype(math.sqrt(2) * 2.0 ** p)
        steps = [np.nextafter(nearest, dtype(0)), nearest, np.nextafter(nearest, dtype(2))]
        weights += steps + [-w for w in steps]
    return np.array(weights, dtype=dtype)


@pytest.mark.parametrize("dtype, torch_dtype", [(np.float32, torch.float32), (np.float64, torch.float64)])
def test_q_weights_next_to_a_half_point_round_to_the_nearer_power(dtype, torch_dtype):
    """float32 log2 rounds some of these onto p + 1/2, where ties to even would pick the farther power."""
    weights = half_point_neighbours(dtype)
    expected = [min(max(nearest_shift(w), -15), 0) for w in weights]
    sign, shift = round_to_power_of_two(torch.from_numpy(weights).to(torch_dtype), -15, 0)
    assert shift.tolist() == expected
    assert sign.tolist() == np.sign(weights).astype(int).tolist()
    # the case that started it: 0.70710677 (float32) < 2^-1/2 = 0.7071067811..., so 2^-1, not 2^0
    one_below = round_to_power_of_two(torch.tensor([0.70710677], dtype=torch.float32), -15, 0)[1]
    assert one_below.tolist() == [-1] and nearest_shift(np.float32(0.70710677)) == -1


def test_q_forward_and_export_take_the_same_powers_next_to_half_points():
    """The training forward (straight-through rounding) and the exported integer layer use the
    same powers of two, so the exported accumulator times its unit is exactly the float output."""
    weights = half_point_neighbours(np.float32)
    D = len(weights)
    q = ShiftLinearQ(D, 1, bias=False, weight_bits=5)                 # float32, shifts [-15, 0]
    with torch.no_grad():
        q.weight.copy_(torch.from_numpy(weights)[None])
    q.train()
    y = q(torch.eye(D))[:, 0]                                          # y[d] = the weight of input d
    expected = [math.copysign(2.0 ** min(max(nearest_shift(w), -15), 0), w) for w in weights]
    assert y.tolist() == expected
    layer = q.export("fc", input_scale=1.0, output_scale=1.0, output="acc")
    assert layer.shift[0].tolist() == [min(max(nearest_shift(w), -15), 0) for w in weights]
    acc = run_golden(make_config([layer]), np.eye(D, dtype=np.int8))[:, 0]
    assert (acc * 2.0 ** layer.shift_min).tolist() == expected


@pytest.mark.parametrize("variant, bits, lowest, six_bit_lowest", [
    (ShiftLinearQ, 7, -63, -31), (ShiftLinearQ, 8, -127, -31),
    (ShiftLinearPS, 7, -62, -30), (ShiftLinearPS, 8, -126, -30)])
def test_weights_beyond_6_bits_are_refused_with_the_shift_min_rule(variant, bits, lowest, six_bit_lowest):
    message = (f"{variant.__name__}: weight_bits = {bits}: gives shifts down to {lowest}, but shift_min must be "
               f">= -32: shift weights are at most 6 bits, 2^-32 .. 2^0; use weight_bits <= 6")
    with pytest.raises(ConfigError) as caught:
        variant(4, 2, weight_bits=bits)
    assert str(caught.value) == message
    assert variant(4, 2, weight_bits=6).shift_min == six_bit_lowest          # the widest accepted


def test_convert_to_shift_refuses_8_bit_weights_with_the_rule():
    rule = "weight_bits = 8: gives shifts down to -127, but shift_min must be >= -32"
    with pytest.raises(ConfigError, match=rule):
        convert_to_shift(nn.Linear(2, 2), variant="Q", weight_bits=8)


def test_q_forward_uses_the_power_of_two_weights_and_passes_gradients_straight_through():
    q = ShiftLinearQ(3, 2, weight_bits=4).double()
    with torch.no_grad():
        q.weight.copy_(torch.tensor([[0.3, -0.7, 0.0], [3.0, 0.01, -0.2]]))
        q.bias.copy_(torch.tensor([0.5, -0.25]))
    # 4 bits: shifts in [-7, 0]. 0.01 -> log2 -6.64 -> -7; 3.0 -> 1.58 -> 2 -> clamp 0; -0.2 -> -2.32 -> -2
    expected_weight = torch.tensor([[0.25, -0.5, 0.0], [1.0, 2 ** -7, -0.25]], dtype=torch.float64)
    assert torch.equal(q.power_of_two_weight(), expected_weight)
    q.eval()
    x = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64, requires_grad=True)
    y = q(x)
    assert y.tolist() == [[0.5 + 0.25 - 1.0, -0.25 + 1.0 + 2 ** -6 - 0.75]]
    grad = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    y.backward(grad)
    assert torch.equal(q.weight.grad, grad.T @ x.detach())        # straight through the rounding
    assert torch.equal(x.grad, grad @ expected_weight)
    assert q.weight[1, 0].item() == 3.0                            # eval mode leaves weights alone


def test_q_training_clamps_the_float_weights_into_the_representable_magnitudes():
    q = ShiftLinearQ(4, 1, bias=False, weight_bits=3).double()     # shifts [-3, 0]: |w| in [1/8, 1]
    with torch.no_grad():
        q.weight.copy_(torch.tensor([[5.0, -1e-6, 0.0, -0.3]], dtype=torch.float64))
    q.train()
    q(torch.zeros(1, 4, dtype=torch.float64))
    assert q.weight.tolist() == [[1.0, -0.125, 0.0, -0.3]]


def test_q_fine_tunes_through_the_straight_through_estimator():
    torch.manual_seed(3)
    x = torch.randn(256, 8, dtype=torch.float64)
    target = x @ torch.randn(8, 2, dtype=torch.float64) * 0.3
    q = ShiftLinearQ.from_linear(double_linear(8, 2, seed=3))
    optimizer = torch.optim.SGD(q.parameters(), lr=0.05)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(q(x), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_ps_weights_gradients_and_conversion():
    ps = ShiftLinearPS(4, 1, weight_bits=5).double()               # shifts [-14, 0]
    with torch.no_grad():
        ps.shift.copy_(torch.tensor([[-2.5, -3.5, -20.0, 0.4]]))
        ps.sign.copy_(torch.tensor([[0.6, -0.5, 1.7, -0.9]]))
        ps.bias.zero_()
    # shift: round(-2.5) = -2, round(-3.5) = -4 (ties to even), -20 -> -14, 0.4 -> 0
    # sign: round(0.6) = 1, round(-0.5) = -0 -> 0, clamp(1.7) = 1, round(-0.9) = -1
    sign, shift = ps.sign_and_shift()
    assert sign.tolist() == [[1, 0, 1, -1]] and shift.tolist() == [[-2, -4, -14, 0]]
    ps.eval()
    x = torch.tensor([[1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    y = ps(x)
    assert y.item() == 0.25 + 0.0 + 2 ** -14 - 1.0
    y.backward(torch.ones_like(y))
    # sign gets dL/dW unscaled (= x); shift gets dL/dW * sign * 2^shift * ln 2
    assert ps.sign.grad.tolist() == [[1.0, 1.0, 1.0, 1.0]]
    assert torch.allclose(ps.shift.grad, torch.tensor([[0.25 * LN2, 0.0, 2 ** -14 * LN2, -LN2]],
                                                      dtype=torch.float64), rtol=1e-15, atol=0)

    linear = double_linear(3, 2, seed=1)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[0.3, -0.7, 0.0], [1e-9, 0.75, -2 ** -2.5]], dtype=torch.float64))
    converted = ShiftLinearPS.from_linear(linear)
    assert converted.sign.tolist() == [[1, -1, 0], [1, 1, -1]]
    assert converted.shift.tolist() == [[-2, -1, -14], [-14, 0, -2]]
    assert torch.equal(converted.bias, linear.bias)


def test_convert_to_shift_replaces_the_linear_layers_a_filter_accepts():
    class Wide(nn.Linear):
        pass

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(),
                          nn.Sequential(nn.Linear(8, 8), Wide(8, 8)), nn.Linear(8, 2))
    original = model[2][0].weight.detach().clone()
    convert_to_shift(model, filter=lambda name, layer: name != "0")
    assert type(model[0]) is nn.Linear                          # rejected by the filter
    assert type(model[2][0]) is ShiftLinearQ and type(model[3]) is ShiftLinearQ
    assert type(model[2][1]) is Wide                            # only exact nn.Linear
    assert torch.equal(model[2][0].weight, original)
    expected_sign, expected_shift = round_to_power_of_two(original, -15, 0)
    assert torch.equal(model[2][0].sign_and_shift()[1], expected_shift)

    names = []
    convert_to_shift(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)),
                     filter=lambda name, layer: names.append(name) or True, variant="PS", weight_bits=4)
    assert names == ["0", "1"]
    single = convert_to_shift(nn.Linear(3, 3), variant="PS", weight_bits=4)
    assert type(single) is ShiftLinearPS and (single.shift_min, single.shift_max) == (-6, 0)
    with pytest.raises(ConfigError, match="variant.*'R'.*'Q', 'PS'"):
        convert_to_shift(nn.Linear(2, 2), variant="R")


# ---------------------------------------------------------------- export

def test_export_arrays_bias_units_and_out_shift_from_output_scale():
    q = ShiftLinearQ(3, 2, weight_bits=5).double()
    with torch.no_grad():
        q.weight.copy_(torch.tensor([[0.3, -0.7, 0.0], [1e-9, 0.75, -0.2]]))
        q.bias.copy_(torch.tensor([0.25, -1.0 / 3]))
    layer = q.export("fc", input_scale=0.5, output_scale=2 ** -10, hw={"lanes": 1})
    assert (layer.shift_min, layer.shift_max) == (-15, 0)
    assert layer.sign.tolist() == [[1, -1, 0], [1, 1, -1]]
    assert layer.shift.tolist() == [[-2, -1, -15], [-15, 0, -2]]   # the zero weight gets shift_min
    # unit u = 0.5 * 2^-15 = 2^-16: bias 0.25 -> 16384; -1/3 -> -21845.33 -> -21845 (half up)
    assert layer.bias.tolist() == [16384, -21845]
    # smallest s with 2^-16 * 2^s >= 2^-10: s = 6
    assert layer.out_shift == 6 and layer.extra == {"input_scale": 0.5, "output_scale": 2 ** -10}
    assert layer.hw.lanes == 1 and layer.params_json()["hw"] == {"lanes": 1}
    assert q.export("fc", 0.5, output_scale=1.5 * 2 ** -10).out_shift == 7


def test_export_out_shift_from_calibration_keeps_it_out_of_saturation():
    q = ShiftLinearQ(1, 1, bias=False, weight_bits=2).double()      # shifts [-1, 0], weight 1 = 2^0
    with torch.no_grad():
        q.weight.fill_(1.0)
    # acc = x_int << (0 - -1) = 2 x_int; x_int 100 -> 200 needs s = 1 (100); -128 -> -256 -> -128
    calibration = np.array([[1.0], [-1.28]])
    assert q.export("fc", 0.01, calibration=calibration).out_shift == 1
    assert q.export("fc", 0.01, calibration=np.array([[0.63]])).out_shift == 0     # 2 * 63 = 126
    assert q.export("fc", 0.01, calibration=np.array([[0.64]])).out_shift == 1     # 128 > 127


@pytest.mark.parametrize("kwargs, message", [
    ({"input_scale": 0.0}, "input_scale.*= 0.0.*finite number > 0"),
    ({"input_scale": 1.0}, "output_scale.*None.*give output_scale or calibration"),
    ({"input_scale": 1.0, "output_scale": -2.0}, "output_scale.*= -2.0.*finite number > 0"),
    ({"input_scale": 1.0, "output_scale": 1.0, "output": "int16"}, "output.*'int16'"),
    ({"input_scale": 2.0 ** -20, "output_scale": 1.0}, r"bias\[0\].*= 1000.0.*outside int32"),
])
def test_export_errors_name_value_and_rule(kwargs, message):
    q = ShiftLinearQ(2, 1).double()
    with torch.no_grad():
        q.bias.fill_(1000.0)
    with pytest.raises(ConfigError, match=message):
        q.export("fc", **kwargs)


@pytest.mark.parametrize("variant", [ShiftLinearQ, ShiftLinearPS])
def test_integer_layer_matches_the_float_layer_up_to_activation_rounding(variant):
    """|acc * u - y| <= input_scale / 2 * sum_d |w| + u / 2 on every output (the export's bound),
    and on inputs already on the int8 grid only the bias rounding u / 2 remains."""
    linear, x = trained_linear()
    shift = variant.from_linear(linear)
    input_scale = activation_scale(x)
    layer = shift.export("fc", input_scale, calibration=x, output="acc")
    unit = input_scale * 2.0 ** layer.shift_min
    with torch.no_grad():
        y = shift(torch.from_numpy(x)).numpy()
    acc = run_golden(make_config([layer]), quantize_activations(x, input_scale))
    weight_sum = np.abs(shift.power_of_two_weight().numpy()).sum(axis=1)
    bound = input_scale / 2 * weight_sum + unit / 2
    error = np.abs(acc * unit - y)
    assert np.all(error <= bound * (1 + 1e-9))
    assert error.max() > 0.2 * bound.max()            # the bound is not vacuous here

    on_grid = quantize_activations(x, input_scale).astype(np.float64) * input_scale
    with torch.no_grad():
        y_grid = shift(torch.from_numpy(on_grid)).numpy()
    acc_grid = run_golden(make_config([layer]), quantize_activations(on_grid, input_scale))
    assert np.all(np.abs(acc_grid * unit - y_grid) <= unit / 2 * (1 + 1e-6))

    # int8 outputs: the float output in units of output_scale, within the bound plus half a unit
    int8_layer = shift.export("fc", input_scale, calibration=x)
    out = run_golden(make_config([int8_layer]), quantize_activations(x, input_scale)).astype(np.float64)
    output_scale = int8_layer.extra["output_scale"]
    assert output_scale == unit * 2 ** int8_layer.out_shift
    assert np.all(np.abs(out * output_scale - y) <= bound + output_scale / 2 * (1 + 1e-9))
