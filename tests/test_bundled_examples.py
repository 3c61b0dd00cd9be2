"""The bundled `shift` and `dense` configs are what their generator writes, byte for byte
(the `lut` ones: tests/test_lut_linear.py), and (slow) so are the bundled tiny ViTs."""
import pytest

from nomac.model.examples.matrix import HW, build_examples
from nomac.model.examples.source_layer import CONFIG_DIR, save_examples


def test_bundled_matrix_examples_are_what_the_generator_writes(tmp_path):
    built = build_examples()
    written = save_examples(built, tmp_path)
    assert sorted(path.name for path in written) == ["dense_small.json", "dense_small.npz",
                                                     "shift_q5_small.json", "shift_q5_small.npz"]
    for path in written:
        assert (CONFIG_DIR / path.name).read_bytes() == path.read_bytes(), path.name
    shift, dense = built["shift_q5_small"][0].layers[0], built["dense_small"][0].layers[0]
    assert (shift.kind, dense.kind) == ("shift", "dense")
    assert shift.hw_given == dense.hw_given == HW
    assert (shift.shift_min, shift.shift_max) == (-15, 0)      # 5-bit DeepShift-Q: 2^-15 .. 2^0


@pytest.mark.slow
def test_the_bundled_vits_are_what_their_command_trains_byte_for_byte(tmp_path):
    """`python -m nomac.model.examples.vit` (the float teacher and four plans, seed 0: about
    11 minutes on one core) writes the bundled whole-model configs again, byte for byte."""
    from nomac.model.examples.vit import CONFIG_DIR as VIT_DIR, PLANS, build_examples as build_vits
    written = build_vits(tmp_path)
    assert [path.name for path in written] == [f"vit_{plan}.json" for plan in PLANS]
    for path in written:
        for suffix in (".json", ".npz"):
            made = path.with_suffix(suffix)
            assert (VIT_DIR / made.name).read_bytes() == made.read_bytes(), made.name
