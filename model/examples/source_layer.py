"""What every bundled example starts from and ends with: the float layer it compresses,
the inputs it is fitted on, where the configs go and the error table it prints.

A Linear(32, 32) with seeded uniform weights (the nn.Linear default range), fitted on
real, structured inputs: the 1797 8x8 handwritten digits of scikit-learn's
`load_digits` (bundled with the package, no download), each image averaged over pairs
of neighbouring columns to 8x4 = 32 features and mapped from 0..16 to [-1, 1].
"""
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nomac.model.config import Config, save_config
from nomac.model.golden import run_golden
from nomac.model.layers.activations import activation_scale, quantize_activations

__all__ = ["CONFIG_DIR", "SEED", "IN_FEATURES", "OUT_FEATURES", "digits_inputs", "seeded_linear", "source",
           "save_examples", "relative_error", "integer_errors", "print_errors"]

CONFIG_DIR = Path(__file__).parent.parent / "configs"   # the bundled configs (nomac.model package data)
SEED = 0
IN_FEATURES, OUT_FEATURES = 32, 32


def digits_inputs() -> np.ndarray:
    """[1797, 32] float64 in [-1, 1]: the digits images pooled to 8 rows x 4 columns."""
    from sklearn.datasets import load_digits
    images = load_digits().images                                   # [N, 8, 8], values 0..16
    pooled = images.reshape(len(images), 8, 4, 2).mean(axis=-1)     # [N, 8, 4]
    return pooled.reshape(len(images), IN_FEATURES) / 8.0 - 1.0


def seeded_linear(seed: int = SEED) -> nn.Linear:
    """nn.Linear(32, 32) with weight and bias uniform in +-1/sqrt(32), from its own Generator."""
    generator = torch.Generator().manual_seed(seed)
    linear = nn.Linear(IN_FEATURES, OUT_FEATURES)
    bound = IN_FEATURES ** -0.5
    with torch.no_grad():
        for parameter in (linear.weight, linear.bias):
            parameter.copy_((torch.rand(parameter.shape, generator=generator, dtype=torch.float64) * 2 - 1) * bound)
    return linear


def source() -> tuple[nn.Linear, np.ndarray, float]:
    """(the seeded layer in float64, the digits inputs, their activation_scale)."""
    inputs = digits_inputs()
    return seeded_linear().double(), inputs, activation_scale(inputs)


def save_examples(built: dict[str, tuple], out_dir) -> list[Path]:
    """Write a generator's build_examples() ({file stem: (config, ...)}) into out_dir as
    JSON + .npz; return the JSON and .npz paths."""
    paths = []
    for stem, (config, *_) in built.items():
        json_path = save_config(config, Path(out_dir) / f"{stem}.json")
        paths += [json_path, json_path.with_suffix(".npz")]
    return paths


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / ||b||, the relative RMS error every generator prints."""
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def integer_errors(config: Config, approx: np.ndarray, dense: np.ndarray, inputs: np.ndarray) -> tuple:
    """Relative errors on `inputs` of the float stand-in (outputs `approx`) against the dense
    layer (`dense`), and of the integer config (its golden model) against both."""
    layer = config.layers[0]
    integer = run_golden(config, quantize_activations(inputs, layer.extra["input_scale"]))
    scaled = integer * layer.extra["output_scale"]
    return relative_error(approx, dense), relative_error(scaled, approx), relative_error(scaled, dense)


def print_errors(columns: tuple[str, ...], rows) -> None:
    """A table of (config file name, config_id, relative errors named by `columns`) rows."""
    print(f"{'config':<22} {'config_id':<17} " + " ".join(f"{column:>11}" for column in columns))
    for name, config_id, errors in rows:
        print(f"{name:<22} {config_id:<17} " + " ".join(f"{error:>11.4f}" for error in errors))
    print("errors: relative RMS, ||a - b|| / ||b|| over the 1797 digits inputs")
