"""The link protocol description (boards/link_protocol.py) against its written definition.

Exact bytes come from docs/spec.md section 14 and the CRC catalogue
check values (the CRC of b"123456789"), not from the code under test.
"""
import binascii
import random
import zlib

import pytest

from nomac.boards import link_protocol as lp


def test_crc_catalogue_check_values():
    assert lp.FRAME_CRC.value(b"123456789") == 0x29B1          # CRC-16/CCITT-FALSE
    assert lp.MEMORY_CRC.value(b"123456789") == 0xCBF43926     # CRC-32 (zlib, Ethernet)
    assert lp.frame_crc(b"123456789") == 0x29B1
    assert lp.memory_crc(b"123456789") == 0xCBF43926


def test_bitwise_crc_definitions_match_binascii_and_zlib():
    rng = random.Random(3)
    for length in (0, 1, 2, 7, 64, 300):
        data = bytes(rng.randrange(256) for _ in range(length))
        assert lp.FRAME_CRC.value(data) == binascii.crc_hqx(data, 0xFFFF)
        assert lp.MEMORY_CRC.value(data) == zlib.crc32(data)


def test_frame_layout():
    # START, cmd, seq, length (LE), payload, CRC-16 (LE) over cmd..payload
    body = bytes([0x03, 0x2A, 0x02, 0x00, 0xBE, 0xEF])
    crc = binascii.crc_hqx(body, 0xFFFF)
    assert lp.encode_frame(0x03, 0x2A, b"\xbe\xef") == bytes([0xA5]) + body + bytes([crc & 0xFF, crc >> 8])
    assert lp.encode_frame(lp.Command.IDENTIFY, 0)[:5] == bytes([0xA5, 0x01, 0x00, 0x00, 0x00])
    assert len(lp.encode_frame(1, 1, bytes(10))) == 10 + lp.FRAME_OVERHEAD == 17


@pytest.mark.parametrize("cmd, seq, size", [(256, 0, 0), (0, -1, 0), (1, 0, 65536)])
def test_encode_frame_rejects_fields_that_do_not_fit(cmd, seq, size):
    with pytest.raises(ValueError):
        lp.encode_frame(cmd, seq, bytes(size))


def test_frame_reader_finds_frames_in_garbage_and_after_damaged_ones():
    good = [lp.encode_frame(0x81, n, bytes([0, n])) for n in range(3)]
    damaged = bytearray(lp.encode_frame(0x81, 9, b"\x00abc"))
    damaged[6] ^= 0x10
    fake_start = bytes([0xA5, 0x01, 0x02, 0xFF, 0x7F])        # a START in garbage claiming 32767 bytes
    stream = b"\x00\x13" + good[0] + fake_start + good[1] + bytes(damaged) + b"\xa5" + good[2]
    reader = lp.FrameReader(max_length=512)
    frames = []
    for byte in stream:                                       # byte by byte, as a serial port delivers
        frames += reader.feed(bytes([byte]))
    assert [(f.cmd, f.seq, f.payload) for f in frames] == [(0x81, n, bytes([0, n])) for n in range(3)]
    assert [f.status for f in frames] == [0, 0, 0]
    assert reader.bad_frames >= 2


def test_frame_reader_waits_for_a_frame_cut_in_two():
    frame = lp.encode_frame(0x84, 5, bytes(range(20)))
    reader = lp.FrameReader()
    assert reader.feed(frame[:11]) == []
    (got,) = reader.feed(frame[11:])
    assert (got.status, got.data) == (0, bytes(range(1, 20)))


def test_word_bytes_are_powers_of_two():
    assert [lp.word_bytes(bits) for bits in (1, 2, 8, 9, 16, 17, 24, 32, 33, 64, 65, 128, 129)] == \
        [1, 1, 1, 2, 2, 4, 4, 4, 8, 8, 16, 16, 32]


def test_words_and_elements_are_little_endian():
    assert lp.pack_words([0x123, 0x7FF], 11) == bytes([0x23, 0x01, 0xFF, 0x07])
    assert lp.pack_words([0xABCDEF], 24) == bytes([0xEF, 0xCD, 0xAB, 0x00])   # 24 bits -> 4 bytes
    assert lp.unpack_words(bytes([0xEF, 0xCD, 0xAB, 0x00]), 24) == [0xABCDEF]
    assert lp.unpack_elements(bytes([0xFF, 0x80, 0x7F]), 8) == [-1, -128, 127]
    assert lp.unpack_elements(bytes([0xFE, 0xFF, 0xFF, 0x00, 0x00, 0x02]), 19) == [-2, 0x20000]
    with pytest.raises(ValueError):
        lp.unpack_words(bytes(3), 16)


def test_identity_and_counters_layouts():
    identity = lp.Identity(version=1, config_id="0123456789abcdef", max_payload=512, batch=15, memories=3,
                           in_vector_bytes=32, out_vector_bytes=64, clock_hz=12_000_000, divisor=12)
    data = identity.pack()
    assert data == (bytes([1]) + bytes.fromhex("0123456789abcdef") + (512).to_bytes(2, "little")
                    + (15).to_bytes(2, "little") + bytes([3]) + (32).to_bytes(2, "little")
                    + (64).to_bytes(2, "little") + (12_000_000).to_bytes(4, "little") + (12).to_bytes(2, "little"))
    assert lp.Identity.unpack(data) == identity
    assert identity.baud == 1_000_000
    counters = lp.Counters(*range(1, 11), engine_framing_error=False, engine_idle=True)
    data = counters.pack()
    assert data == b"".join(n.to_bytes(2, "little") for n in range(1, 11)) + bytes([0b10])
    assert lp.Counters.unpack(data) == counters
    assert counters.errors() == {name: n for n, name in enumerate(lp.COUNTERS[1:], start=2)}
