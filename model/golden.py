"""Run the integer golden model of a config: one layer, or all layers in order."""
import numpy as np

from nomac.base.errors import ConfigError
from nomac.model.butterfly_golden import butterfly_forward
from nomac.model.config import Config
from nomac.model.dataflow import is_dataflow, run_dataflow
from nomac.model.dense_golden import dense_forward
from nomac.model.int_ops import OPERATOR_FORWARD
from nomac.model.lut_golden import lut_forward
from nomac.model.shift_golden import shift_forward

FORWARD = {"lut": lut_forward, "shift": shift_forward, "dense": dense_forward,
           "butterfly": butterfly_forward}
FORWARD.update(OPERATOR_FORWARD)   # whole-model operators (model/int_ops.py)


def run_golden(config: Config, x: np.ndarray, layer_name: str | None = None) -> np.ndarray:
    """Outputs for int8 input vectors x [N, D] (a single vector [D] is accepted too)."""
    if layer_name is None and is_dataflow(config):   # a whole model (model/dataflow.py)
        x = np.asarray(x)
        y = run_dataflow(config, x[None] if x.ndim == 1 else x, FORWARD)
        return y[0] if x.ndim == 1 else y
    layers = [config.layer(layer_name)] if layer_name else list(config.layers)
    x = np.asarray(x)
    single = x.ndim == 1
    if single:
        x = x[None, :]
    where = f"{config.source}: golden input"
    if x.dtype != np.int8:
        raise ConfigError(where, "dtype", str(x.dtype), "must be int8 (quantized activations)")
    if x.ndim != 2:
        raise ConfigError(where, "shape", list(x.shape), "must be [N, in_features] or [in_features]")
    for index, layer in enumerate(layers):
        if x.shape[1] != layer.in_features:
            raise ConfigError(where, f"layer '{layer.name}' input width", x.shape[1],
                              f"must equal its in_features ({layer.in_features})")
        if layer.output == "acc" and index != len(layers) - 1:
            raise ConfigError(where, f"layer '{layer.name}' output", "acc",
                              "only the last layer run may output raw accumulators")
        x = FORWARD[layer.kind](layer, x)
    return x[0] if single else x
