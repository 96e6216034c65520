"""The plan: every block, pulse and trial of a protocol with its time.

Compiled once before a run and written to the session folder, so that what was
*meant* to happen is on disk before anything happens. Times are seconds from
the session start; the runner adds the clock time at which each block really
starts, so that lateness in one block never shifts pulses within another.

Slightly longer than most: compiling each kind of block shares the dose, the
delivery choice and the worst-case timing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..language.phase_offset import PhaseOffset
from ..language.protocol import (
    Block,
    HotspotBlock,
    InstructionsBlock,
    PairedPulses,
    PhaseCalibrationBlock,
    Protocol,
    PulseList,
    RestBlock,
    RTMSTrains,
    SinglePulses,
    StimulateBlock,
    TaskBlock,
    ThetaBurst,
    ThresholdBlock,
    WaitBlock,
)
from ..language.thresholds import Thresholds
from ..language.trigger import TriggeredPulses
from ..language.units import Intensity
from .delivery import (
    Delivery,
    capabilities,
    device_can_run,
    has_trigger_line,
    max_serial_rate,
)
from .dose import Dose, resolve_intensity
from .pulses import PulseTable, block_pulse_table

#: Time from a stimulation block's start to its first pulse: arming and the
#: capacitor charge (about 1 s on a Magstim) happen inside it.
ARM_LEAD_S = 1.5
#: Pause after the last pulse of a train-based block before the next block.
TAIL_S = 1.0


@dataclass(frozen=True)
class PlannedBlock:
    """One block of the plan.

    ``pulse_offsets_s`` are seconds from the block's start of each firing
    (a paired-pulse pair is one firing of two pulses); ``delivery`` says how
    pulses reach the stimulator (None with ``delivery_problem`` when this
    rig can't deliver them); ``power`` is the %MSO sent (None when no
    threshold is known). For task blocks with online TMS, ``online``
    describes the rule and ``pulses`` is the most it can deliver.
    ``earliest_start_s`` is the block's start when every block before it is
    as short as the run can make it (the safety check's worst case), and
    ``run_decides_timing`` is true where the intervals are drawn or follow
    the participant (jitter, online TMS): the pulses are then judged both as
    single pulses and, at their shortest intervals, as trains. ``fields``
    names where the protocol wrote each quantity the safety rules
    judge (``rate``, ``length``, ``gap``, ``intensity``), for located
    messages.
    """

    index: int
    type: str
    label: str
    start_s: float
    duration_s: float
    pulses: int
    pulse_offsets_s: tuple[float, ...] = ()
    pattern: str | None = None
    intensity: str | None = None
    intensity_value: float | None = None
    unit: str | None = None
    power: int | None = None
    pct_rmt: float | None = None
    pct_amt: float | None = None
    delivery: Delivery | None = None
    delivery_problem: str | None = None
    task: str | None = None
    trials: int | None = None
    seed: int | None = None
    conditioning: str | None = None
    conditioning_power: int | None = None
    conditioning_pct_rmt: float | None = None
    isi_s: float | None = None
    train_pulses: int | None = None
    train_frequency_hz: float | None = None
    online: str | None = None
    #: Triggered blocks: the trigger in words; their pulses are planned at the
    #: worst case (every one at the minimum interval).
    trigger: str | None = None
    #: Triggered blocks: the rhythm their trigger follows, as the protocol
    #: resolved it, for programs (the analysis reads these, not ``trigger``):
    #: the band (Hz), the montage (a preset's name, or channel -> weight when
    #: the protocol wrote its own) and the phase estimator.
    band_hz: tuple[float, float] | None = None
    montage: str | dict[str, float] | None = None
    estimator: str | None = None
    min_interval_s: float | None = None
    run_decides_timing: bool = False
    earliest_start_s: float = 0.0
    fields: tuple[tuple[str, str], ...] = ()
    waits_for_operator: bool = False
    skipped: bool = False
    #: Threshold blocks: what they measure (``rmt``/``amt``) and the most
    #: power the hunt may give; hotspot blocks: their power.
    measures: str | None = None
    max_power: int | None = None
    #: Triggered blocks with ``phase_offset: calibrated`` that no calibration
    #: block of the session comes before: the thresholds' phase offset they
    #: use (:meth:`~..language.thresholds.PhaseOffset.as_record`).
    phase_offset: dict | None = None

    def field(self, role: str) -> str:
        """Where the protocol wrote the quantity of ``role`` (or the pattern)."""
        return dict(self.fields).get(role, "pattern")


@dataclass(frozen=True)
class Plan:
    """The compiled timeline of a protocol, and every pulse it can deliver.

    ``pulses`` holds each pulse at its worst-case time, power and intensity
    (what the safety check judges); ``trains`` and ``checks`` are what the
    check found and applied.
    """

    protocol: str
    protocol_file: str
    protocol_sha256: str
    seed: int
    thresholds: dict
    rig: str | None
    blocks: tuple[PlannedBlock, ...]
    checks: tuple[dict, ...] = field(default=())
    participant: str | None = None
    order: tuple[str, ...] = ()
    delivered_today: int = 0
    limits_file: str | None = None
    limits_justifications: tuple[str, ...] = ()
    pulses: PulseTable = field(default_factory=PulseTable.empty, compare=False)
    trains: tuple[dict, ...] = ()
    #: The thresholds' phase offset (also in ``thresholds`` as a record).
    phase_offset: PhaseOffset | None = field(default=None, compare=False)

    @property
    def total_duration_s(self) -> float:
        """Planned session duration in seconds."""
        return sum(b.duration_s for b in self.blocks)

    @property
    def total_pulses(self) -> int:
        """Planned pulses in the whole session."""
        return sum(b.pulses for b in self.blocks)

    def to_dict(self, *, offsets: bool = True) -> dict:
        """JSON-ready dict (the ``--json`` output and the plan file)."""
        blocks = []
        for b in self.blocks:
            d = asdict(b)
            d["fields"] = dict(b.fields)
            if not offsets:
                del d["pulse_offsets_s"]
            blocks.append(d)
        return {
            "protocol": self.protocol,
            "protocol_file": self.protocol_file,
            "protocol_sha256": self.protocol_sha256,
            "seed": self.seed,
            "thresholds": self.thresholds,
            "rig": self.rig,
            "participant": self.participant,
            "block_order": list(self.order),
            "blocks": blocks,
            "total_duration_s": self.total_duration_s,
            "delivered_today": self.delivered_today,
            "limits_file": self.limits_file,
            "limits_justifications": list(self.limits_justifications),
            "total_pulses": self.total_pulses,
            "trains": list(self.trains),
            "safety": list(self.checks),
        }

    def to_json(self, *, offsets: bool = True) -> str:
        """Serialise with :meth:`to_dict`."""
        return json.dumps(self.to_dict(offsets=offsets), indent=2)


def pulse_offsets(pattern, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Pulse times of a pattern from its first-pulse moment, and the tail after.

    Returns
    -------
    offsets : ndarray
        Seconds from the first pulse's slot (the first is 0 unless jittered).
    end : float
        Seconds from the first pulse's slot to the end of the pattern.
    """
    if isinstance(pattern, (SinglePulses, PairedPulses)):
        n = pattern.pulses if isinstance(pattern, SinglePulses) else pattern.pairs
        intervals = np.full(n, pattern.interval_s)
        if pattern.jitter_s:
            intervals += rng.uniform(-pattern.jitter_s, pattern.jitter_s, n)
        # The first pulse starts the rhythm; each later one follows an interval.
        offsets = np.concatenate([[0.0], np.cumsum(intervals[:-1])])
        return offsets, float(offsets[-1] + intervals[-1])
    if isinstance(pattern, RTMSTrains):
        period = pattern.train_duration_s + pattern.inter_train_interval_s
        within = np.arange(pattern.pulses_per_train) / pattern.frequency_hz
        offsets = np.concatenate([k * period + within for k in range(pattern.trains)])
        return offsets, float(offsets[-1] + TAIL_S)
    if isinstance(pattern, ThetaBurst):
        n_bursts = pattern.pulses // pattern.pulses_per_burst
        burst = np.arange(pattern.pulses_per_burst) / pattern.burst_frequency_hz
        if pattern.train_duration_s is None:
            per_train = n_bursts
        else:
            per_train = max(1, round(pattern.train_duration_s * pattern.burst_rate_hz))
        period = per_train / pattern.burst_rate_hz + pattern.inter_train_interval_s
        starts = [
            (b // per_train) * period + (b % per_train) / pattern.burst_rate_hz
            for b in range(n_bursts)
        ]
        offsets = np.concatenate([s + burst for s in starts])
        return offsets, float(offsets[-1] + TAIL_S)
    if isinstance(pattern, PulseList):
        offsets = np.asarray(pattern.times_s, dtype=float)
        return offsets, float(offsets[-1] + TAIL_S)
    raise TypeError(f"unknown pattern {pattern!r}")


def worst_case_offsets(pattern) -> tuple[np.ndarray, float]:
    """Like :func:`pulse_offsets` with every jittered interval at its shortest."""
    if isinstance(pattern, (SinglePulses, PairedPulses)) and pattern.jitter_s:
        pattern = replace(
            pattern, interval_s=pattern.interval_s - pattern.jitter_s, jitter_s=0.0
        )
    return pulse_offsets(pattern, np.random.default_rng(0))


def _timing(task: str, params: dict):
    """A trial's phases, from a block's parameters (checked when it was read)."""
    from stimtrain.tasks import get_task

    return get_task(task).timing(params)


#: Where each pattern writes the quantities the safety rules judge.
_FIELDS = {
    SinglePulses: {"rate": "interval", "length": "pulses", "gap": "interval"},
    PairedPulses: {"rate": "interval", "length": "pairs", "gap": "interval"},
    PulseList: {"rate": "times", "length": "times", "gap": "times"},
    RTMSTrains: {"rate": "frequency", "gap": "inter_train_interval"},
    ThetaBurst: {
        "rate": "burst_frequency",
        "length": "pulses",
        "gap": "inter_train_interval",
    },
}


def _fields(block: Block) -> tuple[tuple[str, str], ...]:
    if isinstance(block, TaskBlock):
        return (
            ("intensity", "tms.intensity"),
            ("rate", "tms"),
            ("length", "trials"),
            ("gap", "tms"),
        )
    out = dict(_FIELDS[type(block.pattern)], intensity="intensity")
    if isinstance(block.pattern, RTMSTrains):
        written = (
            "train_duration" if "train_duration" in block.raw else "pulses_per_train"
        )
        out["length"] = written
    if isinstance(block.pattern, ThetaBurst) and "train_duration" in block.raw:
        out["length"] = "train_duration"
    return tuple(out.items())


def compile_plan(
    protocol: Protocol,
    *,
    rig=None,
    thresholds: Thresholds | None = None,
    limits_file: str | None = None,
    justifications: tuple[str, ...] = (),
    skip_blocks: frozenset[int] = frozenset(),
    delivered_today: int = 0,
    measured: Thresholds | None = None,
) -> Plan:
    """Compile a protocol for a rig and thresholds into a :class:`Plan`.

    The plan owns every block's power and delivery path and every pulse at
    its worst-case time; the safety check judges it
    (:func:`~stimtrain.orchestrator.safety.rules.check_plan`) and the runner runs
    it, neither recomputing them.

    Parameters
    ----------
    protocol : Protocol
        The protocol.
    rig : Rig | None
        The rig: its stimulator and trigger line choose each block's
        delivery path (None: no path is chosen).
    thresholds : Thresholds | None
        The participant's motor thresholds, which set device power.
    limits_file : str | None
        The limits file used, recorded in the plan.
    justifications : tuple of str
        Written justifications of loosened limits, copied into the plan.
    skip_blocks : frozenset of int
        Blocks finished in an earlier run (a resume): planned as skipped.
    delivered_today : int
        Pulses the participant already received today, recorded.
    measured : Thresholds | None
        What the protocol's threshold blocks measure (measured, or one value
        they may measure): the blocks after a threshold block use it, those
        before use ``thresholds``.
    """
    thresholds = given = known = thresholds or Thresholds()
    caps = None if rig is None else capabilities(rig)
    trigger = caps is not None and has_trigger_line(rig, caps)
    blocks, tables = [], []
    t = earliest = 0.0
    calibration_block: int | None = None
    for block in protocol.blocks:
        rng = np.random.default_rng([protocol.seed, block.index])
        common = dict(
            index=block.index,
            type=block.type,
            label=block.label,
            start_s=t,
            earliest_start_s=earliest,
        )
        if isinstance(block, ThresholdBlock):
            # From the next block on, the measured threshold sets the power.
            after = measured_thresholds(known, measured, block.measures)
        else:
            after = thresholds
        if block.index in skip_blocks:
            blocks.append(
                PlannedBlock(**common, duration_s=0.0, pulses=0, skipped=True)
            )
            thresholds = known = after
            continue
        shortest = 0.0
        if isinstance(block, StimulateBlock):
            planned, table, shortest = _stimulate(
                block, rng, thresholds, caps, trigger, common
            )
            planned = _calibrated(block, planned, calibration_block, given.phase_offset)
            tables.append(table)
        elif isinstance(block, TaskBlock):
            planned, table, shortest = _task(
                block, rng, thresholds, caps, trigger, common
            )
            tables.append(table)
        elif isinstance(block, (ThresholdBlock, HotspotBlock)):
            planned, table, shortest = _hunt(block, thresholds, caps, common)
            tables.append(table)
        elif isinstance(block, (RestBlock, InstructionsBlock, PhaseCalibrationBlock)):
            if isinstance(block, PhaseCalibrationBlock):
                calibration_block = block.index
            planned = PlannedBlock(**common, duration_s=block.duration_s, pulses=0)
            shortest = block.duration_s
        elif isinstance(block, WaitBlock):
            planned = PlannedBlock(
                **common, duration_s=0.0, pulses=0, waits_for_operator=True
            )
        else:  # pragma: no cover - the loader only makes the types above
            raise TypeError(block)
        blocks.append(planned)
        t += planned.duration_s
        earliest += shortest
        thresholds = known = after
    return Plan(
        protocol=protocol.name,
        protocol_file=protocol.file,
        protocol_sha256=protocol.sha256,
        seed=protocol.seed,
        thresholds={"rmt": given.rmt, "amt": given.amt}
        | (
            {}
            if given.phase_offset is None
            else {"phase_offset": given.phase_offset.as_record()}
        )
        | (
            {}
            if measured is None
            else {"after_threshold_blocks": {"rmt": measured.rmt, "amt": measured.amt}}
        ),
        rig=None if rig is None else rig.name,
        blocks=tuple(blocks),
        participant=protocol.participant,
        order=protocol.order,
        delivered_today=delivered_today,
        limits_file=limits_file,
        limits_justifications=tuple(justifications),
        pulses=PulseTable.concat(tables),
        phase_offset=given.phase_offset,
    )


def _calibrated(
    block: StimulateBlock,
    planned: PlannedBlock,
    calibration_block: int | None,
    phase: PhaseOffset | None,
) -> PlannedBlock:
    """A ``phase_offset: calibrated`` block: whose offset it uses, in its plan.

    A calibration block of the session before it wins; else the thresholds'
    phase offset (the check refuses the block when there is neither, or when
    the offset was measured with another estimator, band or montage).
    """
    pattern = block.pattern
    if not isinstance(pattern, TriggeredPulses) or not pattern.trigger.calibrated:
        return planned
    said = ", phase offset calibrated"
    if calibration_block is not None:
        where = f"{said} by block {calibration_block + 1}"
        return replace(planned, trigger=planned.trigger.replace(said, where))
    if phase is None:
        return planned
    where = f", phase offset {phase.describe()}"
    return replace(
        planned,
        trigger=planned.trigger.replace(said, where),
        phase_offset=phase.as_record(),
    )


def _dose_fields(dose: Dose) -> dict:
    return dict(
        intensity=str(dose.intensity),
        intensity_value=dose.intensity.value,
        unit=dose.intensity.unit,
        power=dose.power,
        pct_rmt=dose.pct_rmt,
        pct_amt=dose.pct_amt,
    )


def _stimulate(block: StimulateBlock, rng, thresholds, caps, trigger, common):
    """Plan a stimulation block: offsets, power, delivery and worst-case pulses."""
    pattern = block.pattern
    if isinstance(pattern, TriggeredPulses):
        return _triggered(block, thresholds, caps, trigger, common)
    dose = resolve_intensity(block.intensity, thresholds)
    offsets, end = pulse_offsets(pattern, rng)
    worst, worst_end = worst_case_offsets(pattern)
    min_interval = float(np.min(np.diff(worst))) if len(worst) > 1 else None
    extra: dict = {}
    doses = [dose]
    pair_isi = None
    collapse = paired_firing = False
    if isinstance(pattern, PairedPulses):
        cond = resolve_intensity(pattern.conditioning, thresholds)
        doses = [cond, dose]
        pair_isi = pattern.isi_s
        extra = dict(
            conditioning=str(pattern.conditioning),
            conditioning_power=cond.power,
            conditioning_pct_rmt=cond.pct_rmt,
            isi_s=pattern.isi_s,
        )
        collapse = _pair_is_one_stimulus(pattern, cond, dose, min_interval)
    delivery, problem = _stimulate_delivery(
        pattern, dose, doses, caps, trigger, min_interval
    )
    if delivery == Delivery.DEVICE_TRAIN:
        extra.update(
            train_pulses=pattern.pulses_per_train,
            train_frequency_hz=pattern.frequency_hz,
        )
    if isinstance(pattern, PairedPulses):
        paired_firing = delivery == Delivery.PAIRED
        if delivery != Delivery.PAIRED:
            # Without a paired-pulse unit each pulse is its own trigger.
            offsets = np.sort(np.concatenate([offsets, offsets + pattern.isi_s]))
    table = block_pulse_table(
        ARM_LEAD_S + worst,
        common["earliest_start_s"],
        block.index,
        doses,
        pair_isi_s=pair_isi,
        collapse_pairs=collapse,
        paired_firing=paired_firing,
    )
    planned = PlannedBlock(
        **common,
        **_dose_fields(dose),
        duration_s=ARM_LEAD_S + end,
        pulses=pattern.n_pulses,
        pulse_offsets_s=tuple(float(x) for x in ARM_LEAD_S + offsets),
        pattern=block.pattern_name,
        delivery=delivery,
        delivery_problem=problem,
        min_interval_s=min_interval,
        run_decides_timing=bool(getattr(pattern, "jitter_s", 0.0)),
        fields=_fields(block),
        **extra,
    )
    return planned, table, ARM_LEAD_S + worst_end


#: Planned time of a triggered block given only a pulse count, per pulse, in
#: minimum intervals (an estimate for the timeline: the gate and the wait for
#: the phase make the intervals longer than the minimum).
TRIGGERED_INTERVALS_PER_PULSE = 2.0


def _triggered(block: StimulateBlock, thresholds, caps, trigger, common):
    """Plan a triggered block at its worst case: every pulse at the minimum
    interval, as many as its count or duration allows, from its earliest start.

    The block ends at its ``duration`` (or, with only a count, an estimate);
    it may end after its last pulse, so the next block's earliest start is
    right after the last worst-case pulse.
    """
    pattern: TriggeredPulses = block.pattern
    trig = pattern.trigger
    dose = resolve_intensity(block.intensity, thresholds)
    step = pattern.interval_s
    worst = np.arange(pattern.max_pulses) * step
    table = block_pulse_table(
        ARM_LEAD_S + worst, common["earliest_start_s"], block.index, [dose]
    )
    if pattern.duration_s is not None:
        length = pattern.duration_s
    else:
        per_pulse = trig.max_interval_s or TRIGGERED_INTERVALS_PER_PULSE * step
        length = pattern.max_pulses * per_pulse
    delivery = None
    if caps is not None:
        delivery = Delivery.TRIGGER if trigger else Delivery.SERIAL
    planned = PlannedBlock(
        **common,
        **_dose_fields(dose),
        duration_s=ARM_LEAD_S + length,
        pulses=pattern.max_pulses,
        pulse_offsets_s=tuple(float(x) for x in ARM_LEAD_S + worst),
        pattern="single",
        trigger=trig.describe(),
        band_hz=trig.band_hz,
        montage=trig.montage_name or dict(trig.montage),
        estimator=trig.estimator,
        delivery=delivery,
        min_interval_s=step if pattern.max_pulses > 1 else None,
        run_decides_timing=True,
        fields=(
            ("intensity", "intensity"),
            ("rate", "trigger.min_interval"),
            ("length", "pulses" if pattern.pulses is not None else "duration"),
            ("gap", "trigger.min_interval"),
        ),
    )
    return planned, table, ARM_LEAD_S + float(worst[-1])


def measured_thresholds(
    known: Thresholds, measured: Thresholds | None, kind: str
) -> Thresholds:
    """The thresholds after a block that measures ``kind`` (``rmt``/``amt``).

    Raises
    ------
    ValueError
        When the measured value and the one known make an implausible pair
        (an active threshold above the resting one).
    """
    value = None if measured is None else getattr(measured, kind)
    if value is None:
        return known
    return replace(known, **{kind: value})


def _hunt(block, thresholds, caps, common):
    """Plan a threshold or hotspot block: single pulses whose power the run picks.

    A threshold block's pulses are judged at its ``max_intensity`` (the most
    the hunt may give), a hotspot block's at its intensity; every pulse at
    the shortest interval, from the earliest start; the block may end after
    its last pulse. A hunt that stops early gives fewer of these pulses, and
    the next block still begins after its last one: judging every pulse at
    its shortest spacing, the next block right after the last, covers it.
    """
    if isinstance(block, ThresholdBlock):
        dose = resolve_intensity(Intensity(block.max_power, "%MSO"), thresholds)
        extra = dict(
            _dose_fields(dose), intensity=f"{block.start} to {dose.power} %MSO"
        )
        extra["power"] = None  # chosen pulse by pulse
        extra["measures"] = block.measures
    else:
        dose = resolve_intensity(block.intensity, thresholds)
        extra = _dose_fields(dose)
    shortest_interval = block.interval_s - block.jitter_s
    worst = ARM_LEAD_S + np.arange(block.max_pulses) * shortest_interval
    table = block_pulse_table(worst, common["earliest_start_s"], block.index, [dose])
    planned = PlannedBlock(
        **common,
        **extra,
        duration_s=ARM_LEAD_S + block.max_pulses * (block.interval_s + block.jitter_s),
        pulses=block.max_pulses,
        pulse_offsets_s=tuple(float(x) for x in worst),
        pattern="single",
        max_power=dose.power,
        delivery=None if caps is None else Delivery.SERIAL,
        min_interval_s=shortest_interval if block.max_pulses > 1 else None,
        run_decides_timing=True,
        fields=(
            ("intensity", "max_intensity" if "measures" in extra else "intensity"),
            ("rate", "interval"),
            ("length", "max_pulses"),
            ("gap", "interval"),
        ),
    )
    return planned, table, float(worst[-1])


def _pair_is_one_stimulus(pattern, cond: Dose, test: Dose, pair_interval) -> bool:
    """docs/specs/safety.md: a conditioned pair (conditioning below the test, ISI
    1-200 ms) is one stimulus unless pairs come at 1 Hz or faster."""
    if pair_interval is not None and pair_interval <= 1.0 + 1e-6:
        return False
    if not 0.001 - 1e-9 <= pattern.isi_s <= 0.200 + 1e-9:
        return False
    if cond.power is not None and test.power is not None:
        return cond.power < test.power
    same_unit = pattern.conditioning.unit == test.intensity.unit
    return same_unit and pattern.conditioning.value < test.intensity.value


def _stimulate_delivery(pattern, dose, doses, caps, trigger, min_interval):
    """The path a stimulation block's pulses take on this rig, or why none."""
    if caps is None:
        return None, None
    if isinstance(pattern, PairedPulses):
        if caps.paired_pulse:
            return Delivery.PAIRED, None
        powers = {d.power for d in doses}
        if trigger and len(powers) == 1 and None not in powers:
            # Two equal pulses are two triggers; their rate is judged as a train.
            return Delivery.TRIGGER, None
        return None, (
            f"paired pulses at {pattern.isi_s * 1e3:g} ms with these intensities "
            "need a paired-pulse stimulator (BiStim², MagPro with MagOption); "
            f"this rig has a {caps.label}"
        )
    if isinstance(pattern, (SinglePulses, PulseList)):
        rate = max_serial_rate(caps, dose.power)
        if min_interval is None or min_interval >= 1.0 / rate - 1e-9:
            return Delivery.SERIAL, None
        # Faster than serial firing: the trigger line, or the serial rate
        # rule refuses it (this rig has none).
        return (Delivery.TRIGGER if trigger else Delivery.SERIAL), None
    if trigger:
        # Host-timed triggers when the rig has a line: every pulse is then
        # timed and stamped by the host (one marker per pulse, measured).
        return Delivery.TRIGGER, None
    if isinstance(pattern, RTMSTrains) and device_can_run(
        caps, pattern.frequency_hz, pattern.pulses_per_train
    ):
        return Delivery.DEVICE_TRAIN, None
    what = "theta burst" if isinstance(pattern, ThetaBurst) else "rTMS"
    why = (
        f"the {caps.label} runs no theta bursts by itself"
        if isinstance(pattern, ThetaBurst)
        else f"the {caps.label} cannot run this train by itself"
    )
    return None, (
        f"{what} needs a trigger line on this rig: {why} and fires at most "
        f"{max_serial_rate(caps, dose.power):.3g} Hz by serial command"
    )


def _task(block: TaskBlock, rng, thresholds, caps, trigger, common):
    """Plan a task block; with online TMS, its pulses on the shortest trials."""
    if block.builder is not None:
        return _builder_task(block, rng, thresholds, caps, trigger, common)
    timing = _timing(block.task, block.params)
    trial_max = timing.max_trial_s
    trial_min = timing.min_trial_s
    extra: dict = {}
    table = PulseTable.empty()
    tms = block.tms
    if tms is not None:
        dose = resolve_intensity(tms.intensity, thresholds)
        n = tms.max_pulses(block.trials)
        # "every k": k trials apart at least; any other selection can stimulate
        # consecutive trials.
        step = trial_min * (tms.every if tms.select == "every" else 1)
        table = block_pulse_table(
            np.arange(n) * step, common["earliest_start_s"], block.index, [dose]
        )
        extra = _online_fields(tms, dose, n, step, caps, trigger, _fields(block))
    planned = PlannedBlock(
        **common,
        duration_s=block.trials * trial_max,
        pulses=block.n_pulses,
        task=block.task,
        trials=block.trials,
        seed=int(rng.integers(2**31)),
        **extra,
    )
    return planned, table, block.trials * trial_min


def _builder_task(block: TaskBlock, rng, thresholds, caps, trigger, common):
    """Plan a Builder block: its trials from the loops; with online TMS, every
    start of the locked component the loops (or ``trials``) allow, each at the
    shortest gap between two starts (the run enforces both bounds)."""
    facts = block.builder
    extra: dict = {}
    table = PulseTable.empty()
    shortest = 0.0
    tms = block.tms
    if tms is not None:
        dose = resolve_intensity(tms.intensity, thresholds)
        n = block.n_pulses
        step = facts.onset_gap_s
        table = block_pulse_table(
            np.arange(n) * step, common["earliest_start_s"], block.index, [dose]
        )
        # The block lasts at least until its last pulse.
        shortest = max(0, n - 1) * step
        fields = (
            ("intensity", "tms.intensity"),
            ("rate", "tms.at"),
            ("length", "trials" if "trials" in block.raw else "tms.at"),
            ("gap", "tms.at"),
        )
        extra = _online_fields(tms, dose, n, step, caps, trigger, fields)
    planned = PlannedBlock(
        **common,
        duration_s=facts.estimated_s,
        pulses=block.n_pulses,
        task=block.task,
        trials=block.trials,
        seed=int(rng.integers(2**31)),
        **extra,
    )
    return planned, table, shortest


def _online_fields(tms, dose, n: int, step: float, caps, trigger, fields) -> dict:
    """A task block's online-TMS plan fields: ``n`` pulses at least ``step`` apart."""
    return dict(
        **_dose_fields(dose),
        online=describe_online(tms),
        min_interval_s=step if n > 1 else None,
        run_decides_timing=True,
        delivery=None
        if caps is None
        else (Delivery.TRIGGER if trigger else Delivery.SERIAL),
        fields=fields,
    )


def describe_online(tms) -> str:
    """One line for people: ``stim_onset + 150 ms, every 2nd trial (incongruent)``."""
    at = f"{tms.event} + {tms.delay_s * 1e3:g} ms"
    if tms.select == "every":
        which = "every trial" if tms.every == 1 else f"every {tms.every}. trial"
    elif tms.select == "fraction":
        which = f"{tms.fraction * 100:g} % of trials"
    else:
        which = "every trial"
    only = f" ({', '.join(tms.conditions)} only)" if tms.conditions else ""
    return f"{at}, {which}{only}"
