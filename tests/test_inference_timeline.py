"""The replay of a board run's exchanges at another baud and clock (sim/inference_timeline.py),
on exchanges whose times are worked out by hand."""
import dataclasses

import pytest

from nomac.board_run import project_on_board
from nomac.boards import link_protocol as lp
from nomac.boards.link_protocol import Command
from nomac.sim.inference_timeline import Exchange, replay, timeline


def exchange(cmd, request, reply, work, *, slot=None, run=None):
    return Exchange(cmd=cmd, request_bytes=request, reply_bytes=reply, work_cycles=work,
                    waits=cmd not in (Command.IDENTIFY, Command.STATUS), slot=slot, run_cycles=run)


# The host's pipeline for two batches (boards/host.py BoardSession.run), runs of 5000 cycles.
TWO_BATCHES = [
    exchange(Command.WRITE_INPUTS, 100, 8, 100),
    exchange(Command.RUN, 10, 8, 2, slot=0, run=5000),
    exchange(Command.WRITE_INPUTS, 100, 8, 100),
    exchange(Command.WAIT, 7, 12, 2),
    exchange(Command.RUN, 10, 8, 2, slot=1, run=5000),
    exchange(Command.READ_OUTPUTS, 12, 50, 3, slot=0),
    exchange(Command.WAIT, 7, 12, 2),
    exchange(Command.READ_OUTPUTS, 12, 50, 3, slot=1),
]


def test_the_replay_overlaps_the_link_with_a_run_and_waits_where_the_board_waits():
    """At 1 Mbaud (10 us a byte) and 1 MHz, in us: WRITE_INPUTS 1000 + 100 + 80 = 1180; RUN
    dispatched at 1280, its run until 6280, replied by 1362; the next WRITE_INPUTS arrives at
    2362 and waits for the run: 6280 + 100 + 80 = 6460; WAIT 6530 + 2 + 120 = 6652; RUN at 6752
    (run until 11752), 6834; READ_OUTPUTS of slot 0 goes on at once: 6954 + 3 + 500 = 7457;
    WAIT arrives at 7527, waits: 11752 + 2 + 120 = 11874; READ_OUTPUTS of slot 1, 12497."""
    assert replay(TWO_BATCHES, 1_000_000, 1_000_000) == pytest.approx(12_497e-6)
    # With an engine as fast as nothing, only the bytes on the wire are left.
    assert replay(TWO_BATCHES, 1_000_000, 1e12) == pytest.approx(sum((e.request_bytes + e.reply_bytes)
                                                                      for e in TWO_BATCHES) * 10e-6)


def test_read_outputs_of_the_running_slot_waits_for_the_run():
    running = [exchange(Command.RUN, 10, 8, 0, slot=1, run=5000), exchange(Command.READ_OUTPUTS, 10, 10, 0, slot=1)]
    assert replay(running, 1_000_000, 1_000_000) == pytest.approx((100 + 5000 + 100) * 1e-6)
    other = [running[0], exchange(Command.READ_OUTPUTS, 10, 10, 0, slot=0)]
    assert replay(other, 1_000_000, 1_000_000) == pytest.approx((100 + 80 + 100 + 100) * 1e-6)


def frame(direction, cmd, seq, nbytes, start, end, payload=None):
    return {"dir": direction, "cmd": cmd | (lp.REPLY if direction == "reply" else 0), "seq": seq, "bytes": nbytes,
            "start": start, "end": end, "payload": None if payload is None else payload.hex()}


def test_the_timeline_takes_the_wait_for_the_run_out_of_a_turnaround():
    """A RUN replied from cycle 105 whose run WAIT reports as 5000 cycles ends at 5105; the
    WRITE_INPUTS sent meanwhile (its request ended at 150, its reply started at 5200) worked
    5200 - 5105 = 95 cycles."""
    ok = bytes([lp.Status.OK])
    frames = [frame("request", Command.RUN, 1, 10, 90, 100, lp.RUN_REQUEST.pack(3, 1)),
              frame("reply", Command.RUN, 1, 8, 105, 120, ok),
              frame("request", Command.WRITE_INPUTS, 2, 200, 130, 150),
              frame("reply", Command.WRITE_INPUTS, 2, 8, 5200, 5210, ok),
              frame("request", Command.STATUS, 3, 7, 5220, 5230, b""),
              frame("reply", Command.STATUS, 3, 29, 5232, 5260),
              frame("request", Command.WAIT, 4, 7, 5290, 5300, b""),
              frame("reply", Command.WAIT, 4, 12, 5303, 5320, ok + lp.WAIT_REPLY.pack(5000))]
    got = timeline(frames, (Command.RUN, Command.WRITE_INPUTS, Command.WAIT))
    assert [(e.cmd, e.request_bytes, e.reply_bytes, e.work_cycles, e.waits, e.slot, e.run_cycles) for e in got] == [
        (Command.RUN, 10, 8, 5, True, 1, 5000), (Command.WRITE_INPUTS, 200, 8, 95, True, None, None),
        (Command.WAIT, 7, 12, 3, True, None, None)]
    with pytest.raises(ValueError, match=r"RUN \(seq 1\) has no WAIT reply after it"):
        timeline(frames[:4], (Command.RUN,))


def test_a_network_run_is_projected_by_replaying_its_exchanges_at_the_clock_given():
    class Report:
        images = 4
        cycles_per_image = 2500.0
        projection = {"inference": [dataclasses.asdict(e) for e in TWO_BATCHES],
                      "wire_bytes_per_image": sum(e.request_bytes + e.reply_bytes for e in TWO_BATCHES) / 4}
    at_clock = project_on_board(Report(), "icebreaker", 1_000_000, clock_hz=1_000_000)
    assert at_clock["images_per_s"] == pytest.approx(4 / 12_497e-6)
    assert at_clock["compute_seconds_per_image"] == 0.0025
    assert at_clock["link_images_per_s"] == pytest.approx(1 / (Report.projection["wire_bytes_per_image"] * 10e-6))
    assert project_on_board(Report(), "icebreaker", 1_000_000)["clock_hz"] == 12_000_000
