"""The safety check: physiological limits, lab caps and the rig's device limits.

Runs before anything touches a device (validate, plan and run all call it).
Limits come from a data file (``data/safety_limits.yaml`` by default, a lab's
own file otherwise), never from code. Every rule that applies to a block is
reported with its limit, the protocol's value and the margin, pass or fail,
so that ``stimtrain plan`` can show how close a protocol runs to each limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from importlib.resources import files
from pathlib import Path

import numpy as np

from .errors import Problem, ProtocolError
from .fields import FieldReader, boolean, positive
from .protocol import (
    Block,
    PairedPulses,
    Protocol,
    PulseList,
    RTMSTrains,
    SinglePulses,
    StimulateBlock,
    TaskBlock,
    ThetaBurst,
    block_pulses,
)
from .rig import Rig
from .units import Intensity, UnitError
from .yamlpos import load_yaml_file

DEFAULT_LIMITS = files("stimtrain.orchestrator") / "data" / "safety_limits.yaml"
#: A unit fired a hair before it has recharged refuses the pulse: plans keep
#: this much more than the recharge time between pulses.
RECHARGE_MARGIN_S = 0.1


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Safety limits read from a limits file (see ``data/safety_limits.yaml``)."""

    intensities_pct_mt: tuple[float, ...]
    table: dict[float, tuple[float, ...]]
    stricter_margin: bool
    stricter_margin_factor: float
    min_inter_train_interval_s: float
    inter_train_rule_from_pct_mt: float
    max_rtms_frequency_hz: float
    max_rtms_intensity_pct_mt: float
    allow_rtms_without_threshold: bool
    rtms_intensity_cap_pct_mt: float | None
    single_pulse_max_pct_mt: float | None
    theta_burst_max_pct_rmt: float | None
    theta_burst_max_pct_amt: float | None
    max_pulses_per_session: int | None
    max_pulses_per_day: int | None
    source: str
    justifications: tuple[str, ...] = ()

    def max_train_duration(self, frequency_hz: float, pct_mt: float) -> float | None:
        """Look up the longest safe train, rounding frequency and intensity *up*.

        Returns None when the frequency or intensity is beyond the table.
        """
        rows = sorted(self.table)
        row = next((f for f in rows if f >= frequency_hz - 1e-9), None)
        col = next(
            (i for i, x in enumerate(self.intensities_pct_mt) if x >= pct_mt - 1e-9),
            None,
        )
        if row is None or col is None:
            return None
        return self.table[row][col]


_OPTIONAL_NUMBERS = (
    "rtms_intensity_cap_pct_mt",
    "single_pulse_max_pct_mt",
    "theta_burst_max_pct_rmt",
    "theta_burst_max_pct_amt",
    "max_pulses_per_session",
    "max_pulses_per_day",
)
_NUMBERS = (
    "stricter_margin_factor",
    "min_inter_train_interval_s",
    "inter_train_rule_from_pct_mt",
    "max_rtms_frequency_hz",
    "max_rtms_intensity_pct_mt",
)


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UnitError("must be a number")
    return float(value)


#: How each limit loosens: "max" caps loosen upwards (None = no cap is the
#: loosest), "min" limits loosen downwards, flags loosen when switched on.
_DIRECTION = {
    **{k: "max" for k in _OPTIONAL_NUMBERS},
    "stricter_margin_factor": "max",
    "max_rtms_frequency_hz": "max",
    "max_rtms_intensity_pct_mt": "max",
    "inter_train_rule_from_pct_mt": "max",
    "min_inter_train_interval_s": "min",
    "allow_rtms_without_threshold": "on",
    "stricter_margin": "off",
}


def _read_limit_values(doc, r: FieldReader, *, partial: bool) -> dict:
    """Read the fields present in a limits file (all of them unless partial)."""
    top = r.mapping(doc.data, ()) or {}
    r.known(
        top,
        (),
        (
            *_NUMBERS,
            *_OPTIONAL_NUMBERS,
            "stricter_margin",
            "allow_rtms_without_threshold",
            "train_duration_table",
            "justifications",
        ),
        "a limits file",
    )
    values: dict = {}
    for key in _NUMBERS:
        if key in top or not partial:
            values[key] = r.get(top, (), key, _number, required=True, check=positive)
    for key in _OPTIONAL_NUMBERS:
        if key not in top:
            if not partial:
                r.fail((key,), "is required (null for no cap)", "nothing")
            continue
        value = top[key]
        values[key] = (
            None if value is None else r.get(top, (), key, _number, check=positive)
        )
    for key in ("stricter_margin", "allow_rtms_without_threshold"):
        if key in top or not partial:
            values[key] = r.get(top, (), key, boolean, required=True)
    if "train_duration_table" in top or not partial:
        cols, table = _read_table(r, top)
        values["intensities_pct_mt"] = cols
        values["table"] = table
    return values


def _read_table(r: FieldReader, top: dict):
    table = r.mapping(top.get("train_duration_table"), ("train_duration_table",)) or {}
    cols = table.get("intensities_pct_mt")
    rows = table.get("max_train_s")
    tpath = ("train_duration_table",)
    if not isinstance(cols, list) or not cols or cols != sorted(cols):
        r.fail((*tpath, "intensities_pct_mt"), "must be an increasing list", cols)
        cols = []
    parsed: dict[float, tuple[float, ...]] = {}
    if not isinstance(rows, dict) or not rows:
        r.fail((*tpath, "max_train_s"), "must map frequency (Hz) to durations", rows)
    else:
        for freq, row in rows.items():
            rpath = (*tpath, "max_train_s", freq)
            ok = isinstance(row, list) and len(row) == len(cols)
            if not ok or not all(isinstance(v, (int, float)) and v > 0 for v in row):
                r.fail(rpath, f"must list {len(cols)} positive durations", row)
                continue
            parsed[float(freq)] = tuple(float(v) for v in row)
    return tuple(float(c) for c in cols), parsed


def _looser(key: str, default, value) -> bool:
    direction = _DIRECTION[key]
    if direction == "on":
        return bool(value) and not default
    if direction == "off":
        return not value and bool(default)
    if direction == "max":
        if value is None:
            return default is not None
        return default is not None and value > default + 1e-12
    return value < default - 1e-12


def _table_looser(base: Limits, cols, table) -> bool:
    """A lab table is looser if it allows a longer train anywhere."""
    trial = Limits(**{**base.__dict__, "intensities_pct_mt": cols, "table": table})
    probes_f = sorted({*base.table, *table})
    probes_i = sorted({*base.intensities_pct_mt, *cols})
    for f in probes_f:
        for i in probes_i:
            new, old = trial.max_train_duration(f, i), base.max_train_duration(f, i)
            if new is not None and (old is None or new > old + 1e-12):
                return True
    return False


def load_limits(path: str | Path | None = None) -> Limits:
    """Load the safety limits: the shipped defaults, tightened or loosened by a lab.

    Parameters
    ----------
    path : str | Path | None
        A lab limits file. It lists only the limits it changes (a complete
        copy of the default file works too). A limit may be tightened freely;
        loosening one needs a written justification under
        ``justifications: {field: "why, who approved, when"}``, which is
        copied into the plan and journal of every session it affects.

    Raises
    ------
    ProtocolError
        When a file has problems (unknown or missing field, table of the
        wrong shape, a loosened limit without a justification).
    """
    doc = load_yaml_file(DEFAULT_LIMITS)
    problems: list[Problem] = []
    r = FieldReader(doc, problems)
    values = _read_limit_values(doc, r, partial=False)
    if problems:
        raise ProtocolError(problems)
    base = Limits(
        source=doc.file,
        **{k: v for k, v in values.items() if k not in _OPTIONAL_NUMBERS},
        **{k: values[k] for k in _OPTIONAL_NUMBERS},
    )
    if path is None:
        return _with_int_caps(base)
    lab = load_yaml_file(path)
    r = FieldReader(lab, problems)
    changes = _read_limit_values(lab, r, partial=True)
    top = lab.data if isinstance(lab.data, dict) else {}
    notes = r.mapping(top.get("justifications", {}) or {}, ("justifications",)) or {}
    for key in notes:
        if not isinstance(notes[key], str) or len(notes[key].strip()) < 20:
            r.fail(
                ("justifications", key),
                "must be a written justification (at least 20 characters)",
                notes[key],
            )
    justified: list[str] = []
    for key, value in changes.items():
        if key == "intensities_pct_mt":
            continue
        if key == "table":
            loose = _table_looser(base, changes["intensities_pct_mt"], value)
            key = "train_duration_table"
        else:
            loose = _looser(key, getattr(base, key), value)
        if not loose:
            continue
        if key not in notes:
            r.fail(
                (key,),
                "loosens a default safety limit; add a written justification under "
                f"justifications.{key}",
                top.get(key) if key != "train_duration_table" else "a longer train",
            )
        else:
            justified.append(f"{key}: {notes[key].strip()}")
    for key in notes:
        if key not in changes and not (
            key == "train_duration_table" and "table" in changes
        ):
            r.fail(
                ("justifications", key),
                "justifies a limit the file does not change",
                key,
            )
    if problems:
        raise ProtocolError(problems)
    merged = {**base.__dict__, **changes, "source": lab.file}
    merged["justifications"] = tuple(justified)
    return _with_int_caps(Limits(**merged))


def _with_int_caps(limits: Limits) -> Limits:
    return replace(
        limits,
        max_pulses_per_session=_as_int(limits.max_pulses_per_session),
        max_pulses_per_day=_as_int(limits.max_pulses_per_day),
    )


def _as_int(value: float | None) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class Thresholds:
    """The participant's motor thresholds in %MSO (None when unknown)."""

    rmt: float | None = None
    amt: float | None = None


@dataclass(frozen=True)
class Dose:
    """An intensity resolved against the thresholds.

    ``power`` is the %MSO sent to the device, rounded to its 1 % resolution;
    ``pct_rmt`` and ``pct_amt`` are what that power is in threshold units.
    """

    intensity: Intensity
    power: int | None
    pct_rmt: float | None
    pct_amt: float | None


def round_half_up(value: float) -> int:
    """Round to the nearest whole %MSO, halves up (30.5 → 31), as people do.

    Python's ``round`` rounds halves to even (30.5 → 30); a tiny tolerance
    keeps products like 61 × 50 / 100 from falling just below the half.
    """
    return math.floor(value + 0.5 + 1e-9)


def resolve_intensity(intensity: Intensity, thresholds: Thresholds) -> Dose:
    """Convert an intensity into device power and threshold units.

    The safety check is applied to the power actually sent (after rounding),
    not to the value as written.
    """
    power: int | None
    if intensity.unit == "%MSO":
        power = round_half_up(intensity.value)
    elif intensity.unit == "%RMT":
        power = (
            None
            if thresholds.rmt is None
            else round_half_up(intensity.value * thresholds.rmt / 100)
        )
    else:
        power = (
            None
            if thresholds.amt is None
            else round_half_up(intensity.value * thresholds.amt / 100)
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


@dataclass(frozen=True)
class RuleCheck:
    """One rule applied to one block (or to the whole session when block is None).

    ``kind`` is ``"max"`` (value must not exceed limit) or ``"min"``.
    """

    block: int | None
    rule: str
    limit: float
    value: float
    unit: str
    kind: str = "max"
    field: str = ""

    @property
    def ok(self) -> bool:
        """Whether the rule holds (with a tolerance for float rounding)."""
        if self.kind == "max":
            return self.value <= self.limit + 1e-9
        return self.value >= self.limit - 1e-9

    @property
    def margin(self) -> float:
        """How far the value is inside the limit (negative when it fails)."""
        return (
            self.limit - self.value if self.kind == "max" else self.value - self.limit
        )

    def as_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "block": self.block,
            "rule": self.rule,
            "limit": self.limit,
            "value": self.value,
            "unit": self.unit,
            "kind": self.kind,
            "margin": self.margin,
            "ok": self.ok,
        }


@dataclass
class SafetyReport:
    """Every rule checked, and the problems (failed rules and refusals)."""

    checks: list[RuleCheck] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    doses: dict[int, Dose] = field(default_factory=dict)
    conditioning: dict[int, Dose] = field(default_factory=dict)
    delivery: dict[int, str] = field(default_factory=dict)
    delivered_today: int = 0

    @property
    def ok(self) -> bool:
        """True when the protocol may run."""
        return not self.problems

    def raise_if_unsafe(self) -> None:
        """Raise :class:`ProtocolError` with every problem, if any."""
        if self.problems:
            raise ProtocolError(self.problems)


class _Checker:
    def __init__(self, protocol: Protocol, limits: Limits, report: SafetyReport):
        self.protocol = protocol
        self.limits = limits
        self.report = report

    def refuse(self, block: Block | None, key: str, rule: str, value) -> None:
        if block is None:
            problem = self.protocol.document.problem((key,), rule, value)
        else:
            problem = block.problem(key, rule, value)
        self.report.problems.append(problem)

    def rule(
        self,
        block: Block | None,
        key: str,
        rule: str,
        limit: float,
        value: float,
        unit: str,
        kind: str = "max",
        written: object = None,
    ) -> None:
        check = RuleCheck(
            None if block is None else block.index, rule, limit, value, unit, kind, key
        )
        self.report.checks.append(check)
        if not check.ok:
            word = "at most" if kind == "max" else "at least"
            shown = f"{value:.4g} {unit}".rstrip()
            if written is not None and str(written).replace(" ", "") != shown.replace(
                " ", ""
            ):
                # Say what the written value amounts to in the rule's unit.
                shown = f"{written} = {shown}"
            self.refuse(block, key, f"{rule}: must be {word} {limit:g} {unit}", shown)


def check_protocol(
    protocol: Protocol,
    *,
    thresholds: Thresholds | None = None,
    rig: Rig | None = None,
    limits: Limits | None = None,
    require_power: bool = False,
    delivered_today: int = 0,
    skip_blocks: frozenset[int] = frozenset(),
    delivered_session: int = 0,
) -> SafetyReport:
    """Check a protocol against the safety limits and, given a rig, its device.

    Parameters
    ----------
    protocol : Protocol
        The loaded protocol.
    thresholds : Thresholds | None
        Motor thresholds in %MSO; without them %RMT intensities can be checked
        against the physiological table but not converted to device power.
    rig : Rig | None
        When given, the device limits of its stimulator and trigger path.
    limits : Limits | None
        Safety limits; the shipped defaults when None.
    require_power : bool
        Refuse intensities that can't be converted to device power (a run
        must know exactly what it sends).
    delivered_today : int
        Pulses the participant already received today (earlier sessions and
        runs, counted from their journals), for the per-day cap.
    skip_blocks : frozenset of int
        Blocks finished in an earlier run of this session (a resume): not
        run again, so not checked again.
    delivered_session : int
        Pulses delivered in earlier runs of this session, for the session cap.

    Returns
    -------
    SafetyReport
        Every rule applied with its margin, and the problems.
    """
    thresholds = thresholds or Thresholds()
    limits = limits or load_limits()
    report = SafetyReport(delivered_today=delivered_today)
    c = _Checker(protocol, limits, report)
    margin_on = limits.stricter_margin or protocol.stricter_margin
    caps = None if rig is None else _capabilities(rig)
    blocks = [b for b in protocol.blocks if b.index not in skip_blocks]
    for block in blocks:
        if isinstance(block, StimulateBlock):
            _check_stimulate(c, block, thresholds, require_power, margin_on, caps, rig)
        elif isinstance(block, TaskBlock) and block.tms is not None:
            _check_online(c, block, thresholds, require_power, caps, rig)
    total = sum(block_pulses(b) for b in blocks)
    if limits.max_pulses_per_session is not None:
        earlier = (
            f" ({delivered_session} delivered in earlier runs)"
            if delivered_session
            else ""
        )
        c.rule(
            None,
            "blocks",
            f"pulses per session{earlier}",
            limits.max_pulses_per_session,
            delivered_session + total,
            "pulses",
        )
    if limits.max_pulses_per_day is not None:
        c.rule(
            None,
            "blocks",
            f"pulses per day ({delivered_today} already delivered today)",
            limits.max_pulses_per_day,
            delivered_today + total,
            "pulses",
        )
    return report


def _capabilities(rig: Rig):
    from stimtrain.devices.stimulator import get_capabilities

    return get_capabilities(rig.stimulator_model)


def _dose(c: _Checker, block: Block, key: str, intensity, thresholds, require_power):
    """Resolve an intensity and apply the device power range to it."""
    dose = resolve_intensity(intensity, thresholds)
    written = _written(block, key)
    if dose.power is None and require_power:
        need = "--rmt" if intensity.unit == "%RMT" else "--amt"
        c.refuse(
            block,
            key,
            f"needs the participant's threshold ({need}) to set device power",
            written,
        )
    if dose.power is not None:
        c.rule(block, key, "device power", 100, dose.power, "%MSO", written=written)
    return dose


def _written(block: Block, key: str) -> object:
    value: object = block.raw
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    # A list (pulse times) is not worth quoting: the rule's value says it.
    return None if isinstance(value, list) else value


def _single_pulse_cap(c: _Checker, block: Block, key: str, dose: Dose) -> None:
    cap = c.limits.single_pulse_max_pct_mt
    if dose.pct_rmt is not None and cap is not None:
        c.rule(
            block,
            key,
            "single-pulse intensity cap",
            cap,
            dose.pct_rmt,
            "%RMT",
            written=_written(block, key),
        )


def _check_stimulate(c, block, thresholds, require_power, margin_on, caps, rig):
    pattern = block.pattern
    dose = _dose(c, block, "intensity", block.intensity, thresholds, require_power)
    c.report.doses[block.index] = dose
    written = _written(block, "intensity")
    if isinstance(pattern, SinglePulses):
        _single_pulse_cap(c, block, "intensity", dose)
    elif isinstance(pattern, PairedPulses):
        cond = _dose(
            c, block, "conditioning", pattern.conditioning, thresholds, require_power
        )
        c.report.conditioning[block.index] = cond
        _single_pulse_cap(c, block, "intensity", dose)
        _single_pulse_cap(c, block, "conditioning", cond)
    elif isinstance(pattern, RTMSTrains):
        _check_train(
            c,
            block,
            dose,
            margin_on,
            pattern.frequency_hz,
            pattern.train_duration_s,
            "frequency",
            "train_duration" if "train_duration" in block.raw else "pulses_per_train",
        )
        _check_inter_train(c, block, dose, pattern)
    elif isinstance(pattern, ThetaBurst):
        _check_theta_burst(c, block, dose, written)
    elif isinstance(pattern, PulseList):
        _check_pulse_list(c, block, dose, margin_on)
    if caps is not None:
        _check_device(c, block, dose, rig, caps)


def _check_online(c, block: TaskBlock, thresholds, require_power, caps, rig):
    dose = _dose(
        c, block, "tms.intensity", block.tms.intensity, thresholds, require_power
    )
    c.report.doses[block.index] = dose
    _single_pulse_cap(c, block, "tms.intensity", dose)
    if caps is None:
        return
    _check_power_range(c, block, "tms.intensity", dose, caps)
    # Pulses locked to a flip need the lowest latency the rig has.
    if rig.trigger is not None and "ttl" in caps.trigger_inputs:
        c.report.delivery[block.index] = "trigger"
        return
    from stimtrain.tasks import get_task

    task = get_task(block.task)
    timing = task.timing(task.validate_params(block.params))
    # A trial can end at the response: fixation, feedback and ITI always remain.
    trial_s = timing.fixation_s + timing.feedback_s + timing.iti_s
    serial_rate = _serial_rate(caps, dose)
    if trial_s < 1.0 / serial_rate - 1e-9:
        c.rule(
            block,
            "tms",
            f"{caps.label} fires by serial command at most {serial_rate:g} Hz; "
            "shortest trial",
            1.0 / serial_rate,
            trial_s,
            "s",
            kind="min",
        )
    c.report.delivery[block.index] = "serial"


def _check_train(c, block, dose, margin_on, frequency, duration, fkey, dkey):
    """The physiological rules of a train of pulses at ``frequency``."""
    limits = c.limits
    written = _written(block, "intensity")
    # The frequency limit needs no threshold: it holds even where a lab
    # allows rTMS without one.
    c.rule(
        block,
        fkey,
        "rTMS frequency beyond the safety table",
        limits.max_rtms_frequency_hz,
        frequency,
        "Hz",
        written=_written(block, fkey),
    )
    if dose.pct_rmt is None:
        if not limits.allow_rtms_without_threshold:
            c.refuse(
                block,
                "intensity",
                "rTMS needs the resting motor threshold (give --rmt or use %RMT)",
                written,
            )
        return
    c.rule(
        block,
        "intensity",
        "rTMS intensity beyond the safety table",
        limits.max_rtms_intensity_pct_mt,
        dose.pct_rmt,
        "%RMT",
        written=written,
    )
    if limits.rtms_intensity_cap_pct_mt is not None:
        c.rule(
            block,
            "intensity",
            "lab rTMS intensity cap",
            limits.rtms_intensity_cap_pct_mt,
            dose.pct_rmt,
            "%RMT",
            written=written,
        )
    max_train = limits.max_train_duration(frequency, dose.pct_rmt)
    if max_train is not None:
        factor = limits.stricter_margin_factor if margin_on else 1.0
        name = "train duration (Wassermann 1998"
        name += ", with the Chen 1997 margin)" if margin_on else ")"
        c.rule(
            block,
            dkey,
            name,
            round(max_train * factor, 6),
            duration,
            "s",
            written=_written(block, dkey),
        )


def _check_inter_train(c, block, dose, pattern: RTMSTrains) -> None:
    limits = c.limits
    if dose.pct_rmt is None or pattern.trains <= 1:
        return
    if dose.pct_rmt >= limits.inter_train_rule_from_pct_mt - 1e-9:
        c.rule(
            block,
            "inter_train_interval",
            "inter-train interval (Chen 1997)",
            limits.min_inter_train_interval_s,
            pattern.inter_train_interval_s,
            "s",
            kind="min",
            written=_written(block, "inter_train_interval"),
        )


def _runs(times: tuple[float, ...], gap: float) -> list[tuple[int, int]]:
    """Runs of pulses whose consecutive intervals are shorter than ``gap``."""
    runs, start = [], 0
    for i in range(1, len(times) + 1):
        if i == len(times) or times[i] - times[i - 1] >= gap:
            if i - start > 1:
                runs.append((start, i))
            start = i
    return runs


def _check_pulse_list(c, block, dose: Dose, margin_on: bool) -> None:
    """A pulse list is single pulses, unless pulses come faster than 1 Hz.

    Pulses less than 1 s apart are treated as a train at the rate of the
    shortest interval in them, and the train rules apply to each such run.
    """
    pattern: PulseList = block.pattern
    runs = _runs(pattern.times_s, 1.0)
    if not runs:
        _single_pulse_cap(c, block, "intensity", dose)
        return
    longest = max(runs, key=lambda r: r[1] - r[0])
    times = pattern.times_s
    rate = 1.0 / min(float(np.min(np.diff(times[s:e]))) for s, e in runs)
    duration = (longest[1] - longest[0]) / rate
    _check_train(c, block, dose, margin_on, rate, duration, "times", "times")


def _check_theta_burst(c, block, dose: Dose, written) -> None:
    """Theta-burst caps, in the threshold unit the intensity was written in.

    An intensity in %MSO is checked against every threshold that is known.
    """
    limits = c.limits
    unit = block.intensity.unit
    checked = False
    for cap_unit, pct, cap in (
        ("%AMT", dose.pct_amt, limits.theta_burst_max_pct_amt),
        ("%RMT", dose.pct_rmt, limits.theta_burst_max_pct_rmt),
    ):
        if pct is None or cap is None or unit not in (cap_unit, "%MSO"):
            continue
        checked = True
        c.rule(
            block,
            "intensity",
            "theta-burst intensity cap",
            cap,
            pct,
            cap_unit,
            written=written,
        )
    if not checked:
        c.refuse(
            block,
            "intensity",
            "theta burst needs a motor threshold (use %RMT or %AMT, or give --rmt)",
            written,
        )


def _serial_rate(caps, dose: Dose) -> float:
    # A unit without a serial rate limit of its own is limited by recharge.
    if caps.serial_max_rate_hz is not None:
        return caps.serial_max_rate_hz
    power = dose.power if dose.power is not None else caps.intensity_range[1]
    recharge = caps.recharge_time(power)
    return 1.0 / recharge if recharge > 0 else caps.max_frequency(power)


def _check_power_range(c, block, key: str, dose: Dose, caps) -> None:
    lo, hi = caps.intensity_range
    if dose.power is not None and dose.power < lo:
        c.rule(block, key, f"{caps.label} lowest power", lo, dose.power, "%MSO", "min")


def _shortest_interval(pattern) -> float | None:
    if isinstance(pattern, (SinglePulses, PairedPulses)):
        return pattern.interval_s - pattern.jitter_s
    if isinstance(pattern, PulseList):
        return pattern.shortest_interval_s
    return None


def _check_device(c: _Checker, block: StimulateBlock, dose: Dose, rig: Rig, caps):
    """Device limits of the rig's stimulator and trigger path; sets the delivery."""
    pattern = block.pattern
    raw = block.raw
    _check_power_range(c, block, "intensity", dose, caps)
    # Power-dependent device limits need the power; without a threshold the
    # check is repeated at run time, where the power is required.
    power = dose.power
    has_trigger = rig.trigger is not None and "ttl" in caps.trigger_inputs
    shortest = _shortest_interval(pattern)
    if shortest is not None and power is not None:
        recharge = caps.recharge_time(power)
        if recharge > 0:
            c.rule(
                block,
                "interval" if "interval" in raw else "times",
                f"{caps.label} recharge time at {power} %MSO "
                f"(+{RECHARGE_MARGIN_S * 1e3:g} ms margin)",
                recharge + RECHARGE_MARGIN_S,
                shortest,
                "s",
                kind="min",
            )
    if isinstance(pattern, PairedPulses):
        _check_paired_device(c, block, dose, caps, has_trigger)
        return
    if shortest is not None:
        serial_rate = _serial_rate(caps, dose)
        if shortest >= 1.0 / serial_rate - 1e-9:
            c.report.delivery[block.index] = "serial"
        elif has_trigger:
            c.report.delivery[block.index] = "trigger"
            if isinstance(pattern, PulseList) and power is not None:
                c.rule(
                    block,
                    "times",
                    f"{caps.label} maximum frequency at {power} %MSO",
                    caps.max_frequency(power),
                    1.0 / shortest,
                    "Hz",
                )
        else:
            key = "interval" if "interval" in raw else "times"
            c.rule(
                block,
                key,
                f"{caps.label} fires by serial command at most {serial_rate:g} Hz "
                "(this rig has no trigger line); shortest interval",
                1.0 / serial_rate,
                shortest,
                "s",
                kind="min",
                written=raw.get(key),
            )
        return
    what = "theta burst" if isinstance(pattern, ThetaBurst) else "rTMS"
    if not has_trigger:
        c.refuse(
            block,
            "pattern",
            f"{what} needs a trigger line on this rig: the {caps.label} fires at "
            f"most {_serial_rate(caps, dose):g} Hz by serial command",
            raw.get("pattern"),
        )
        return
    c.report.delivery[block.index] = "trigger"
    if isinstance(pattern, ThetaBurst):
        rate, key = pattern.burst_frequency_hz, "burst_frequency"
        mean_rate = pattern.burst_rate_hz * pattern.pulses_per_burst
        n_burst = pattern.pulses // pattern.pulses_per_burst
        on_time = pattern.train_duration_s or n_burst / pattern.burst_rate_hz
    else:
        rate, key = pattern.frequency_hz, "frequency"
        mean_rate, on_time = rate, pattern.train_duration_s
    if power is not None:
        c.rule(
            block,
            key,
            f"{caps.label} maximum frequency at {power} %MSO",
            caps.max_frequency(power),
            rate,
            "Hz",
            written=raw.get(key, f"{rate:g} Hz"),
        )
    if caps.max_on_time is not None and dose.power is not None:
        limit = caps.max_on_time(mean_rate, dose.power)
        if limit is not None and limit != float("inf"):
            c.rule(
                block,
                "train_duration" if "train_duration" in raw else "pulses",
                f"{caps.label} maximum on-time at {mean_rate:g} Hz, {power} %MSO",
                round(limit, 3),
                on_time,
                "s",
            )
    if (
        isinstance(pattern, RTMSTrains)
        and pattern.trains > 1
        and caps.min_wait_after_train is not None
        and dose.power is not None
    ):
        wait = caps.min_wait_after_train(
            pattern.pulses_per_train, pattern.frequency_hz, dose.power
        )
        c.rule(
            block,
            "inter_train_interval",
            f"{caps.label} minimum wait after a train (energy limit)",
            round(wait, 3),
            pattern.inter_train_interval_s,
            "s",
            kind="min",
        )


def _check_paired_device(c, block, dose: Dose, caps, has_trigger: bool) -> None:
    pattern: PairedPulses = block.pattern
    cond = c.report.conditioning[block.index]
    if caps.paired_pulse:
        c.report.delivery[block.index] = "paired"
        return
    same = dose.power is not None and dose.power == cond.power
    power = dose.power if dose.power is not None else caps.intensity_range[1]
    if same and has_trigger and 1.0 / pattern.isi_s <= caps.max_frequency(power):
        # Two equal pulses far enough apart (e.g. LICI) are two triggers.
        c.report.delivery[block.index] = "trigger"
        return
    c.refuse(
        block,
        "pattern",
        f"paired pulses at {pattern.isi_s * 1e3:g} ms with these intensities need a "
        f"paired-pulse stimulator (BiStim², MagPro with MagOption); this rig has "
        f"a {caps.label}",
        block.raw.get("pattern"),
    )
