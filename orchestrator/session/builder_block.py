"""A Builder task block: a Builder experiment in the session, online TMS with it.

The experiment runs in the tasks room
(:func:`stimtrain.tasks.builder.run_builder_block`), in the session's window;
here, as for a built-in task (:mod:`.task_block`), its events become markers
and console progress, the operator's pause holds it between loop iterations,
and online TMS is locked to one of its components (:class:`BuilderPulses`).
PsychoPy's own data files go into the session folder under the run's name
(``<run prefix>block-<bb>_builder-<name>/data/``). The experiment must be the
file the protocol was checked with: a changed file stops the session.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import TYPE_CHECKING

import pylsl

from ..language.blocks import TaskBlock
from ..safety.plan import PlannedBlock
from .online import OnlinePulses
from .task_block import _TaskEvents, pause_point

if TYPE_CHECKING:
    from .context import BlockContext

logger = logging.getLogger("stimtrain.session.builder")


def run_builder(ctx: BlockContext, block: TaskBlock, planned: PlannedBlock) -> dict:
    """Run one Builder block; returns what goes into its ``block_end``.

    Parameters
    ----------
    ctx : BlockContext
        The session's open parts.
    block : TaskBlock
        The block as read (``block.builder`` set).
    planned : PlannedBlock
        Its plan: seed, online pulses' power, path and bound.

    Returns
    -------
    dict
        ``measures``, ``trials_done``, ``data_dir`` and, with online TMS,
        what was scheduled, delivered and withdrawn.

    Raises
    ------
    RuntimeError
        When the experiment's file changed since the protocol was checked.
    """
    from stimtrain.tasks.builder import read_experiment, run_builder_block
    from stimtrain.tasks.participant import SimulatedParticipant

    facts = block.builder
    experiment = read_experiment(facts.path, shown=facts.shown)
    if experiment.sha256 != facts.sha256:
        raise RuntimeError(
            f"{facts.shown} changed since the protocol was checked (its SHA-256 is "
            "in the protocol's hash): check the protocol again before running it"
        )
    control = ctx.control
    participant = (
        SimulatedParticipant(seed=planned.seed) if ctx.simulated_participant else None
    )
    online = None
    if block.tms is not None:
        online = BuilderPulses(ctx, block, planned)
        online.start()
        control.online = online
    try:
        result = run_builder_block(
            ctx.win,
            experiment,
            block.params,
            tsv_path=ctx.trials_file(block.index, block.task),
            data_dir=ctx.run_file(f"block-{block.index + 1:02d}_builder-{block.task}"),
            emit=_TaskEvents(ctx, block),
            block=block.index,
            seed=planned.seed,
            participant=participant,
            clock=pylsl.local_clock,
            should_stop=control.ending,
            on_event=None if online is None else online.on_event,
            between_trials=functools.partial(pause_point, ctx, block, online),
            max_trials=facts.max_trials,
            defaults={
                "participant": ctx.state.participant,
                "session": ctx.state.session,
            },
        )
    finally:
        outcome_online = {} if online is None else online.finish()
        control.online = None
    if result.stopped and not control.stop() and not control.skip.is_set():
        control.stop.set("task stopped (escape key)")
    ctx.say(f"  {block.task}: {json.dumps(result.measures, default=str)}")
    return {
        "measures": result.measures,
        "trials_done": len(result.results),
        "start_level": None,
        "level": None,
        "data_dir": str(result.data_dir),
        **outcome_online,
    }


class BuilderPulses(OnlinePulses):
    """Online TMS locked to a Builder component's starts (or stops).

    The k-th start of the component (among those of the block's conditions)
    is the k-th eligible event; the selection (all, every N, a fraction) is
    made among the most starts the plan allows, with the plan's seed. The run
    keeps to what the safety check judged: no pulse beyond the plan's count
    (``no_pulse`` with reason ``beyond_plan``), and none due sooner than the
    plan's shortest gap after the last one (reason ``too_soon``).
    """

    def _eligible(self) -> list[int]:
        self.starts = 0
        self.warned = False
        return list(range(self.block.builder.onsets or 0))

    def on_event(self, event: str, t: float, trial) -> None:
        """``trial`` is a :class:`~stimtrain.tasks.builder.ComponentEvent`."""
        if event != self.tms.event or self.control.ending():
            return
        if self.tms.conditions and trial.condition not in self.tms.conditions:
            return
        ordinal = self.starts
        self.starts += 1
        deadline = t + self.tms.delay_s
        fields = self._fields(event, trial)
        if ordinal not in self.eligible or self.scheduled >= self.planned.pulses:
            if not self.warned:
                self.warned = True
                logger.warning(
                    "%s started more often than its loops allow (%d): no pulses "
                    "beyond the plan",
                    trial.component,
                    len(self.eligible),
                )
            self._no_pulse(deadline, fields, reason="beyond_plan")
            return
        gap = self.block.builder.onset_gap_s or 0.0
        if self.scheduled and deadline - self.last_deadline < gap - 1e-6:
            self._no_pulse(deadline, fields, reason="too_soon")
            return
        self._offer(ordinal, deadline, fields)
