"""How many table entries per cycle a device's block RAM can deliver (the R of a `lut` engine).

A `lut` engine reads R int8 table entries per cycle from one memory word of 8R bits,
at C * K * ceil(M / R) addresses. Block RAMs come in a few width x depth shapes;
R is possible on a device when some shape gives enough blocks for that width and
depth: ceil(8R / width) * ceil(words / depth) <= blocks on the device.
"""
from dataclasses import dataclass

from nomac.base.errors import NomacError


@dataclass(frozen=True)
class BlockRam:
    blocks: int
    shapes: tuple          # (read width in bits, depth in words) per configuration


BLOCK_RAMS = {
    # iCE40UP5K: 30 SB_RAM40_4K of 4 kbit (iCE40 memory usage guide, TN1250).
    "ice40-up5k": BlockRam(30, ((16, 256), (8, 512), (4, 1024), (2, 2048))),
    # LFE5U-85F: 208 DP16KD of 18 kbit, 36 bits wide as pseudo-dual-port (FPGA-TN-02032).
    "ecp5-85f": BlockRam(208, ((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384))),
}


def blocks_for_tables(device: str, codebooks: int, centroids: int, out_features: int, reads: int) -> int:
    """Fewest blocks holding the tables as 8 * reads-bit words, over the device's shapes."""
    if device not in BLOCK_RAMS:
        raise NomacError(f"device {device!r}: no block-RAM description; known: {', '.join(BLOCK_RAMS)}")
    words = codebooks * centroids * -(-out_features // reads)
    return min(-(-8 * reads // width) * -(-words // depth) for width, depth in BLOCK_RAMS[device].shapes)


def max_table_reads(device: str, codebooks: int, centroids: int, out_features: int) -> int | None:
    """The largest R (<= M) whose tables fit the device's block RAMs, or None if even R = 1 does not."""
    fitting = [r for r in range(1, out_features + 1)
               if blocks_for_tables(device, codebooks, centroids, out_features, r) <= BLOCK_RAMS[device].blocks]
    return max(fitting) if fitting else None
