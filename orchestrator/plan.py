"""The plan: every block, pulse and trial of a protocol with its time.

Compiled once before a run and written to the session folder, so that what was
*meant* to happen is on disk before anything happens. Times are seconds from
the session start; the runner adds the clock time at which each block really
starts, so that lateness in one block never shifts pulses within another.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from .dose import Thresholds
from .protocol import (
    InstructionsBlock,
    PairedPulses,
    Protocol,
    PulseList,
    RestBlock,
    RTMSTrains,
    SinglePulses,
    StimulateBlock,
    TaskBlock,
    ThetaBurst,
    WaitBlock,
)
from .safety import SafetyReport

#: Time from a stimulation block's start to its first pulse: arming and the
#: capacitor charge (about 1 s on a Magstim) happen inside it.
ARM_LEAD_S = 1.5
#: Pause after the last pulse of a train-based block before the next block.
TAIL_S = 1.0
#: Trial duration used for a task whose length can't be known in advance.
DEFAULT_TRIAL_S = 2.0


@dataclass(frozen=True)
class PlannedBlock:
    """One block of the plan.

    ``pulse_offsets_s`` are seconds from the block's start of each firing
    (a BiStim pair is one firing of two pulses); ``delivery`` says how pulses
    reach the stimulator (``serial`` command, host-timed ``trigger``, or a
    ``paired`` firing); ``power`` is the %MSO sent (None when no threshold is
    known). For task blocks with online TMS, ``online`` describes the rule and
    ``pulses`` is the most it can deliver.
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
    power: int | None = None
    pct_rmt: float | None = None
    delivery: str | None = None
    task: str | None = None
    trials: int | None = None
    seed: int | None = None
    conditioning: str | None = None
    conditioning_power: int | None = None
    isi_s: float | None = None
    online: str | None = None
    waits_for_operator: bool = False
    skipped: bool = False


@dataclass(frozen=True)
class Plan:
    """The compiled timeline of a protocol."""

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


def trial_duration_s(task: str, params: dict) -> float:
    """Upper estimate of one trial's duration (every phase at its longest)."""
    try:
        from stimtrain.tasks import get_task

        t = get_task(task)
        timing = t.timing(t.validate_params(params))
    except Exception:  # noqa: BLE001 - an estimate only; validation reports errors
        return DEFAULT_TRIAL_S
    return timing.max_trial_s


def compile_plan(
    protocol: Protocol,
    report: SafetyReport,
    *,
    thresholds: Thresholds | None = None,
    rig: str | None = None,
    limits_file: str | None = None,
    justifications: tuple[str, ...] = (),
    skip_blocks: frozenset[int] = frozenset(),
) -> Plan:
    """Compile a checked protocol into a :class:`Plan`.

    Parameters
    ----------
    protocol : Protocol
        The protocol.
    report : SafetyReport
        Its safety report (gives each block's dose and delivery path).
    thresholds : Thresholds | None
        The thresholds used, recorded in the plan.
    rig : str | None
        The rig's name, recorded in the plan.
    limits_file : str | None
        The limits file used, recorded in the plan.
    justifications : tuple of str
        Written justifications of loosened limits, copied into the plan.
    skip_blocks : frozenset of int
        Blocks finished in an earlier run (a resume): planned as skipped.
    """
    thresholds = thresholds or Thresholds()
    blocks = []
    t = 0.0
    for block in protocol.blocks:
        rng = np.random.default_rng([protocol.seed, block.index])
        common = dict(index=block.index, type=block.type, label=block.label, start_s=t)
        if block.index in skip_blocks:
            blocks.append(
                PlannedBlock(**common, duration_s=0.0, pulses=0, skipped=True)
            )
            continue
        dose = report.doses.get(block.index)
        if dose is not None:
            common.update(
                intensity=str(dose.intensity), power=dose.power, pct_rmt=dose.pct_rmt
            )
        if isinstance(block, StimulateBlock):
            planned = _stimulate(block, rng, report, common)
        elif isinstance(block, TaskBlock):
            planned = PlannedBlock(
                **common,
                duration_s=block.trials * trial_duration_s(block.task, block.params),
                pulses=block.n_pulses,
                task=block.task,
                trials=block.trials,
                seed=int(rng.integers(2**31)),
                online=None if block.tms is None else describe_online(block.tms),
                delivery=report.delivery.get(block.index),
            )
        elif isinstance(block, (RestBlock, InstructionsBlock)):
            planned = PlannedBlock(**common, duration_s=block.duration_s, pulses=0)
        elif isinstance(block, WaitBlock):
            planned = PlannedBlock(
                **common, duration_s=0.0, pulses=0, waits_for_operator=True
            )
        else:  # pragma: no cover - the loader only makes the types above
            raise TypeError(block)
        blocks.append(planned)
        t += planned.duration_s
    return Plan(
        protocol=protocol.name,
        protocol_file=protocol.file,
        protocol_sha256=protocol.sha256,
        seed=protocol.seed,
        thresholds={"rmt": thresholds.rmt, "amt": thresholds.amt},
        rig=rig,
        blocks=tuple(blocks),
        checks=tuple(c.as_dict() for c in report.checks),
        participant=protocol.participant,
        order=protocol.order,
        delivered_today=report.delivered_today,
        limits_file=limits_file,
        limits_justifications=tuple(justifications),
    )


def _stimulate(block: StimulateBlock, rng, report: SafetyReport, common: dict):
    offsets, end = pulse_offsets(block.pattern, rng)
    pattern = block.pattern
    delivery = report.delivery.get(block.index)
    extra: dict = {}
    if isinstance(pattern, PairedPulses):
        cond = report.conditioning.get(block.index)
        extra = dict(
            conditioning=str(pattern.conditioning),
            conditioning_power=None if cond is None else cond.power,
            isi_s=pattern.isi_s,
        )
        if delivery != "paired":
            # Without a paired-pulse unit each pulse is its own trigger.
            offsets = np.sort(np.concatenate([offsets, offsets + pattern.isi_s]))
    return PlannedBlock(
        **common,
        duration_s=ARM_LEAD_S + end,
        pulses=pattern.n_pulses,
        pulse_offsets_s=tuple(float(x) for x in ARM_LEAD_S + offsets),
        pattern=block.pattern_name,
        delivery=delivery,
        **extra,
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
