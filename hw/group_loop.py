"""The skeleton of a grouped accumulate loop, shared by the `lut` accumulator and the
matrix-vector loop.

Both take a vector as `steps` words (codes, input words), walk it group by group (the
outputs of one output beat) and, within a group, step by step. The words wait in a
ping-pong buffer of two banks: one fills while the loop reads the other, so input
and computation overlap. On a group's first step each output lane starts from its
bias, on every step it adds that step's value, and after the final step the sums
leave as one output beat, rounded and saturated to int8 (docs/spec.md section 2) or
as raw accumulators. What a step adds is the caller's.

The whole loop advances together (`advance`) and stalls while an output beat waits
for `ready`, so nothing is lost.
"""
from dataclasses import dataclass

from amaranth import Cat, Module, Mux, Signal, Value
from amaranth.hdl import signed
from amaranth.lib import data

from nomac.hw.requantize import requantize

__all__ = ["GroupWalk", "ping_pong_walk", "accumulate_and_emit"]


@dataclass
class GroupWalk:
    """Where the loop of `ping_pong_walk` is, on the cycle a step is addressed (stage 0)."""
    advance: Signal                 # the loop moves this cycle
    running: Value                  # the bank being drained holds a whole vector: a step is on offer
    group: Signal
    step: Signal
    base: Signal                    # group * base_stride, kept by increments
    step_final: Value
    group_final: Value


def ping_pong_walk(m: Module, i, o, write, read, *, data_in, groups: int, steps: int, base_stride: int,
                   step_name: str, ports=()) -> GroupWalk:
    """Add to `m` the ping-pong buffer's write side and the walk over (group, step).

    `i` brings a vector's `steps` words, `data_in` being a beat's word; `write` and `read`
    are the buffer memory's ports (address Cat(step, bank), 2 << bits(steps - 1) words).
    Bank `fill` takes a vector, is then marked full, and is drained by the walk, which
    reads word `step` of bank `drain` for every group. `ports` are further read ports
    enabled with the loop. The step counters are named `<step_name>` and
    `fill_<step_name>`.
    """
    # Write side: fill bank `fill` with the words of a vector, then mark it full.
    full = [Signal(name="full0"), Signal(name="full1")]
    fill, fill_step = Signal(), Signal(range(steps), name=f"fill_{step_name}")
    word_fire = i.valid & i.ready
    m.d.comb += [i.ready.eq(Mux(fill, full[1], full[0]) == 0),
                 write.addr.eq(Cat(fill_step, fill)),
                 write.data.eq(data_in),
                 write.en.eq(word_fire)]
    fill_done = word_fire & (fill_step == steps - 1)
    with m.If(word_fire):
        m.d.sync += fill_step.eq(Mux(fill_done, 0, fill_step + 1))
        with m.If(fill_done):
            m.d.sync += fill.eq(~fill)

    # Stage 0: walk (group, step) over the bank `drain` once it is full.
    advance = Signal()
    m.d.comb += advance.eq(~o.valid | o.ready)
    for port in (read, *ports):
        m.d.comb += port.en.eq(advance)
    drain = Signal()
    group, step = Signal(range(groups)), Signal(range(steps), name=step_name)
    base = Signal(range(groups * base_stride))
    running = Mux(drain, full[1], full[0])
    step_final, group_final = step == steps - 1, group == groups - 1
    m.d.comb += read.addr.eq(Cat(step, drain))
    release = advance & running & step_final & group_final
    for bank in (0, 1):
        with m.If(fill_done & (fill == bank)):
            m.d.sync += full[bank].eq(1)
        with m.Elif(release & (drain == bank)):
            m.d.sync += full[bank].eq(0)
    with m.If(advance & running):
        m.d.sync += step.eq(Mux(step_final, 0, step + 1))
        with m.If(step_final):
            m.d.sync += [group.eq(Mux(group_final, 0, group + 1)),
                         base.eq(Mux(group_final, 0, base + base_stride))]
        with m.If(step_final & group_final):
            m.d.sync += drain.eq(~drain)
    return GroupWalk(advance, running, group, step, base, step_final, group_final)


def accumulate_and_emit(m: Module, o, *, advance, valid, first, final, last, starts, addends,
                        acc_bits: int, pipeline: bool, out_shift: int | None, flag_suffix: str):
    """Add to `m` the accumulators of `len(addends)` lanes and the output register `o` they fill.

    `o` is the loop's output stream (a beat of one lane per addend); the loop moves only
    on cycles with `advance` (`~o.valid | o.ready`). The step on offer is described by
    `valid` (there is one), `first` and `final` (of its group) and `last` (its group is
    the vector's last); `starts` are the lanes' biases, read for the first step, and
    `addends` the step's values. `pipeline` registers the finished sums before
    rounding; their `last` flag is named `last<flag_suffix>`, in the caller's naming of
    its stages. `out_shift` is the output rule's shift; None leaves raw accumulators.
    """
    lanes = len(addends)
    acc = Signal(data.ArrayLayout(signed(acc_bits), lanes))
    sums = [Mux(first, starts[k], acc[k]) + addends[k] for k in range(lanes)]
    with m.If(advance & valid):
        m.d.sync += [acc[k].eq(sums[k]) for k in range(lanes)]

    done, done_last = valid & final, last
    if pipeline:
        registered = Signal(data.ArrayLayout(signed(acc_bits), lanes))
        valid_sum, last_sum = Signal(), Signal(name=f"last{flag_suffix}")
        with m.If(advance):
            m.d.sync += [valid_sum.eq(done), last_sum.eq(done_last),
                         *(registered[k].eq(sums[k]) for k in range(lanes))]
        sums = [registered[k] for k in range(lanes)]
        done, done_last = valid_sum, last_sum

    with m.If(advance):
        m.d.sync += o.valid.eq(done)
        with m.If(done):
            m.d.sync += o.payload.last.eq(done_last)
            for k in range(lanes):
                value = sums[k] if out_shift is None else requantize(sums[k], out_shift)
                m.d.sync += o.payload.data[k].eq(value)
