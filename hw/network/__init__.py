"""The network engine: the layers of a whole-model config on time-shared units driven by a
sequencer that executes a layer program (docs/spec.md section 16)."""
