"""Array files written by hand for the loader tests: .npy bytes from the format's
definition and zips of chosen members, so model/array_files.py is checked against
files it did not produce (and against ones numpy would never write)."""
import io
import warnings
import zipfile

import numpy as np


def npy_of(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def npy_header(header: dict, version=(1, 0), pad: int = 0) -> bytes:
    """An .npy header from the format's definition (numpy.lib.format docs): magic, header
    length (u2 for 1.0, u4 from 2.0 on), the dict's repr padded with spaces and a newline
    so that the data starts at a multiple of 64."""
    length_bytes = 2 if version == (1, 0) else 4
    text = repr(header) + " " * pad
    text += " " * (-(6 + length_bytes + len(text) + 1) % 64) + "\n"
    return np.lib.format.magic(*version) + len(text).to_bytes(length_bytes, "little") + text.encode("latin1")


def zip_of(entries) -> bytes:
    """A zip of (name, bytes, compression) entries, in order (a name may repeat)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # zipfile warns about a duplicate name
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, data, method in entries:
                archive.writestr(name, data, compress_type=method)
    return buffer.getvalue()
