"""The CPU code paths of PyTorch and MKL, pinned, so that seeded training writes the same
bytes on every x86-64 machine with AVX2.

A float kernel's result depends on the instructions it runs with (vector width, fused
multiply-add, the order of a vector's partial sums): on one machine, the same seeded
training of the tiny ViT wrote different weights with ATen's AVX512, AVX2 and default
kernels, and with MKL's AVX512 and AVX2 paths. So the bundled models, made by
`python -m nomac.model.examples.vit`, were reproducible only on a CPU like the one
that made them. Pinned: ATen's kernels to AVX2 (`ATEN_CPU_CAPABILITY`), MKL to its
conditional numerical reproducibility branch for AVX2 (`MKL_CBWR`), oneDNN to AVX2
(`DNNL_MAX_CPU_ISA`). With these, an AVX512 machine and the same machine with MKL held
to AVX2 write the same bytes, and training is no slower. All three are read at the first
kernel call, not at `import torch`; a variable already set is left as it is.
"""
import os

__all__ = ["PINNED", "pin_cpu_numerics", "cpu_capability_pinned"]

PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2"}


def pin_cpu_numerics():
    for name, value in PINNED.items():
        os.environ.setdefault(name, value)


def cpu_capability_pinned() -> bool:
    """Whether PyTorch's kernels run on the pinned code path (False on a CPU without AVX2,
    or when a variable was set to something else before nomac was imported)."""
    import torch
    return (torch.backends.cpu.get_cpu_capability() == PINNED["ATEN_CPU_CAPABILITY"].upper()
            and all(os.environ.get(name) == value for name, value in PINNED.items()))
