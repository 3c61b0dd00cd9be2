"""Reading a JSON file a user hands nomac (a config, a plan) so that every way it can be
malformed ends in one ConfigError naming the file, the thing and the rule.

Python's json module accepts more than JSON (NaN and Infinity, duplicate keys of which
the last silently wins, numbers that overflow to inf) and fails in ways that are not
JSONDecodeError (RecursionError on deep nesting, ValueError from the integer-digit
limit, UnicodeDecodeError). Here the file's size is bounded before it is parsed, the
text must be UTF-8 (a leading byte-order mark is allowed), numbers must be finite and
integers at most MAX_INTEGER_DIGITS long, every key appears once in its object, and
nesting is at most MAX_JSON_DEPTH deep (docs/spec.md, "Config files").
"""
import codecs
import json
import math
import os
from pathlib import Path

from nomac.base.errors import ConfigError

__all__ = ["MAX_JSON_BYTES", "MAX_JSON_DEPTH", "MAX_INTEGER_DIGITS", "read_json"]

MAX_JSON_BYTES = 4 << 20     # 4 MiB: a whole-model config lists parameters only (its arrays are in the .npz)
MAX_JSON_DEPTH = 32          # a config needs 5 levels (top, layers, layer, factors, factor shape)
MAX_INTEGER_DIGITS = 100     # far beyond any field's range (int64 has 19 digits)


def read_json(path, what: str, unreadable_hint: str = ""):
    """The document in the JSON file `path` (a `what`: "config", "plan") or a ConfigError."""
    path = Path(path)
    where = str(path)
    try:
        with open(path, "rb") as file:
            declared = os.fstat(file.fileno()).st_size      # 0 for a pipe or a device: read as far as allowed
            data = b"" if declared > MAX_JSON_BYTES else file.read((declared or MAX_JSON_BYTES) + 1)
            size = max(declared, len(data))
    except (OSError, ValueError) as e:     # ValueError: a NUL byte in the name
        reason = getattr(e, "strerror", None) or str(e)
        raise ConfigError(where, "file", where, f"cannot be read ({reason}){unreadable_hint}") from None
    if size > MAX_JSON_BYTES:
        raise ConfigError(where, "file size", size,
                          f"a {what} file may have at most {MAX_JSON_BYTES} bytes ({MAX_JSON_BYTES >> 20} MiB)")
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        at = bom + e.start
        raise ConfigError(where, f"byte {at}", data[at:at + 1], f"a {what} file must be UTF-8 text") from None
    try:
        document = json.loads(text, parse_int=_integer(where), parse_float=_finite(where),
                              parse_constant=_no_constant(where), object_pairs_hook=_unique_keys(where))
    except json.JSONDecodeError as e:
        raise ConfigError(where, f"JSON line {e.lineno} column {e.colno}", e.msg, "must be valid JSON") from None
    except RecursionError:
        raise ConfigError(where, "JSON nesting", "deeper than the parser reaches",
                          f"may be at most {MAX_JSON_DEPTH} levels deep") from None
    depth = _depth(document)
    if depth > MAX_JSON_DEPTH:
        raise ConfigError(where, "JSON nesting", depth, f"may be at most {MAX_JSON_DEPTH} levels deep")
    return document


def _shown(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _integer(where: str):
    def parse(text: str) -> int:
        if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
            raise ConfigError(where, "JSON number", _shown(text), f"may have at most {MAX_INTEGER_DIGITS} digits")
        return int(text)
    return parse


def _finite(where: str):
    def parse(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ConfigError(where, "JSON number", _shown(text), "must be finite (it overflows a float)")
        return value
    return parse


def _no_constant(where: str):
    def parse(text: str):
        raise ConfigError(where, "JSON value", text, "is not JSON (numbers must be finite)")
    return parse


def _unique_keys(where: str):
    def build(pairs: list) -> dict:
        document = {}
        for key, value in pairs:
            if key in document:
                raise ConfigError(where, "JSON key", _shown(key), "appears twice in one object (each key once)")
            document[key] = value
        return document
    return build


def _depth(document) -> int:
    """Nesting depth of lists and objects (a scalar is 0), without recursion."""
    deepest, pending = 0, [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, depth)
            pending.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))
    return deepest
