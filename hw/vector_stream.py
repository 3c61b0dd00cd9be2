"""Vector streams (docs/spec.md section 3): `lib.stream` beats of `lanes` elements plus `last`.

Lane i of a beat holds the element with the i-th lowest index of that beat; the
final beat of a vector carries `last` and zeros in its unused lanes.
"""
from amaranth.hdl import ShapeLike
from amaranth.lib import data, stream


class Beat(data.StructLayout):
    """One beat: `lanes` elements of `element` shape and the final-beat flag."""

    def __init__(self, lanes: int, element: ShapeLike):
        super().__init__({"data": data.ArrayLayout(element, lanes), "last": 1})


def vector_stream(lanes: int, element: ShapeLike) -> stream.Signature:
    """The signature of a stream carrying vectors in beats of `lanes` elements."""
    return stream.Signature(Beat(lanes, element))


def beats_per_vector(elements: int, lanes: int) -> int:
    return -(-elements // lanes)
