"""Quantities written the way people write them: ``150 ms``, ``20 Hz``, ``80 %RMT``.

Times are returned in seconds, frequencies in hertz, intensities as an
:class:`Intensity` that keeps its unit, because converting %RMT to %MSO needs
the participant's threshold and must happen visibly in the plan.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_QUANTITY = re.compile(rf"^\s*({_NUMBER})\s*(%?\s*[A-Za-zµ]*)\s*$")

TIME_UNITS = {
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "min": 60.0,
    "h": 3600.0,
}
FREQUENCY_UNITS = {"hz": 1.0, "khz": 1000.0}
INTENSITY_UNITS = {"%mso": "%MSO", "%rmt": "%RMT", "%amt": "%AMT"}
VOLTAGE_UNITS = {"uv": 1.0, "µv": 1.0, "mv": 1000.0}
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*(?:-|–|to)\s*({_NUMBER})\s*%\s*mso\s*$", re.I)


class UnitError(ValueError):
    """A quantity that could not be read; ``rule`` says what was expected."""

    def __init__(self, rule: str):
        super().__init__(rule)
        self.rule = rule


@dataclass(frozen=True)
class Intensity:
    """A stimulation intensity with its unit (``%MSO``, ``%RMT`` or ``%AMT``)."""

    value: float
    unit: str

    def __str__(self) -> str:
        return f"{self.value:g} {self.unit}"


def _split(text: object, kind: str, example: str) -> tuple[float, str]:
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise UnitError(f"must be a {kind} with a unit, e.g. '{example}'")
    match = _QUANTITY.match(str(text))
    if match is None:
        raise UnitError(f"must be a {kind} with a unit, e.g. '{example}'")
    return float(match.group(1)), match.group(2).replace(" ", "")


def _finite(value: float) -> float:
    # ``1e400 s`` reads as inf and ``1e308 h`` becomes inf in seconds; every
    # later check would compare against inf (or NaN) and pass or fail by luck.
    if not math.isfinite(value):
        raise UnitError("must be a finite number")
    return value


def parse_time(text: object) -> float:
    """Parse a duration such as ``150 ms``, ``2 s`` or ``10 min`` into seconds.

    Parameters
    ----------
    text : str
        The quantity as written. A bare number is refused: a protocol must
        say whether it means milliseconds or seconds.

    Returns
    -------
    float
        The duration in seconds.

    Raises
    ------
    UnitError
        Without a known unit, or when the value is not finite in seconds.
    """
    value, unit = _split(text, "duration", "150 ms")
    if unit == "":
        raise UnitError("needs a time unit (us, ms, s, min or h), e.g. '150 ms'")
    factor = TIME_UNITS.get(unit) or TIME_UNITS.get(unit.lower())
    if factor is None:
        raise UnitError(f"unknown time unit '{unit}'; use us, ms, s, min or h")
    return _finite(value * factor)


def parse_frequency(text: object) -> float:
    """Parse a frequency such as ``20 Hz`` into hertz."""
    value, unit = _split(text, "frequency", "20 Hz")
    factor = FREQUENCY_UNITS.get(unit.lower())
    if factor is None:
        raise UnitError("needs a frequency unit (Hz), e.g. '20 Hz'")
    return _finite(value * factor)


def parse_intensity(text: object) -> Intensity:
    """Parse an intensity such as ``80 %RMT`` or ``55 %MSO``."""
    value, unit = _split(text, "intensity", "80 %RMT")
    canonical = INTENSITY_UNITS.get(unit.lower())
    if canonical is None:
        raise UnitError("needs an intensity unit (%MSO, %RMT or %AMT), e.g. '80 %RMT'")
    return Intensity(_finite(value), canonical)


def parse_voltage(text: object) -> float:
    """Parse an EMG amplitude such as ``50 uV``, ``50 µV`` or ``0.2 mV`` into µV."""
    value, unit = _split(text, "voltage", "50 uV")
    factor = VOLTAGE_UNITS.get(unit.lower())
    if factor is None:
        raise UnitError("needs a voltage unit (uV or mV), e.g. '50 uV'")
    return _finite(value * factor)


def parse_threshold_range(text: object) -> tuple[float, float]:
    """Parse the thresholds a participant may have: ``30-80 %MSO`` (or ``30–80``).

    Returns
    -------
    tuple of float
        The lowest and highest threshold, in %MSO, from 1 to 100, low <= high.
    """
    match = _RANGE.match(text) if isinstance(text, str) else None
    if match is None:
        raise UnitError("must be a range of %MSO, e.g. '30-80 %MSO'")
    low, high = _finite(float(match.group(1))), _finite(float(match.group(2)))
    if not 1 <= low <= high <= 100:
        raise UnitError("must run from low to high within 1-100 %MSO")
    return low, high


def format_time(seconds: float) -> str:
    """Render seconds compactly for tables (``250 ms``, ``4 s``, ``3 min 12 s``)."""
    if seconds < 1:
        return f"{seconds * 1e3:g} ms"
    if seconds < 60:
        return f"{seconds:.3g} s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)} min {rest:.0f} s"
