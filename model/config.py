"""Config files (docs/spec.md sections 4 and 5): one JSON file plus one .npz of arrays keyed "<layer>/<array>".

Loading validates everything once; the rest of nomac trusts the resulting frozen
objects. A config hashes to a stable id (its arithmetic only: layer parameters and
arrays, not hardware choices or descriptions) that every generated file carries.
"""
import hashlib
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from nomac.base.errors import ConfigError
from nomac.model.array_files import read_npz
from nomac.model.butterfly_spec import ButterflyLayer
from nomac.model.dataflow import check_dataflow
from nomac.model.dense_spec import DenseLayer
from nomac.model.field_rules import reject_unknown
from nomac.model.json_files import read_json
from nomac.model.lut_spec import LutLayer
from nomac.model.operator_layers import OPERATOR_KINDS
from nomac.model.shift_spec import ShiftLayer
from nomac.base.output_files import json_text, replaced_file, write_text

FORMAT = "nomac/1"
LAYER_KINDS = {cls.kind: cls for cls in (LutLayer, ShiftLayer, DenseLayer, ButterflyLayer)}
LAYER_KINDS.update(OPERATOR_KINDS)   # the integer ViT operators (model/operator_layers.py)
DESCRIPTIVE_LAYER_KEYS = ("description", "input_scale", "output_scale")
TOP_LEVEL_KEYS = ("format", "arrays", "layers", "description", "input_scale", "output_scale")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True, eq=False)
class Config:
    """A validated model or single-layer config."""
    layers: tuple
    extra: dict = field(default_factory=dict)   # descriptive top-level fields, kept verbatim
    source: str = "<memory>"                     # where it came from, for error messages

    @cached_property
    def config_id(self) -> str:
        """16 hex digits of SHA-256 over the arithmetic: parameters and array bytes."""
        digest = hashlib.sha256()
        params = [{k: v for k, v in layer.params_json().items() if k not in ("hw", *DESCRIPTIVE_LAYER_KEYS)}
                  for layer in self.layers]
        digest.update(json.dumps({"format": FORMAT, "layers": params}, sort_keys=True).encode())
        for key, array in sorted(self.arrays().items()):
            array = np.ascontiguousarray(array)
            digest.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
            digest.update(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
        return digest.hexdigest()[:16]

    def arrays(self) -> dict[str, np.ndarray]:
        return {f"{layer.name}/{name}": array
                for layer in self.layers for name, array in layer.arrays().items()}

    def layer(self, name: str):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ConfigError(self.source, "layer", name,
                          f"no such layer; the config has {', '.join(l.name for l in self.layers)}")

    def with_hw(self, overrides: dict, layer_names=None) -> "Config":
        """Apply hardware overrides (e.g. from the command line) to the named layers, or all.

        A named layer takes every override (a choice it does not have is refused). Without
        names, each layer takes the overrides of the choices it has, and a choice that no
        layer has is refused: `--hw memory=ram` on a whole model makes every memory RAM.
        """
        if layer_names:
            for name in layer_names:
                self.layer(name)
            layers = tuple(layer.with_hw(overrides, f"{self.source}: layer '{layer.name}'")
                           if layer.name in layer_names else layer for layer in self.layers)
            return Config(layers=layers, extra=self.extra, source=self.source)
        known = {key for layer in self.layers for key in layer.hw_keys}
        for key, value in overrides.items():
            if key not in known:
                raise ConfigError(self.source, "hw key", key,
                                  f"unknown; known hw keys are {', '.join(sorted(known))}")
        layers = tuple(layer.with_hw({key: value for key, value in overrides.items() if key in layer.hw_keys},
                                     f"{self.source}: layer '{layer.name}'") for layer in self.layers)
        return Config(layers=layers, extra=self.extra, source=self.source)


def make_config(layers, **extra) -> Config:
    """A config from layer objects built in Python (e.g. by LUTLinear.export)."""
    layers = tuple(layers)
    if not layers:
        raise ConfigError("config", "layers", [], "must be a non-empty list of layer objects")
    # "format", "arrays" and "layers" are written by save_config, not chosen here
    reject_unknown("config", "top-level field", extra,
                   [k for k in TOP_LEVEL_KEYS if k not in ("format", "arrays", "layers")])
    for index, layer in enumerate(layers):
        _check_name(f"config: layers[{index}]", layer.name, layers[:index])
    config = Config(layers=layers, extra=dict(extra))
    check_dataflow(config)
    return config


def _check_name(where: str, name, earlier):
    """A layer name prefixes its .npz keys ("<layer>/<array>"), so it is an identifier, used once."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(where, "name", name,
                          "must be an identifier (letters, digits, _; not starting with a digit)")
    if name in (l.name for l in earlier):
        raise ConfigError(where, "name", name, "must be unique within the config")


def load_config(path) -> Config:
    """Read and validate a config JSON and its .npz; raise ConfigError on anything wrong.

    The files are read within the limits of model/json_files.py and model/array_files.py;
    the .npz must lie in the config's folder (see arrays_path)."""
    path = Path(path)
    where = str(path)
    document = read_json(path, "config")
    if not isinstance(document, dict):
        raise ConfigError(where, "top level", type(document).__name__, "must be a JSON object")
    reject_unknown(where, "top-level field", document, TOP_LEVEL_KEYS)
    if document.get("format") != FORMAT:
        raise ConfigError(where, "format", document.get("format"), f"must be {FORMAT!r}")
    arrays_name = document.get("arrays")
    arrays = read_npz(arrays_path(path, arrays_name), where)
    layers_json = document.get("layers")
    if not isinstance(layers_json, list) or not layers_json:
        raise ConfigError(where, "layers", layers_json, "must be a non-empty list of layer objects")

    layers, claimed = [], set()
    for index, params in enumerate(layers_json):
        layer_where = f"{where}: layers[{index}]"
        if not isinstance(params, dict):
            raise ConfigError(layer_where, "layer", params, "must be a JSON object")
        name = params.get("name")
        _check_name(layer_where, name, layers)
        layer_where = f"{where}: layer '{name}'"
        kind = params.get("kind")
        if not isinstance(kind, str) or kind not in LAYER_KINDS:
            raise ConfigError(layer_where, "kind", kind, f"must be one of {', '.join(LAYER_KINDS)}")
        prefix = f"{name}/"
        own = {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}
        claimed.update(prefix + key for key in own)
        layers.append(LAYER_KINDS[kind].from_json(layer_where, params, own, DESCRIPTIVE_LAYER_KEYS))
    for key in arrays:
        if key not in claimed:
            raise ConfigError(f"{where}: {arrays_name}", "array key", key,
                              "belongs to no layer (keys are '<layer>/<array>')")
    extra = {k: v for k, v in document.items() if k not in ("format", "arrays", "layers")}
    config = Config(layers=tuple(layers), extra=extra, source=where)
    check_dataflow(config)
    return config


def arrays_path(config_path: Path, arrays_name) -> Path:
    """The .npz a config's "arrays" names: a path relative to the config's folder that stays
    inside it (symlinks resolved), so a config cannot make nomac read files elsewhere."""
    where = str(config_path)
    rule = "must name the .npz file by a path relative to the config's folder, inside it"
    if not isinstance(arrays_name, str) or not arrays_name:
        raise ConfigError(where, "arrays", arrays_name, rule)
    relative = Path(arrays_name)
    if relative.is_absolute() or ".." in relative.parts:
        raise ConfigError(where, "arrays", arrays_name, f"{rule} (no absolute path, no '..')")
    folder = config_path.parent.resolve()
    try:
        resolved = (folder / relative).resolve()
    except (OSError, ValueError, RuntimeError):     # a NUL byte, text no file name can hold, a symlink loop
        raise ConfigError(where, "arrays", arrays_name, rule) from None
    if not resolved.is_relative_to(folder):
        raise ConfigError(where, "arrays", arrays_name, f"{rule}; it resolves to {resolved}, outside {folder}")
    return resolved


def save_config(config: Config, path) -> Path:
    """Write `path` (JSON) and its .npz beside it; both byte-for-byte reproducible.

    Each file appears whole (nomac.base.output_files); the .npz goes first, so a JSON never
    names arrays that are not there yet."""
    path = Path(path)
    if path.suffix != ".json":
        raise ConfigError(str(path), "file name", path.name, "a config is saved as a .json file (its .npz goes beside it)")
    npz_path = path.with_suffix(".npz")
    document = {"format": FORMAT, "arrays": npz_path.name, **config.extra,
                "layers": [layer.params_json() for layer in config.layers]}
    text = json_text(document, str(path))
    with replaced_file(npz_path, "config arrays") as temporary:
        _write_npz(temporary, config.arrays())
    write_text(path, text, "config")
    return path


def _write_npz(path: Path, arrays: dict[str, np.ndarray]):
    """np.savez stamps the current time into the zip; this writes a fixed one instead."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0)),
                             buffer.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
