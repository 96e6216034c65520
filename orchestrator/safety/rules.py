"""The safety check: judge the pulses a plan will deliver, whatever wrote them.

Runs before anything touches a device (validate, plan and run all call it),
on a compiled :class:`~stimtrain.orchestrator.safety.plan.Plan`: every pulse with its
worst-case time, power and intensity. Trains are found by their intervals
(:mod:`~stimtrain.orchestrator.safety.trains`), so single pulses, pairs, lists, online
pulses and patterns are held to the same rules. Every rule applied is reported
with its limit, the value and the margin, pass or fail, so that ``stimtrain
plan`` can show what was judged. The limits are in
:mod:`~stimtrain.orchestrator.safety.limits`, the device rules in
:mod:`~stimtrain.orchestrator.safety.device_rules`.

Slightly longer than most: every rule is reported with its limit, value and
margin in one shape, so the rules sit together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..language.blocks import (
    THRESHOLD_UNITS,
    Block,
    Protocol,
    ThresholdBlock,
)
from ..language.errors import Problem, ProtocolError
from ..language.rig import Rig
from ..language.trigger import calibration_problems, rig_problems
from .delivery import capabilities
from .dose import Dose, Thresholds, resolve_intensity  # noqa: F401
from .limits import DEFAULT_LIMITS, Limits, load_limits  # noqa: F401
from .plan import Plan, PlannedBlock, compile_plan
from .trains import Train, find_trains


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
    train: int | None = None

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
            "train": self.train,
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
    trains: list[Train] = field(default_factory=list)
    delivered_today: int = 0
    plan: Plan | None = None

    @property
    def ok(self) -> bool:
        """True when the protocol may run."""
        return not self.problems

    def raise_if_unsafe(self) -> None:
        """Raise :class:`ProtocolError` with every problem, if any."""
        if self.problems:
            raise ProtocolError(self.problems)


class _Checker:
    """Records each rule applied and each refusal, located in the protocol."""

    def __init__(
        self,
        protocol: Protocol,
        limits: Limits,
        report: SafetyReport,
        rig: Rig | None = None,
    ):
        self.protocol = protocol
        self.limits = limits
        self.report = report
        self.rig = rig

    def block(self, index: int) -> Block:
        return self.protocol.blocks[index]

    def written(self, block: Block, key: str) -> object:
        return written(block, key)

    def refuse(self, block: Block | None, key: str, rule: str, value) -> None:
        if block is None:
            problem = self.protocol.document.problem((key,), rule, value)
        else:
            problem = block.problem(key, rule, value)
        # Equal trains break a rule alike: say it once.
        if all(str(p) != str(problem) for p in self.report.problems[-50:]):
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
        train: Train | None = None,
    ) -> None:
        check = RuleCheck(
            None if block is None else block.index,
            rule,
            limit,
            value,
            unit,
            kind,
            key,
            None if train is None else train.number,
        )
        self.report.checks.append(check)
        if not check.ok:
            word = "at most" if kind == "max" else "at least"
            shown = f"{_number(value)} {unit}".rstrip()
            if written is not None and str(written).replace(" ", "") != shown.replace(
                " ", ""
            ):
                # Say what the written value amounts to in the rule's unit.
                shown = f"{written} = {shown}"
            what = "" if train is None else f"{train.describe()}: "
            self.refuse(
                block,
                key,
                f"{what}{rule}: must be {word} {_number(limit)} {unit}",
                shown,
            )


def _number(value: float) -> str:
    """A rule's number for people: whole counts in full, others to 4 digits."""
    if float(value).is_integer() and abs(value) < 1e12:
        return str(int(value))
    return f"{value:.4g}"


def written(block: Block, key: str) -> object:
    """The value as the protocol wrote it at ``key`` (None for lists)."""
    value: object = block.raw
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    # A list (pulse times) is not worth quoting: the rule's value says it.
    return None if isinstance(value, (list, dict)) else value


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
    measured: Thresholds | None = None,
) -> SafetyReport:
    """Compile a protocol for a rig and thresholds, then judge its plan.

    See :func:`~stimtrain.orchestrator.safety.plan.compile_plan` and
    :func:`check_plan` for the parameters. The report's ``plan`` is the
    compiled plan with the rules and trains attached.
    """
    limits = limits or load_limits()
    plan = compile_plan(
        protocol,
        rig=rig,
        thresholds=thresholds,
        limits_file=limits.source,
        justifications=limits.justifications,
        skip_blocks=skip_blocks,
        delivered_today=delivered_today,
        measured=measured,
    )
    return check_plan(
        plan,
        protocol,
        rig=rig,
        limits=limits,
        require_power=require_power,
        delivered_session=delivered_session,
    )


def check_plan(
    plan: Plan,
    protocol: Protocol,
    *,
    rig: Rig | None = None,
    limits: Limits | None = None,
    require_power: bool = False,
    delivered_session: int = 0,
) -> SafetyReport:
    """Judge a compiled plan against the safety limits and the rig's device.

    Parameters
    ----------
    plan : Plan
        The compiled plan: its pulses, powers and delivery paths are judged
        as they are, never recomputed.
    protocol : Protocol
        The protocol the plan was compiled from (to locate problems).
    rig : Rig | None
        When given, the device limits of its stimulator.
    limits : Limits | None
        Safety limits; the shipped defaults when None.
    require_power : bool
        Refuse intensities that can't be converted to device power (a run
        must know exactly what it sends).
    delivered_session : int
        Pulses delivered in earlier runs of this session, for the session cap.

    Returns
    -------
    SafetyReport
        Every rule applied with its margin, the trains found, the problems,
        and the plan with both attached.
    """
    from dataclasses import replace

    from . import device_rules

    limits = limits or load_limits()
    report = SafetyReport(delivered_today=plan.delivered_today)
    c = _Checker(protocol, limits, report, rig)
    caps = None if rig is None else capabilities(rig)
    # A calibrated offset needs a calibration before it, in run order, or the
    # thresholds' phase offset measured with the same estimator.
    report.problems.extend(calibration_problems(protocol.blocks, plan.phase_offset))
    if rig is not None:
        # A triggered block needs the rig's EEG, its rate and its channels.
        report.problems.extend(rig_problems(protocol.blocks, rig))
    active = [b for b in plan.blocks if b.pulses and not b.skipped]
    for pb in active:
        _check_power(c, pb, caps, require_power)
        if pb.type in ("threshold", "hotspot"):
            _check_hunting(c, pb, caps)
    _check_measured_units(c, protocol)
    stimuli = plan.pulses.grouped("stimulus")
    trains = find_trains(
        stimuli.t_s, stimuli.block, stimuli.pct_rmt, stimuli.pct_amt, stimuli.power
    )
    report.trains = trains
    margin_on = limits.stricter_margin or protocol.stricter_margin
    for train in trains:
        if train.kind == "theta_burst":
            _check_theta_burst(c, plan.blocks[train.block], train)
        else:
            _check_rtms(c, plan.blocks[train.block], train, margin_on)
    _check_inter_train(c, plan, trains)
    _check_single_pulses(c, plan, stimuli, trains)
    if caps is not None:
        device_rules.check_device(c, plan, caps)
    _check_caps(c, plan, delivered_session)
    report.plan = replace(
        plan,
        checks=tuple(check.as_dict() for check in report.checks),
        trains=tuple(t.as_dict() for t in trains),
    )
    return report


def _check_power(c: _Checker, pb: PlannedBlock, caps, require_power: bool) -> None:
    """Each block's power: known when a run needs it, within the device's range."""
    block = c.block(pb.index)
    lo, hi = (1, 100) if caps is None else caps.intensity_range
    # A threshold block's power is chosen pulse by pulse, never above its cap.
    power = pb.max_power if pb.measures is not None else pb.power
    pairs = [(pb.field("intensity"), power, pb.unit)]
    if pb.conditioning is not None:
        pairs.append(
            ("conditioning", pb.conditioning_power, pb.conditioning.split()[-1])
        )
    for key, power, unit in pairs:
        shown = written(block, key)
        if power is None:
            if require_power:
                c.refuse(block, key, _no_threshold(c.protocol, block, unit), shown)
            continue
        c.rule(block, key, "device power", hi, power, "%MSO", written=shown)
        if caps is not None:
            c.rule(block, key, f"{caps.label} lowest power", lo, power, "%MSO", "min")
    if pb.delivery_problem:
        c.refuse(block, "pattern", pb.delivery_problem, block.raw.get("pattern"))


def _no_threshold(protocol: Protocol, block: Block, unit: str) -> str:
    """Why a block's intensity has no threshold to be converted with."""
    need = "--rmt" if unit == "%RMT" else "--amt"
    kind = "rmt" if unit == "%RMT" else "amt"
    hunts = [
        b
        for b in protocol.blocks[: block.index]
        if isinstance(b, ThresholdBlock) and THRESHOLD_UNITS[b.kind] == unit
    ]
    if hunts and kind not in protocol.expected:
        return (
            f"needs a possible threshold: blocks[{hunts[-1].index}] measures the "
            f"{kind.upper()}, and the protocol declares no expected_{kind} range "
            f"(e.g. expected_{kind}: 30-80 %MSO) to judge this block for"
        )
    return f"needs the participant's threshold ({need}) to set device power"


def _check_measured_units(c: _Checker, protocol: Protocol) -> None:
    """A block after a threshold block that uses what it measures needs the
    protocol's expected range: its power comes from the measurement, so no
    threshold given before the run is the one it will use."""
    measured: dict[str, ThresholdBlock] = {}
    for block in protocol.blocks:
        if isinstance(block, ThresholdBlock):
            measured[THRESHOLD_UNITS[block.kind]] = block
            continue
        for key, intensity in _intensities(block):
            hunt = measured.get(intensity.unit)
            if hunt is not None and hunt.measures not in protocol.expected:
                c.refuse(
                    block,
                    key,
                    _no_threshold(protocol, block, intensity.unit),
                    written(block, key),
                )


def _intensities(block: Block):
    """``(key, Intensity)`` of every intensity a block states."""
    out = []
    if getattr(block, "intensity", None) is not None:
        out.append(("intensity", block.intensity))
    pattern = getattr(block, "pattern", None)
    if getattr(pattern, "conditioning", None) is not None:
        out.append(("conditioning", pattern.conditioning))
    tms = getattr(block, "tms", None)
    if tms is not None:
        out.append(("tms.intensity", tms.intensity))
    return out


def _check_hunting(c: _Checker, pb: PlannedBlock, caps) -> None:
    """A threshold or hotspot block: an EMG to read, pulses and powers allowed."""
    block = c.block(pb.index)
    if c.rig is not None and c.rig.emg is None:
        c.refuse(
            block,
            "type",
            f"needs the rig's EMG to read MEPs (the rig {c.rig.name} names none: "
            "emg: {stream, channel} in the rig file)",
            pb.type,
        )
    cap = c.limits.max_pulses_per_session
    if cap is not None:
        c.rule(block, "max_pulses", "pulses per session", cap, pb.pulses, "pulses")
    if isinstance(block, ThresholdBlock) and caps is not None:
        lo, hi = caps.intensity_range
        for key, value in (
            ("start", block.start.value),
            ("max_intensity", pb.max_power),
        ):
            c.rule(block, key, f"{caps.label} power", hi, value, "%MSO")
            c.rule(block, key, f"{caps.label} lowest power", lo, value, "%MSO", "min")


def _check_rtms(c: _Checker, pb: PlannedBlock, train: Train, margin_on: bool) -> None:
    """The physiological rules of a conventional train (the Wassermann table)."""
    limits = c.limits
    block = c.block(pb.index)
    ikey, rkey, lkey = pb.field("intensity"), pb.field("rate"), pb.field("length")
    # The frequency limit needs no threshold: it holds even where a lab
    # allows rTMS without one. A train faster than this that is not a theta
    # burst is refused here.
    c.rule(
        block,
        rkey,
        "rTMS frequency beyond the safety table",
        limits.max_rtms_frequency_hz,
        train.frequency_hz,
        "Hz",
        written=written(block, rkey),
        train=train,
    )
    if train.pct_rmt is None:
        if not limits.allow_rtms_without_threshold:
            c.refuse(
                block,
                ikey,
                f"{train.describe()}: rTMS needs the resting motor threshold "
                "(give --rmt or use %RMT)",
                written(block, ikey),
            )
        return
    shown = written(block, ikey)
    c.rule(
        block,
        ikey,
        "rTMS intensity beyond the safety table",
        limits.max_rtms_intensity_pct_mt,
        train.pct_rmt,
        "%RMT",
        written=shown,
        train=train,
    )
    if limits.rtms_intensity_cap_pct_mt is not None:
        c.rule(
            block,
            ikey,
            "lab rTMS intensity cap",
            limits.rtms_intensity_cap_pct_mt,
            train.pct_rmt,
            "%RMT",
            written=shown,
            train=train,
        )
    max_train = limits.max_train_duration(train.frequency_hz, train.pct_rmt)
    if max_train is not None:
        factor = limits.stricter_margin_factor if margin_on else 1.0
        name = "train duration (Wassermann 1998"
        name += ", with the Chen 1997 margin)" if margin_on else ")"
        c.rule(
            block,
            lkey,
            name,
            round(max_train * factor, 6),
            round(train.duration_s, 9),
            "s",
            # A task's trial count is not the train's length: say only seconds.
            written=None if pb.task else written(block, lkey),
            train=train,
        )


def _check_theta_burst(c: _Checker, pb: PlannedBlock, train: Train) -> None:
    """Theta-burst caps, in the threshold unit the intensity was written in.

    An intensity in %MSO is checked against every threshold that is known.
    """
    limits = c.limits
    block = c.block(pb.index)
    key = pb.field("intensity")
    checked = False
    for cap_unit, pct, cap in (
        ("%AMT", train.pct_amt, limits.theta_burst_max_pct_amt),
        ("%RMT", train.pct_rmt, limits.theta_burst_max_pct_rmt),
    ):
        if pct is None or cap is None or pb.unit not in (cap_unit, "%MSO"):
            continue
        checked = True
        c.rule(
            block,
            key,
            "theta-burst intensity cap",
            cap,
            pct,
            cap_unit,
            written=written(block, key),
            train=train,
        )
    if not checked:
        c.refuse(
            block,
            key,
            "theta burst needs a motor threshold (use %RMT or %AMT, or give --rmt)",
            written(block, key),
        )


def _check_inter_train(c: _Checker, plan: Plan, trains: list[Train]) -> None:
    """Chen 1997: trains at or above the rule's intensity keep their distance."""
    limits = c.limits
    for before, after in zip(trains[:-1], trains[1:], strict=True):
        strongest = max(
            (p for p in (before.pct_rmt, after.pct_rmt) if p is not None),
            default=None,
        )
        if strongest is None:
            continue
        if strongest < limits.inter_train_rule_from_pct_mt - 1e-9:
            continue
        pb = plan.blocks[after.block]
        block = c.block(pb.index)
        key = pb.field("gap")
        where = (
            "" if before.block == after.block else f" (after block {before.block + 1})"
        )
        c.rule(
            block,
            key,
            f"inter-train interval (Chen 1997){where}",
            limits.min_inter_train_interval_s,
            round(after.start_s - before.end_s, 9),
            "s",
            kind="min",
            written=written(block, key) if key != pb.field("rate") else None,
            train=after,
        )


def _check_single_pulses(c: _Checker, plan: Plan, stimuli, trains) -> None:
    """The single-pulse cap, on every stimulus that is not part of a train."""
    cap = c.limits.single_pulse_max_pct_mt
    if cap is None or not len(stimuli):
        return
    alone = np.ones(len(stimuli), dtype=bool)
    for train in trains:
        alone[train.first : train.stop] = False
    # Where the run decides the intervals, the pulses may well come singly.
    varies = [b.index for b in plan.blocks if b.run_decides_timing]
    alone |= np.isin(stimuli.block, varies)
    for index in np.unique(stimuli.block[alone]):
        pct = stimuli.pct_rmt[alone & (stimuli.block == index)]
        pct = pct[~np.isnan(pct)]
        if not len(pct):
            continue
        pb = plan.blocks[int(index)]
        block = c.block(pb.index)
        key = pb.field("intensity")
        if pb.conditioning_pct_rmt is not None and (
            pb.pct_rmt is None or pb.conditioning_pct_rmt > pb.pct_rmt
        ):
            key = "conditioning"
        c.rule(
            block,
            key,
            "single-pulse intensity cap",
            cap,
            float(pct.max()),
            "%RMT",
            written=written(block, key),
        )


def _check_caps(c: _Checker, plan: Plan, delivered_session: int) -> None:
    limits = c.limits
    total = plan.total_pulses
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
            f"pulses per day ({plan.delivered_today} already delivered today)",
            limits.max_pulses_per_day,
            plan.delivered_today + total,
            "pulses",
        )
