"""A test phase: what the shared testbench does between two idle points of an engine."""
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nomac.hw.memory_layout import MemoryLayout


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
