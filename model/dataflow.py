"""A whole-model config as a dataflow: how the layers of an integer ViT feed each other.

Rules (docs/spec.md section 12):
- Every value is int8 rows: the model input is [N, R * in_features of the first layer]
  (usually R = 1); a layer's output is [N, width].
- A layer takes the output of the layer before it (the first one takes the model
  input), except an `add`, whose `inputs` name two earlier layers (or "input"); an
  add of "input" and "input" reads rows of 2E, a's E elements then b's.
- A layer maps rows of `in_features` to rows of `out_features`. A value of width
  R * in_features is R rows (R tokens) for it, each mapped on its own, so one `lut`
  layer serves every token of a sequence; the result has width R * out_features.
- Only the last layer may output raw accumulators ("output": "acc").
"""
import numpy as np

from nomac.base.errors import ConfigError
from nomac.model.operator_layers import OPERATOR_KINDS


def is_dataflow(config) -> bool:
    """A whole model: it has operator layers, so it runs as a dataflow, not a chain of layers."""
    return any(layer.kind in OPERATOR_KINDS for layer in config.layers)


def layer_inputs(config) -> dict[str, tuple[str, ...]]:
    """Layer name -> names of the values it reads ("input" is the model input)."""
    edges, previous = {}, "input"
    for layer in config.layers:
        inputs = tuple(getattr(layer, "inputs", ()))
        # an add of "input" and "input" reads one row of a then b (docs/spec.md section 13.6)
        edges[layer.name] = ("input",) if inputs == ("input", "input") else inputs or (previous,)
        previous = layer.name
    return edges


def check_dataflow(config):
    """Refuse a whole model whose layers do not fit together: an input that names no
    earlier layer, a width that is not a multiple of the reading layer's in_features (or
    an add's two inputs of different widths), raw accumulators before the last layer.

    make_config and load_config call this, so every command refuses such a model with
    the same message, and run_dataflow trusts the structure. Widths are followed for a
    model input of in_features of the first layer (R = 1); every width of R rows is R
    times that, so the checks hold for any R. A config of hardware layers only is not a
    dataflow (its layers are generated and run one by one, or chained by run_golden,
    which checks each step), so it passes unchecked.
    """
    if not is_dataflow(config):
        return
    widths = {"input": config.layers[0].in_features}
    last = config.layers[-1]
    for layer, sources in zip(config.layers, layer_inputs(config).values()):
        where = f"{config.source}: layer '{layer.name}'"
        for source in sources:
            if source not in widths:
                raise ConfigError(where, "inputs", source, "must name an earlier layer or \"input\"")
        found = [widths[source] for source in sources]
        if len(set(found)) > 1:
            raise ConfigError(where, "input widths", found,
                              f"must be equal (the outputs of {' and '.join(map(_value, sources))})")
        if found[0] % layer.in_features:
            raise ConfigError(where, "input width", found[0],
                              f"must be a multiple of its in_features ({layer.in_features}); "
                              f"it is the width of {_value(sources[0])}")
        if layer.output == "acc" and layer is not last:
            raise ConfigError(where, "output", "acc",
                              f"only the last layer ('{last.name}') may output raw accumulators")
        widths[layer.name] = found[0] // layer.in_features * layer.out_features


def _value(source: str) -> str:
    return "the model input" if source == "input" else f"layer '{source}'"


def run_dataflow(config, x: np.ndarray, forward: dict, keep: bool = False):
    """The last layer's output for int8 model inputs x [N, D]; with keep=True, every
    layer's output too (a dict layer name -> [N, width], for calibration and debugging).
    The config's structure was checked when it was made (check_dataflow); only x is here."""
    where = f"{config.source}: golden input"
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise ConfigError(where, "dtype", str(x.dtype), "must be int8 (quantized activations)")
    first = config.layers[0]
    if x.ndim != 2 or x.shape[1] % first.in_features:
        raise ConfigError(where, "shape", list(x.shape),
                          f"must be [N, R * {first.in_features}] (rows of the first layer's input)")
    values = {"input": x}
    for layer, sources in zip(config.layers, layer_inputs(config).values()):
        rows = values[sources[0]].shape[1] // layer.in_features
        flat = [values[source].reshape(len(x) * rows, layer.in_features) for source in sources]
        values[layer.name] = np.asarray(forward[layer.kind](layer, *flat)).reshape(len(x), rows * layer.out_features)
    out = values[config.layers[-1].name]
    return (out, values) if keep else out
