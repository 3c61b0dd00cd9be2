"""The network's gelu unit (hw/network/gelu_unit.py) against the golden table lookup."""
import numpy as np
import pytest

from nomac.hw.network.gelu_unit import FIELDS, GeluUnit, gelu_step
from nomac.hw.network.unit import LimitError, NetworkLimits
from nomac.model.golden import FORWARD
from nomac.model.operator_layers import GeluLayer
from network_units import run_step


def gelu_layer(features: int, seed: int):
    table = np.random.default_rng(seed).integers(-128, 128, 256).astype(np.int8)
    table[0], table[255] = -128, 127
    return GeluLayer.from_json("case", {"name": "g", "kind": "gelu", "features": features}, {"table": table})


@pytest.mark.parametrize("rows, features, gap, backpressure", [
    (1, 256, 0, 0), (17, 64, 0.3, 0.3), (3, 5, 0.5, 0.7),
    (17, 96, 0, 0),                     # the limits' most elements: the counter's full range
    (1, 1, 0, 0), (1, 1, 0.5, 0.7),     # shapes of 1: `done` on the step's only element
])
def test_gelu_unit_matches_golden(rows, features, gap, backpressure):
    layer = gelu_layer(features, seed=rows)
    x = np.random.default_rng(features).integers(-128, 128, (rows, features)).astype(np.int8)
    if rows * features >= 256:
        x.reshape(-1)[:256] = np.arange(-128, 128)          # every entry, every byte position of its word
    step = gelu_step(layer, rows, 40, NetworkLimits())
    outputs, cycles = run_step(GeluUnit(NetworkLimits()), FIELDS, step, x.reshape(-1).tolist(), table_base=40,
                               seed=rows, gap=gap, backpressure=backpressure, steps=2)
    assert outputs == FORWARD["gelu"](layer, x).reshape(-1).tolist()
    if not gap and not backpressure:
        assert cycles == [rows * features + 1] * 2        # one element a cycle, the read's one stage


def test_gelu_step_refuses_more_elements_than_its_counter_holds():
    """The unit counts elements in tokens * features of the limits (17 * 96 by default)."""
    limits = NetworkLimits()
    gelu_step(gelu_layer(96, seed=0), 17, 0, limits)
    with pytest.raises(LimitError, match="elements = 1633: exceeds the network's limit 1632"):
        gelu_step(gelu_layer(1633, seed=0), 1, 0, limits)
