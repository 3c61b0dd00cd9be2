"""The CPU code paths training runs on (base/cpu_numerics.py): pinned by importing nomac, left
alone when set beforehand, and a training run off the pin warns that its bytes are its own."""
import os
import subprocess
import sys

import pytest
import torch

from nomac.base.cpu_numerics import PINNED, cpu_capability_pinned

CAPABILITY = "import nomac, torch; print(torch.backends.cpu.get_cpu_capability())"


def capability(**env) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in PINNED}
    return subprocess.run([sys.executable, "-c", CAPABILITY], env={**clean, **env}, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_importing_nomac_pins_the_kernels_unless_they_were_chosen_before():
    assert PINNED == {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2"}
    assert capability() == "AVX2"
    assert capability(ATEN_CPU_CAPABILITY="default") == "DEFAULT"
    assert cpu_capability_pinned()          # this test process imported nomac before any kernel ran


def test_a_training_run_off_the_pin_warns(monkeypatch):
    """The check sees a changed variable; the run itself is made off the pin by patching the
    check, not the variables: MKL keeps the branch it read at its first call, so a run here
    under another MKL_CBWR would change every later training in this test process."""
    from nomac.model.vit import training
    from nomac.model.vit.digits_data import load_dataset
    from nomac.model.vit.tiny_vit import TinyViT
    from nomac.model.vit.training import TrainSettings, train
    with monkeypatch.context() as changed:
        changed.setenv("MKL_CBWR", "AUTO")
        assert not cpu_capability_pinned()
    assert cpu_capability_pinned()
    monkeypatch.setattr(training, "cpu_capability_pinned", lambda: False)
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match=r"not the pinned .*this run's bytes can differ from another machine's"):
        train(TinyViT(), load_dataset("digits"), TrainSettings(epochs=1, batch=512), seed=0, progress=False,
              stop_after=1)
