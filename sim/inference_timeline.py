"""What a logged board run takes at another baud and clock: the host's exchanges replayed
with RUN in the background (docs/spec.md section 14.5).

The simulated board's UART runs at a divisor of 2, so its wire is fast and a reply's
turnaround mixes the board's own work with waiting for a run. `timeline` separates them:
per exchange its request and reply bytes, the cycles the board worked on it (its
turnaround less its wait for the run), whether it waits for a run, and for a RUN the
run's cycles (the next WAIT's reply; the run is taken to start with RUN's reply, a few
cycles after its dispatch). `replay` then plays the host's stop-and-wait
exchanges at `baud` against a board clocked at `clock_hz`: a request's bytes, its wait
for the run if it waits for one, the board's work, the reply's bytes, while a RUN's run
goes on from its dispatch. The host's own latency (USB, the operating system) is not in
it: on a real board it adds per exchange.
"""
from dataclasses import dataclass

from nomac.boards import link_protocol as lp
from nomac.boards.link_protocol import Command, Status

__all__ = ["Exchange", "timeline", "replay"]

# The commands a board answers while a run goes on (READ_OUTPUTS only of the other slot).
_NEVER_WAIT = (Command.IDENTIFY, Command.STATUS)


@dataclass(frozen=True)
class Exchange:
    cmd: int
    request_bytes: int                      # on the wire, frame overhead included
    reply_bytes: int
    work_cycles: int                        # from the request's last byte to the reply's first, less any wait
    waits: bool                             # for a run still going (READ_OUTPUTS: of its slot)
    slot: int | None                        # RUN's and READ_OUTPUTS' output slot
    run_cycles: int | None                  # RUN: its run's cycles


def _pairs(frames: list) -> list:
    """Each request with its reply, in the order the replies ended."""
    requests, pairs = {}, []
    for frame in sorted(frames, key=lambda f: f["end"]):
        if frame["dir"] == "request":
            requests[(frame["cmd"], frame["seq"])] = frame
            continue
        request = requests.pop((frame["cmd"] & 0x7F, frame["seq"]), None)
        if request is not None:
            pairs.append((request, frame))
    return pairs


def _slot(cmd: int, payload_hex: str | None) -> int | None:
    layout = {Command.RUN: lp.RUN_REQUEST, Command.READ_OUTPUTS: lp.OUTPUTS_REQUEST}.get(cmd)
    if layout is None or payload_hex is None or len(payload_hex) != 2 * layout.size:
        return None
    return layout.unpack(bytes.fromhex(payload_hex))[-1]


def _wait_cycles(reply: dict) -> int | None:
    data = bytes.fromhex(reply["payload"]) if reply.get("payload") else b""
    if len(data) != 1 + lp.WAIT_REPLY.size or data[0] != Status.OK:
        return None
    return lp.WAIT_REPLY.unpack(data[1:])[0]


def timeline(frames: list, commands) -> list[Exchange]:
    """The exchanges of `commands` among the logged `frames` (sim/board_bench.py's), in order."""
    pairs = _pairs(frames)
    exchanges = []
    run_end, run_slot = None, None          # of the run going on in the simulation (cycles)
    for index, (request, reply) in enumerate(pairs):
        cmd, turnaround = request["cmd"], reply["start"] - request["end"]
        slot = _slot(cmd, request.get("payload"))
        waits = cmd not in _NEVER_WAIT
        blocked = waits and run_end is not None and (cmd != Command.READ_OUTPUTS or slot == run_slot)
        waited = max(0, run_end - request["end"]) if blocked else 0
        run_cycles = None
        if cmd == Command.RUN and reply.get("payload") == bytes([Status.OK]).hex():
            later = (_wait_cycles(r) for q, r in pairs[index + 1:] if q["cmd"] == Command.WAIT)
            run_cycles = next((c for c in later if c is not None), None)
            if run_cycles is None:
                raise ValueError(f"RUN (seq {request['seq']}) has no WAIT reply after it: its run's cycles are "
                                 "unknown, so the run cannot be replayed")
            run_end, run_slot = reply["start"] + run_cycles, slot
        if cmd in commands:
            exchanges.append(Exchange(cmd=cmd, request_bytes=request["bytes"], reply_bytes=reply["bytes"],
                                      work_cycles=max(0, turnaround - waited), waits=waits, slot=slot,
                                      run_cycles=run_cycles))
        if run_end is not None and reply["end"] >= run_end:
            run_end, run_slot = None, None
    return exchanges


def replay(exchanges: list[Exchange], baud: float, clock_hz: float) -> float:
    """Seconds the exchanges take one after the other at `baud` on a board clocked at `clock_hz`."""
    now, run_end, run_slot = 0.0, 0.0, None
    for e in exchanges:
        arrival = now + e.request_bytes * 10 / baud
        blocked = e.waits and (e.cmd != Command.READ_OUTPUTS or e.slot == run_slot)
        dispatch = max(arrival, run_end) if blocked else arrival
        if e.run_cycles is not None:
            run_end, run_slot = dispatch + e.run_cycles / clock_hz, e.slot
        now = dispatch + e.work_cycles / clock_hz + e.reply_bytes * 10 / baud
    return now
