"""hw/vector_stream.py: the beat layout of docs/spec.md section 3 (lane i at bits
[w*i + w-1 : w*i], `last` above the lanes) and the beat count ceil(E / L)."""
import pytest
from amaranth.hdl import signed, unsigned
from amaranth.lib import stream

from nomac.hw.vector_stream import Beat, beats_per_vector, vector_stream


def test_lanes_from_bit_zero_then_last():
    beat = Beat(3, signed(8))
    assert beat.size == 25
    assert beat["last"].offset == 24
    assert beat.const({"data": [1, -1, -128], "last": 1}).as_bits() == 0x01 | 0xFF << 8 | 0x80 << 16 | 1 << 24


def test_unsigned_and_wide_elements():
    assert Beat(1, unsigned(3)).const({"data": [5], "last": 0}).as_bits() == 5
    assert Beat(2, signed(20)).const({"data": [-1, 2], "last": 1}).as_bits() == 0xFFFFF | 2 << 20 | 1 << 40


def test_signature_is_a_library_stream_of_beats():
    assert vector_stream(4, signed(8)) == stream.Signature(Beat(4, signed(8)))


@pytest.mark.parametrize("elements, lanes, beats", [(1, 1, 1), (4, 4, 1), (5, 2, 3), (6, 2, 3), (3, 5, 1),
                                                    (12, 5, 3), (7, 1, 7)])
def test_beats_per_vector(elements, lanes, beats):
    assert beats_per_vector(elements, lanes) == beats
