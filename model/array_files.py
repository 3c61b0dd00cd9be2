"""Reading the array files a user hands nomac (a config's .npz, .npy inputs) without
trusting them: every header first, then only as much data as it declares.

numpy.load believes a file: it allocates whatever shape an .npy header declares (a
header claiming 10^12 elements ends in MemoryError) and inflates a compressed .npz
member completely before anyone looks at its shape (1.5 MB of zeros become 1.5 GB),
and its messages suggest loading a file "unsafely" with allow_pickle. Here:
- the zip's central directory is bounded before zipfile parses it (MAX_CONFIG_ARRAYS
  members, no zip64), and the members' uncompressed sizes, as the directory declares
  them, add up to at most MAX_CONFIG_ARRAY_BYTES;
- each member's .npy header is read from its zip stream (numpy.lib.format.read_magic
  and read_array_header_1_0/2_0, which decompress no more than the header): its dtype
  must be a plain numeric one (bool, integer, float; never Python objects, so never a
  pickle) and its data must be exactly the member's declared size, before any data is
  read;
- a single .npy (read_npy) gets the same header checks against its file size.
Every failure is a ConfigError that says what the file should be (docs/spec.md,
"Config files").
"""
import math
import os
import struct
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

from nomac.base.errors import ConfigError

__all__ = ["MAX_CONFIG_ARRAYS", "MAX_CONFIG_ARRAY_BYTES", "MAX_INPUT_BYTES", "read_npy", "read_npz"]

MAX_CONFIG_ARRAYS = 4096             # members of a config's .npz (a whole tiny ViT has a few dozen)
MAX_CONFIG_ARRAY_BYTES = 64 << 20    # 64 MiB uncompressed in all: more than any FPGA here holds on chip
MAX_INPUT_BYTES = 256 << 20          # 256 MiB: one .npy of input vectors
MAX_DIRECTORY_BYTES = MAX_CONFIG_ARRAYS * 1024   # central directory entries of up to 1 KiB each
NPZ = "a readable .npz of plain numeric arrays (no Python objects)"
NPY = "a readable .npy of one plain numeric array (no Python objects)"
NUMERIC_KINDS = "biuf"               # bool, signed and unsigned integer, float

_END_RECORD = struct.Struct("<4s4H2LH")   # zip end of central directory record
_END_SIGNATURE, _ZIP64_LOCATOR = b"PK\x05\x06", b"PK\x06\x07"
# What a damaged zip or .npy raises from zipfile, zlib or numpy's header parser (which
# tokenizes a cut-short header: tokenize.TokenError).
_DAMAGED = (OSError, EOFError, ValueError, SyntaxError, TypeError, OverflowError, struct.error,
            zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, tokenize.TokenError)


def read_npy(path, what: str, max_bytes: int = MAX_INPUT_BYTES) -> np.ndarray:
    """The one array of the .npy file `path` (`what`, e.g. "golden inputs", names it in errors)."""
    path = Path(path)
    where = str(path)
    try:
        file = open(path, "rb")
    except (OSError, ValueError) as e:
        raise ConfigError(where, what, where, f"cannot be read ({_reason(e)})") from None
    with file:
        if file.read(4) == b"PK\x03\x04":
            raise ConfigError(where, what, where, f"is a .npz archive; {what} must be {NPY}")
        file.seek(0)
        return _read_array(file, os.fstat(file.fileno()).st_size, where, what, max_bytes, NPY)


def read_npz(path, where: str, max_bytes: int = MAX_CONFIG_ARRAY_BYTES) -> dict[str, np.ndarray]:
    """The arrays of the .npz `path`, keyed by member name without ".npy"; `where` (the
    config) starts every error message."""
    path = Path(path)
    try:
        file = open(path, "rb")
    except FileNotFoundError:
        raise ConfigError(where, "arrays", str(path), "file not found") from None
    except (OSError, ValueError) as e:
        raise ConfigError(where, "arrays", str(path), f"cannot be read ({_reason(e)})") from None
    with file:
        _check_directory(file, where, path)
        try:
            archive = zipfile.ZipFile(file)
        except _DAMAGED:
            raise ConfigError(where, "arrays", str(path), f"must be {NPZ}; it is not a zip archive") from None
        with archive:
            members = _members(archive, where, path, max_bytes)
            return {key: _read_member(archive, info, f"{where}: {path.name}", key, max_bytes)
                    for key, info in members.items()}


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


def _size(limit: int) -> str:
    return f"{limit} bytes ({limit / (1 << 20):g} MiB)"


def _check_directory(file, where: str, path: Path):
    """zipfile reads the whole central directory when it opens a file; bound it first,
    from the end record zipfile will use (the last one; none: zipfile refuses the file)."""
    size = os.fstat(file.fileno()).st_size
    start = max(0, size - _END_RECORD.size - 0xFFFF)     # the record and a comment of at most 64 KiB
    file.seek(start)
    tail = file.read()
    at = len(tail) - _END_RECORD.size
    if tail[at:at + 4] != _END_SIGNATURE or tail[-2:] != b"\0\0":    # not at the very end: after a comment
        at = tail.rfind(_END_SIGNATURE)
    if at < 0 or at + _END_RECORD.size > len(tail):
        return
    directory_bytes = _END_RECORD.unpack_from(tail, at)[5]
    if start + at >= 20:
        file.seek(start + at - 20)
        if file.read(4) == _ZIP64_LOCATOR:
            raise ConfigError(where, "arrays", str(path), f"must be {NPZ}; not zip64 (a config's arrays "
                              f"are far below zip's 4 GiB limits)")
    if directory_bytes > MAX_DIRECTORY_BYTES:
        raise ConfigError(where, "arrays", str(path), f"must be {NPZ} with a zip directory of at most "
                          f"{MAX_DIRECTORY_BYTES} bytes ({MAX_CONFIG_ARRAYS} arrays); it declares {directory_bytes}")


def _members(archive: zipfile.ZipFile, where: str, path: Path, max_bytes: int) -> dict[str, zipfile.ZipInfo]:
    """Member name without ".npy" -> its entry, after the checks that need no data."""
    infos = archive.infolist()
    if len(infos) > MAX_CONFIG_ARRAYS:
        raise ConfigError(where, "arrays", str(path), f"must hold at most {MAX_CONFIG_ARRAYS} arrays; "
                          f"it has {len(infos)} members")
    total = sum(info.file_size for info in infos)
    if total > max_bytes:
        raise ConfigError(where, "arrays", str(path), f"must hold at most {_size(max_bytes)} uncompressed in all; "
                          f"its members declare {total} bytes")
    members, at = {}, f"{where}: {path.name}"
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise ConfigError(at, "member", info.filename, "must be an .npy array named '<layer>/<array>.npy'")
        key = info.filename[:-len(".npy")]
        if key in members:
            raise ConfigError(at, "member", info.filename, "appears twice (each array once)")
        if info.flag_bits & 1:
            raise ConfigError(at, f"array '{key}'", "encrypted", f"must be {NPZ}, not encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ConfigError(at, f"array '{key}' compression", info.compress_type,
                              "must be stored (0) or deflated (8), as numpy.savez writes")
        members[key] = info
    return members


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, key: str,
                 max_bytes: int) -> np.ndarray:
    field = f"array '{key}'"
    try:
        stream = archive.open(info)
    except _DAMAGED:
        raise ConfigError(where, field, info.filename, f"is damaged; it must be {NPZ}") from None
    with stream:
        return _read_array(stream, info.file_size, where, field, max_bytes, NPZ)


def _read_array(stream, size: int, where: str, field: str, max_bytes: int, kind: str) -> np.ndarray:
    """One .npy from `stream`, which holds `size` bytes: header, checks, then data; `kind`
    (NPZ or NPY) says what the file must be."""
    try:
        version = np.lib.format.read_magic(stream)
        if version not in ((1, 0), (2, 0)):
            raise ConfigError(where, f"{field} .npy version", f"{version[0]}.{version[1]}",
                              "must be 1.0 or 2.0 (what numpy.save writes for plain numeric arrays)")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(stream)
        header_bytes = stream.tell()
    except _DAMAGED:
        raise ConfigError(where, field, "no valid .npy header", f"must be {kind}") from None
    if dtype.kind not in NUMERIC_KINDS:
        raise ConfigError(where, f"{field} dtype", str(dtype),
                          f"must be bool, integer or float: the file must be {kind}")
    if any(n < 0 for n in shape):
        raise ConfigError(where, f"{field} shape", list(shape), "must have no negative dimensions")
    data_bytes = math.prod(shape) * dtype.itemsize
    if data_bytes > max_bytes:
        raise ConfigError(where, f"{field} shape", list(shape), f"declares {data_bytes} bytes of {dtype}; "
                          f"an array may hold at most {_size(max_bytes)}")
    if size - header_bytes != data_bytes:
        raise ConfigError(where, f"{field} data", f"{size - header_bytes} bytes",
                          f"must be the {data_bytes} bytes its .npy header declares ({dtype} {list(shape)})")
    buffer = bytearray(data_bytes)
    try:
        got = stream.readinto(buffer)
    except _DAMAGED:
        raise ConfigError(where, f"{field} data", "damaged", f"must be {kind}") from None
    if got != data_bytes:
        raise ConfigError(where, f"{field} data", f"{got} bytes", f"is cut short; the file must be {kind}")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order="F" if fortran_order else "C")
