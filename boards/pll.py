"""The boards' PLLs: divider settings for a wanted clock, and the `sync` domain they drive.

A board's oscillator (12 MHz on an iCEBreaker, 25 MHz on a ULX3S) is slower than the
network engine can run, so its bitstream clocks everything from the FPGA's PLL:
an iCE40's SB_PLL40_PAD or an ECP5's EHXPLLL. This module finds the dividers, with
exact arithmetic (output frequencies are `Fraction`s of Hz), and builds the clock.

- iCE40 (SB_PLL40, FEEDBACK_PATH "SIMPLE"; iCE40 sysCLOCK PLL design and usage guide,
  FPGA-TN-02052): f_pfd = f_in / (DIVR + 1), f_vco = f_pfd * (DIVF + 1), f_out =
  f_vco / 2^DIVQ, with DIVR 0..15, DIVF 0..127, DIVQ 1..6, f_pfd 10..133 MHz, f_vco
  533..1066 MHz and f_out 16..275 MHz (the data sheet's ranges, which icepll checks too;
  icepll only checks the wanted output, not the one it finds). FILTER_RANGE follows
  f_pfd as icepll chooses it. The iCEBreaker's 12 MHz oscillator is on pin 35, a
  top-bank pad the PAD variant takes directly (the pin has no other use here).
- ECP5 (EHXPLLL, feedback from CLKOP; ECP5 sysCLOCK PLL/DCS/DCC usage guide,
  FPGA-TN-02200, with the ranges prjtrellis' ecppll uses): f_pfd = f_in / CLKI_DIV,
  f_out = f_pfd * CLKFB_DIV, f_vco = f_out * CLKOP_DIV, with CLKI_DIV 1..128,
  CLKFB_DIV 1..80, CLKOP_DIV 1..128, f_in 8..400 MHz, f_pfd 3.125..400 MHz, f_vco
  400..800 MHz and f_out 10..400 MHz. CLKOP_CPHASE = CLKOP_DIV - 1 is no phase shift
  (ecppll shifts by 180 degrees, which feedback from CLKOP cancels anyway).

`ice40_pll` / `ecp5_pll` choose, unlike icepll and ecppll (the closest frequency,
above or below), the highest frequency at or below the wanted one: a clock chosen for
a measured Fmax must not exceed it. Between settings of the same frequency they prefer
what the tools prefer: icepll the first in its search order (DIVR, DIVF, DIVQ
ascending, so the highest f_pfd), ecppll the f_vco closest to 600 MHz.
"""
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from math import ceil, floor

from amaranth import ClockDomain, ClockSignal, Const, Elaboratable, Module, Signal
from amaranth.hdl import Instance
from amaranth.lib import io
from amaranth.lib.cdc import FFSynchronizer, ResetSynchronizer

from nomac.base.errors import NomacError

__all__ = ["MHZ", "RESET_SECONDS", "Ice40Pll", "Ecp5Pll", "ice40_plls", "ecp5_plls", "ice40_pll", "ecp5_pll",
           "device_pll", "PllClock"]

MHZ = 1_000_000
# After the PLL locks, the sync domain stays in reset this long: an iCE40's block RAMs read as
# zeroes for about 3 us after configuration (amaranth's iCE40 platform waits 15 us too).
RESET_SECONDS = Fraction(15, 1_000_000)


def _mhz(value) -> str:
    return f"{float(value) / MHZ:.6g}"


@dataclass(frozen=True)
class Ice40Pll:
    """SB_PLL40_PAD settings (FEEDBACK_PATH "SIMPLE") for an `input_hz` reference."""
    input_hz: int
    divr: int
    divf: int
    divq: int

    PFD_HZ = (10 * MHZ, 133 * MHZ)
    VCO_HZ = (533 * MHZ, 1066 * MHZ)
    OUTPUT_HZ = (16 * MHZ, 275 * MHZ)
    DIVR, DIVF, DIVQ = range(16), range(128), range(1, 7)

    @property
    def pfd_hz(self) -> Fraction:
        return Fraction(self.input_hz, self.divr + 1)

    @property
    def vco_hz(self) -> Fraction:
        return self.pfd_hz * (self.divf + 1)

    @property
    def output_hz(self) -> Fraction:
        return self.vco_hz / 2 ** self.divq

    @property
    def filter_range(self) -> int:
        """The loop filter for the PFD frequency, icepll's table."""
        pfd = self.pfd_hz
        return next(value for value, below in ((1, 17), (2, 26), (3, 44), (4, 66), (5, 101), (6, None))
                    if below is None or pfd < below * MHZ)

    def describe(self) -> dict:
        return {"primitive": "SB_PLL40_PAD", "input_hz": self.input_hz, "output_hz": float(self.output_hz),
                "pfd_hz": float(self.pfd_hz), "vco_hz": float(self.vco_hz), "DIVR": self.divr, "DIVF": self.divf,
                "DIVQ": self.divq, "FILTER_RANGE": self.filter_range}

    def instance(self, pad, clock, lock) -> Instance:
        """The PLL fed by the oscillator's pad (an io port) driving `clock` on a global net."""
        return Instance("SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE", p_DIVR=Const(self.divr, 4),
                        p_DIVF=Const(self.divf, 7), p_DIVQ=Const(self.divq, 3),
                        p_FILTER_RANGE=Const(self.filter_range, 3),
                        i_PACKAGEPIN=pad, i_RESETB=Const(1), i_BYPASS=Const(0),
                        o_PLLOUTGLOBAL=clock, o_LOCK=lock)


@dataclass(frozen=True)
class Ecp5Pll:
    """EHXPLLL settings (feedback from CLKOP) for an `input_hz` reference."""
    input_hz: int
    clki_div: int
    clkfb_div: int
    clkop_div: int

    INPUT_HZ = (8 * MHZ, 400 * MHZ)
    PFD_HZ = (Fraction(3125, 1000) * MHZ, 400 * MHZ)
    VCO_HZ = (400 * MHZ, 800 * MHZ)
    OUTPUT_HZ = (10 * MHZ, 400 * MHZ)
    CLKI_DIV, CLKFB_DIV, CLKOP_DIV = range(1, 129), range(1, 81), range(1, 129)

    @property
    def pfd_hz(self) -> Fraction:
        return Fraction(self.input_hz, self.clki_div)

    @property
    def output_hz(self) -> Fraction:
        return self.pfd_hz * self.clkfb_div

    @property
    def vco_hz(self) -> Fraction:
        return self.output_hz * self.clkop_div

    @property
    def clkop_cphase(self) -> int:
        return self.clkop_div - 1

    def describe(self) -> dict:
        return {"primitive": "EHXPLLL", "input_hz": self.input_hz, "output_hz": float(self.output_hz),
                "pfd_hz": float(self.pfd_hz), "vco_hz": float(self.vco_hz), "CLKI_DIV": self.clki_div,
                "CLKFB_DIV": self.clkfb_div, "CLKOP_DIV": self.clkop_div, "CLKOP_CPHASE": self.clkop_cphase}

    def instance(self, clock_in, clock, lock) -> Instance:
        """The PLL fed by the buffered oscillator `clock_in`, driving `clock` (fed back)."""
        # The loop-filter attributes are the ones prjtrellis' ecppll writes (Lattice's defaults).
        return Instance("EHXPLLL",
                        a_FREQUENCY_PIN_CLKI=_mhz(self.input_hz), a_FREQUENCY_PIN_CLKOP=_mhz(self.output_hz),
                        a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
                        p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                        p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
                        p_CLKI_DIV=self.clki_div, p_CLKFB_DIV=self.clkfb_div, p_CLKOP_DIV=self.clkop_div,
                        p_CLKOP_CPHASE=self.clkop_cphase, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
                        i_CLKI=clock_in, i_CLKFB=clock, i_RST=Const(0), i_STDBY=Const(0),
                        i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(1), i_PHASESTEP=Const(1),
                        i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0), i_ENCLKOP=Const(0),
                        o_CLKOP=clock, o_LOCK=lock)


def _within(value, bounds) -> bool:
    return bounds[0] <= value <= bounds[1]


def _check_input(input_hz, family: str, bounds):
    if not isinstance(input_hz, int) or isinstance(input_hz, bool) or not _within(input_hz, bounds):
        raise NomacError(f"{family} PLL: input clock = {input_hz!r} Hz: must be a whole number of Hz in "
                         f"{_mhz(bounds[0])}..{_mhz(bounds[1])} MHz")


@lru_cache(maxsize=None)
def ice40_plls(input_hz: int) -> tuple[Ice40Pll, ...]:
    """Every SB_PLL40 setting within the data sheet's ranges, in icepll's search order."""
    _check_input(input_hz, "iCE40", Ice40Pll.PFD_HZ)
    found = []
    for divr in Ice40Pll.DIVR:
        if not _within(Fraction(input_hz, divr + 1), Ice40Pll.PFD_HZ):
            continue
        for divf in Ice40Pll.DIVF:
            for divq in Ice40Pll.DIVQ:
                pll = Ice40Pll(input_hz, divr, divf, divq)
                if _within(pll.vco_hz, Ice40Pll.VCO_HZ) and _within(pll.output_hz, Ice40Pll.OUTPUT_HZ):
                    found.append(pll)
    return tuple(found)


@lru_cache(maxsize=None)
def ecp5_plls(input_hz: int) -> tuple[Ecp5Pll, ...]:
    """Per (CLKI_DIV, CLKFB_DIV) within the ranges, the CLKOP_DIV whose f_vco is closest to
    600 MHz (the smaller on a tie), in ecppll's search order."""
    _check_input(input_hz, "ECP5", Ecp5Pll.INPUT_HZ)
    found = []
    for clki_div in Ecp5Pll.CLKI_DIV:
        pfd = Fraction(input_hz, clki_div)
        if not _within(pfd, Ecp5Pll.PFD_HZ):
            continue
        for clkfb_div in Ecp5Pll.CLKFB_DIV:
            output = pfd * clkfb_div
            if not _within(output, Ecp5Pll.OUTPUT_HZ):
                continue
            dividers = range(max(1, ceil(Ecp5Pll.VCO_HZ[0] / output)), min(128, floor(Ecp5Pll.VCO_HZ[1] / output)) + 1)
            if dividers:
                clkop_div = min(dividers, key=lambda div: abs(output * div - 600 * MHZ))
                found.append(Ecp5Pll(input_hz, clki_div, clkfb_div, clkop_div))
    return tuple(found)


def _highest(settings, wanted_hz, accept, preference, family: str, input_hz: int):
    if not isinstance(wanted_hz, (int, Fraction)) or isinstance(wanted_hz, bool) or wanted_hz <= 0:
        raise NomacError(f"{family} PLL: wanted clock = {wanted_hz!r} Hz: must be a positive number of Hz")
    fitting = [(order, pll) for order, pll in enumerate(settings)
               if pll.output_hz <= wanted_hz and (accept is None or accept(pll.output_hz))]
    if not fitting:
        lowest = min(pll.output_hz for pll in settings)
        raise NomacError(f"{family} PLL from {_mhz(input_hz)} MHz: no setting makes {_mhz(wanted_hz)} MHz or less"
                         + (" that the board accepts" if accept is not None else "")
                         + f" (the lowest it makes is {_mhz(lowest)} MHz)")
    return min(fitting, key=lambda item: (-item[1].output_hz, preference(item[1]), item[0]))[1]


def ice40_pll(input_hz: int, wanted_hz, accept=None) -> Ice40Pll:
    """The SB_PLL40 setting of the highest output <= `wanted_hz` (and that `accept`, given
    the exact output frequency, allows); on a tie icepll's first."""
    return _highest(ice40_plls(input_hz), wanted_hz, accept, lambda pll: 0, "iCE40", input_hz)


def ecp5_pll(input_hz: int, wanted_hz, accept=None) -> Ecp5Pll:
    """The EHXPLLL setting of the highest output <= `wanted_hz` (and that `accept` allows);
    on a tie the f_vco closest to 600 MHz, then ecppll's first."""
    return _highest(ecp5_plls(input_hz), wanted_hz, accept, lambda pll: abs(pll.vco_hz - 600 * MHZ), "ECP5",
                    input_hz)


def device_pll(family: str, input_hz: int, wanted_hz, accept=None):
    """`ice40_pll` or `ecp5_pll` by the device family ("ice40" or "ecp5")."""
    search = {"ice40": ice40_pll, "ecp5": ecp5_pll}
    if family not in search:
        raise NomacError(f"PLL: device family {family!r}: none known (known: {', '.join(search)})")
    return search[family](input_hz, wanted_hz, accept)


class PllClock(Elaboratable):
    """The clock and reset of the `domain` (defined by the top) from the platform's default
    clock through the PLL `pll`.

    The domain is held in reset until the PLL reports lock and RESET_SECONDS after it
    (counted in a reset-less domain on the same clock), then released through a reset
    synchronizer. The clock needs no constraint of its own: nextpnr derives the PLL's
    output frequency from the oscillator's (which the platform constrains) and the
    dividers ("Derived frequency constraint of ... for net ..." in its log).
    """

    def __init__(self, pll, domain: str = "sync"):
        if not isinstance(pll, (Ice40Pll, Ecp5Pll)):
            raise TypeError(f"PllClock: pll = {pll!r}: must be an Ice40Pll or an Ecp5Pll")
        self.pll, self.domain = pll, domain

    def elaborate(self, platform):
        m = Module()
        pll = self.pll
        clock, lock = Signal(name="pll_clock"), Signal(name="pll_lock")
        locked, ready = Signal(), Signal()
        pad = platform.request(platform.default_clk, 0, dir="-")
        if isinstance(pll, Ice40Pll):
            m.submodules.pll = pll.instance(pad.io, clock, lock)
        else:
            m.submodules.clock_buffer = buffer = io.Buffer("i", pad)
            m.submodules.pll = pll.instance(buffer.i, clock, lock)

        m.domains.pll_settle = ClockDomain("pll_settle", reset_less=True, local=True)
        m.d.comb += [ClockSignal(self.domain).eq(clock), ClockSignal("pll_settle").eq(clock)]
        m.submodules.lock_synchronizer = FFSynchronizer(lock, locked, o_domain="pll_settle")
        delay = ceil(RESET_SECONDS * pll.output_hz)
        timer = Signal(range(delay + 1))
        with m.If(~locked):
            m.d.pll_settle += [timer.eq(0), ready.eq(0)]
        with m.Elif(timer == delay):
            m.d.pll_settle += ready.eq(1)
        with m.Else():
            m.d.pll_settle += timer.eq(timer + 1)
        m.submodules.reset_synchronizer = ResetSynchronizer(~ready, domain=self.domain)
        return m
