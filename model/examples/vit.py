"""The bundled trained tiny ViTs in model/configs/ (`vit_<plan>.json` + `.npz`): whole-model
configs that the network boards run and `nomac demo` shows, trained here, never hand-made.

Each is `nomac train --plan PLAN --seed 0` on the digits data (docs/spec.md section 12):
the float teacher once, then each plan, in a scratch folder; only the exported configs
are kept. Training is seeded and single-threaded, so running it twice writes
byte-identical files (about 7 minutes on one core).

- `lut_train_ice40_all`: every Linear `lut` (the patch embedding and the head too), tables
  within an iCE40UP5K's SPRAM (the iCEBreaker's network board, whose lut bitstream has no
  dense unit).
- `shift`: DeepShift weights everywhere but the patch embedding (iCEBreaker).
- `lut_train_v1_k8`: the best integer LUT plan (ULX3S-85F).
- `mixed`: lut, butterfly, shift and dense in one model (ULX3S-85F).

    python -m nomac.model.examples.vit [out_dir]
"""
import sys
import tempfile
from pathlib import Path

from nomac.model.config import load_config, save_config
from nomac.model.vit.compression_plan import load_plan
from nomac.model.vit.digits_data import load_dataset
from nomac.model.vit.pipeline import run_plan

__all__ = ["PLANS", "SEED", "bundled_vit", "build_examples"]

CONFIG_DIR = Path(__file__).parent.parent / "configs"
PLANS = ("lut_train_ice40_all", "shift", "lut_train_v1_k8", "mixed")
SEED = 0


def bundled_vit(plan: str) -> Path:
    """The bundled config of `plan`'s model."""
    return CONFIG_DIR / f"vit_{plan}.json"


def build_examples(out_dir: Path = CONFIG_DIR, plans=PLANS) -> list[Path]:
    data = load_dataset("digits")
    written = []
    with tempfile.TemporaryDirectory(prefix="nomac-vit-") as scratch:
        for plan in plans:
            result = run_plan(load_plan(plan), data, SEED, scratch, progress=False)
            written.append(save_config(load_config(result.config), Path(out_dir) / f"vit_{plan}.json"))
    return written


if __name__ == "__main__":
    for path in build_examples(Path(sys.argv[1]) if len(sys.argv) > 1 else CONFIG_DIR):
        print(path)
