"""Compression plans: which nn.Linear of a model becomes which layer kind, and how it is trained.

A plan is a JSON file (bundled ones in model/vit/plans/):

    {"format": "nomac-plan/1", "name": "lut", "description": "...",
     "budget": {"table_bytes": 122880},
     "layers": [{"match": "patch_embed", "kind": "dense"},
                {"match": "blocks.*", "kind": "lut", "subvector": 4, "centroids": 16, "encoder": "l2"},
                {"match": "*", "kind": "dense"}],
     "training": {"method": "differentiable", "epochs": 60, "lr": 0.002, "distill": 0.5}}

`budget` (optional) bounds what the plan may cost: `table_bytes`, the bytes of every lut
layer's tables and encoder arrays (lut_table_bytes) in the model it compresses; a plan over
its budget is refused before any training, naming each layer's bytes.
`layers` rules are tried in order on each Linear's qualified name (fnmatch patterns,
e.g. "blocks.*.fc1"); the first that matches decides, and a Linear no rule matches
stays `dense` (int8). Kinds and their options:
- `dense`: the float nn.Linear, exported as int8 weights (export_dense).
- `lut`: LUTLinear (TrainableLUTLinear) with `subvector` (V, so C = D / V) or
  `codebooks` (C), `centroids` (K), `encoder` (l2, l1, tree), `learn` (tables, weight, weight+tables),
  `input_gradient` (soft, linear), `soft_distance` (encoder, l2, l1: the distance the soft
  assignment softens; see TrainableLUTLinear), `table_bits` (2..8, default 8: the bits of an
  exported table entry, which the quantization-aware training rounds and saturates to and the
  budget counts packed).
- `shift`: DeepShift, `variant` (Q, PS) and `weight_bits`.
- `butterfly`: DeButLinear with the chain `propose_chain(M, D, style, radix)`,
  fitted by ALS on the layer's calibration inputs.
`training.method`: "none" (convert and export, e.g. k-means only), or "finetune"
("differentiable" is the same for `lut` layers: soft assignment with a straight-through
estimator); the other `training` keys are TrainSettings fields (model/vit/training.py), among
them `distill_weighting` ("hinton", the default: (1 - distill) CE + distill T^2 KL; "published":
0.2 CE + 0.8 KL, which needs distill > 0), `reconstruction` (the weight of the lookup layers'
reconstruction loss, LayerReconstruction; > 0 needs a lut layer in the plan) and `tau_anneal`
(the temperature schedule of the soft assignment: its inverse temperature times a factor
rising geometrically from 1 to tau_anneal over the epochs; != 1 needs a lut layer with distances)
and `progressive` (the lookup layers replace their float Linear block by block, not all at once;
needs lut layers, each with learned weights, `learn` weight or weight+tables).

Loading checks a plan as a config is checked (model/json_files.py reads the file): every
field's type and range (SETTINGS, OPTIONS), unknown fields refused, and a rule whose
pattern matches no Linear of the tiny ViT is an error rather than a silently dense model.
"""
import fnmatch
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import numpy as np
from torch import nn

from nomac.base.errors import ConfigError, NomacError
from nomac.model.butterfly_chains import STYLES, propose_chain
from nomac.model.field_rules import (reject_unknown, require_bool, require_choice, require_int, require_power_of_two,
                                     require_real)
from nomac.model.json_files import read_json
from nomac.model.layers.lut_training import INPUT_GRADIENTS, LEARN, SOFT_DISTANCES, TrainableLUTLinear
from nomac.model.lut_spec import ENCODERS, MIN_TABLE_BITS, TABLE_BITS, lut_table_bytes
from nomac.model.vit.tiny_vit import ViTShape
from nomac.model.vit.training import DISTILL_WEIGHTINGS, TrainSettings

__all__ = ["FORMAT", "PLAN_KEYS", "BUDGET_KEYS", "KINDS", "METHODS", "CALIBRATION_ROWS", "KMEANS_ITERATIONS", "MAX_EPOCHS", "OPTIONS",
           "SETTINGS", "LayerRule", "CompressionPlan", "train_settings", "bundled_plans", "load_plan", "plan_from_dict",
           "compress", "lut_codebooks", "convert_linear"]

FORMAT = "nomac-plan/1"
PLAN_KEYS = ("format", "name", "description", "budget", "layers", "training")
BUDGET_KEYS = ("table_bytes",)
KINDS = ("dense", "lut", "shift", "butterfly")
METHODS = ("none", "finetune", "differentiable")
CALIBRATION_ROWS = 4096     # rows (tokens) a k-means / ALS fit sees, a seeded subset
KMEANS_ITERATIONS = 30
MAX_EPOCHS = 1_000_000     # far beyond any run (the bundled plans train 30-60, the teacher 400)


def _int(lo, hi=None):
    return lambda where, key, value: require_int(where, key, value, lo=lo, hi=hi)


def _real(**bounds):
    return lambda where, key, value: require_real(where, key, value, **bounds)


def _choice(choices):
    return lambda where, key, value: require_choice(where, key, value, choices)


# A kind's options: name -> (default, check). None: no default (lut needs subvector or codebooks).
OPTIONS = {"dense": {},
           "lut": {"subvector": (None, _int(1)), "codebooks": (None, _int(1)),
                   "centroids": (16, lambda where, key, value: require_power_of_two(where, key, value, lo=2, hi=256)),
                   "encoder": ("l2", _choice(ENCODERS)), "learn": ("tables", _choice(LEARN)),
                   "input_gradient": ("soft", _choice(INPUT_GRADIENTS)),
                   "soft_distance": ("encoder", _choice(SOFT_DISTANCES)),
                   "table_bits": (TABLE_BITS, _int(MIN_TABLE_BITS, TABLE_BITS))},
           "shift": {"variant": ("Q", _choice(("Q", "PS"))), "weight_bits": (5, _int(2, 6))},   # ShiftLinear's range
           "butterfly": {"style": ("monotonic", _choice(STYLES)), "radix": (4, _int(2, 256)),
                         "sweeps": (5, _int(0, 1000))}}
# TrainSettings fields (model/vit/training.py) -> their rule.
SETTINGS = {"epochs": _int(0, MAX_EPOCHS), "batch": _int(1, 1 << 16), "lr": _real(above=0),
            "weight_decay": _real(lo=0), "label_smoothing": _real(lo=0, below=1), "warmup": _real(lo=0, hi=1),
            "distill": _real(lo=0, hi=1), "temperature": _real(above=0), "hidden_distill": _real(lo=0),
            "distill_weighting": _choice(DISTILL_WEIGHTINGS), "reconstruction": _real(lo=0),
            "tau_anneal": _real(above=0), "progressive": require_bool,
            "average": _real(lo=0, below=1), "rotate": _real(lo=0), "scale": _real(lo=0, below=1),
            "translate": _real(lo=0)}


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
    table_budget: int | None = None        # budget.table_bytes (None: no bound)

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

    def table_bytes(self, model: nn.Module, linear_names) -> dict[str, int]:
        """Table bytes (lut_table_bytes) of each Linear of `model` the plan makes a lut layer."""
        out = {}
        for name in linear_names:
            rule = self.rule_for(name)
            if rule.kind == "lut":
                linear = model.get_submodule(name)
                codebooks = lut_codebooks(linear, rule, f"{self.source}: {name}")
                out[name] = lut_table_bytes(codebooks, rule.options["centroids"], linear.out_features,
                                            linear.in_features // codebooks, rule.options["encoder"],
                                            rule.options["table_bits"])
        return out

    def check_budget(self, model: nn.Module):
        """NomacError when the plan's lut layers in `model` (a tiny ViT) take more table bytes than
        its budget."""
        if self.table_budget is None:
            return
        per_layer = self.table_bytes(model, model.shape.linear_names())
        total = sum(per_layer.values())
        if total > self.table_budget:
            layers = ", ".join(f"{name} {size:,}" for name, size in per_layer.items())
            raise NomacError(f"{self.source}: budget.table_bytes = {self.table_budget:,}: the plan's lut layers "
                             f"take {total:,} bytes of tables and prototypes ({layers}); must be at most the budget")

    def with_epochs(self, epochs, where: str = "--epochs") -> "CompressionPlan":
        """The plan with its training epochs replaced (e.g. from the command line), checked
        by the same rule as the plan file's."""
        return replace(self, settings=train_settings({"epochs": epochs}, where, self.settings))


def train_settings(values: dict, where: str, base: TrainSettings = TrainSettings()) -> TrainSettings:
    """`base` with `values` (TrainSettings field -> value) replaced, each checked by its rule
    in SETTINGS; the plan's "training" keys and command-line overrides go through here."""
    for key in values:
        if key not in SETTINGS:
            raise NomacError(f"{where}: training setting {key!r}: unknown; known settings are {', '.join(SETTINGS)}")
    return replace(base, **{key: SETTINGS[key](where, key, value) for key, value in values.items()})


def bundled_plans() -> dict[str, Path]:
    folder = Path(str(resources.files("nomac.model.vit") / "plans"))
    return {path.stem: path for path in sorted(folder.glob("*.json"))}


def load_plan(path_or_name, linear_names=None) -> CompressionPlan:
    """A plan from a JSON file, or a bundled plan by name (e.g. "lut_train"), checked
    against `linear_names` (default: those of the tiny ViT, see plan_from_dict)."""
    bundled = bundled_plans()
    path = bundled.get(str(path_or_name), Path(path_or_name))
    document = read_json(path, "plan", f"; bundled plans are {', '.join(bundled)}")
    # A bundled plan is named by its place in the repository, so what is made from it
    # (a config's description) does not depend on where the checkout is.
    where = f"model/vit/plans/{path.name}" if str(path_or_name) in bundled else str(path)
    return plan_from_dict(document, where, linear_names)


def plan_from_dict(document, where: str = "<plan>", linear_names=None) -> CompressionPlan:
    """Validate a plan document: every field's type and range, unknown fields refused, and
    every rule's pattern must match one of `linear_names` (default: the nn.Linear names
    of the tiny ViT, ViTShape().linear_names(), which no size setting but depth changes)."""
    if not isinstance(document, dict):
        raise ConfigError(where, "top level", type(document).__name__, "must be a JSON object")
    reject_unknown(where, "field", document, PLAN_KEYS)
    if document.get("format") != FORMAT:
        raise ConfigError(where, "format", document.get("format"), f"must be {FORMAT!r}")
    name = document.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(where, "name", name, "must be an identifier")
    description = document.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(where, "description", description, "must be a string")
    entries = document.get("layers", [])
    if not isinstance(entries, list):
        raise ConfigError(where, "layers", entries, "must be a list of rules {\"match\": pattern, \"kind\": ...}")
    names = list(linear_names) if linear_names is not None else ViTShape().linear_names()
    rules = tuple(_rule(f"{where}: layers[{index}]", entry, names) for index, entry in enumerate(entries))
    training = document.get("training", {})
    if not isinstance(training, dict):
        raise ConfigError(where, "training", training, "must be an object of training settings")
    training = dict(training)
    method = training.pop("method", "none")
    if method not in METHODS:
        raise ConfigError(where, "training.method", method, f"must be one of {', '.join(METHODS)}")
    settings = train_settings(training, f"{where}: training")
    table_budget = _budget(where, document.get("budget", {}))
    if settings.distill_weighting == "published" and settings.distill == 0:
        raise ConfigError(f"{where}: training", "distill_weighting", training["distill_weighting"],
                          "needs distill > 0 (the teacher to distill from; 'published' weighs 0.2 CE + 0.8 KL)")
    if settings.reconstruction > 0 and not any(rule.kind == "lut" for rule in rules):
        raise ConfigError(f"{where}: training", "reconstruction", training["reconstruction"],
                          "needs a lut layer to reconstruct (0 turns it off); this plan has none")
    if settings.tau_anneal != 1 and not any(rule.kind == "lut" and rule.options["encoder"] != "tree" for rule in rules):
        raise ConfigError(f"{where}: training", "tau_anneal", training["tau_anneal"],
                          "needs a lut layer with a distance encoder (l2, l1) whose soft assignment it anneals "
                          "(1 turns it off); this plan has none")
    if settings.progressive:
        luts = [index for index, rule in enumerate(rules) if rule.kind == "lut"]
        tables_only = [index for index in luts if rules[index].options["learn"] == "tables"]
        if not luts or tables_only:
            raise ConfigError(f"{where}: training", "progressive", True,
                              "needs lut layers that learn their weights (learn 'weight' or 'weight+tables'): a "
                              "layer not yet replaced computes as its float Linear; " +
                              (f"layers[{tables_only[0]}] learns only its tables" if tables_only
                               else "this plan has no lut layer"))
    return CompressionPlan(name=name, rules=rules, method=method, settings=settings,
                           description=description, source=where, table_budget=table_budget)


def _budget(where: str, budget) -> int | None:
    if not isinstance(budget, dict):
        raise ConfigError(where, "budget", budget, "must be an object such as {\"table_bytes\": 122880}")
    reject_unknown(f"{where}: budget", "field", budget, BUDGET_KEYS)
    if "table_bytes" not in budget:
        return None
    return require_int(f"{where}: budget", "table_bytes", budget["table_bytes"], lo=0)


def _rule(at: str, entry, linear_names: list[str]) -> LayerRule:
    if not isinstance(entry, dict) or not isinstance(entry.get("match"), str) or not entry["match"]:
        raise ConfigError(at, "rule", entry, "must be an object with a \"match\" pattern and a \"kind\"")
    kind = entry.get("kind")
    if kind not in KINDS:
        raise ConfigError(at, "kind", kind, f"must be one of {', '.join(KINDS)}")
    options = {key: default for key, (default, _) in OPTIONS[kind].items()}
    for key, value in entry.items():
        if key in ("match", "kind"):
            continue
        if key not in options:
            raise NomacError(f"{at}: option {key!r}: unknown for kind {kind}; "
                             f"known options are {', '.join(OPTIONS[kind]) or 'none'}")
        options[key] = OPTIONS[kind][key][1](at, key, value)
    if kind == "lut":
        if (options["subvector"] is None) == (options["codebooks"] is None):
            raise NomacError(f"{at}: a lut rule needs exactly one of \"subvector\" and \"codebooks\"")
        if options["input_gradient"] == "linear" and options["learn"] == "tables":
            raise ConfigError(at, "input_gradient", "linear", "needs learned weights (learn 'weight' or "
                              "'weight+tables'), not learn 'tables'")
        if options["encoder"] == "tree" and options["soft_distance"] != "encoder":
            raise ConfigError(at, "soft_distance", options["soft_distance"],
                              "must be 'encoder' with encoder 'tree' (a tree encoder has no distances to soften)")
    if not any(fnmatch.fnmatchcase(name, entry["match"]) for name in linear_names):
        raise ConfigError(at, "match", entry["match"],
                          f"matches no layer of the model; its layers are {', '.join(linear_names)}")
    return LayerRule(match=entry["match"], kind=kind, options=options)


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


def lut_codebooks(linear: nn.Linear, rule: LayerRule, where: str) -> int:
    """C of a lut rule on `linear`: its `codebooks`, or in_features / `subvector` (which must divide)."""
    o = rule.options
    if o["subvector"] is None:
        return o["codebooks"]
    if linear.in_features % o["subvector"]:
        raise NomacError(f"{where}: subvector = {o['subvector']}: must divide in_features {linear.in_features}")
    return linear.in_features // o["subvector"]


def convert_linear(linear: nn.Linear, rule: LayerRule, inputs: np.ndarray, seed: int, where: str) -> nn.Module:
    o = rule.options
    if rule.kind == "lut":
        return TrainableLUTLinear.from_linear(linear, inputs, lut_codebooks(linear, rule, where), o["centroids"],
                                              o["encoder"], seed=seed, iterations=KMEANS_ITERATIONS, learn=o["learn"],
                                              input_gradient=o["input_gradient"], soft_distance=o["soft_distance"],
                                              table_bits=o["table_bits"])
    if rule.kind == "shift":
        from nomac.model.layers.shift_linear import ShiftLinearPS, ShiftLinearQ
        cls = {"Q": ShiftLinearQ, "PS": ShiftLinearPS}.get(o["variant"])
        if cls is None:
            raise NomacError(f"{where}: variant = {o['variant']!r}: must be 'Q' or 'PS'")
        return cls.from_linear(linear, o["weight_bits"])
    if rule.kind == "butterfly":
        from nomac.model.layers.butterfly_linear import DeButLinear
        try:
            chain = propose_chain(linear.out_features, linear.in_features, o["style"], o["radix"])
        except ValueError as e:     # no chain of this style and radix for the layer's sizes
            raise NomacError(f"{where}: {e}") from None
        return DeButLinear.from_linear(linear, chain, o["sweeps"], calibration=inputs, seed=seed)
    raise NomacError(f"{where}: kind = {rule.kind!r}: must be one of {', '.join(KINDS)}")
