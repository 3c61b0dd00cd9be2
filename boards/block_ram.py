"""How many table entries per cycle a device's block RAM can deliver (the R of a `lut` engine).

A `lut` engine reads R int8 table entries per cycle from one memory word of 8R bits,
at C * K * ceil(M / R) addresses. Block RAMs come in a few width x depth shapes;
R is possible on a device when some shape gives enough blocks for that width and
depth: ceil(8R / width) * ceil(words / depth) <= blocks on the device.
"""
from nomac.base.errors import NomacError
from nomac.boards.devices import DEVICES

__all__ = ["blocks_for_tables", "max_table_reads"]


def blocks_for_tables(device: str, codebooks: int, centroids: int, out_features: int, reads: int) -> int:
    """Fewest blocks holding the tables as 8 * reads-bit words, over the device's shapes."""
    if device not in DEVICES:
        raise NomacError(f"device {device!r}: no block-RAM description; known: {', '.join(DEVICES)}")
    words = codebooks * centroids * -(-out_features // reads)
    return min(-(-8 * reads // width) * -(-words // depth) for width, depth in DEVICES[device].block_ram.shapes)


def max_table_reads(device: str, codebooks: int, centroids: int, out_features: int) -> int | None:
    """The largest R (<= M) whose tables fit the device's block RAMs, or None if even R = 1 does not."""
    fitting = [r for r in range(1, out_features + 1)
               if blocks_for_tables(device, codebooks, centroids, out_features, r)
               <= DEVICES[device].block_ram.blocks]
    return max(fitting) if fitting else None
