"""Which layer kinds have an engine, and the lookups of a config's engine layers.

The registry lives apart from the contract (`nomac.hw.engine`) because every engine
module imports the contract; export, simulation, boards and synthesis all find an
engine here.
"""
from nomac.base.errors import NomacError
from nomac.hw.butterfly_engine import ButterflyEngine
from nomac.hw.dense_engine import DenseEngine
from nomac.hw.engine import Engine
from nomac.hw.lut_engine import LutEngine
from nomac.hw.operators.add import AddEngine
from nomac.hw.operators.attention import AttentionEngine
from nomac.hw.operators.embed import EmbedEngine
from nomac.hw.operators.gelu import GeluEngine
from nomac.hw.operators.layernorm import LayerNormEngine
from nomac.hw.operators.patches import PatchesEngine
from nomac.hw.operators.select_token import SelectTokenEngine
from nomac.hw.shift_engine import ShiftEngine
from nomac.model.config import Config

__all__ = ["ENGINES", "build_engine", "hardware_layers", "single_hardware_layer"]

# Layer kind -> engine class (an `Engine`, built from one validated layer of that kind).
ENGINES: dict[str, type[Engine]] = {"lut": LutEngine, "shift": ShiftEngine, "dense": DenseEngine,
                                    "butterfly": ButterflyEngine,
                                    # the integer ViT operators (docs/spec.md section 13)
                                    "patches": PatchesEngine, "embed": EmbedEngine, "layernorm": LayerNormEngine,
                                    "gelu": GeluEngine, "attention": AttentionEngine, "add": AddEngine,
                                    "select_token": SelectTokenEngine}


def build_engine(layer) -> Engine:
    """The Amaranth component for a layer (its kind's engine)."""
    return ENGINES[layer.kind](layer)


def hardware_layers(config: Config, layer_name: str | None = None) -> list:
    """The layers to generate: the named one, or every layer (every kind has an engine)."""
    return [config.layer(layer_name)] if layer_name else list(config.layers)


def single_hardware_layer(config: Config, layer_name: str | None, purpose: str):
    """The one layer a simulation or a board takes: `layer_name`, or the config's only engine layer."""
    layers = hardware_layers(config, layer_name)
    if len(layers) != 1:
        raise NomacError(f"{config.source}: the config has {len(layers)} layers; {purpose} takes one, "
                         f"name it with --layer ({', '.join(l.name for l in layers)})")
    return layers[0]
