"""Intensities resolved against the participant's thresholds into device power."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import ClassVar

from .errors import format_value
from .units import Intensity


@dataclass(frozen=True)
class Thresholds:
    """The participant's motor thresholds in %MSO (None when unknown).

    Construction refuses values no participant can have (docs/specs/safety.md):
    each threshold is a finite number from 1 to 100 %MSO, and an active motor
    threshold is not above the resting one.

    Parameters
    ----------
    rmt : float | None
        Resting motor threshold, %MSO.
    amt : float | None
        Active motor threshold, %MSO.

    Raises
    ------
    ValueError
        When a value breaks a rule; the message names the field, the rule and
        the value. Callers that know where a value was written (a thresholds
        file, the command line) check it with :meth:`value_rule` and
        :meth:`pair_rule` first, to report it there.
    """

    rmt: float | None = None
    amt: float | None = None

    #: The rule every motor threshold must satisfy, in words.
    RANGE_RULE: ClassVar[str] = "must be a finite number from 1 to 100 %MSO"

    def __post_init__(self) -> None:
        broken = [
            f"{name}: {rule} (got {format_value(value)})"
            for name, value in (("rmt", self.rmt), ("amt", self.amt))
            if value is not None and (rule := self.value_rule(value))
        ]
        if not broken:
            rule = self.pair_rule(self.rmt, self.amt)
            if rule:
                broken.append(f"amt: {rule} (got {format_value(self.amt)})")
        if broken:
            raise ValueError("; ".join(broken))

    @classmethod
    def value_rule(cls, value: object) -> str | None:
        """The rule ``value`` breaks as a motor threshold, or None when it is one.

        Parameters
        ----------
        value : object
            A threshold as read (a bool or text is not a number).

        Returns
        -------
        str | None
            :attr:`RANGE_RULE` when the value is not a finite real number from
            1 to 100 (%MSO), else None.
        """
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return cls.RANGE_RULE
        if not math.isfinite(value) or not 1 <= value <= 100:
            return cls.RANGE_RULE
        return None

    @staticmethod
    def pair_rule(rmt: float | None, amt: float | None) -> str | None:
        """The rule an active threshold above the resting one breaks, or None.

        Parameters
        ----------
        rmt, amt : float | None
            Valid thresholds (see :meth:`value_rule`) or None.

        Returns
        -------
        str | None
            The rule, naming the resting threshold, when both are known and
            ``amt`` is above ``rmt``; else None.
        """
        if rmt is None or amt is None or amt <= rmt:
            return None
        return (
            "an active motor threshold above the resting one "
            f"({format_value(rmt)} %MSO) is implausible"
        )


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
