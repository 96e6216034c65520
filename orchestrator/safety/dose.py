"""Intensities resolved against the participant's thresholds into device power."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..language.thresholds import Thresholds
from ..language.units import Intensity


@dataclass(frozen=True)
class Dose:
    """An intensity resolved against the thresholds.

    ``power`` is the %MSO sent to the device, rounded down to its 1 %
    resolution;
    ``pct_rmt`` and ``pct_amt`` are what that power is in threshold units.
    """

    intensity: Intensity
    power: int | None
    pct_rmt: float | None
    pct_amt: float | None


def round_down(value: float) -> int:
    """Round down to a whole %MSO (30.9 → 30): the power sent never exceeds
    the intensity written.

    Rounding to the nearest step would send 71 %RMT for "70 %RMT" at some
    thresholds and push a protocol written at a cap over it; a tiny
    tolerance keeps products like 60 × 50 / 100 from falling just below a
    whole number.
    """
    return math.floor(value + 1e-9)


def resolve_intensity(intensity: Intensity, thresholds: Thresholds) -> Dose:
    """Convert an intensity into device power and threshold units.

    The safety check is applied to the power actually sent (after rounding),
    not to the value as written.
    """
    power: int | None
    if intensity.unit == "%MSO":
        power = round_down(intensity.value)
    elif intensity.unit == "%RMT":
        power = (
            None
            if thresholds.rmt is None
            else round_down(intensity.value * thresholds.rmt / 100)
        )
    else:
        power = (
            None
            if thresholds.amt is None
            else round_down(intensity.value * thresholds.amt / 100)
        )

    def pct(threshold: float | None, unit: str) -> float | None:
        if intensity.unit == unit and power is None:
            return intensity.value
        if threshold is None or power is None:
            return None
        return 100.0 * power / threshold

    return Dose(
        intensity, power, pct(thresholds.rmt, "%RMT"), pct(thresholds.amt, "%AMT")
    )
