"""Block-RAM sizing of the lut tables (boards/block_ram.py), against cases worked by hand.

The tables are C * K * ceil(M / R) words of 8R bits. A block shape of width w and
depth d needs ceil(8R / w) * ceil(words / d) blocks; the device's best shape counts.
iCE40UP5K: 30 blocks, shapes 16x256, 8x512, 4x1024, 2x2048 (4096 bits each).
ECP5-85F: 208 blocks, shapes 36x512, 18x1024, 9x2048, 4x4096, 2x8192, 1x16384
(at most 18432 bits each).
"""
import pytest

from nomac.boards.block_ram import blocks_for_tables, max_table_reads
from nomac.base.errors import NomacError

BLOCKS = [
    # C=8, K=16, M=32, R=4: 8*16*8 = 1024 words of 32 bits.
    # 16x256: 2*4 = 8; 8x512: 4*2 = 8; 4x1024: 8*1 = 8; 2x2048: 16*1 = 16  -> 8
    ("ice40-up5k", 8, 16, 32, 4, 8),
    # R=3: 8*16*ceil(32/3) = 1408 words of 24 bits.
    # 16x256: 2*6 = 12; 8x512: 3*3 = 9; 4x1024: 6*2 = 12; 2x2048: 12*1 = 12  -> 9
    ("ice40-up5k", 8, 16, 32, 3, 9),
    # R=1: 4096 words of 8 bits. 16x256: 1*16; 8x512: 1*8; 4x1024: 2*4; 2x2048: 4*2  -> 8
    ("ice40-up5k", 8, 16, 32, 1, 8),
    # C=2, K=16, M=256, R=60: 2*16*ceil(256/60) = 160 words of 480 bits.
    # 16x256: 30*1 = 30; 8x512: 60; 4x1024: 120; 2x2048: 240  -> 30 (exactly the device)
    ("ice40-up5k", 2, 16, 256, 60, 30),
    # R=61: 160 words of 488 bits; 16x256: ceil(488/16) = 31  -> 31 (one too many)
    ("ice40-up5k", 2, 16, 256, 61, 31),
    # C=20, K=256, M=3: R=1 is 15360 words of 8 bits: 16x256: 60; 8x512: 30; 4x1024: 2*15 = 30;
    # 2x2048: 4*8 = 32 -> 30. R=2 pads M to 4: 10240 words of 16 bits: 40 in every shape.
    # R=3 pads nothing: 5120 words of 24 bits: 16x256: 2*20 = 40; 8x512: 3*10 = 30;
    # 4x1024: 6*5 = 30; 2x2048: 12*3 = 36 -> 30.
    ("ice40-up5k", 20, 256, 3, 1, 30),
    ("ice40-up5k", 20, 256, 3, 2, 40),
    ("ice40-up5k", 20, 256, 3, 3, 30),
    # C=8, K=16, M=32, R=4: 1024 words of 32 bits.
    # 36x512: 1*2 = 2; 18x1024: 2*1 = 2; 9x2048: 4; 4x4096: 8; 2x8192: 16; 1x16384: 32  -> 2
    ("ecp5-85f", 8, 16, 32, 4, 2),
    # R=3: 1408 words of 24 bits. 36x512: 1*3 = 3; 18x1024: 2*2 = 4; 9x2048: 3*1 = 3; ...  -> 3
    ("ecp5-85f", 8, 16, 32, 3, 3),
    # C=1, K=16, M=2048, R=936: 16*ceil(2048/936) = 48 words of 7488 bits; 36x512: 7488/36 = 208.
    ("ecp5-85f", 1, 16, 2048, 936, 208),
    # R=937: 7496 bits; 36x512: ceil(7496/36) = 209; 18x1024: 417  -> 209
    ("ecp5-85f", 1, 16, 2048, 937, 209),
]


@pytest.mark.parametrize("device, C, K, M, R, blocks", BLOCKS)
def test_blocks_for_tables(device, C, K, M, R, blocks):
    assert blocks_for_tables(device, C, K, M, R) == blocks


MAX_READS = [
    # Every R up to M fits: R=32 is 128 words of 256 bits, 16 blocks of 16x256 <= 30.
    ("ice40-up5k", 8, 16, 32, 32),
    # C=2, K=16, M=256: R=60 takes exactly 30 blocks (above); R=61..63 need ceil(8R/16) >= 31
    # blocks of 16x256 (one row, <= 256 words) and every narrower shape needs more; R >= 64
    # needs >= 32.
    ("ice40-up5k", 2, 16, 256, 60),
    # C=20, K=256, M=3: R=2 does not fit (40 blocks) but R=3 does (30): the answer is 3.
    ("ice40-up5k", 20, 256, 3, 3),
    # Too big for any R: 16*16*64 entries are 131072 bits; 30 blocks hold 30*4096 = 122880.
    ("ice40-up5k", 16, 16, 64, None),
    # ECP5, every R fits: R=32 is 128 words of 256 bits, ceil(256/36) = 8 blocks.
    ("ecp5-85f", 8, 16, 32, 32),
    # C=1, K=16, M=2048: R=936 takes exactly 208 blocks (above); any wider word needs more
    # than 208 blocks of the widest shape (36 bits), let alone the narrower ones.
    ("ecp5-85f", 1, 16, 2048, 936),
    # Too big for any R: 64*256*32 entries are 4194304 bits; 208 blocks hold at most
    # 208*18432 = 3833856.
    ("ecp5-85f", 64, 256, 32, None),
]


@pytest.mark.parametrize("device, C, K, M, reads", MAX_READS)
def test_max_table_reads(device, C, K, M, reads):
    assert max_table_reads(device, C, K, M) == reads


@pytest.mark.parametrize("call", [lambda: blocks_for_tables("xc7a35t", 8, 16, 32, 4),
                                  lambda: max_table_reads("xc7a35t", 8, 16, 32)],
                         ids=["blocks_for_tables", "max_table_reads"])
def test_unknown_device_is_named(call):
    with pytest.raises(NomacError, match="'xc7a35t'") as error:
        call()
    assert "ice40-up5k" in str(error.value) and "ecp5-85f" in str(error.value)
