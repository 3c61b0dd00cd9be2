"""Random and adversarial frames through the real link gateware (cocotb), memories checked after each.

Each case of nomac.sim.link_adversary (valid writes and reads, replays of the last
and of older frames, bit flips, wrong lengths, lengths above max_payload, addresses
out of range, unknown commands, the vector commands valid and refused, frames cut
short, garbage between frames, and wild mixes of these) is sent to a blank simulated board; the replies must be exactly the
expected ones, and every engine memory, read from the simulator after each case,
must hold exactly the writes the board acknowledged. Every 25 cases, and at the end,
the memories are read back over the link too (CRC of all memories), and the board's
counters must equal the replies seen. CI: 1000 cases; slow: 10^4 on another seed.
"""
import pytest

from lut_cases import LutCase
from matrix_cases import MatrixCase
from nomac.sim.simulated_board import check_link_robustness

TREE = LutCase("tree", 4, 5, 2, 4, {"table_reads": 2})      # five memories of 2, 8, 16 and 64 bits


def check(report, cases):
    assert not report["problems"], report["problems"][:5]
    assert report["cases"] == cases
    assert report["probes"] == report["probes_matching"] == -(-cases // 25)
    counters = report["counters"]
    assert counters["uart_errors"] == 0 and not counters["engine_framing_error"]
    # every kind of case was exercised, and every status came back
    assert set(report["tally"]) == {"valid_write", "valid_read", "replay_last", "replay_old", "bad_crc",
                                    "wrong_length", "too_long", "bad_address", "unknown_command", "truncated",
                                    "garbage_then_valid", "wild"} | {
        f"vector_commands_{kind}" for kind in ("write_inputs", "read_outputs", "wait", "wait_length", "run_length",
                                               "run_count", "run_slot", "read_outputs_length", "read_outputs_slot")}
    assert set(report["statuses"]) == {"OK", "BAD_CRC", "BAD_LENGTH", "UNKNOWN_COMMAND", "BAD_ADDRESS",
                                       "TIMEOUT", "DUPLICATE"}


def test_link_survives_1000_adversarial_cases(tmp_path):
    check(check_link_robustness(TREE.config(), cases=1000, seed=1, work_dir=tmp_path), 1000)


@pytest.mark.slow
def test_link_survives_10k_adversarial_cases(tmp_path):
    check(check_link_robustness(TREE.config(), cases=10_000, seed=2, work_dir=tmp_path), 10_000)


@pytest.mark.slow
def test_link_survives_adversarial_cases_with_a_shift_engine(tmp_path):
    config = MatrixCase("shift", 5, 3, {"memory": "ram"}).config()
    check(check_link_robustness(config, cases=2000, seed=3, work_dir=tmp_path), 2000)
