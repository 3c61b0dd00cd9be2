"""How a config array is laid out in an engine memory, as data the manifest can carry.

A layout turns an array into memory words in numpy-like steps: select a
sub-range per axis, subtract a constant offset, zero-pad, reshape/transpose, and
flatten to `depth` words of `lanes` elements. Lane i of a word sits at bits [w*i + w-1 : w*i] in two's
complement (w = lane_bits), exactly like a stream beat. The manifest records these
steps, so a host in any language can pack new tables for a RAM write port; nomac's
own generators, testbenches and host driver all pack through `MemoryLayout.words`.
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MemoryLayout:
    name: str                 # memory and write-port name, e.g. "tables"
    array: str                # the config array it holds, e.g. "tables"
    lanes: int                # elements per word
    lane_bits: int
    signed: bool
    select: tuple = ()        # ((start, stop), ...) per leading axis; () keeps all
    pad: tuple = ()           # ((before, after), ...) per axis, after select; () pads nothing
    reshape: tuple = ()       # shape after padding; () keeps it
    transpose: tuple = ()     # axis order after reshape; () keeps it
    offset: int = 0           # subtracted from every element after select (e.g. shift - shift_min)

    @classmethod
    def from_manifest(cls, entry: dict) -> "MemoryLayout":
        """The layout a manifest's memory entry describes."""
        return cls(name=entry["name"], array=entry["array"], lanes=entry["lanes"],
                   lane_bits=entry["lane_bits"], signed=entry["signed"],
                   select=tuple(tuple(s) for s in entry["select"]), pad=tuple(tuple(p) for p in entry["pad"]),
                   reshape=tuple(entry["reshape"]), transpose=tuple(entry["transpose"]),
                   offset=entry.get("offset", 0))

    def elements(self, array: np.ndarray) -> np.ndarray:
        """The array's elements in memory order, as a [depth, lanes] int64 array."""
        a = np.asarray(array, dtype=np.int64)
        if self.select:
            a = a[tuple(slice(start, stop) for start, stop in self.select)]
        a = a - self.offset
        if self.pad:
            a = np.pad(a, self.pad)
        if self.reshape:
            a = a.reshape(self.reshape)
        if self.transpose:
            a = a.transpose(self.transpose)
        return a.reshape(-1, self.lanes)

    def words(self, array: np.ndarray) -> list[int]:
        """Memory words (unsigned integers of lanes * lane_bits bits)."""
        lo, hi = (-(1 << (self.lane_bits - 1)), (1 << (self.lane_bits - 1)) - 1) if self.signed \
            else (0, (1 << self.lane_bits) - 1)
        elements = self.elements(array)
        if elements.size and (elements.min() < lo or elements.max() > hi):
            raise ValueError(f"memory '{self.name}': array '{self.array}' has values outside "
                             f"[{lo}, {hi}], the range of its {self.lane_bits}-bit lanes")
        mask = (1 << self.lane_bits) - 1
        words = []
        for row in elements.tolist():
            word = 0
            for lane, value in enumerate(row):
                word |= (value & mask) << (self.lane_bits * lane)
            words.append(word)
        return words

    def depth(self, array_shape: tuple) -> int:
        return self.elements(np.zeros(array_shape, dtype=np.int64)).shape[0]

    def describe(self, array_shape: tuple) -> dict:
        """The manifest entry (without port names)."""
        return {"array": self.array, "depth": self.depth(array_shape), "lanes": self.lanes,
                "lane_bits": self.lane_bits, "signed": self.signed,
                "word_bits": self.lanes * self.lane_bits,
                "select": [list(s) for s in self.select], "pad": [list(p) for p in self.pad],
                "reshape": list(self.reshape), "transpose": list(self.transpose), "offset": self.offset}
