"""Random and adversarial frames for a board, and a model of what the board must do with them.

`Adversary.next_case()` makes the bytes of one test case and says what the board
must answer; `Adversary.check(case, replies)` compares the replies the board sent
with that, and applies to its memory model exactly the writes the board
acknowledged. So after every case the board's memories must equal the model:
nothing but acknowledged writes ever changes them. Plain Python on top of
nomac.boards.link_protocol; sim/link_robustness_bench.py runs it against the
gateware.

Cases, each with its expected answer:
- valid WRITE (OK, applied), valid READ (OK, the model's words);
- the last state-changing frame replayed byte for byte (DUPLICATE, nothing done),
  an older WRITE replayed (OK, applied again: a fresh sequence number);
- a bit flipped in the payload or CRC (BAD_CRC), a length that disagrees with the
  word count (BAD_LENGTH), a length above max_payload sent as a header only
  (BAD_LENGTH), a memory index or address range out of bounds (BAD_ADDRESS), an
  unknown command (UNKNOWN_COMMAND);
- the vector commands: WRITE_INPUTS, READ_OUTPUTS and WAIT that are valid (OK; WAIT's
  cycles 0, as no RUN is ever sent: a blank engine has no program), and RUN,
  READ_OUTPUTS and WAIT of the wrong length, slot or count (BAD_LENGTH, BAD_ADDRESS);
- a frame cut short (one TIMEOUT, with the cmd and seq that got through);
- garbage without START bytes, then a valid frame (the frame's answer);
- wild: 1-3 bit flips anywhere (START and length included) or garbage with START
  bytes, possibly cut short: any answers, but none may be OK and nothing may change.
"""
import random
from collections import Counter
from dataclasses import dataclass, field

from nomac.boards import link_protocol as lp
from nomac.boards.link_protocol import Command, Status

CASES = {   # name: weight
    "valid_write": 18, "valid_read": 8, "replay_last": 6, "replay_old": 6, "bad_crc": 10, "wrong_length": 8,
    "too_long": 5, "bad_address": 9, "unknown_command": 5, "truncated": 7, "garbage_then_valid": 8, "wild": 10,
    "vector_commands": 10,
}
STATE_CHANGING = {int(c) for c in lp.STATE_CHANGING}


@dataclass
class Case:
    name: str
    data: bytes
    expect: list                 # [(cmd, seq, status)] the replies, in order; None: any (wild)
    frames: dict = field(default_factory=dict)   # (cmd, seq) -> payload of the well-formed frames sent
    garbage: int = 0


@dataclass
class Region:
    index: int
    name: str
    depth: int
    word_bits: int


class Adversary:
    def __init__(self, regions: list[Region], max_payload: int, seed: int, *, batch: int, in_vector_bytes: int,
                 out_vector_bytes: int, max_words: int = 4):
        self.regions, self.max_payload = regions, max_payload
        self.batch, self.in_vector_bytes, self.out_vector_bytes = batch, in_vector_bytes, out_vector_bytes
        self.rng = random.Random(seed)
        self.max_words = max_words
        self.model = {r.index: [0] * r.depth for r in regions}      # the board starts blank
        self.seq = 0
        self.last_changed = None        # seq of the last state-changing frame the board executed
        self.writes = []                # bytes of WRITE frames sent whole, for replays
        self.last_frame = None          # bytes of the last state-changing frame executed
        self.tally = Counter()          # case names (the vector commands' by kind)
        self.statuses = Counter()       # reply statuses seen
        self.problems = []

    # --- making frames ----------------------------------------------------------------------

    def _seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFF
        return self.seq

    def _expected(self, cmd: int, seq: int, status: int) -> int:
        """What the board answers a well-formed frame with status `status` (the duplicate rule)."""
        if status == Status.OK and cmd in STATE_CHANGING and seq == self.last_changed:
            return Status.DUPLICATE
        return status

    def _write_request(self):
        r = self.rng.choice(self.regions)
        count = self.rng.randint(1, min(self.max_words, r.depth,
                                        (self.max_payload - lp.MEMORY_REQUEST.size) // lp.word_bytes(r.word_bits)))
        first = self.rng.randint(0, r.depth - count)
        words = [self.rng.getrandbits(r.word_bits) for _ in range(count)]
        return r, first, words, lp.MEMORY_REQUEST.pack(r.index, first, count) + lp.pack_words(words, r.word_bits)

    def _frame(self, cmd, payload, status=Status.OK):
        seq = self._seq()
        return lp.encode_frame(cmd, seq, payload), (int(cmd), seq, self._expected(cmd, seq, status))

    def next_case(self) -> Case:
        name = self.rng.choices(list(CASES), weights=list(CASES.values()))[0]
        if name == "replay_last" and self.last_frame is None or name == "replay_old" and len(self.writes) < 2:
            name = "valid_write"
        case = getattr(self, f"_case_{name}")(name)
        self.tally[case.name] += 1
        return case

    def _case_valid_write(self, name):
        _, _, _, payload = self._write_request()
        data, expect = self._frame(Command.WRITE, payload)
        self.writes.append(data)
        return Case(name, data, [expect], {expect[:2]: payload})

    def _case_valid_read(self, name):
        r = self.rng.choice(self.regions)
        count = self.rng.randint(1, min(r.depth, (self.max_payload - 1) // lp.word_bytes(r.word_bits), 8))
        first = self.rng.randint(0, r.depth - count)
        payload = lp.MEMORY_REQUEST.pack(r.index, first, count)
        data, expect = self._frame(Command.READ, payload)
        return Case(name, data, [expect], {expect[:2]: payload})

    def _replay(self, name, data):
        cmd, seq = data[1], data[2]
        payload = data[1 + lp.HEADER_BYTES:-lp.CRC_BYTES]
        return Case(name, data, [(cmd, seq, self._expected(cmd, seq, Status.OK))], {(cmd, seq): payload})

    def _case_replay_last(self, name):
        return self._replay(name, self.last_frame)

    def _case_replay_old(self, name):
        return self._replay(name, self.rng.choice(self.writes[:-1]))

    def _case_bad_crc(self, name):
        _, _, _, payload = self._write_request()
        data, (cmd, seq, _) = self._frame(Command.WRITE, payload)
        damaged = bytearray(data)
        position = self.rng.randrange(1 + lp.HEADER_BYTES, len(data))       # payload or CRC bytes
        damaged[position] ^= 1 << self.rng.randrange(8)
        return Case(name, bytes(damaged), [(cmd, seq, Status.BAD_CRC)])

    def _case_wrong_length(self, name):
        r, first, words, payload = self._write_request()
        size = lp.word_bytes(r.word_bits)
        change = self.rng.choice([-1, 1]) * self.rng.randint(1, size)
        if len(payload) + change < lp.MEMORY_REQUEST.size:
            change = 1
        payload = payload + bytes(change) if change > 0 else payload[:change]
        data, expect = self._frame(Command.WRITE, payload, Status.BAD_LENGTH)
        return Case(name, data, [expect])

    def _case_too_long(self, name):
        seq = self._seq()
        length = self.rng.randint(self.max_payload + 1, 0xFFFF)
        header = bytes([lp.START, Command.WRITE, seq]) + length.to_bytes(2, "little")
        return Case(name, header, [(int(Command.WRITE), seq, Status.BAD_LENGTH)])

    def _case_bad_address(self, name):
        r = self.rng.choice(self.regions)
        kind = self.rng.choice(["index", "range", "read_range", "crc_all_args"])
        if kind == "index":
            index = self.rng.randint(len(self.regions), 0xFE)
            payload = lp.MEMORY_REQUEST.pack(index, 0, 1) + bytes(lp.word_bytes(r.word_bits))
            cmd = Command.WRITE
        elif kind == "range":
            count = self.rng.randint(1, min(self.max_words, (self.max_payload - lp.MEMORY_REQUEST.size)
                                            // lp.word_bytes(r.word_bits)))
            first = self.rng.choice([max(0, r.depth - count + 1), r.depth, self.rng.randint(r.depth, (1 << 32) - 1)])
            payload = lp.MEMORY_REQUEST.pack(r.index, first, count) + bytes(count * lp.word_bytes(r.word_bits))
            cmd = Command.WRITE
        elif kind == "read_range":
            payload = lp.MEMORY_REQUEST.pack(r.index, self.rng.randint(0, r.depth), r.depth + 1)
            cmd = Command.READ
        else:
            payload = lp.MEMORY_REQUEST.pack(lp.ALL_MEMORIES, 1, 0)
            cmd = Command.CRC
        data, expect = self._frame(cmd, payload, Status.BAD_ADDRESS)
        return Case(name, data, [expect])

    def _case_unknown_command(self, name):
        known = {int(c) for c in Command}
        cmd = self.rng.choice([c for c in range(0x80) if c not in known])
        data, expect = self._frame(cmd, bytes(self.rng.randint(0, 6)), Status.UNKNOWN_COMMAND)
        return Case(name, data, [expect])

    def _case_vector_commands(self, name):
        rng, batch = self.rng, self.batch
        per_read = min(batch, (self.max_payload - 1) // self.out_vector_bytes)
        kind = rng.choice(["write_inputs", "read_outputs", "wait", "wait_length", "run_length", "run_count",
                           "run_slot", "read_outputs_length", "read_outputs_slot"])
        status = Status.BAD_ADDRESS
        if kind == "write_inputs":
            count = rng.randint(1, batch)
            cmd, payload, status = Command.WRITE_INPUTS, lp.COUNT_REQUEST.pack(count) + rng.randbytes(
                count * self.in_vector_bytes), Status.OK
        elif kind == "read_outputs":
            count = rng.randint(1, per_read)
            cmd, status = Command.READ_OUTPUTS, Status.OK
            payload = lp.OUTPUTS_REQUEST.pack(rng.randint(0, batch - count), count, rng.randint(0, 1))
        elif kind == "wait":
            cmd, payload, status = Command.WAIT, b"", Status.OK
        elif kind == "wait_length":
            cmd, payload, status = Command.WAIT, rng.randbytes(rng.randint(1, 4)), Status.BAD_LENGTH
        elif kind == "run_length":                      # protocol 1's RUN, or one byte too many
            cmd, status = Command.RUN, Status.BAD_LENGTH
            payload = rng.choice([lp.COUNT_REQUEST.pack(1), lp.RUN_REQUEST.pack(1, 0) + b"\0"])
        elif kind == "run_count":
            cmd, payload = Command.RUN, lp.RUN_REQUEST.pack(rng.choice([0, batch + 1, 0xFFFF]), 0)
        elif kind == "run_slot":
            cmd, payload = Command.RUN, lp.RUN_REQUEST.pack(rng.randint(1, batch), rng.randint(2, 255))
        elif kind == "read_outputs_length":             # protocol 1's READ_OUTPUTS
            cmd, payload, status = Command.READ_OUTPUTS, lp.OUTPUTS_REQUEST.pack(0, 1, 0)[:-1], Status.BAD_LENGTH
        else:
            cmd, payload = Command.READ_OUTPUTS, lp.OUTPUTS_REQUEST.pack(0, 1, rng.randint(2, 255))
        data, expect = self._frame(cmd, payload, status)
        return Case(f"{name}_{kind}", data, [expect], {expect[:2]: payload})

    def _case_truncated(self, name):
        _, _, _, payload = self._write_request()
        data, (cmd, seq, _) = self._frame(Command.WRITE, payload)
        cut = self.rng.randint(1, len(data) - 1)
        return Case(name, data[:cut], [(cmd if cut >= 2 else 0, seq if cut >= 3 else 0, Status.TIMEOUT)])

    def _case_garbage_then_valid(self, name):
        garbage = bytes(self.rng.choice([b for b in range(256) if b != lp.START])
                        for _ in range(self.rng.randint(1, 12)))
        case = self._case_valid_write(name)
        return Case(name, garbage + case.data, case.expect, case.frames, garbage=len(garbage))

    def _case_wild(self, name):
        _, _, _, payload = self._write_request()
        data, (cmd, seq, _) = self._frame(Command.WRITE, payload)
        damaged = bytearray(data)
        if self.rng.random() < 0.5:
            for _ in range(self.rng.randint(1, 3)):
                damaged[self.rng.randrange(len(damaged))] ^= 1 << self.rng.randrange(8)
        else:
            junk = bytes(self.rng.choice([lp.START, self.rng.randrange(256)]) for _ in range(self.rng.randint(1, 10)))
            at = self.rng.randrange(len(damaged))
            damaged[at:at] = junk
        if self.rng.random() < 0.3:
            damaged = damaged[:self.rng.randint(1, len(damaged))]
        # junk in front of an intact frame leaves it a valid frame, which the board may execute
        intact = bytes(damaged).endswith(data)
        return Case(name, bytes(damaged), None, {(cmd, seq): payload} if intact else {})

    # --- checking what the board did --------------------------------------------------------

    def _problem(self, text: str):
        if len(self.problems) < 20:
            self.problems.append(text)

    def check(self, case: Case, replies: list):
        """Compare the replies with the case's expectation; apply acknowledged writes."""
        for reply in replies:
            self.statuses[Status(reply.status).name if reply.status in Status._value2member_map_
                          else str(reply.status)] += 1
        got = [(r.cmd & ~lp.REPLY, r.seq, r.status) for r in replies]
        if case.expect is not None and got != [tuple(map(int, e)) for e in case.expect]:
            self._problem(f"{case.name}: expected replies {case.expect}, got {got} for {case.data.hex()}")
        for reply in replies:
            key = (reply.cmd & ~lp.REPLY, reply.seq)
            if reply.status != Status.OK:
                continue
            if key not in case.frames:
                self._problem(f"{case.name}: a damaged frame was executed ({key}, {case.data.hex()})")
                continue
            payload = case.frames[key]
            if key[0] == Command.WRITE:
                index, first, count = lp.MEMORY_REQUEST.unpack_from(payload)
                region = self.regions[index]
                words = lp.unpack_words(payload[lp.MEMORY_REQUEST.size:], region.word_bits)
                self.model[index][first:first + count] = words
            elif key[0] == Command.WAIT and reply.data != lp.WAIT_REPLY.pack(0):
                self._problem(f"{case.name}: WAIT with no run ever started gave {reply.data.hex()}, not 0 cycles")
            elif key[0] == Command.READ_OUTPUTS and len(reply.data) != lp.OUTPUTS_REQUEST.unpack(payload)[1] * \
                    self.out_vector_bytes:
                self._problem(f"{case.name}: READ_OUTPUTS {payload.hex()} gave {len(reply.data)} data bytes")
            elif key[0] == Command.READ:
                index, first, count = lp.MEMORY_REQUEST.unpack_from(payload)
                region = self.regions[index]
                if lp.unpack_words(reply.data, region.word_bits) != self.model[index][first:first + count]:
                    self._problem(f"{case.name}: READ {index} [{first}, +{count}) gave {reply.data.hex()}, "
                                  f"the model holds {self.model[index][first:first + count]}")
            if key[0] in STATE_CHANGING:
                self.last_changed = key[1]
                self.last_frame = case.data[-(len(payload) + lp.FRAME_OVERHEAD):]

    def compare_memories(self, memories: dict, where: str):
        """`memories`: region index -> words as the board holds them."""
        for index, words in memories.items():
            if list(words) != self.model[index]:
                wrong = [a for a, (w, e) in enumerate(zip(words, self.model[index])) if w != e]
                self._problem(f"after {where}: memory {self.regions[index].name} differs from the acknowledged "
                              f"writes at {len(wrong)} addresses, first {wrong[0]}")

    def digest(self) -> int:
        """The CRC over every memory the board answers to CRC(ALL_MEMORIES)."""
        return lp.memory_crc(b"".join(lp.pack_words(self.model[r.index], r.word_bits) for r in self.regions))
