"""A whole-model config as a dataflow: how the layers of an integer ViT feed each other.

Rules (docs/spec_additions.md, "Whole-model configs"):
- Every value is int8 rows: the model input is [N, R * in_features of the first layer]
  (usually R = 1); a layer's output is [N, width].
- A layer takes the output of the layer before it (the first one takes the model
  input), except an `add`, whose `inputs` name two earlier layers (or "input").
- A layer maps rows of `in_features` to rows of `out_features`. A value of width
  R * in_features is R rows (R tokens) for it, each mapped on its own, so one `lut`
  layer serves every token of a sequence; the result has width R * out_features.
- Only the last layer may output raw accumulators ("output": "acc").
"""
import numpy as np

from nomac.errors import ConfigError
from nomac.model.operator_layers import OPERATOR_KINDS


def is_dataflow(config) -> bool:
    """A whole model: it has operator layers, so it runs as a dataflow, not a chain of layers."""
    return any(layer.kind in OPERATOR_KINDS for layer in config.layers)


def layer_inputs(config) -> dict[str, tuple[str, ...]]:
    """Layer name -> names of the values it reads ("input" is the model input)."""
    edges, previous = {}, "input"
    for layer in config.layers:
        edges[layer.name] = tuple(getattr(layer, "inputs", ())) or (previous,)
        previous = layer.name
    return edges


def run_dataflow(config, x: np.ndarray, forward: dict, keep: bool = False):
    """The last layer's output for int8 model inputs x [N, D]; with keep=True, every
    layer's output too (a dict layer name -> [N, width], for calibration and debugging)."""
    where = f"{config.source}: golden input"
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise ConfigError(where, "dtype", str(x.dtype), "must be int8 (quantized activations)")
    first = config.layers[0]
    if x.ndim != 2 or x.shape[1] % first.in_features:
        raise ConfigError(where, "shape", list(x.shape),
                          f"must be [N, R * {first.in_features}] (rows of the first layer's input)")
    values = {"input": x}
    edges = layer_inputs(config)
    for index, layer in enumerate(config.layers):
        layer_where = f"{config.source}: layer '{layer.name}'"
        sources = []
        for source in edges[layer.name]:
            if source not in values:
                raise ConfigError(layer_where, "inputs", source, "must name an earlier layer or \"input\"")
            sources.append(values[source])
        widths = {s.shape[1] for s in sources}
        width = sources[0].shape[1]
        if len(widths) != 1 or width % layer.in_features:
            raise ConfigError(layer_where, "input width", sorted(widths),
                              f"must be one multiple of its in_features ({layer.in_features})")
        if any(s.dtype != np.int8 for s in sources):
            raise ConfigError(layer_where, "input", "accumulators", "only the last layer may output raw accumulators")
        rows = width // layer.in_features
        flat = [s.reshape(len(x) * rows, layer.in_features) for s in sources]
        values[layer.name] = np.asarray(forward[layer.kind](layer, *flat)).reshape(len(x), rows * layer.out_features)
    out = values[config.layers[-1].name]
    return (out, values) if keep else out
