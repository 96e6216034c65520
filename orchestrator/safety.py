"""The safety check: physiological limits, lab caps and the rig's device limits.

Runs before anything touches a device (validate, plan and run all call it).
Every rule that applies to a block is reported with its limit, the protocol's
value and the margin, pass or fail, so that ``stimtrain plan`` can show how
close a protocol runs to each limit. The limits are in
:mod:`~stimtrain.orchestrator.limits`, the device rules in
:mod:`~stimtrain.orchestrator.device_rules`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .blocks import (
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
from .device_rules import check_device, check_power_range, max_serial_rate
from .dose import Dose, Thresholds, resolve_intensity, round_half_up  # noqa: F401
from .errors import Problem, ProtocolError
from .limits import DEFAULT_LIMITS, Limits, load_limits  # noqa: F401
from .rig import Rig


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
        check_device(c, block, dose, rig, caps)


def _check_online(c, block: TaskBlock, thresholds, require_power, caps, rig):
    dose = _dose(
        c, block, "tms.intensity", block.tms.intensity, thresholds, require_power
    )
    c.report.doses[block.index] = dose
    _single_pulse_cap(c, block, "tms.intensity", dose)
    if caps is None:
        return
    check_power_range(c, block, "tms.intensity", dose, caps)
    # Pulses locked to a flip need the lowest latency the rig has.
    if rig.trigger is not None and "ttl" in caps.trigger_inputs:
        c.report.delivery[block.index] = "trigger"
        return
    from stimtrain.tasks import get_task

    task = get_task(block.task)
    timing = task.timing(task.validate_params(block.params))
    # A trial can end at the response: fixation, feedback and ITI always remain.
    trial_s = timing.fixation_s + timing.feedback_s + timing.iti_s
    serial_rate = max_serial_rate(caps, dose)
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
