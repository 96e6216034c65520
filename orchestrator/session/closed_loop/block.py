"""A triggered stimulation block in a session: pulses at a phase of the EEG.

The block starts a :class:`~.process.TriggerProcess` on the rig's EEG stream
(with the rig's declared amplifier delay and latency bound), arms the unit,
and hands every deadline the trigger process decides to the device process,
which keeps owning the port and the timing. It ends at its pulse count or
its duration, whichever comes first. The operator's pause and a stalled
stream hold it (the unit is disarmed meanwhile), skip and abort end it; on
any fault the unit is disarmed before the fault is raised. Every pulse's
marker carries the block's ``target_phase`` and the ``online_phase`` the
estimator saw when it decided. Refused pulses (a decision or hand-over above
the rig's latency bound, a deadline already passed) are told to the operator
in one line and journaled, repeats of a reason at most every
:data:`REPORT_EVERY_S`.
"""

from __future__ import annotations

import json
import math
import queue
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import pylsl

from ...language.blocks import StimulateBlock
from ...language.trigger import TriggeredPulses
from ...safety.plan import PlannedBlock
from ..console import PhaseProgress
from ..control import SessionAborted
from ..device_process import DeviceFault
from .montage import Montage
from .process import Handover, Refusal, TriggerConfig, TriggerProcess
from .trigger import TriggerSettings

if TYPE_CHECKING:
    from ...language.rig import EegSource
    from ..context import BlockContext

#: A refusal's reason is told again at most this often (with how many since).
REPORT_EVERY_S = 10.0
#: A deadline closer than this when it reaches this process is not given: the
#: device process must have it before its time (it never fires late).
MIN_AHEAD_S = 0.001
#: After the last pulse, how long a pulse already queued may take to be given.
LAST_PULSE_WAIT_S = 1.0


def trigger_settings(trigger, eeg: EegSource) -> TriggerSettings:
    """The trigger process's settings from a block's trigger and the rig's EEG.

    Parameters
    ----------
    trigger : PhaseTrigger
        The block's ``trigger`` section.
    eeg : EegSource
        The rig's EEG (its declared delay).

    Returns
    -------
    TriggerSettings
    """
    return TriggerSettings(
        target_deg=trigger.target_deg,
        band=trigger.band_hz,
        window_s=trigger.window_s,
        # ``gate: none``: the 0th percentile, which every estimate reaches.
        gate_percentile=0.0
        if trigger.gate_percentile is None
        else trigger.gate_percentile,
        gate_span_s=trigger.gate_span_s,
        min_interval_s=trigger.min_interval_s,
        max_interval_s=trigger.max_interval_s,
        phase_offset_deg=trigger.phase_offset_deg,
        amp_delay_s=eeg.delay_s,
        estimator=trigger.estimator,
    )


class TriggeredRun:
    """One triggered block: deadlines in, pulses scheduled, refusals reported.

    The trigger process's reader thread calls :meth:`on_deadline` and
    :meth:`on_refusal`; the session's hold (a stalled stream) calls
    :meth:`dropped`; the block's main loop (:func:`run_triggered`) does
    everything that talks to the operator.
    """

    def __init__(self, ctx: BlockContext, block: StimulateBlock, planned) -> None:
        self.ctx = ctx
        self.block = block
        self.planned = planned
        self.pattern: TriggeredPulses = block.pattern
        self.bound_s = ctx.eeg.latency_bound_s
        #: Deadlines are given only while this is set (armed, not held).
        self.accepting = threading.Event()
        self.scheduled = 0
        self.withdrawn = 0
        self.last_deadline = -math.inf
        self.refusals: queue.Queue[str] = queue.Queue()
        self.n_refused = 0
        self.error: str | None = None
        self._told: dict[str, tuple[float, int]] = {}
        #: For the console: refusals by kind, each scheduled pulse's online
        #: phase (NaN once withdrawn), the offset in use and where it came from.
        self.refused_by: dict[str, int] = {}
        self.online: list[float] = []
        self.offset_deg = self.pattern.trigger.phase_offset_deg
        self.offset_source = "protocol"

    @property
    def due(self) -> int:
        """Pulses scheduled and not withdrawn (given, or about to be)."""
        return self.scheduled - self.withdrawn

    def full(self) -> bool:
        """Whether the block's pulse count is reached (scheduled counts)."""
        return self.due >= self.pattern.max_pulses

    # -- the reader thread ---------------------------------------------------
    def on_deadline(self, h: Handover) -> None:
        """Schedule one deadline on the device process, or refuse it."""
        ctx, control = self.ctx, self.ctx.control
        with control.schedule_lock:
            if not self.accepting.is_set() or control.stalled.is_set():
                return  # held, ending or not armed yet: no pulse now
            if self.full():
                return
            now = pylsl.local_clock()
            # The hop to this process counts against the bound too.
            late = now - h.pulled_at
            if late > self.bound_s:
                self._refuse(
                    f"hand-over latency {late * 1e3:.1f} ms above the rig's bound "
                    f"of {self.bound_s * 1e3:g} ms"
                )
                return
            if h.deadline < now + MIN_AHEAD_S:
                self._refuse("the deadline passed before it reached the device")
                return
            gap = self.pattern.trigger.min_interval_s
            if h.deadline - self.last_deadline < gap - 1e-6:
                # The trigger process keeps the interval; this keeps it too.
                self._refuse(f"sooner than {gap:g} s after the last pulse")
                return
            index = self.scheduled
            self.scheduled += 1
            self.last_deadline = h.deadline
            self.online.append(h.online_deg % 360.0)
            ctx.ledger.set_online_fields(
                self.block.index,
                index,
                target_phase=round(self.pattern.trigger.target_deg, 3),
                online_phase=round(h.online_deg % 360.0, 3),
            )
            try:
                ctx.device.schedule(
                    self.block.index, [(h.deadline, index, self.planned.delivery)]
                )
            except Exception as exc:  # noqa: BLE001 - ends the session safely
                self.error = f"triggered pulse not scheduled: {exc}"
                self.accepting.clear()
                control.stop.set(self.error)

    def on_refusal(self, refusal: Refusal) -> None:
        """The trigger process refused a deadline (its decision was too slow)."""
        self._refuse(refusal.reason)

    def _refuse(self, reason: str) -> None:
        self.n_refused += 1
        kind = refusal_kind(reason)
        self.refused_by[kind] = self.refused_by.get(kind, 0) + 1
        self.refusals.put(reason)

    def dropped(self, items: list[tuple[int, int]], reason: str) -> None:
        """Pulses the device process dropped (a stalled stream, a pause)."""
        mine = [i for b, i in items if b == self.block.index]
        self.withdrawn += len(mine)
        for index in mine:
            self.ctx.ledger.take_online_fields(self.block.index, index)
            if 0 <= index < len(self.online):
                self.online[index] = math.nan  # not given: not in the console's

    # -- the main thread -----------------------------------------------------
    def progress(self) -> PhaseProgress:
        """What the operator console shows of the block now."""
        online = [p for p in self.online if not math.isnan(p)]
        target = self.pattern.trigger.target_deg
        return PhaseProgress(
            given=self.ctx.ledger.block_pulses(self.block.index),
            planned=self.pattern.max_pulses,
            offset_deg=self.offset_deg,
            offset_source=self.offset_source,
            last_target_deg=target if online else None,
            last_online_deg=online[-1] if online else None,
            online_deg={target: online},
            refused=dict(self.refused_by),
        )

    def report_refusals(self) -> None:
        """Tell the operator and the journal what was refused since last time."""
        report_refusals(
            self.refusals, self._told, self.ctx.say, self.ctx.journal, self.block.index
        )


#: Short names of the refusals' kinds, by how their reasons begin.
REFUSAL_KINDS = (
    ("decision latency", "slow decision"),
    ("hand-over latency", "slow hand-over"),
    ("the deadline passed", "deadline passed"),
    ("sooner than", "too soon"),
    ("EEG samples not finite", "EEG not finite"),
)


def refusal_kind(reason: str) -> str:
    """A refusal's kind in two or three words (the console counts by it)."""
    for start, kind in REFUSAL_KINDS:
        if reason.startswith(start):
            return kind
    return " ".join(reason.split(" ", 2)[:2])


def report_refusals(
    refusals: queue.Queue,
    told: dict[str, tuple[float, int]],
    say,
    journal,
    block: int,
    now: float | None = None,
) -> None:
    """Say each refusal in one line and journal it; repeats rate-limited.

    A reason already told less than :data:`REPORT_EVERY_S` ago is counted,
    and the count is told with its next line.

    Parameters
    ----------
    refusals : queue.Queue
        Reasons not yet reported (filled from the reader thread).
    told : dict
        Reason kind -> (when last told, repeats since); updated.
    say : callable
        The operator console's line.
    journal : Journal
        Where each told refusal goes (``pulse_refused``).
    block : int
        The block's index.
    now : float | None
        The time, s (monotonic; None: now).
    """
    now = time.monotonic() if now is None else now
    while True:
        try:
            reason = refusals.get_nowait()
        except queue.Empty:
            return
        # Numbers vary from one refusal to the next; the kind is the key.
        key = " ".join(reason.split(" ", 2)[:2])
        last, since = told.get(key, (-math.inf, 0))
        if now - last < REPORT_EVERY_S:
            told[key] = (last, since + 1)
            continue
        more = f" ({since} more since)" if since else ""
        say(f"  no pulse: {reason}{more}")
        journal.write("pulse_refused", block=block, reason=reason, repeats=since)
        told[key] = (now, 0)


def run_triggered(
    ctx: BlockContext, block: StimulateBlock, planned: PlannedBlock
) -> dict:
    """Run one triggered block; returns what goes into its ``block_end``.

    Parameters
    ----------
    ctx : BlockContext
        The session's open parts (``ctx.eeg``: the rig's EEG stream).
    block : StimulateBlock
        The block, its pattern a
        :class:`~stimtrain.orchestrator.language.trigger.TriggeredPulses`.
    planned : PlannedBlock
        Its plan: power, delivery path, the most pulses.

    Returns
    -------
    dict
        ``pulses_max``, ``pulses_delivered``, ``pulses_refused`` and
        ``ended_by`` (``pulses``, ``duration``, ``skipped``).

    Raises
    ------
    SessionAborted
        When the session stopped during the block.
    DeviceFault
        When the device process failed.
    RuntimeError
        When the trigger process failed (its stream lost or not found); the
        unit was disarmed first.
    """
    from stimtrain.tasks.runner import show_fixation

    control, device, eeg = ctx.control, ctx.device, ctx.eeg
    if eeg is None:  # the check refuses this before the start; never pulse blind
        raise RuntimeError("a triggered block needs the rig's EEG stream")
    pattern: TriggeredPulses = block.pattern
    run = TriggeredRun(ctx, block, planned)
    ctx.ledger.set_block_fields(
        block.index,
        pattern="single",
        intensity=planned.intensity_value,
        unit=planned.unit,
        power=planned.power,
    )
    device.set_power(planned.power)
    settings = trigger_settings(pattern.trigger, eeg)
    if pattern.trigger.calibrated:
        offset = _calibrated_offset(ctx, planned)
        ctx.journal.write("phase_offset_used", block=block.index, **offset)
        settings = replace(settings, phase_offset_deg=offset["offset_deg"])
        run.offset_deg = offset["offset_deg"]
        source = str(offset["source"])
        run.offset_source = next(
            (s for s in ("thresholds file", "command line") if source.startswith(s)),
            "calibration",
        )
        ctx.say(
            f"  phase offset {offset['offset_deg']:+.1f} degrees (from "
            f"{offset['source']})"
        )
    config = TriggerConfig(
        stream=eeg.stream,
        montage=Montage(pattern.trigger.montage),
        settings=settings,
        latency_bound_s=eeg.latency_bound_s,
        resolve_timeout_s=10.0,
    )
    process = TriggerProcess(
        config, on_deadline=run.on_deadline, on_refusal=run.on_refusal
    )
    clock = pylsl.local_clock
    ended_by = "pulses"
    control.online = run
    try:
        process.start()
        if abs(process.sfreq - eeg.sfreq) > 1e-6 * eeg.sfreq:
            # The band was checked against the declared rate, and the
            # estimator's filters are built for the stream's.
            raise RuntimeError(
                f"EEG stream {eeg.stream} runs at {process.sfreq:g} Hz; the rig "
                f"declares {eeg.sfreq:g} Hz"
            )
        ctx.journal.write(
            "trigger_started",
            block=block.index,
            stream=eeg.stream,
            sfreq=process.sfreq,
            delay_s=eeg.delay_s,
            latency_bound_s=eeg.latency_bound_s,
            trigger=planned.trigger,
        )
        ctx.state.update(device=device.arm(3.0), next_event=None)
        ctx.journal.write("armed", block=block.index, power=planned.power)
        run.accepting.set()
        ctx.say(f"  waiting for {planned.trigger}")
        budget = math.inf if pattern.duration_s is None else pattern.duration_s
        running_since = clock()
        while True:
            run.report_refusals()
            ctx.state.update(phase=run.progress())
            if process.error is not None:
                raise RuntimeError(f"trigger process: {process.error}")
            if control.ending() or run.error is not None:
                break
            if run.full():
                ended_by = "pulses"
                break
            if clock() - running_since >= budget:
                ended_by = "duration"
                break
            if control.stalled.is_set() or control.pause.is_set():
                budget -= clock() - running_since
                _hold(ctx, run)
                running_since = clock()
                continue
            show_fixation(ctx.win, 0.1, clock=clock, should_stop=control.ending)
        run.accepting.clear()
        process.stop()
        if control.stop() or run.error is not None:
            raise SessionAborted(control.stop.reason or run.error)
        if control.skip.is_set():
            ended_by = "skipped"
        else:
            # A pulse queued just before the end is given, then the unit rests.
            wait_until = max(run.last_deadline, clock()) + LAST_PULSE_WAIT_S
            while (
                ctx.ledger.block_pulses(block.index) < run.due
                and clock() < wait_until
                and device.fault is None
            ):
                time.sleep(0.01)
            if device.fault is not None:
                raise DeviceFault(device.fault)
        ctx.state.update(device=device.disarm(), next_event=None)
        ctx.journal.write("disarmed", block=block.index, reason=f"ended by {ended_by}")
    except BaseException:
        # Any fault: no further deadline, the unit disarmed first, then why.
        run.accepting.clear()
        _disarm_first(ctx)
        raise
    finally:
        control.online = None
        process.stop()
        run.report_refusals()
    delivered = ctx.ledger.block_pulses(block.index)
    ctx.say(
        f"  {delivered} phase-locked pulses ({run.n_refused} refused), ended by "
        f"{ended_by}"
    )
    return {
        "pulses_max": planned.pulses,
        "pulses_delivered": delivered,
        "pulses_refused": run.n_refused,
        "ended_by": ended_by,
    }


def _calibrated_offset(ctx: BlockContext, planned: PlannedBlock) -> dict:
    """The offset a ``phase_offset: calibrated`` block uses.

    With no calibration block before it, the thresholds' phase offset its
    plan names (an earlier session's, checked against its estimator before
    the start). Else the last calibration of this session: this run's, or
    (a resumed run skips the finished calibration block) the newest earlier
    run's ``phase_calibration.json`` in the session folder.

    Raises
    ------
    RuntimeError
        When no calibration ran in this session.
    """
    if planned.phase_offset is not None:
        return dict(planned.phase_offset)
    if ctx.phase_offset is not None:
        return dict(ctx.phase_offset, source="this run")
    folder = ctx.run_file("phase_calibration.json").parent
    earlier = sorted(folder.glob("*phase_calibration.json"))
    if not earlier:
        raise RuntimeError(
            "phase_offset: calibrated, but no phase_calibration block ran in "
            "this session (it was skipped)"
        )
    found = json.loads(earlier[-1].read_text())
    return dict(found, source=earlier[-1].name)


def _hold(ctx: BlockContext, run: TriggeredRun) -> None:
    """Hold the block (stalled stream or pause key) with the unit disarmed."""
    from stimtrain.tasks.runner import show_fixation

    control, device = ctx.control, ctx.device
    stalled = control.stalled.is_set()
    reason = "stream stalled" if stalled else "operator pause"
    with control.schedule_lock:
        run.accepting.clear()
    # The disarm drops a pulse still queued; its reply follows every report.
    ctx.state.update(device=device.disarm())
    run.withdrawn = run.scheduled - ctx.ledger.block_pulses(run.block.index)
    ctx.journal.write("stimulation_paused", block=run.block.index, reason=reason)
    ctx.say(f"  {reason}: triggered pulses paused")
    if not stalled:
        ctx.state.update(status="paused")
    clock = pylsl.local_clock
    while (control.stalled.is_set() or control.pause.is_set()) and not (
        control.ending()
    ):
        show_fixation(ctx.win, 0.1, clock=clock, should_stop=control.ending)
        run.report_refusals()
        ctx.state.update(phase=run.progress())
    if control.ending():
        return
    ctx.state.update(status="running", device=device.arm(3.0))
    run.accepting.set()
    ctx.journal.write("stimulation_resumed", block=run.block.index)
    ctx.say("  triggered pulses resumed")


def _disarm_first(ctx: BlockContext) -> None:
    """Disarm now, before a fault is explained (the safe stop also will)."""
    device = ctx.device
    if device.fault is not None:
        return
    try:
        ctx.state.update(device=device.disarm(timeout=2.0))
        ctx.journal.write("disarmed", reason="triggered block ended by a fault")
    except Exception:  # noqa: BLE001 - the session's safe stop disarms or kills
        pass
