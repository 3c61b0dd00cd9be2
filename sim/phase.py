"""A test phase: what the shared testbench does between two idle points of an engine.

`phase_plan` is the plan every engine kind's bench runs; a kind's stimulus module
(sim/<kind>_stimulus.py) gives only its golden model, its directed vectors and its
rewritten RAM contents.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from nomac.hw.memory_layout import MemoryLayout

__all__ = ["Phase", "extreme_bias", "extreme_inputs", "memory_writes", "phase_plan", "position_codes", "write_plan"]


@dataclass
class Phase:
    name: str
    vectors: np.ndarray                 # int8 [N, in elements]
    expected: np.ndarray                # golden outputs [N, out elements]
    gap: float = 0.0                    # chance of an idle input cycle before each beat
    backpressure: float = 0.0           # chance the output's ready is low in a cycle
    measure: bool = False               # report latency and cycles per vector
    writes: dict = field(default_factory=dict)    # memory name -> words written first
    last_on_beat: int | None = None     # put `last` on this beat instead (-1: on none)
    framing_error_after: bool = False   # the sticky framing flag expected after the phase


def memory_writes(manifest: dict, arrays: dict[str, np.ndarray]) -> dict[str, list[int]]:
    """Words for every writable memory of a manifest, packed by the layout it describes."""
    return {entry["name"]: MemoryLayout.from_manifest(entry).words(arrays[entry["array"]])
            for entry in manifest["memories"] if "write" in entry}


def extreme_inputs(in_features: int) -> list[np.ndarray]:
    """The first directed vectors of every kind: all -128, all 127, the two alternations, all zero."""
    D = in_features
    return [np.full(D, -128), np.full(D, 127), np.tile([-128, 127], D)[:D], np.tile([127, -128], D)[:D],
            np.zeros(D)]


def position_codes(elements: int) -> list[np.ndarray]:
    """Rows that together tell every position apart, each followed by its complement -1 - row."""
    k = np.arange(elements)
    codes = [k % 256 - 128] + ([k // 256 % 256 - 128] if elements > 256 else [])
    return [row for code in codes for row in (code, -1 - code)]


def extreme_bias(bias_bits: int, count: int, rng) -> np.ndarray:
    """`count` random biases for a `bias_bits`-bit RAM, the first and the last at the two ends of its range."""
    limit = 1 << (bias_bits - 1)
    bias = rng.integers(-limit, limit, count, dtype=np.int64)
    bias[0], bias[-1] = limit - 1, -limit
    return bias.astype(np.int32)


def phase_plan(layer, manifest: dict, vectors: int, seed: int, *, forward: Callable,
               directed_vectors: Callable, rewritten: Callable | None = None) -> list[Phase]:
    """The phases of one engine's bench, from one random generator seeded with `seed`.

    In order: a throughput measurement on random vectors; the kind's directed cases
    (`directed_vectors(layer, rng)`) and then `vectors` random ones, both with random
    input gaps and output backpressure; where the layer has RAM, `rewritten(layer,
    rng)` (the layer with new contents in every RAM array) written and run on its
    directed cases and random vectors, then the layer's own arrays written back; last,
    vectors with `last` on the wrong beat, which must leave the framing flag set.
    Expected values come from the kind's golden, `forward(layer, vectors)`.
    """
    rng = np.random.default_rng(seed)
    in_beats = manifest["streams"]["in"]["beats"]

    def phase(name, layer_now, x, **kw):
        return Phase(name=name, vectors=x, expected=forward(layer_now, x), **kw)

    def random_vectors(n):
        return rng.integers(-128, 128, (n, manifest["streams"]["in"]["elements"])).astype(np.int8)

    phases = [
        phase("throughput", layer, random_vectors(max(8, min(vectors, 64))), measure=True),
        phase("directed", layer, directed_vectors(layer, rng), gap=0.2, backpressure=0.3),
        phase("random", layer, random_vectors(vectors), gap=0.3, backpressure=0.4),
    ]
    if rewritten is not None:
        new = rewritten(layer, rng)
        x = np.concatenate([directed_vectors(new, rng), random_vectors(max(16, vectors // 4))])
        phases.append(phase("rewritten", new, x, gap=0.3, backpressure=0.4,
                            writes=memory_writes(manifest, new.arrays())))
        phases.append(phase("written back", layer, random_vectors(16), gap=0.1, backpressure=0.1,
                            writes=memory_writes(manifest, layer.arrays())))
    phases.append(phase("misframed", layer, random_vectors(4), last_on_beat=0 if in_beats > 1 else -1,
                        framing_error_after=True))
    return phases


def write_plan(phases: list[Phase], manifest_path: Path, folder: Path, seed: int) -> Path:
    """The plan JSON and arrays .npz that `nomac.sim.stream_bench` reads."""
    arrays = {}
    entries = []
    for index, phase in enumerate(phases):
        arrays[f"{index}/vectors"] = phase.vectors
        arrays[f"{index}/expected"] = np.asarray(phase.expected, dtype=np.int64)
        entries.append({"name": phase.name, "gap": phase.gap, "backpressure": phase.backpressure,
                        "measure": phase.measure, "last_on_beat": phase.last_on_beat,
                        "framing_error_after": phase.framing_error_after,
                        "writes": {name: [f"{w:x}" for w in words] for name, words in phase.writes.items()}})
    np.savez(folder / "stimulus.npz", **arrays)
    plan = {"manifest": str(manifest_path.resolve()), "arrays": str((folder / "stimulus.npz").resolve()),
            "report": str((folder / "report.json").resolve()), "seed": seed, "phases": entries}
    path = folder / "plan.json"
    path.write_text(json.dumps(plan))
    return path
