"""A participant's phase offset, and what it was measured with.

A ``phase_calibration`` block measures how far a phase estimator lands from
its target on this participant; triggered blocks with ``phase_offset:
calibrated`` add the opposite to their target. Carried to a later session
in the thresholds file (:mod:`.thresholds`), the offset travels with the
estimator, montage and band it belongs to, and a block that uses another
is refused: the offset is that estimator's bias on that signal.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from . import spec as s
from .errors import format_value
from .fields import FieldReader
from .units import UnitError


@dataclass(frozen=True)
class PhaseOffset:
    """A participant's phase offset, and what it was measured with.

    The degrees a triggered block with ``phase_offset: calibrated`` adds to
    its target (a ``phase_calibration`` block's measurement carried from an
    earlier session, or the operator's ``--phase-offset``).

    Parameters
    ----------
    offset_deg : float
        Degrees, finite, from -180 to 180.
    estimator, band_hz, montage, montage_name
        What it was measured with (None: not stated, the operator's value).
    crossings : int | None
        Predicted crossings the calibration compared.
    sd_deg : float | None
        Circular SD of the estimator's error, degrees.
    measured, method : str | None
        When and how.
    source : str
        Where it came from (``thresholds file <path>``, ``command line``).
    """

    offset_deg: float
    estimator: str | None = None
    band_hz: tuple[float, float] | None = None
    montage: tuple[tuple[str, float], ...] | None = None
    montage_name: str | None = None
    crossings: int | None = None
    sd_deg: float | None = None
    measured: str | None = None
    method: str | None = None
    source: str = "command line"

    #: The rule every phase offset must satisfy, in words.
    RANGE_RULE: ClassVar[str] = "must be a finite number of degrees from -180 to 180"

    def __post_init__(self) -> None:
        rule = self.value_rule(self.offset_deg)
        if rule:
            raise ValueError(
                f"phase_offset: {rule} (got {format_value(self.offset_deg)})"
            )

    @classmethod
    def value_rule(cls, value: object) -> str | None:
        """The rule ``value`` breaks as a phase offset, or None when it is one."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return cls.RANGE_RULE
        if not math.isfinite(value) or not -180 <= value <= 180:
            return cls.RANGE_RULE
        return None

    def mismatch(self, trigger) -> str | None:
        """How ``trigger`` (a PhaseTrigger) differs from what this was measured
        with, in words; None when it does not (or nothing was stated)."""
        if self.estimator is None:
            return None
        out = []
        if self.estimator != trigger.estimator:
            out.append(f"estimator {self.estimator}, this block {trigger.estimator}")
        if self.band_hz is not None and not all(
            math.isclose(a, b)
            for a, b in zip(self.band_hz, trigger.band_hz, strict=True)
        ):
            out.append(
                f"band {_band(self.band_hz)}, this block {_band(trigger.band_hz)}"
            )
        if self.montage is not None and not _same_montage(
            self.montage, trigger.montage
        ):
            out.append(
                f"montage {_montage(self.montage_name, self.montage)}, this block "
                f"{_montage(trigger.montage_name, trigger.montage)}"
            )
        return "; ".join(out) or None

    def describe(self) -> str:
        """One line for people: the degrees, where from, how measured."""
        how = []
        if self.estimator is not None:
            how.append(f"{self.estimator}")
        if self.band_hz is not None:
            how.append(_band(self.band_hz))
        if self.montage is not None:
            how.append(_montage(self.montage_name, self.montage))
        if self.crossings is not None:
            how.append(f"{self.crossings} crossings")
        if self.sd_deg is not None and math.isfinite(self.sd_deg):
            how.append(f"SD {self.sd_deg:.1f} deg")
        if self.measured:
            how.append(f"measured {self.measured}")
        return f"{self.offset_deg:+.1f} deg from the {self.source}" + (
            f" ({', '.join(how)})" if how else ""
        )

    def as_record(self) -> dict:
        """JSON-ready, for the plan and the journal."""
        return {
            "offset_deg": self.offset_deg,
            "estimator": self.estimator,
            "band_hz": None if self.band_hz is None else list(self.band_hz),
            "montage": None if self.montage is None else dict(self.montage),
            "montage_name": self.montage_name,
            "crossings": self.crossings,
            "sd_deg": self.sd_deg,
            "measured": self.measured,
            "method": self.method,
            "source": self.source,
        }

    @classmethod
    def from_record(cls, record: dict) -> PhaseOffset:
        """The inverse of :meth:`as_record` (a resumed session's plan)."""
        montage = record.get("montage")
        band = record.get("band_hz")
        return cls(
            offset_deg=record["offset_deg"],
            estimator=record.get("estimator"),
            band_hz=None if band is None else (float(band[0]), float(band[1])),
            montage=None if montage is None else tuple(montage.items()),
            montage_name=record.get("montage_name"),
            crossings=record.get("crossings"),
            sd_deg=record.get("sd_deg"),
            measured=record.get("measured"),
            method=record.get("method"),
            source=record.get("source", "command line"),
        )


def _band(band: tuple[float, float]) -> str:
    return f"{band[0]:g}-{band[1]:g} Hz"


def _montage(name: str | None, weights) -> str:
    return name or ", ".join(f"{ch} {w:+g}" for ch, w in weights)


def _same_montage(a, b) -> bool:
    da, db = dict(a), dict(b)
    return da.keys() == db.keys() and all(
        math.isclose(da[k], db[k], abs_tol=1e-9) for k in da
    )


def _phase_offset(value: object) -> float:
    rule = PhaseOffset.value_rule(value)
    if rule:
        raise UnitError(rule)
    return float(value)


DEGREES = s.Kind("phase offset", _phase_offset, dict(s.number_range(-180, 180).schema))


def _phase_calibration_spec() -> s.RecordSpec:
    # The trigger's own kinds: a band or montage is written as in a protocol.
    from .protocol_fields import BAND, MONTAGE
    from .trigger import ESTIMATORS, parse_estimator

    return s.RecordSpec(
        "a phase_calibration record",
        "What the phase offset was measured with; a block with phase_offset: "
        "calibrated that uses another estimator, band or montage is refused.",
        (
            s.FieldSpec(
                "estimator",
                s.Kind("estimator", parse_estimator, {"enum": list(ESTIMATORS)}),
                "The phase estimator calibrated.",
                required=True,
            ),
            s.FieldSpec("montage", MONTAGE, "Its montage.", required=True),
            s.FieldSpec("band", BAND, "Its band.", required=True),
            s.FieldSpec(
                "crossings",
                s.INTEGER,
                "Predicted crossings compared.",
                check=lambda n: None if n >= 0 else "must be at least 0",
            ),
            s.FieldSpec(
                "sd",
                s.number_range(0),
                "Circular SD of the estimator's error, degrees.",
            ),
            s.FieldSpec("measured", s.DATE, "When it was measured."),
            s.FieldSpec("method", s.TEXT, "How it was measured."),
        ),
    )


PHASE_CALIBRATION_SPEC = _phase_calibration_spec()


def file_phase_offset(
    r: FieldReader, top: dict, values: dict, path: str | Path
) -> PhaseOffset | None:
    """The file's phase offset with what it was measured with, or None."""
    degrees, how = values.get("phase_offset"), top.get("phase_calibration")
    if "phase_calibration" in top:
        how = r.mapping(how, ("phase_calibration",))
        if how is not None:
            how = PHASE_CALIBRATION_SPEC.read(r, how, ("phase_calibration",))
        if "phase_offset" not in top:
            r.fail(
                ("phase_calibration",),
                "describes a phase offset: needs phase_offset (degrees)",
                "no phase_offset",
            )
    elif "phase_offset" in top:
        r.fail(
            ("phase_offset",),
            "needs phase_calibration: the estimator, montage and band it was "
            "measured with",
            top["phase_offset"],
        )
    if degrees is None or not isinstance(how, dict):
        return None
    if any(how[key] is None for key in ("estimator", "montage", "band")):
        return None
    name, weights = how["montage"]
    return PhaseOffset(
        offset_deg=degrees,
        estimator=how["estimator"],
        band_hz=how["band"],
        montage=weights,
        montage_name=name,
        crossings=how["crossings"],
        sd_deg=how["sd"],
        measured=how["measured"],
        method=how["method"],
        source=f"thresholds file {path}",
    )
