"""Boards and devices (boards/devices.py): facts read from the amaranth-boards platforms, and the
device table checked against what those platforms' own build scripts do.

Expected values come from the boards' documentation: the iCEBreaker has a 12 MHz
oscillator on pin 35 and its FTDI UART on pins 6 (into the FPGA) and 9; the ULX3S a
25 MHz oscillator on G2 and its FTDI UART on M1 (into the FPGA) and L4, LVCMOS33.
"""
import shlex

import pytest
from amaranth import Elaboratable, Module

from nomac.base.errors import NomacError
from nomac.boards.devices import BOARDS, DEFAULT_BOARD, DEVICES, PackagePin, get_board, harness_board
from nomac.boards.synthesis import harness_pins
from nomac.boards.toolchain import tool_env_var

LVCMOS33 = {"IO_TYPE": "LVCMOS33"}


@pytest.mark.parametrize("board, device, clock_hz", [("icebreaker", "ice40-up5k", 12_000_000),
                                                     ("ulx3s-85f", "ecp5-85f", 25_000_000)])
def test_board_clock_and_device(board, device, clock_hz):
    assert get_board(board).clock_hz == clock_hz
    assert get_board(board).device is DEVICES[device]
    assert harness_board(DEVICES[device]) is get_board(board)


def test_default_board_and_unknown_board():
    assert get_board(DEFAULT_BOARD).name == "icebreaker"
    with pytest.raises(NomacError, match="^board 'de10': not supported; choose one of icebreaker, ulx3s-85f$"):
        get_board("de10")


def test_icebreaker_harness_constraints():
    pins = harness_pins(get_board("icebreaker"))
    assert {port: pin.name for port, pin in pins.items()} == {"clk": "35", "serial_in": "6", "serial_out": "9"}
    assert DEVICES["ice40-up5k"].constraints(pins) == "set_io clk 35\nset_io serial_in 6\nset_io serial_out 9\n"


def test_ulx3s_harness_constraints():
    pins = harness_pins(get_board("ulx3s-85f"))
    assert pins == {"clk": PackagePin("G2", LVCMOS33), "serial_in": PackagePin("M1", LVCMOS33),
                    "serial_out": PackagePin("L4", LVCMOS33)}
    assert DEVICES["ecp5-85f"].constraints(pins) == (
        'LOCATE COMP "clk" SITE "G2";\nIOBUF PORT "clk" IO_TYPE=LVCMOS33;\n'
        'LOCATE COMP "serial_in" SITE "M1";\nIOBUF PORT "serial_in" IO_TYPE=LVCMOS33;\n'
        'LOCATE COMP "serial_out" SITE "L4";\nIOBUF PORT "serial_out" IO_TYPE=LVCMOS33;\n')


@pytest.mark.parametrize("board", list(BOARDS))
def test_device_table_agrees_with_the_platform_build_script(board):
    """The harness is placed on the part and package the board's own build uses, with the same tools."""
    class Empty(Elaboratable):
        def elaborate(self, platform):
            return Module()

    spec = get_board(board)
    device = spec.device
    script = spec.make_platform().build(Empty(), name="top", do_build=False).files["build_top.sh"]
    commands = [shlex.split(line) for line in script.splitlines() if line.startswith('"$')]
    programs = [command[0] for command in commands]
    assert programs[:3] == [f"${tool_env_var(tool)}" for tool in ("yosys", device.nextpnr, device.packer)]
    nextpnr = " ".join(commands[1])
    assert " ".join(device.nextpnr_args) in nextpnr and f"--{device.constraints_suffix[1:]} top" in nextpnr
    assert f"top{device.bitstream_suffix}" in commands[2]


def test_synth_commands():
    assert [DEVICES["ice40-up5k"].synth(dsp) for dsp in (True, False)] == ["synth_ice40 -dsp", "synth_ice40"]
    assert [DEVICES["ecp5-85f"].synth(dsp) for dsp in (True, False)] == ["synth_ecp5", "synth_ecp5 -nodsp"]


def test_resources_count_lut4_sites():
    cells = {"LUT4": 10, "CCU2C": 3, "TRELLIS_DPR16X4": 1, "TRELLIS_FF": 7, "DP16KD": 2, "MULT18X18D": 1,
             "ALU54B": 1, "PFUMX": 4}
    # 10 + 2 * 3 + 6 * 1 LUT4 sites; PFUMX is a mux between LUTs, no LUT of its own
    assert DEVICES["ecp5-85f"].resources(cells) == {"luts": 22, "ffs": 7, "brams": 2, "dsps": 2}
    cells = {"SB_LUT4": 5, "SB_CARRY": 4, "SB_DFF": 2, "SB_DFFER": 3, "SB_RAM40_4K": 1, "SB_MAC16": 2}
    assert DEVICES["ice40-up5k"].resources(cells) == {"luts": 5, "ffs": 5, "brams": 1, "dsps": 2}
