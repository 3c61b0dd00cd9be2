"""`nomac train`: float tiny ViT -> compressed by a plan -> trained -> whole-model config,
with its accuracies measured (float, integer-only, and how often the two agree).

Files in `out_dir` (all resumable, all keyed by seed):
- `float_seed<S>.pt`: the float teacher's checkpoint (trained once, shared by every plan);
- `<plan>_seed<S>.pt`: the compressed model's fine-tuning checkpoint;
- `<plan>_seed<S>.json` + `.npz`: the integer whole-model config (`nomac golden` runs it);
- `<plan>_seed<S>.result.json`: the measured figures (what `nomac report` tabulates).
"""
import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from nomac.base.output_files import write_json
from nomac.model.config import save_config
from nomac.model.golden import run_golden
from nomac.model.vit.compression_plan import CALIBRATION_ROWS, CompressionPlan, compress
from nomac.model.vit.digits_data import ImageData
from nomac.model.vit.export import export_matrix, export_vit, record_tensors, tensor_scales
from nomac.model.vit.integer_emulation import IntegerEmulation
from nomac.model.vit.tiny_vit import TinyViT, ViTShape
from nomac.model.vit.training import TrainSettings, accuracy, predict, train

__all__ = ["FLOAT_SETTINGS", "BUTTERFLY_CALIBRATION_ROWS", "PlanResult", "build_float", "train_float",
           "recorded_inputs", "quantization_aware", "run_plan"]

FLOAT_SETTINGS = TrainSettings(epochs=400)     # 200 left seeds at 95.8-97.5 % test, 400 at 97.5-98.1 %
BUTTERFLY_CALIBRATION_ROWS = 512


@dataclass
class PlanResult:
    plan: str
    seed: int
    dataset: str
    float_teacher_accuracy: float      # the uncompressed float model, test split
    float_accuracy: float              # the compressed float model (the one exported), test split
    int_accuracy: float                # the integer-only whole-model config, test split
    agreement: float                   # fraction of test images where float and integer predict the same class
    float_ops_accuracy: float          # the same model with float operators (LayerNorm, softmax, GELU, adds) on int8 grids
    float_ops_agreement: float         # ... and how often it agrees with the integer model
    int_val_accuracy: float
    config: str
    config_id: str
    kinds: dict                        # linear name -> kind
    parameters: int                    # float parameters of the compressed model
    train_seconds: float
    deterministic: bool                # two integer runs gave the same bytes

    def save(self, path: Path):
        write_json(path, asdict(self), "plan result")


def build_float(data: ImageData, shape: ViTShape | None = None, seed: int = 0) -> TinyViT:
    # a 4 x 4 grid of patches: 2x2 pixels for the 8x8 digits, 7x7 for 28x28 MNIST
    shape = shape or ViTShape(height=data.height, width=data.width, patch=data.height // 4, classes=data.classes)
    torch.manual_seed(seed)
    return TinyViT(shape)


def train_float(data: ImageData, seed: int, out_dir: Path, settings: TrainSettings = FLOAT_SETTINGS,
                shape: ViTShape | None = None, progress: bool = True) -> TinyViT:
    """The float teacher for a seed, trained (or resumed, or loaded) from its checkpoint."""
    model = build_float(data, shape, seed)
    train(model, data, settings, seed, checkpoint=Path(out_dir) / f"float_seed{seed}.pt", progress=progress,
          description=f"float seed {seed}")
    model.eval()
    return model


def recorded_inputs(model: TinyViT, x: np.ndarray) -> dict[str, np.ndarray]:
    """Float inputs of every Linear on images x, keyed by linear name."""
    record = {}
    model.eval()
    with torch.no_grad():
        model(torch.as_tensor(x), record=record)
    return {name: record[read].numpy() for name, (read, _) in model.shape.linear_points().items()}


def quantization_aware(model: TinyViT, scales: dict, input_scale: float, inputs: dict | None = None,
                       emulate: bool = True) -> dict:
    """Make `model` compute on the integer model's grids: every activation rounded to int8 at
    its scale (the float teacher's, max|v| / 127 on the training images), every lut layer on
    its exported prototypes and tables, and (emulate) every other point's value taken from
    its integer layer (integer_emulation.py). Returns the scales, which export must use too."""
    scales = dict(scales)
    scales["patches"] = input_scale
    for name, (read, written) in model.shape.linear_points().items():
        module = model.get_submodule(name)
        scale_in = input_scale if read == "patches" else scales[read]
        if hasattr(module, "set_quantization"):
            module.set_quantization(scale_in, scales[written])
        elif written != "head":
            # dense / shift / butterfly outputs land on their export's own grid (a power-of-two
            # multiple of the accumulator unit for dense and shift): train on that grid
            calibration = None if inputs is None else inputs[name][:BUTTERFLY_CALIBRATION_ROWS]
            if hasattr(module, "chain"):     # a butterfly's inner scales: fixed, for training and export alike
                module.calibration_inputs = calibration
            layer = export_matrix(module, name, scale_in, scales[written], calibration)
            scales[written] = float(layer.extra.get("output_scale", scales[written]))
    model.activation_scales = scales
    model.emulation = IntegerEmulation(model, scales, input_scale) if emulate else None
    return scales


def run_plan(plan: CompressionPlan, data: ImageData, seed: int, out_dir, *, float_settings: TrainSettings = FLOAT_SETTINGS,
             shape: ViTShape | None = None, progress: bool = True, log=print,
             calibration_rows: int = CALIBRATION_ROWS) -> PlanResult:
    """Train (or resume) the float teacher and the plan's compressed model for one seed; export
    and measure it. Everything lands in out_dir."""
    out_dir = Path(out_dir)
    candidate = build_float(data, shape, seed)        # its Linears' sizes, before any training
    plan.check_budget(candidate)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    teacher = train_float(data, seed, out_dir, float_settings, shape, progress)
    x_train, x_test = data.float32("train"), data.float32("test")
    inputs = recorded_inputs(teacher, x_train)
    model = compress(copy.deepcopy(teacher), plan, teacher.shape.linear_names(), inputs, seed, calibration_rows)
    scales = quantization_aware(model, tensor_scales(record_tensors(teacher, x_train)), data.input_scale,
                                {name: value.reshape(-1, value.shape[-1]) for name, value in inputs.items()})
    if plan.trains:
        train(model, data, plan.settings, seed, checkpoint=out_dir / f"{plan.name}_seed{seed}.pt",
              teacher=teacher if plan.settings.distill > 0 or plan.settings.reconstruction > 0 else None,
              progress=progress,
              description=f"{plan.name} seed {seed}")
    model.eval()
    seconds = time.time() - start
    description = (f"tiny ViT {asdict(model.shape)} on {data.name}, plan {plan.name} ({plan.source}), seed {seed}; "
                   f"made by nomac train")
    config = export_vit(model, x_train, data.input_scale, description=description, scales=scales)
    config_path = save_config(config, out_dir / f"{plan.name}_seed{seed}.json")
    x_int = data.int8("test")
    logits = run_golden(config, x_int)
    deterministic = bool(np.array_equal(logits, run_golden(config, x_int)))
    int_pred = logits.argmax(axis=-1)
    float_pred = predict(model, x_test)
    emulation, model.emulation = model.emulation, None
    float_ops_pred = predict(model, x_test)
    model.emulation = emulation
    labels = data.labels["test"]
    result = PlanResult(
        plan=plan.name, seed=seed, dataset=data.name,
        float_teacher_accuracy=accuracy(teacher, x_test, labels),
        float_accuracy=float((float_pred == labels).mean()),
        int_accuracy=float((int_pred == labels).mean()),
        agreement=float((int_pred == float_pred).mean()),
        float_ops_accuracy=float((float_ops_pred == labels).mean()),
        float_ops_agreement=float((int_pred == float_ops_pred).mean()),
        int_val_accuracy=float((run_golden(config, data.int8("val")).argmax(-1) == data.labels["val"]).mean()),
        config=str(config_path), config_id=config.config_id,
        kinds=plan.kinds(model.shape.linear_names()),
        parameters=sum(p.numel() for p in model.parameters()),
        train_seconds=round(seconds, 1), deterministic=deterministic)
    result.save(out_dir / f"{plan.name}_seed{seed}.result.json")
    if log:
        log(f"{plan.name} seed {seed}: float {result.float_accuracy:.4f} (teacher {result.float_teacher_accuracy:.4f}), "
            f"integer {result.int_accuracy:.4f}, agreement {result.agreement:.4f} (float operators: "
            f"{result.float_ops_accuracy:.4f}, agreement {result.float_ops_agreement:.4f}); config {config_path}")
    return result
