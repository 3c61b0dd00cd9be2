"""PLL settings (boards/pll.py): the highest frequency at or below the wanted one, within the
data sheets' ranges, with the exact output; known answers of icepll and ecppll.

The exhaustive checks search the dividers independently (plain loops over every divider
value with the ranges written out again), not through the module's enumeration.
"""
from fractions import Fraction

import pytest

from nomac.base.errors import NomacError
from nomac.boards.pll import Ecp5Pll, Ice40Pll, device_pll, ecp5_pll, ecp5_plls, ice40_pll, ice40_plls

MHZ = 1_000_000


def ice40_outputs(input_hz):
    """Every output an SB_PLL40 (SIMPLE feedback) makes: PFD 10..133, VCO 533..1066, out 16..275 MHz."""
    outputs = set()
    for divr in range(16):
        for divf in range(128):
            for divq in range(1, 7):
                pfd = Fraction(input_hz, divr + 1)
                vco = pfd * (divf + 1)
                out = vco / 2 ** divq
                if 10 * MHZ <= pfd <= 133 * MHZ and 533 * MHZ <= vco <= 1066 * MHZ and 16 * MHZ <= out <= 275 * MHZ:
                    outputs.add(out)
    return outputs


def ecp5_outputs(input_hz):
    """Every output an EHXPLLL (CLKOP feedback) makes: PFD 3.125..400, VCO 400..800, out 10..400 MHz."""
    outputs = set()
    for clki_div in range(1, 129):
        pfd = Fraction(input_hz, clki_div)
        if not Fraction(3125, 1000) * MHZ <= pfd <= 400 * MHZ:
            continue
        for clkfb_div in range(1, 81):
            out = pfd * clkfb_div
            if 10 * MHZ <= out <= 400 * MHZ and any(400 * MHZ <= out * div <= 800 * MHZ for div in range(1, 129)):
                outputs.add(out)
    return outputs


def check_ice40(pll: Ice40Pll):
    assert 0 <= pll.divr <= 15 and 0 <= pll.divf <= 127 and 1 <= pll.divq <= 6
    assert pll.pfd_hz == Fraction(pll.input_hz, pll.divr + 1)
    assert pll.output_hz == Fraction(pll.input_hz * (pll.divf + 1), (pll.divr + 1) * 2 ** pll.divq)
    assert 10 * MHZ <= pll.pfd_hz <= 133 * MHZ and 533 * MHZ <= pll.vco_hz <= 1066 * MHZ
    assert 16 * MHZ <= pll.output_hz <= 275 * MHZ


def check_ecp5(pll: Ecp5Pll):
    assert 1 <= pll.clki_div <= 128 and 1 <= pll.clkfb_div <= 80 and 1 <= pll.clkop_div <= 128
    assert pll.output_hz == Fraction(pll.input_hz * pll.clkfb_div, pll.clki_div)
    assert pll.vco_hz == pll.output_hz * pll.clkop_div
    assert Fraction(3125, 1000) * MHZ <= pll.pfd_hz <= 400 * MHZ and 400 * MHZ <= pll.vco_hz <= 800 * MHZ
    assert 10 * MHZ <= pll.output_hz <= 400 * MHZ
    assert pll.clkop_cphase == pll.clkop_div - 1


@pytest.mark.parametrize("input_hz", [12 * MHZ, 30 * MHZ])
def test_ice40_gives_the_highest_output_at_or_below_the_wanted_one(input_hz):
    outputs = sorted(ice40_outputs(input_hz))
    for wanted in [outputs[0], *range(17 * MHZ, 276 * MHZ, 1_000_000), *outputs[::13]]:
        pll = ice40_pll(input_hz, wanted)
        check_ice40(pll)
        assert pll.output_hz == max(out for out in outputs if out <= wanted), wanted
    assert {pll.output_hz for pll in ice40_plls(input_hz)} == set(outputs)


def test_ecp5_gives_the_highest_output_at_or_below_the_wanted_one():
    outputs = sorted(ecp5_outputs(25 * MHZ))
    for wanted in [outputs[0], *range(10 * MHZ, 401 * MHZ, 3_000_000), *outputs[::29], Fraction(80_000_001, 3)]:
        pll = ecp5_pll(25 * MHZ, wanted)
        check_ecp5(pll)
        assert pll.output_hz == max(out for out in outputs if out <= wanted), wanted
    assert {pll.output_hz for pll in ecp5_plls(25 * MHZ)} == set(outputs)


@pytest.mark.parametrize("input_hz, wanted_hz, divr, divf, divq, filter_range", [
    # icepll -i 12 -o 48: PFD 12 (DIVR 0; DIVR 1 gives 6 < 10), VCO 12 * 64 = 768, 768 / 2^4 = 48; PFD < 17: range 1
    (12 * MHZ, 48 * MHZ, 0, 63, 4, 1),
    # icepll -i 12 -o 42: 12 * 56 = 672, / 16 = 42
    (12 * MHZ, 42 * MHZ, 0, 55, 4, 1),
    # icepll -i 12 -o 39.75: 12 * 53 = 636, / 16 = 39.75 (the highest <= 40: 12 * 54 / 16 = 40.5 is above,
    # DIVQ 5 makes at most 1066 / 32 < 34)
    (12 * MHZ, 40 * MHZ, 0, 52, 4, 1),
    # 100 MHz wanted: 12 * 66 / 8 = 99 (icepll -i 12 -o 100 answers 100.5 = 12 * 67 / 8, closer but above)
    (12 * MHZ, 100 * MHZ, 0, 65, 3, 1),
    # icepll -i 30 -o 90: DIVR 0 first (PFD 30; DIVR 1's PFD 15 makes the same 720 MHz VCO), 30 * 24 = 720,
    # / 8 = 90; PFD 30 in 26..44: range 3
    (30 * MHZ, 90 * MHZ, 0, 23, 3, 3),
])
def test_ice40_known_answers(input_hz, wanted_hz, divr, divf, divq, filter_range):
    pll = ice40_pll(input_hz, wanted_hz)
    assert (pll.divr, pll.divf, pll.divq, pll.filter_range) == (divr, divf, divq, filter_range)


def test_ice40_filter_range_follows_the_pfd_as_icepll():
    # icepll: PFD < 17 -> 1, < 26 -> 2, < 44 -> 3, < 66 -> 4, < 101 -> 5, else 6
    for pfd_mhz, expected in ((10, 1), (16, 1), (17, 2), (25, 2), (26, 3), (43, 3), (44, 4), (65, 4), (66, 5),
                              (100, 5), (101, 6), (133, 6)):
        assert Ice40Pll(pfd_mhz * MHZ, 0, 0, 1).filter_range == expected, pfd_mhz


@pytest.mark.parametrize("wanted_hz, clki_div, clkfb_div, clkop_div", [
    # ecppll -i 25 -o 100: 25 / 1 * 4 = 100, CLKOP_DIV 6 puts the VCO at 600 exactly
    (100 * MHZ, 1, 4, 6),
    # ecppll -i 25 -o 80: 80 = 25 * 16 / 5 (PFD 5; 25 * 32 / 10 has PFD 2.5 < 3.125); VCO 560 (div 7) and
    # 640 (div 8) are both 40 from 600: the first, div 7
    (80 * MHZ, 5, 16, 7),
    # ecppll -i 25 -o 62.5: 25 * 5 / 2; div 10 gives VCO 625, the closest to 600 (div 9: 562.5)
    (Fraction(125, 2) * MHZ, 2, 5, 10),
    # ecppll -i 25 -o 130: 25 * 26 / 5; div 5 gives 650 (div 4: 520)
    (130 * MHZ, 5, 26, 5),
    # ecppll -i 25 -o 55: 25 * 11 / 5; div 11 gives 605
    (55 * MHZ, 5, 11, 11),
])
def test_ecp5_known_answers(wanted_hz, clki_div, clkfb_div, clkop_div):
    pll = ecp5_pll(25 * MHZ, wanted_hz)
    assert (pll.clki_div, pll.clkfb_div, pll.clkop_div) == (clki_div, clkfb_div, clkop_div)
    assert pll.output_hz == wanted_hz


def test_accept_skips_outputs_the_caller_refuses():
    pll = ecp5_pll(25 * MHZ, 100 * MHZ, accept=lambda hz: hz != 100 * MHZ)
    assert pll.output_hz == max(out for out in ecp5_outputs(25 * MHZ) if out < 100 * MHZ)
    assert device_pll("ice40", 12 * MHZ, 48 * MHZ, accept=lambda hz: hz < 48 * MHZ).output_hz == Fraction(47_250_000)


@pytest.mark.parametrize("call, message", [
    (lambda: ice40_pll(12 * MHZ, 15 * MHZ), "no setting makes 15 MHz or less"),
    (lambda: ecp5_pll(25 * MHZ, 9 * MHZ), "no setting makes 9 MHz or less"),
    (lambda: ice40_pll(12 * MHZ, 48 * MHZ, accept=lambda hz: False), "that the board accepts"),
    (lambda: ice40_pll(8 * MHZ, 48 * MHZ), "input clock = 8000000 Hz"),
    (lambda: ecp5_pll(25 * MHZ, -1), "wanted clock = -1 Hz"),
    (lambda: device_pll("gowin", 12 * MHZ, 48 * MHZ), "device family 'gowin'"),
])
def test_impossible_requests_are_refused(call, message):
    with pytest.raises(NomacError, match=message):
        call()
