"""A task block: the training task on the participant's window, online TMS with it.

The task itself runs in the tasks room (:func:`stimtrain.tasks.runner.
run_task_block`); here its events become markers, the operator console shows
its progress, its level carries over to the next block and session, the
operator's pause holds it between trials, and with online TMS the pulses are
locked to its events (:mod:`.online`).
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING

import pylsl

from ..language.protocol import TaskBlock
from ..safety.plan import PlannedBlock
from .console import TaskProgress
from .online import OnlinePulses

if TYPE_CHECKING:
    from .context import BlockContext


def run_task(ctx: BlockContext, block: TaskBlock, planned: PlannedBlock) -> dict:
    """Run one task block; returns what goes into its ``block_end``.

    Parameters
    ----------
    ctx : BlockContext
        The session's open parts.
    block : TaskBlock
        The block as written (its parameters checked and complete).
    planned : PlannedBlock
        Its plan: seed, online pulses' power and path.

    Returns
    -------
    dict
        ``measures``, ``trials_done``, ``start_level``, ``level`` and, with
        online TMS, what was scheduled, delivered and withdrawn.
    """
    if block.builder is not None:
        from .builder_block import run_builder

        return run_builder(ctx, block, planned)
    from stimtrain.tasks.levels import load_levels, record_level
    from stimtrain.tasks.participant import SimulatedParticipant
    from stimtrain.tasks.runner import run_task_block

    control = ctx.control
    participant = (
        SimulatedParticipant(seed=planned.seed) if ctx.simulated_participant else None
    )
    emit = _TaskEvents(ctx, block)
    # Levels carry over between blocks and sessions of one participant.
    start_level = load_levels(ctx.levels_path).get(block.task)
    online = None
    if block.tms is not None:
        online = OnlinePulses(ctx, block, planned)
        online.start()
        control.online = online
    try:
        result = run_task_block(
            ctx.win,
            block.task,
            block.params,
            n_trials=block.trials,
            seed=planned.seed,
            tsv_path=ctx.trials_file(block.index, block.task),
            emit=emit,
            block=block.index,
            participant=participant,
            clock=pylsl.local_clock,
            should_stop=control.ending,
            start_level=start_level,
            on_event=None if online is None else online.on_event,
            between_trials=functools.partial(pause_point, ctx, block, online),
        )
    finally:
        outcome_online = {} if online is None else online.finish()
        control.online = None
    if result.stopped and not control.stop() and not control.skip.is_set():
        control.stop.set("task stopped (escape key)")
    elif result.level is not None:
        record_level(ctx.levels_path, block.task, result.level)
        ctx.task_levels[block.task] = result.level
    ctx.say(f"  {block.task}: {json.dumps(result.measures, default=str)}")
    return {
        "measures": result.measures,
        "trials_done": len(result.results),
        "start_level": result.start_level,
        "level": result.level,
        **outcome_online,
    }


class _TaskEvents:
    """The task's events: each a marker; the console shows trial and accuracy."""

    def __init__(self, ctx: BlockContext, block: TaskBlock) -> None:
        self.ctx = ctx
        self.block = block
        self.scored: list[bool] = []

    def __call__(self, event: str, timestamp: float, **fields) -> None:
        self.ctx.markers.push(event, timestamp, **fields)
        if event == "stim_onset":
            scored = self.scored
            self.ctx.state.update(
                task=TaskProgress(
                    task=self.block.task,
                    trial=int(fields.get("trial", 0)) + 1,
                    n_trials=self.block.trials,
                    accuracy=sum(scored) / len(scored) if scored else None,
                )
            )
        elif event == "response" and fields.get("correct") is not None:
            self.scored.append(bool(fields["correct"]))


def pause_point(
    ctx: BlockContext, block: TaskBlock, online: OnlinePulses | None, trials_done: int
) -> bool:
    """Between two trials: hold here while the operator paused.

    With online TMS, pulses still due from the last trial are withdrawn and
    the unit is disarmed for the pause (a Magstim left armed without firing
    disarms itself after a minute), then armed again. Returns whether the
    block goes on.
    """
    from stimtrain.tasks.runner import show_text

    control = ctx.control
    if not control.pause.is_set():
        return not control.ending()
    if online is not None:
        with control.schedule_lock:
            control.task_paused.set()
            control.hold("operator pause")
        ctx.state.update(device=ctx.device.disarm())
    # The journal says the unit was disarmed: the device reply alone only
    # reaches the state, and a reader of the journal must see why no pulse
    # could be given until ``resumed``.
    ctx.journal.write(
        "paused",
        block=block.index,
        after_trial=trials_done,
        disarmed=online is not None,
    )
    ctx.state.update(status="paused")
    ctx.say(f"  paused after trial {trials_done}")
    while control.pause.is_set() and not control.ending():
        show_text(ctx.win, "Paused", 0.1, should_stop=control.ending)
    if control.ending():
        return False
    if online is not None:
        ctx.state.update(device=ctx.device.arm(3.0))
        control.task_paused.clear()
    ctx.journal.write("resumed", block=block.index, armed=online is not None)
    ctx.state.update(status="running")
    return True
