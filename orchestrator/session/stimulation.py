"""A stimulation block: set the unit, arm, schedule the plan's pulses, disarm.

The pulses' offsets, power and delivery path come from the plan. The block
schedules them all at once in the device process, then waits on the
participant's fixation cross (a block with a ``trigger`` runs in
:mod:`.closed_loop.block` instead: the EEG decides its pulses' times); a
stalled stream or the operator's pause interrupts it (:func:`_interrupt`),
after which the pulses not yet given are rescheduled with their intervals,
so none is given twice and the block never exceeds its plan.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import pylsl

from ..language.protocol import StimulateBlock
from ..language.trigger import TriggeredPulses
from ..safety.delivery import Delivery
from ..safety.plan import PlannedBlock
from .block_timeline import BlockTimeline
from .control import SessionAborted
from .device_process import DeviceFault

if TYPE_CHECKING:
    from .context import BlockContext

#: The operator's pause stops before a unit at least this far ahead (beyond
#: the device process's guard before a pulse).
PAUSE_LEAD_S = 0.5


def run_stimulation(
    ctx: BlockContext, block: StimulateBlock, planned: PlannedBlock
) -> dict:
    """Run one stimulation block; returns what goes into its ``block_end``.

    Parameters
    ----------
    ctx : BlockContext
        The session's open parts.
    block : StimulateBlock
        The block as written.
    planned : PlannedBlock
        Its plan: power, delivery path, pulse offsets.

    Returns
    -------
    dict
        ``pulses_planned``.

    Raises
    ------
    SessionAborted
        When the session stopped during the block.
    DeviceFault
        When the pulses were not all delivered.
    """
    from stimtrain.tasks.runner import show_fixation

    if isinstance(block.pattern, TriggeredPulses):
        # Pulses at an EEG phase: the run finds their times.
        from .closed_loop.block import run_triggered

        return run_triggered(ctx, block, planned)
    clock = pylsl.local_clock
    control, device = ctx.control, ctx.device
    t_block = clock()
    _set_up_unit(ctx, block, planned)
    ctx.state.update(device=device.arm(3.0))
    ctx.journal.write("armed", block=block.index, power=planned.power)
    first = t_block + planned.pulse_offsets_s[0]
    if first < clock() + 0.05:
        # Arming took longer than the lead-in: shift the whole block so its
        # pulse intervals stay exact, and say so.
        shift = clock() + 0.1 - first
        t_block += shift
        ctx.journal.write("block_late", block=block.index, shift_s=shift)
    timeline = BlockTimeline(
        planned.pulse_offsets_s, planned.train_pulses or 1, planned.duration_s
    )
    with control.schedule_lock:
        if not control.stalled.is_set():  # else the interruption below schedules
            device.schedule(
                block.index,
                timeline.items(t_block, range(timeline.n_units), planned.delivery),
            )
    start, pausable = t_block, True
    while True:
        _show_next_pulse(ctx, timeline, start)
        leave = functools.partial(control.leave, pausable)
        show_fixation(
            ctx.win,
            max(0.0, timeline.last_pulse(start) - clock()),
            clock=clock,
            should_stop=leave,
        )
        if control.ending() or not leave():
            break
        start, pausable = _interrupt(ctx, block, planned, timeline, start)
    end = timeline.end(start)
    if control.stop():
        raise SessionAborted(control.stop.reason)
    if control.skip.is_set():
        # The operator skipped the block: a disarm also drops its schedule.
        ctx.state.update(device=device.disarm())
        ctx.journal.write("disarmed", block=block.index, reason="block skipped")
        ctx.state.update(next_event=None)
        return {"pulses_planned": planned.pulses}
    if not device.wait_block(block.index, timeout=5.0):
        raise DeviceFault(device.fault or "pulses were not all delivered in time")
    ctx.state.update(device=device.disarm(), next_event=None)
    ctx.journal.write("disarmed", block=block.index)
    show_fixation(
        ctx.win, max(0.0, end - clock()), clock=clock, should_stop=control.ending
    )
    return {"pulses_planned": planned.pulses}


def _set_up_unit(ctx: BlockContext, block: StimulateBlock, planned: PlannedBlock):
    """Power, paired-pulse or train settings; the marker fields of the block."""
    ctx.ledger.set_block_fields(
        block.index,
        pattern=planned.pattern,
        intensity=planned.intensity_value,
        unit=planned.unit,
        power=planned.power,
    )
    if planned.delivery == Delivery.PAIRED:
        ctx.device.set_paired(
            planned.conditioning_power,
            planned.power,
            round(planned.isi_s * 1e3, 3),
        )
        ctx.ledger.update_block_fields(
            block.index,
            conditioning_power=planned.conditioning_power,
            isi=planned.isi_s,
        )
    else:
        ctx.device.set_power(planned.power)
    if planned.delivery == Delivery.DEVICE_TRAIN:
        # The unit runs each train; the host starts it at the train's time.
        ctx.device.set_train(planned.train_frequency_hz, planned.train_pulses)
        ctx.ledger.update_block_fields(
            block.index,
            train_pulses=planned.train_pulses,
            frequency=planned.train_frequency_hz,
        )


def _show_next_pulse(ctx: BlockContext, timeline: BlockTimeline, start: float):
    clock = pylsl.local_clock
    times = [start + off for off in timeline.offsets]
    end = timeline.end(start)
    ctx.state.update(next_event=lambda: next((t for t in times if t > clock()), end))


def _interrupt(
    ctx: BlockContext,
    block: StimulateBlock,
    planned: PlannedBlock,
    timeline: BlockTimeline,
    start: float,
) -> tuple[float, bool]:
    """Hold a stimulation block (stalled stream or pause key), then go on.

    A stalled stream has held every pulse already
    (:meth:`~.control.SessionControl.hold`); the operator's pause takes effect
    at the next safe point (see :meth:`BlockTimeline.safe_point`): the pulses
    before it are given first. Then the unit is disarmed until the streams are
    back and the pause is over, and the units not yet given are rescheduled
    with their intervals. Returns the block's new start and whether the pause
    key can still interrupt it.
    """
    from stimtrain.tasks.runner import show_fixation

    clock = pylsl.local_clock
    control, device = ctx.control, ctx.device
    given = functools.partial(ctx.ledger.given, block.index)
    stalled = control.stalled.is_set()
    if not stalled:
        point = timeline.safe_point(start, given(), clock() + PAUSE_LEAD_S)
        if point is None:
            ctx.journal.write(
                "pause_deferred",
                block=block.index,
                reason="no safe point left in this block",
            )
            ctx.say("  pause: no safe point left in this block; after it")
            return start, False
        unit, t_safe = point
        control.hold("operator pause", after=t_safe, from_unit=unit)
        ctx.say(f"  pausing before pulse {unit + 1} of the block")
        last = timeline.last_pulse_before(start, t_safe)
        if last is not None:
            # The units before the safe point are given first.
            show_fixation(
                ctx.win,
                max(0.0, last - clock() + 0.05),
                clock=clock,
                should_stop=control.ending,
            )
    reason = "stream stalled" if stalled else "operator pause"
    # The disarm's reply follows every pulse report: ``given`` is complete.
    ctx.state.update(device=device.disarm())
    left = timeline.left(given())
    ctx.journal.write(
        "stimulation_paused", block=block.index, pulses_left=len(left), reason=reason
    )
    ctx.say(f"  {reason}: stimulation paused ({len(left)} left)")
    if not stalled:
        ctx.state.update(status="paused")
    while (control.stalled.is_set() or control.pause.is_set()) and not (
        control.ending()
    ):
        show_fixation(ctx.win, 0.1, clock=clock, should_stop=control.ending)
    if not control.ending():
        ctx.state.update(status="running")
    if control.ending() or not left:
        return start, True
    ctx.state.update(device=device.arm(3.0))
    start = timeline.restart(given(), clock() + 0.5)
    with control.schedule_lock:
        if control.stalled.is_set():
            return start, True  # stalled again already: interrupted again
        device.schedule(block.index, timeline.items(start, left, planned.delivery))
    ctx.journal.write("stimulation_resumed", block=block.index)
    ctx.say("  stimulation resumed")
    return start, True
