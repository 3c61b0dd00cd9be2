"""Seeded, resumable training of the tiny ViT and of its compressed versions.

One loop serves both: AdamW with a one-cycle learning rate, cross-entropy with label
smoothing, optional distillation from a float teacher (Hinton et al., "Distilling the
Knowledge in a Neural Network", 2015: KL divergence of temperature-softened outputs,
times T^2; and, with `hidden_distill`, the squared error of the residual stream after
every attention and MLP half-block against the teacher's; with `reconstruction`, every
lookup layer's squared error against the teacher's Linear on the same input, see
LayerReconstruction; with `tau_anneal`, a temperature schedule for the lookup layers' soft
assignment, see tau_schedule; with `progressive`, the lookup layers replace their float
Linear block by block, see replacement_stages), and random affine
augmentation of the digit images (rotation, scale, sub-pixel shift; the float model's
inputs only, the test images are never touched). With `average`, the run ends with an
exponential moving average of the weights over the steps (Polyak averaging, as in Izmailov
et al., "Averaging Weights Leads to Wider Optima", 2018) instead of the last step's: a
compressed model whose hard lookups flip from step to step ends between its neighbours.

Determinism: every epoch draws its batch order and augmentation from a Generator
seeded with (seed, epoch), so a run resumed from its checkpoint (saved after every
epoch: model, optimizer, schedule, epoch, history) ends with the same weights as one
that was never interrupted. Torch runs on one thread here so that sums are ordered
the same way on every machine, and on the kernels nomac.base.cpu_numerics pins (AVX2), so
that the same seed writes the same bytes on any x86-64 CPU with AVX2; `train` warns when
they are not in effect.
"""
import contextlib
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nomac.base.cpu_numerics import PINNED, cpu_capability_pinned
from nomac.base.errors import NomacError
from nomac.base.output_files import replaced_file
from nomac.model.layers.lut_training import TrainableLUTLinear

__all__ = ["DISTILL_WEIGHTINGS", "PUBLISHED_WEIGHTS", "TrainSettings", "augment", "hidden_state_loss",
           "distillation_loss", "LayerReconstruction", "tau_schedule", "replacement_stages", "stage_at", "accuracy", "predict",
           "train", "save_checkpoint"]

# How cross-entropy and distillation are weighed (TrainSettings.distill_weighting):
# "hinton": (1 - distill) * CE + distill * T^2 * KL, the soft term scaled by T^2 as in Hinton et
#           al. (its gradients then do not shrink with the temperature); every plan's before this option;
# "published": 0.2 * CE + 0.8 * KL, the KL at the same temperature T and not scaled by T^2
#           (the weighting issue 16 names); `distill` must be > 0 (it gives the run its teacher),
#           its value is not used.
DISTILL_WEIGHTINGS = ("hinton", "published")
PUBLISHED_WEIGHTS = (0.2, 0.8)          # (cross-entropy, distillation)


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 200
    batch: int = 128
    lr: float = 4e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    warmup: float = 0.1              # fraction of the steps spent raising the learning rate
    distill: float = 0.0             # weight of the distillation loss (0: none)
    temperature: float = 2.0         # distillation temperature
    hidden_distill: float = 0.0      # weight of the hidden-state distillation loss (0: none)
    distill_weighting: str = "hinton"   # DISTILL_WEIGHTINGS: how cross-entropy and distillation are weighed
    reconstruction: float = 0.0      # weight of the lookup layers' reconstruction loss (0: none)
    tau_anneal: float = 1.0          # the soft assignment's inverse temperature ends this many times its own
    progressive: bool = False        # lookup layers replace their float Linear block by block
    average: float = 0.0             # decay of the weight average the run ends with (0: the last weights)
    rotate: float = 0.21             # augmentation: max rotation (radians, ~12 degrees)
    scale: float = 0.1               # max relative zoom
    translate: float = 0.25          # max shift, fraction of the half image (0.25 = 1 pixel of 8)


def augment(x: torch.Tensor, height: int, width: int, settings: TrainSettings,
            generator: torch.Generator, background: float) -> torch.Tensor:
    """Random affine transforms of images [N, H*W]; pixels moved in from outside are `background`."""
    n = len(x)

    def uniform(amount):
        return (torch.rand(n, generator=generator) * 2 - 1) * amount

    angle, zoom = uniform(settings.rotate), 1 + uniform(settings.scale)
    tx, ty = uniform(settings.translate), uniform(settings.translate)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, (n, 1, height, width), align_corners=False)
    shifted = x.reshape(n, 1, height, width) - background          # background -> 0, the padding value
    return (F.grid_sample(shifted, grid, align_corners=False) + background).reshape(n, height * width)


def hidden_state_loss(student: dict, teacher: dict, points) -> torch.Tensor:
    """Mean over `points` of the squared error of the student's tensor against the teacher's,
    relative to the teacher's variance there (so every point weighs alike): a loss on every
    token's hidden state, far more signal than the logits alone when a compressed layer
    must relearn what its float original computed (as in TinyBERT, Jiao et al., 2020)."""
    terms = [F.mse_loss(student[p], teacher[p]) / teacher[p].var().clamp_min(1e-12) for p in points]
    return torch.stack(terms).mean()


def distillation_loss(cross_entropy: torch.Tensor, logits: torch.Tensor, teacher_logits: torch.Tensor,
                      settings: TrainSettings) -> torch.Tensor:
    """Cross-entropy and the KL divergence of the temperature-softened outputs (batch mean),
    weighed as settings.distill_weighting says (DISTILL_WEIGHTINGS)."""
    T = settings.temperature
    target = F.softmax(teacher_logits / T, dim=-1)
    soft = F.kl_div(F.log_softmax(logits / T, dim=-1), target, reduction="batchmean")
    if settings.distill_weighting == "published":
        ce_weight, kd_weight = PUBLISHED_WEIGHTS
        return ce_weight * cross_entropy + kd_weight * soft
    return (1 - settings.distill) * cross_entropy + settings.distill * T ** 2 * soft


class LayerReconstruction:
    """Layer-wise reconstruction loss of a compressed model's lookup layers: for each
    LUTLinear (TrainableLUTLinear) of `student`, the mean squared error of its output against
    the teacher's Linear of the same name applied to the same input (the student's input to
    that layer); `loss()` is their sum over the layers, from the forward passes since the last call.

    Forward hooks on the lookup layers collect the terms (in training mode only, so the
    validation passes add none); the target is computed without gradients (the teacher is
    fixed, and the input is detached there), so the term trains the lookup layer to be its
    float original on the inputs it now sees, and reaches the layers below only through the
    lookup layer's own input gradient. Use as a context manager: the hooks go on leaving it.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module):
        from nomac.model.layers.lut_linear import LUTLinear
        self.pairs = {}
        for name, module in student.named_modules():
            if isinstance(module, LUTLinear):
                reference = teacher.get_submodule(name)
                if not isinstance(reference, nn.Linear):
                    raise NomacError(f"reconstruction: the teacher's {name} is a {type(reference).__name__}, "
                                     f"not the nn.Linear lookup layer {name} approximates")
                self.pairs[name] = (module, reference)
        if not self.pairs:
            raise NomacError("reconstruction: the model has no lookup (lut) layer to reconstruct")
        self.terms: dict[str, list[torch.Tensor]] = {name: [] for name in self.pairs}
        self.handles = [module.register_forward_hook(self._hook(name)) for name, (module, _) in self.pairs.items()]

    def _hook(self, name: str):
        def record(module: nn.Module, inputs: tuple, output: torch.Tensor):
            if module.training:
                reference = self.pairs[name][1]
                with torch.no_grad():
                    target = F.linear(inputs[0].detach(), reference.weight, reference.bias)
                self.terms[name].append(F.mse_loss(output, target))
        return record

    def loss(self) -> torch.Tensor:
        """Sum over the lookup layers of their mean squared error (one term per layer and forward
        pass since the last call); clears the terms."""
        terms = [term for layer in self.terms.values() for term in layer]
        if not terms:
            raise NomacError("reconstruction: no lookup layer ran in training mode since the last loss")
        for layer in self.terms.values():
            layer.clear()
        return torch.stack(terms).sum()

    def remove(self):
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def __enter__(self) -> "LayerReconstruction":
        return self

    def __exit__(self, *exc):
        self.remove()


def tau_schedule(tau_anneal: float, epoch: int, epochs: int) -> float:
    """The factor of the soft assignment's inverse temperature in `epoch` (0-based): geometric
    from 1 at the first epoch to tau_anneal at the last, so that a soft start (wide gradients
    to every prototype) ends close to the hard assignment the integer model computes."""
    return tau_anneal ** (epoch / max(1, epochs - 1))


def replacement_stages(model: nn.Module) -> dict:
    """Progressive replacement's stage of each lookup layer (module -> stage): block i's layers
    replace their float Linear in stage i, the patch embedding with block 0, every other
    layer (the head) with the last block. Training spends epochs * stage // blocks epochs
    before stage `stage` starts (`stage_at`); a layer whose stage has not started computes as
    its float Linear (`TrainableLUTLinear.bypass`), so its weight trains on, its prototypes and
    tables wait."""
    blocks = len(model.blocks)
    stages = {}
    for name, module in model.named_modules():
        if isinstance(module, TrainableLUTLinear):
            parts = name.split(".")
            stages[module] = int(parts[1]) if parts[0] == "blocks" else 0 if name == "patch_embed" else blocks - 1
    return stages


def stage_at(epoch: int, epochs: int, blocks: int) -> int:
    """The replacement stage running at `epoch`: the epochs split into `blocks` equal parts."""
    return min(blocks - 1, epoch * blocks // max(1, epochs))


def accuracy(model: nn.Module, x, labels, batch: int = 512) -> float:
    return float((predict(model, x, batch) == np.asarray(labels)).mean())


def predict(model: nn.Module, x, batch: int = 512) -> np.ndarray:
    """Predicted classes (argmax, ties to the smallest index) in eval mode."""
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            out.append(model(torch.as_tensor(x[start:start + batch])).argmax(-1).numpy())
    model.train(was_training)
    return np.concatenate(out)


def train(model: nn.Module, data, settings: TrainSettings, seed: int, *, checkpoint: Path | None = None,
          teacher: nn.Module | None = None, progress: bool = True, description: str = "train",
          stop_after: int | None = None) -> dict:
    """Train `model` in place on data's train split; return the history
    {"epochs_done", "loss" per epoch, "val_accuracy" per epoch}.

    With `checkpoint`, training resumes from it when it exists and saves it after each
    epoch; a finished checkpoint just loads the weights. `stop_after` ends this call after
    that many epochs (as an interruption would).
    """
    if settings.distill_weighting not in DISTILL_WEIGHTINGS:
        raise NomacError(f"{description}: distill_weighting = {settings.distill_weighting!r}: must be one of "
                         f"{', '.join(DISTILL_WEIGHTINGS)}")
    if settings.distill_weighting == "published" and settings.distill == 0:
        raise NomacError(f"{description}: distill_weighting = 'published': needs distill > 0 (a teacher)")
    if settings.reconstruction > 0 and teacher is None:
        raise NomacError(f"{description}: reconstruction = {settings.reconstruction}: needs the float teacher")
    annealed = [m for m in model.modules() if isinstance(m, TrainableLUTLinear) and m.encoder != "tree"]
    if settings.tau_anneal != 1 and not annealed:
        raise NomacError(f"{description}: tau_anneal = {settings.tau_anneal}: the model has no lookup layer with "
                         f"a soft assignment to anneal")
    stages = replacement_stages(model) if settings.progressive else {}
    if settings.progressive and (not stages or any(m.learn == "tables" for m in stages)):
        raise NomacError(f"{description}: progressive = True: needs lookup layers that learn their weights (a layer "
                         f"not yet replaced computes as its float Linear)")
    from tqdm import tqdm
    torch.set_num_threads(1)
    if not cpu_capability_pinned():
        warnings.warn(f"{description}: PyTorch runs on {torch.backends.cpu.get_cpu_capability()} kernels, not the "
                      f"pinned {PINNED} (nomac.base.cpu_numerics): this run's bytes can differ from another machine's")
    x_train = torch.from_numpy(data.float32("train"))
    y_train = torch.from_numpy(data.labels["train"])
    x_val, y_val = data.float32("val"), data.labels["val"]
    background = float(x_train.min())
    steps_per_epoch = math.ceil(len(x_train) / settings.batch)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.lr,
                                  weight_decay=settings.weight_decay)
    total_steps = max(4, settings.epochs * steps_per_epoch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings.lr, total_steps=total_steps,
                                                   pct_start=min(0.5, max(settings.warmup, 2 / total_steps)))
    history = {"epochs_done": 0, "loss": [], "val_accuracy": [], "settings": asdict(settings), "seed": seed}
    trained = {name: p for name, p in model.named_parameters() if p.requires_grad}
    average = {name: p.detach().clone() for name, p in trained.items()} if settings.average else None
    if checkpoint is not None and Path(checkpoint).exists():
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        history = state["history"]
        average = state.get("average", average)
        # a setting added since the checkpoint was written was at its default (old behaviour)
        history["settings"] = {**asdict(TrainSettings()), **history["settings"]}
        if history["settings"] != asdict(settings) or history["seed"] != seed:
            raise NomacError(f"{checkpoint}: was trained with other settings or seed "
                             f"({history['settings']}, seed {history['seed']}); delete it to start again")
    if teacher is not None:
        teacher.eval()
    # the reconstruction hooks stay on the model while it trains, and only then
    reconstruction = LayerReconstruction(model, teacher) if settings.reconstruction > 0 else None
    with reconstruction if reconstruction is not None else contextlib.nullcontext():
        bar = tqdm(total=settings.epochs, initial=history["epochs_done"], desc=description, disable=not progress,
                   leave=False, dynamic_ncols=True)
        last = settings.epochs if stop_after is None else min(settings.epochs, history["epochs_done"] + stop_after)
        for epoch in range(history["epochs_done"], last):
            generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            if settings.tau_anneal != 1:
                for module in annealed:
                    module.tau_scale = tau_schedule(settings.tau_anneal, epoch, settings.epochs)
            if stages:
                running_stage = stage_at(epoch, settings.epochs, len(model.blocks))
                for module, stage in stages.items():
                    module.bypass = stage > running_stage
            model.train()
            order = torch.randperm(len(x_train), generator=generator)
            total = 0.0
            for start in range(0, len(x_train), settings.batch):
                index = order[start:start + settings.batch]
                x = augment(x_train[index], data.height, data.width, settings, generator, background)
                hidden = {} if teacher is not None and settings.hidden_distill > 0 else None
                logits = model(x, record=hidden)
                loss = F.cross_entropy(logits, y_train[index], label_smoothing=settings.label_smoothing)
                if teacher is not None and (settings.distill > 0 or hidden is not None):
                    teacher_hidden = {} if hidden is not None else None
                    with torch.no_grad():
                        teacher_logits = teacher(x, record=teacher_hidden)
                    if settings.distill > 0:
                        loss = distillation_loss(loss, logits, teacher_logits, settings)
                    if hidden is not None:
                        loss = loss + settings.hidden_distill * hidden_state_loss(hidden, teacher_hidden,
                                                                                  model.shape.residual_points())
                if reconstruction is not None:
                    loss = loss + settings.reconstruction * reconstruction.loss()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                total += float(loss.detach()) * len(index)
                if average is not None:
                    with torch.no_grad():
                        for name, p in trained.items():
                            average[name].lerp_(p, 1 - settings.average)
            if average is not None and epoch + 1 == settings.epochs:
                with torch.no_grad():
                    for name, p in trained.items():
                        p.copy_(average[name])
            history["loss"].append(total / len(x_train))
            history["val_accuracy"].append(accuracy(model, x_val, y_val))
            history["epochs_done"] = epoch + 1
            bar.update(1)
            bar.set_postfix(loss=f"{history['loss'][-1]:.3f}", val=f"{history['val_accuracy'][-1]:.3f}")
            if checkpoint is not None:
                save_checkpoint(checkpoint, model, optimizer, schedule, history, average)
        bar.close()
    for module in stages:
        module.bypass = False            # an interrupted run's model is still the whole lookup model
    return history


def save_checkpoint(path: Path, model, optimizer, schedule, history, average=None):
    with replaced_file(path, "checkpoint") as partial:   # a kill mid-save leaves the previous one intact
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "history": history, "average": average}, partial)
