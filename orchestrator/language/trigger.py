"""Phase-locked stimulation in protocol files: a stimulate block's ``trigger``.

A stimulation block with a ``trigger`` section gives single pulses at a
target phase of an EEG rhythm (the sensorimotor mu rhythm by default), read
live from the rig's EEG stream. The run decides when each pulse comes, so the
block is bounded by a most pulses (``pulses``) and/or a longest time
(``duration``), and the plan judges the worst case: every pulse at the
trigger's ``min_interval``. This module holds the section's model, its value
kinds (their field table is in :mod:`.protocol_fields`), the reader, and the
checks against the rig (its EEG stream, rate and channels).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ...rhythm import MONTAGES
from .bounds import MAX_PULSES_PER_BLOCK
from .errors import Problem
from .fields import FieldReader, finite_number
from .units import UnitError, parse_frequency

#: Target phases by name: 0 degrees is the rhythm's positive peak.
PHASE_NAMES = {"peak": 0.0, "trough": 180.0}
#: Phase estimators a trigger can use (``ar``: autoregressive forward
#: prediction, Zrenner et al. 2018; ``ssp``: a state-space oscillator model,
#: Wodeyar et al. 2021). The session's closed loop has one class per name
#: (a test keeps the two lists the same).
ESTIMATORS = ("ar", "ssp")
#: Named montages: a centre channel minus the mean of its neighbours (Hjorth
#: 1975); the C3 one is PHASTIMATE's for the left motor cortex. The shared
#: table (:data:`stimtrain.rhythm.MONTAGES`, the analysis's too) as
#: ``(channel, weight)`` pairs.
MONTAGE_PRESETS: dict[str, tuple[tuple[str, float], ...]] = {
    name: tuple(weights.items()) for name, weights in MONTAGES.items()
}


@dataclass(frozen=True, kw_only=True)
class PhaseTrigger:
    """A block's ``trigger`` section, read and checked.

    Attributes
    ----------
    target_deg : float
        Target phase, degrees in [0, 360) (0: peak, 180: trough).
    band_hz : tuple of float
        The rhythm's band, Hz.
    montage : tuple of (str, float)
        Channels and weights combined into the estimated signal.
    montage_name : str or None
        The preset's name, when a preset was named.
    estimator : str
        One of :data:`ESTIMATORS`.
    window_s : float
        How much recent signal each estimate reads, s.
    gate_percentile : float or None
        Band power must reach this percentile of its recent history (None:
        ``gate: none``, every estimate passes).
    gate_span_s : float
        How far back the gate's history reaches, s.
    min_interval_s : float
        No pulse sooner than this after the last one, s.
    max_interval_s : float or None
        After this long without a pulse, the next target crossing is taken
        whatever the band power, s.
    phase_offset_deg : float
        Added to the target (the participant's measured estimator bias).
    calibrated : bool
        ``phase_offset: calibrated``: the offset is the one the last
        ``phase_calibration`` block before this one measured.
    """

    target_deg: float
    band_hz: tuple[float, float] = (8.0, 13.0)
    montage: tuple[tuple[str, float], ...] = MONTAGE_PRESETS["c3_hjorth"]
    montage_name: str | None = "c3_hjorth"
    estimator: str = "ar"
    window_s: float = 0.5
    gate_percentile: float | None = 50.0
    gate_span_s: float = 60.0
    min_interval_s: float = 2.0
    max_interval_s: float | None = None
    phase_offset_deg: float = 0.0
    calibrated: bool = False

    @property
    def channels(self) -> list[str]:
        """The montage's channel labels."""
        return [ch for ch, _ in self.montage]

    def describe(self) -> str:
        """One line for people: ``peak (0 deg) of 8-13 Hz at c3_hjorth, ...``."""
        name = {v: k for k, v in PHASE_NAMES.items()}.get(self.target_deg)
        target = (
            f"{name} ({self.target_deg:g} deg)" if name else f"{self.target_deg:g} deg"
        )
        where = self.montage_name or ", ".join(f"{ch} {w:+g}" for ch, w in self.montage)
        gate = (
            "no gate"
            if self.gate_percentile is None
            else f"gate {self.gate_percentile:g}th percentile of {self.gate_span_s:g} s"
        )
        offset = (
            ", phase offset calibrated"
            if self.calibrated
            else f", phase offset {self.phase_offset_deg:+g} deg"
            if self.phase_offset_deg
            else ""
        )
        return (
            f"{target} of {self.band_hz[0]:g}-{self.band_hz[1]:g} Hz at {where}, "
            f"{self.estimator} over {self.window_s * 1e3:g} ms, {gate}, "
            f"at least {self.min_interval_s:g} s apart{offset}"
        )


@dataclass(frozen=True, kw_only=True)
class TriggeredPulses:
    """Single pulses at a phase of an EEG rhythm, as the run finds them.

    ``max_pulses`` is the most the block can give: its ``pulses`` or, with
    only a ``duration``, as many as fit at the minimum interval; the block
    ends at whichever of ``pulses`` and ``duration_s`` comes first.
    """

    trigger: PhaseTrigger
    max_pulses: int
    pulses: int | None = None
    duration_s: float | None = None

    @property
    def n_pulses(self) -> int:
        """The most pulses the block can deliver."""
        return self.max_pulses

    @property
    def interval_s(self) -> float:
        """The shortest interval between two pulses (the safety worst case)."""
        return self.trigger.min_interval_s


def parse_phase(value: Any) -> float:
    """A target phase: ``peak``, ``trough`` or degrees, as degrees in [0, 360)."""
    if isinstance(value, str) and value.strip() in PHASE_NAMES:
        return PHASE_NAMES[value.strip()]
    try:
        return finite_number(value) % 360.0
    except UnitError:
        raise UnitError("must be peak, trough or a phase in degrees") from None


def parse_band(value: Any) -> tuple[float, float]:
    """``8-13 Hz`` or ``[8 Hz, 13 Hz]``: a band with its low edge first."""
    if isinstance(value, list) and len(value) == 2:
        lo, hi = (parse_frequency(v) for v in value)
    else:
        m = re.fullmatch(
            r"\s*([0-9.]+)\s*(?:-|–|to)\s*([0-9.]+)\s*([Hh][Zz])\s*",
            value if isinstance(value, str) else "",
        )
        if m is None:
            raise UnitError("must be a band such as '8-13 Hz' or [8 Hz, 13 Hz]")
        try:
            lo, hi = float(m.group(1)), float(m.group(2))
        except ValueError:
            raise UnitError("must be a band such as '8-13 Hz'") from None
    if not 0 < lo < hi or not math.isfinite(hi):
        raise UnitError("must have a low edge above 0 and below the high edge")
    return lo, hi


def parse_montage(value: Any) -> tuple[str | None, tuple[tuple[str, float], ...]]:
    """A preset's name or ``{channel: weight}``: ``(preset or None, weights)``."""
    presets = ", ".join(MONTAGE_PRESETS)
    if isinstance(value, str):
        if value not in MONTAGE_PRESETS:
            raise UnitError(
                f"must be a preset ({presets}) or a mapping of channel: weight"
            )
        return value, MONTAGE_PRESETS[value]
    if not isinstance(value, dict) or not value:
        raise UnitError(f"must be a preset ({presets}) or a mapping of channel: weight")
    weights = []
    for ch, w in value.items():
        if not isinstance(ch, str) or not ch.strip():
            raise UnitError("channel names must be text")
        try:
            weights.append((ch, finite_number(w)))
        except UnitError:
            raise UnitError(f"the weight of {ch} must be a number") from None
    if all(w == 0 for _, w in weights):
        raise UnitError("must give some channel a weight other than 0")
    return None, tuple(weights)


def parse_estimator(value: Any) -> str:
    """One of :data:`ESTIMATORS`."""
    if value not in ESTIMATORS:
        raise UnitError(
            f"is not an estimator stimtrain has (available: {', '.join(ESTIMATORS)})"
        )
    return value


def parse_gate(value: Any) -> Any:
    """``none`` or the gate's mapping (read field by field by the reader)."""
    if value == "none" or isinstance(value, dict):
        return value
    raise UnitError("must be none or a mapping with percentile and span")


def parse_offset(value: Any) -> float | str:
    """A phase offset in degrees, or ``calibrated``."""
    if value == "calibrated":
        return value
    try:
        return finite_number(value)
    except UnitError:
        raise UnitError("must be a phase in degrees or calibrated") from None


def read_triggered(
    r: FieldReader, m: dict, path: tuple, pattern: str
) -> tuple[dict, TriggeredPulses] | None:
    """Read a stimulate block with a ``trigger`` section.

    Parameters
    ----------
    r : FieldReader
        Where problems go.
    m : dict
        The block's mapping.
    path : tuple
        Its path in the document.
    pattern : str
        The block's ``pattern`` (only ``single`` can be triggered).

    Returns
    -------
    tuple of (dict, TriggeredPulses) or None
        The block's fields and its pattern; None after a problem.
    """
    from .protocol_fields import GATE_SPEC, TRIGGER_SPEC, TRIGGERED_SPEC

    n_problems = len(r.problems)
    if pattern != "single":
        r.fail(
            (*path, "pattern"),
            "a block with a trigger gives single pulses: must be single",
            m["pattern"],
        )
    v = TRIGGERED_SPEC.read(r, m, path)
    tpath = (*path, "trigger")
    t = r.mapping(m["trigger"], tpath)
    if t is None:
        return None
    tv = TRIGGER_SPEC.read(r, t, tpath)
    percentile, span = 50.0, 60.0
    if isinstance(t.get("gate"), dict):
        gv = GATE_SPEC.read(r, t["gate"], (*tpath, "gate"))
        percentile, span = gv["percentile"], gv["span"]
    elif tv["gate"] == "none":
        percentile = None
    band, window = tv["band"], tv["window"]
    if band is not None and window is not None and window < 2 / band[0] - 1e-12:
        r.fail(
            (*tpath, "window"),
            f"must hold at least two cycles of the band's lower edge "
            f"({2e3 / band[0]:g} ms at {band[0]:g} Hz)",
            t.get("window", "500 ms"),
        )
    lo, hi = tv["min_interval"], tv["max_interval"]
    if lo is not None and hi is not None and hi < lo:
        r.fail(
            (*tpath, "max_interval"),
            "must not be shorter than min_interval",
            t["max_interval"],
        )
    count, duration = v["pulses"], v["duration"]
    if "pulses" not in m and "duration" not in m:
        r.fail(
            (*path, "trigger"),
            "a triggered block needs a bound: pulses (the most) and/or duration "
            "(the longest)",
            "neither",
        )
    most = count
    if duration is not None and lo is not None:
        by_time = math.floor(duration / lo + 1e-9) + 1
        most = by_time if count is None else min(count, by_time)
    if most is not None and most > MAX_PULSES_PER_BLOCK:
        key = "pulses" if count is not None and count == most else "duration"
        r.fail(
            (*path, key),
            f"allows more than {MAX_PULSES_PER_BLOCK} pulses (the most in one block)",
            m.get(key),
        )
    if len(r.problems) > n_problems or most is None:
        return None
    name, weights = tv["montage"]
    trigger = PhaseTrigger(
        target_deg=tv["target"],
        band_hz=band,
        montage=weights,
        montage_name=name,
        estimator=tv["estimator"],
        window_s=window,
        gate_percentile=percentile,
        gate_span_s=span,
        min_interval_s=lo,
        max_interval_s=hi,
        phase_offset_deg=0.0
        if tv["phase_offset"] == "calibrated"
        else tv["phase_offset"],
        calibrated=tv["phase_offset"] == "calibrated",
    )
    return v, TriggeredPulses(
        trigger=trigger, max_pulses=most, pulses=count, duration_s=duration
    )


def rig_problems(blocks, rig) -> list[Problem]:
    """What a rig lacks for the protocol's triggered blocks, located in the protocol.

    Parameters
    ----------
    blocks : sequence of Block
        The protocol's blocks.
    rig : Rig
        The rig the protocol runs on.

    Returns
    -------
    list of Problem
        A triggered or calibration block on a rig with no EEG, a band
        reaching the Nyquist frequency of the rig's EEG, montage channels
        the EEG lacks.
    """
    out: list[Problem] = []
    for block in blocks:
        pattern = getattr(block, "pattern", None)
        if isinstance(pattern, TriggeredPulses):
            trig, at, written = pattern.trigger, "trigger", block.raw.get("trigger")
        elif isinstance(getattr(block, "calibration", None), PhaseTrigger):
            # A calibration block writes band and montage at its own level.
            trig, at, written = block.calibration, "type", block.raw
        else:
            continue
        written = written if isinstance(written, dict) else {}
        prefix = "trigger." if at == "trigger" else ""
        eeg = rig.eeg
        if eeg is None:
            out.append(
                block.problem(
                    at,
                    "needs the rig's EEG: the rig names no EEG stream (a rig "
                    "file's eeg section: stream, rate, delay)",
                    f"rig {rig.name}",
                )
            )
            continue
        nyquist = eeg.sfreq / 2
        if trig.band_hz[1] >= nyquist:
            key = f"{prefix}band" if "band" in written else at
            out.append(
                block.problem(
                    key,
                    f"must stay below the Nyquist frequency of the rig's EEG "
                    f"({nyquist:g} Hz at {eeg.sfreq:g} Hz)",
                    f"{trig.band_hz[0]:g}-{trig.band_hz[1]:g} Hz",
                )
            )
        if eeg.channels is not None:
            missing = [ch for ch in trig.channels if ch not in eeg.channels]
            if missing:
                key = f"{prefix}montage" if "montage" in written else at
                out.append(
                    block.problem(
                        key,
                        f"names channels the rig's EEG stream {eeg.stream} does "
                        f"not have: {', '.join(missing)}",
                        trig.montage_name or "a mapping",
                    )
                )
    # In the order they are written, as every other problem list.
    return sorted(out, key=lambda p: (p.file, p.line, p.col))


def calibration_problems(blocks, phase_offset=None) -> list[Problem]:
    """``phase_offset: calibrated`` blocks that have no offset to use.

    A ``phase_calibration`` block before a calibrated block gives it its
    offset; else the thresholds' phase offset does, when it was measured with
    the block's estimator, band and montage (or given by the operator on the
    command line).

    Parameters
    ----------
    blocks : sequence of Block
        The protocol's blocks in run order.
    phase_offset : PhaseOffset | None
        The thresholds' phase offset
        (:class:`~.phase_offset.PhaseOffset`), if any.

    Returns
    -------
    list of Problem
        One per calibrated block with neither, or whose thresholds' offset
        was measured with another estimator, band or montage.
    """
    out, seen = [], False
    for block in blocks:
        if isinstance(getattr(block, "calibration", None), PhaseTrigger):
            seen = True
        pattern = getattr(block, "pattern", None)
        if not isinstance(pattern, TriggeredPulses) or not pattern.trigger.calibrated:
            continue
        if seen:
            continue
        if phase_offset is None:
            out.append(
                block.problem(
                    "trigger.phase_offset",
                    "needs a phase offset: put a phase_calibration block before "
                    "this block, or give the participant's thresholds file with "
                    "a phase_offset (--thresholds; a phase_calibration block "
                    "writes one into the session folder)",
                    "calibrated",
                )
            )
            continue
        differs = phase_offset.mismatch(pattern.trigger)
        if differs:
            out.append(
                block.problem(
                    "trigger.phase_offset",
                    f"the phase offset of the {phase_offset.source} was measured "
                    f"with another setup ({differs}): measure it again with a "
                    "phase_calibration block before this block, or give the "
                    "offset yourself with --phase-offset",
                    "calibrated",
                )
            )
    return out
