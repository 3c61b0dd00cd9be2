"""The bundled `shift` and `dense` configs are what their generator writes, byte for byte
(the `lut` ones: tests/test_lut_linear.py)."""
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
