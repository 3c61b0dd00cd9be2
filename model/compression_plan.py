"""Compression plans: which nn.Linear of a model becomes which layer kind, and how it is trained.

A plan is a JSON file (bundled ones in model/plans/):

    {"format": "nomac-plan/1", "name": "lut", "description": "...",
     "layers": [{"match": "patch_embed", "kind": "dense"},
                {"match": "blocks.*", "kind": "lut", "subvector": 4, "centroids": 16, "encoder": "l2"},
                {"match": "*", "kind": "dense"}],
     "training": {"method": "differentiable", "epochs": 60, "lr": 0.002, "distill": 0.5}}

`layers` rules are tried in order on each Linear's qualified name (fnmatch patterns,
e.g. "blocks.*.fc1"); the first that matches decides, and a Linear no rule matches
stays `dense` (int8). Kinds and their options:
- `dense`: the float nn.Linear, exported as int8 weights (export_dense).
- `lut`: LUTLinear (TrainableLUTLinear) with `subvector` (V, so C = D / V) or
  `codebooks` (C), `centroids` (K), `encoder` (l2, l1, tree), `learn` (tables, weight, weight+tables),
  `input_gradient` (soft, linear: see TrainableLUTLinear).
- `shift`: DeepShift, `variant` (Q, PS) and `weight_bits`.
- `butterfly`: DeButLinear with the chain `propose_chain(M, D, style, radix)`,
  fitted by ALS on the layer's calibration inputs.
`training.method`: "none" (convert and export, e.g. k-means only), or "finetune"
("differentiable" is the same for `lut` layers: soft assignment with a straight-through
estimator); the other `training` keys are TrainSettings fields (model/vit_training.py).
"""
import fnmatch
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from torch import nn

from nomac.errors import NomacError
from nomac.model.vit_training import TrainSettings

FORMAT = "nomac-plan/1"
KINDS = ("dense", "lut", "shift", "butterfly")
METHODS = ("none", "finetune", "differentiable")
CALIBRATION_ROWS = 4096     # rows (tokens) a k-means / ALS fit sees, a seeded subset
KMEANS_ITERATIONS = 30
OPTIONS = {"dense": {},
           "lut": {"subvector": None, "codebooks": None, "centroids": 16, "encoder": "l2", "learn": "tables",
                   "input_gradient": "soft"},
           "shift": {"variant": "Q", "weight_bits": 5},
           "butterfly": {"style": "monotonic", "radix": 4, "sweeps": 5}}


@dataclass(frozen=True)
class LayerRule:
    match: str
    kind: str
    options: dict


@dataclass(frozen=True)
class CompressionPlan:
    name: str
    rules: tuple
    method: str = "none"
    settings: TrainSettings = field(default_factory=TrainSettings)
    description: str = ""
    source: str = "<memory>"

    def rule_for(self, linear_name: str) -> LayerRule:
        for rule in self.rules:
            if fnmatch.fnmatchcase(linear_name, rule.match):
                return rule
        return LayerRule(match="(default)", kind="dense", options={})

    def kinds(self, linear_names) -> dict[str, str]:
        return {name: self.rule_for(name).kind for name in linear_names}

    @property
    def trains(self) -> bool:
        return self.method != "none" and self.settings.epochs > 0


def bundled_plans() -> dict[str, Path]:
    folder = Path(str(resources.files("nomac.model") / "plans"))
    return {path.stem: path for path in sorted(folder.glob("*.json"))}


def load_plan(path_or_name) -> CompressionPlan:
    """A plan from a JSON file, or a bundled plan by name (e.g. "lut_train")."""
    bundled = bundled_plans()
    path = bundled.get(str(path_or_name), Path(path_or_name))
    where = str(path)
    try:
        document = json.loads(Path(path).read_text())
    except OSError as e:
        raise NomacError(f"{where}: plan cannot be read ({e.strerror}); bundled plans are "
                         f"{', '.join(bundled)}") from None
    except json.JSONDecodeError as e:
        raise NomacError(f"{where}: line {e.lineno} column {e.colno}: {e.msg}: a plan must be valid JSON") from None
    return plan_from_dict(document, where)


def plan_from_dict(document: dict, where: str = "<plan>") -> CompressionPlan:
    if not isinstance(document, dict):
        raise NomacError(f"{where}: top level = {type(document).__name__}: must be a JSON object")
    for key in document:
        if key not in ("format", "name", "description", "layers", "training"):
            raise NomacError(f"{where}: field {key!r}: unknown; a plan has format, name, description, layers, training")
    if document.get("format") != FORMAT:
        raise NomacError(f"{where}: format = {document.get('format')!r}: must be {FORMAT!r}")
    name = document.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        raise NomacError(f"{where}: name = {name!r}: must be an identifier")
    rules = []
    for index, entry in enumerate(document.get("layers", [])):
        at = f"{where}: layers[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("match"), str):
            raise NomacError(f"{at} = {entry!r}: must be an object with a \"match\" pattern")
        kind = entry.get("kind")
        if kind not in KINDS:
            raise NomacError(f"{at}: kind = {kind!r}: must be one of {', '.join(KINDS)}")
        options = dict(OPTIONS[kind])
        for key, value in entry.items():
            if key in ("match", "kind"):
                continue
            if key not in options:
                raise NomacError(f"{at}: option {key!r}: unknown for kind {kind}; "
                                 f"known options are {', '.join(OPTIONS[kind]) or 'none'}")
            options[key] = value
        if kind == "lut" and (options["subvector"] is None) == (options["codebooks"] is None):
            raise NomacError(f"{at}: a lut rule needs exactly one of \"subvector\" and \"codebooks\"")
        rules.append(LayerRule(match=entry["match"], kind=kind, options=options))
    training = dict(document.get("training", {}))
    method = training.pop("method", "none")
    if method not in METHODS:
        raise NomacError(f"{where}: training.method = {method!r}: must be one of {', '.join(METHODS)}")
    settings = TrainSettings.from_dict(training, f"{where}: training")
    return CompressionPlan(name=name, rules=tuple(rules), method=method, settings=settings,
                           description=document.get("description", ""), source=where)


def compress(model: nn.Module, plan: CompressionPlan, linear_names, calibration: dict, seed: int,
             rows: int = CALIBRATION_ROWS) -> nn.Module:
    """Replace, in place, each named nn.Linear of `model` by the plan's layer for it.

    `calibration[name]` holds float inputs [..., D] of that Linear (from the float model),
    for k-means / tree fitting and butterfly ALS. Returns the model.
    """
    for name in linear_names:
        linear = model.get_submodule(name)
        rule = plan.rule_for(name)
        if rule.kind == "dense":
            continue
        inputs = np.asarray(calibration[name], dtype=np.float64).reshape(-1, linear.in_features)
        if len(inputs) > rows:     # a seeded subset keeps k-means and ALS quick
            inputs = inputs[np.sort(np.random.default_rng(seed).choice(len(inputs), rows, replace=False))]
        model.set_submodule(name, convert_linear(linear, rule, inputs, seed, f"{plan.source}: {name}"))
    return model


def convert_linear(linear: nn.Linear, rule: LayerRule, inputs: np.ndarray, seed: int, where: str) -> nn.Module:
    o = rule.options
    if rule.kind == "lut":
        from nomac.model.lut_training import TrainableLUTLinear
        codebooks = o["codebooks"] if o["codebooks"] is not None else linear.in_features // o["subvector"]
        if o["subvector"] is not None and linear.in_features % o["subvector"]:
            raise NomacError(f"{where}: subvector = {o['subvector']}: must divide in_features {linear.in_features}")
        return TrainableLUTLinear.from_linear(linear, inputs, codebooks, o["centroids"], o["encoder"],
                                              seed=seed, iterations=KMEANS_ITERATIONS, learn=o["learn"],
                                              input_gradient=o["input_gradient"])
    if rule.kind == "shift":
        from nomac.model.shift_linear import ShiftLinearPS, ShiftLinearQ
        cls = {"Q": ShiftLinearQ, "PS": ShiftLinearPS}.get(o["variant"])
        if cls is None:
            raise NomacError(f"{where}: variant = {o['variant']!r}: must be 'Q' or 'PS'")
        return cls.from_linear(linear, o["weight_bits"])
    if rule.kind == "butterfly":
        from nomac.model.butterfly_chains import propose_chain
        from nomac.model.butterfly_linear import DeButLinear
        chain = propose_chain(linear.out_features, linear.in_features, o["style"], o["radix"])
        return DeButLinear.from_linear(linear, chain, o["sweeps"], calibration=inputs, seed=seed)
    raise NomacError(f"{where}: kind = {rule.kind!r}: must be one of {', '.join(KINDS)}")
