"""The safety check: physiological limits, lab caps and the rig's device limits.

Runs before anything touches a device (validate, plan and run all call it).
Limits come from a data file (``data/safety_limits.yaml`` by default, a lab's
own file otherwise), never from code. Every rule that applies to a block is
reported with its limit, the protocol's value and the margin, pass or fail,
so that ``stimtrain plan`` can show how close a protocol runs to each limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from .errors import Problem, ProtocolError
from .fields import FieldReader, boolean, positive
from .protocol import (
    Protocol,
    RTMSTrains,
    SinglePulses,
    StimulateBlock,
    ThetaBurst,
)
from .rig import Rig
from .units import Intensity, UnitError
from .yamlpos import load_yaml_file

DEFAULT_LIMITS = files("stimtrain.orchestrator") / "data" / "safety_limits.yaml"


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


def load_limits(path: str | Path | None = None) -> Limits:
    """Load a limits file; the default is the one shipped with stimtrain.

    Parameters
    ----------
    path : str | Path | None
        A lab limits file with the same fields as the default file.

    Raises
    ------
    ProtocolError
        When the file has problems (missing field, table of the wrong shape).
    """
    doc = load_yaml_file(path or DEFAULT_LIMITS)
    problems: list[Problem] = []
    r = FieldReader(doc, problems)
    top = r.mapping(doc.data, ()) or {}
    values: dict = {}
    for key in _NUMBERS:
        values[key] = r.get(top, (), key, _number, required=True, check=positive)
    for key in _OPTIONAL_NUMBERS:
        if top.get(key) is None:
            values[key] = None
            if key not in top:
                r.fail((key,), "is required (null for no cap)", "nothing")
        else:
            values[key] = r.get(top, (), key, _number, check=positive)
    for key in ("stricter_margin", "allow_rtms_without_threshold"):
        values[key] = r.get(top, (), key, boolean, required=True)
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
    if problems:
        raise ProtocolError(problems)
    return Limits(
        intensities_pct_mt=tuple(float(c) for c in cols),
        table=parsed,
        source=doc.file,
        max_pulses_per_session=_as_int(values.pop("max_pulses_per_session")),
        max_pulses_per_day=_as_int(values.pop("max_pulses_per_day")),
        **values,
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


def resolve_intensity(intensity: Intensity, thresholds: Thresholds) -> Dose:
    """Convert an intensity into device power and threshold units.

    The safety check is applied to the power actually sent (after rounding),
    not to the value as written.
    """
    power: int | None
    if intensity.unit == "%MSO":
        power = round(intensity.value)
    elif intensity.unit == "%RMT":
        power = (
            None
            if thresholds.rmt is None
            else round(intensity.value * thresholds.rmt / 100)
        )
    else:
        power = (
            None
            if thresholds.amt is None
            else round(intensity.value * thresholds.amt / 100)
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
    delivery: dict[int, str] = field(default_factory=dict)

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

    def refuse(self, block: StimulateBlock | None, key: str, rule: str, value) -> None:
        path = (*block.path, key) if block is not None else (key,)
        self.report.problems.append(self.protocol.document.problem(path, rule, value))

    def rule(
        self,
        block: StimulateBlock | None,
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

    Returns
    -------
    SafetyReport
        Every rule applied with its margin, and the problems.
    """
    thresholds = thresholds or Thresholds()
    limits = limits or load_limits()
    report = SafetyReport()
    c = _Checker(protocol, limits, report)
    margin_on = limits.stricter_margin or protocol.stricter_margin
    total = 0
    for block in protocol.blocks:
        if not isinstance(block, StimulateBlock):
            continue
        pattern = block.pattern
        total += pattern.n_pulses
        dose = resolve_intensity(block.intensity, thresholds)
        report.doses[block.index] = dose
        written = _raw(c, block).get("intensity")
        if dose.power is None and require_power:
            need = "--rmt" if block.intensity.unit == "%RMT" else "--amt"
            c.refuse(
                block,
                "intensity",
                f"needs the participant's threshold ({need}) to set device power",
                written,
            )
        if dose.power is not None:
            c.rule(
                block,
                "intensity",
                "device power",
                100,
                dose.power,
                "%MSO",
                written=written,
            )
        if isinstance(pattern, SinglePulses):
            if dose.pct_rmt is not None and limits.single_pulse_max_pct_mt is not None:
                c.rule(
                    block,
                    "intensity",
                    "single-pulse intensity cap",
                    limits.single_pulse_max_pct_mt,
                    dose.pct_rmt,
                    "%RMT",
                    written=written,
                )
        elif isinstance(pattern, RTMSTrains):
            _check_rtms(c, block, pattern, dose, margin_on, written)
        elif isinstance(pattern, ThetaBurst):
            _check_theta_burst(c, block, dose, written)
        if rig is not None:
            _check_device(c, block, dose, rig)
    if limits.max_pulses_per_session is not None:
        c.rule(
            None,
            "blocks",
            "pulses per session",
            limits.max_pulses_per_session,
            total,
            "pulses",
            written=None,
        )
    return report


def _check_rtms(
    c, block, pattern: RTMSTrains, dose: Dose, margin_on: bool, written
) -> None:
    limits = c.limits
    if dose.pct_rmt is None:
        if not limits.allow_rtms_without_threshold:
            c.refuse(
                block,
                "intensity",
                "rTMS needs the resting motor threshold (give --rmt or use %RMT)",
                written,
            )
        return
    freq_written = _raw(c, block).get("frequency")
    c.rule(
        block,
        "frequency",
        "rTMS frequency beyond the safety table",
        limits.max_rtms_frequency_hz,
        pattern.frequency_hz,
        "Hz",
        written=freq_written,
    )
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
    max_train = limits.max_train_duration(pattern.frequency_hz, dose.pct_rmt)
    if max_train is not None:
        factor = limits.stricter_margin_factor if margin_on else 1.0
        key = (
            "train_duration"
            if "train_duration" in _raw(c, block)
            else "pulses_per_train"
        )
        name = "train duration (Wassermann 1998"
        name += ", with the Chen 1997 margin)" if margin_on else ")"
        c.rule(
            block,
            key,
            name,
            round(max_train * factor, 6),
            pattern.train_duration_s,
            "s",
            written=_raw(c, block).get(key),
        )
    if (
        pattern.trains > 1
        and dose.pct_rmt >= limits.inter_train_rule_from_pct_mt - 1e-9
    ):
        c.rule(
            block,
            "inter_train_interval",
            "inter-train interval (Chen 1997)",
            limits.min_inter_train_interval_s,
            pattern.inter_train_interval_s,
            "s",
            kind="min",
            written=_raw(c, block).get("inter_train_interval"),
        )


def _raw(c: _Checker, block: StimulateBlock) -> dict:
    return c.protocol.document.data["blocks"][block.index]


def _check_theta_burst(c, block, dose: Dose, written) -> None:
    limits = c.limits
    if dose.pct_amt is not None and limits.theta_burst_max_pct_amt is not None:
        c.rule(
            block,
            "intensity",
            "theta-burst intensity cap",
            limits.theta_burst_max_pct_amt,
            dose.pct_amt,
            "%AMT",
            written=written,
        )
    elif dose.pct_rmt is not None and limits.theta_burst_max_pct_rmt is not None:
        c.rule(
            block,
            "intensity",
            "theta-burst intensity cap",
            limits.theta_burst_max_pct_rmt,
            dose.pct_rmt,
            "%RMT",
            written=written,
        )
    else:
        c.refuse(
            block,
            "intensity",
            "theta burst needs a motor threshold (use %RMT or %AMT, or give --rmt)",
            written,
        )


def _check_device(c: _Checker, block: StimulateBlock, dose: Dose, rig: Rig) -> None:
    """Device limits of the rig's stimulator and trigger path; sets the delivery."""
    from stimtrain.devices.magstim import capabilities as caps

    model = caps.MODELS[rig.stimulator_model]
    pattern = block.pattern
    raw = _raw(c, block)
    # A 200² has no serial rate limit of its own: its recharge time is the limit.
    serial_rate = model.serial_max_rate_hz or caps.max_frequency_hz(
        model, dose.power if dose.power is not None else model.max_power
    )
    if isinstance(pattern, SinglePulses):
        shortest = pattern.interval_s - pattern.jitter_s
        if shortest >= 1.0 / serial_rate - 1e-9:
            c.report.delivery[block.index] = "serial"
        elif rig.trigger is not None:
            c.report.delivery[block.index] = "trigger"
        else:
            c.rule(
                block,
                "interval",
                f"{model.label} fires by serial command at most {serial_rate:g} Hz; "
                "shortest interval",
                1.0 / serial_rate,
                shortest,
                "s",
                kind="min",
                written=raw.get("interval"),
            )
    else:
        if rig.trigger is None:
            what = "theta burst" if isinstance(pattern, ThetaBurst) else "rTMS"
            c.refuse(
                block,
                "pattern",
                f"{what} needs a trigger line on this rig: the {model.label} fires "
                f"at most {serial_rate:g} Hz by serial command",
                raw.get("pattern"),
            )
            return
        c.report.delivery[block.index] = "trigger"
        if isinstance(pattern, ThetaBurst):
            rate, key = pattern.burst_frequency_hz, "burst_frequency"
        else:
            rate, key = pattern.frequency_hz, "frequency"
        if dose.power is not None:
            limit = caps.max_frequency_hz(rig.stimulator_model, dose.power)
            c.rule(
                block,
                key,
                f"{model.label} maximum frequency at {dose.power} %MSO",
                limit,
                rate,
                "Hz",
                written=raw.get(key, f"{rate:g} Hz"),
            )
