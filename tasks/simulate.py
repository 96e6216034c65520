"""Play a block with the simulated participant without a window.

The same trial logic as the windowed runner (:class:`~stimtrain.tasks.block.BlockState`:
trials, staircase, scoring, measures) on a nominal timeline: each phase lasts
its nominal duration and a response comes at ``onset + rt``. Thousands of
trials take a second, so the measures can be checked against the simulated
participant's true parameters (e.g. the SSRT) with small errors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .api import Task, Trial
from .block import BlockState, TaskBlockResult
from .participant import SimulatedParticipant


def simulate_block(
    task: Task | str,
    params: Mapping[str, Any] | None,
    *,
    n_trials: int,
    seed: int,
    participant: SimulatedParticipant,
    start_level: float | None = None,
    on_event: Callable[[str, float, Trial], None] | None = None,
) -> TaskBlockResult:
    """Run one block on a nominal timeline, without a window.

    Parameters
    ----------
    task : Task | str
        The task or its name.
    params : mapping | None
        Task parameters.
    n_trials : int
        Trials in the block.
    seed : int
        Seed of the trial order.
    participant : SimulatedParticipant
        Who responds.
    start_level : float | None
        Level to start at (adaptive tasks).
    on_event : callable | None
        ``on_event(event, t, trial)`` for ``cue``, ``stim_onset``,
        ``stop_signal`` and ``response``, with ``t`` on the nominal timeline
        (seconds from the block start), as the windowed runner calls it.

    Returns
    -------
    result : TaskBlockResult
        ``onset`` values are on the nominal timeline.
    """
    state = BlockState(
        task, params, n_trials=n_trials, seed=seed, start_level=start_level
    )
    name = state.task.name
    keys = state.task.keys(state.params)

    def announce(event: str, t: float, trial: Trial) -> None:
        if on_event is not None:
            on_event(event, t, trial)

    t = 0.0
    for planned in state.trials:
        trial, timing, _ = state.begin(planned)
        t += timing.fixation_s
        extra: dict[str, Any] = {}
        if trial.cue_s > 0:
            extra["cue_onset"] = t
            announce("cue", t, trial)
            t += trial.cue_s
        onset = t
        announce("stim_onset", onset, trial)
        key, rt = participant.respond(name, trial, keys)
        if rt is None or rt > timing.deadline_s:
            key, rt = None, None
        # The signal is shown only if the trial is still running at its delay.
        if trial.signal_s is not None and (rt is None or rt >= trial.signal_s):
            extra["signal_onset"] = onset + trial.signal_s
            announce("stop_signal", onset + trial.signal_s, trial)
        if rt is not None:
            announce("response", onset + rt, trial)
        state.finish(trial, onset, key, rt, extra)
        shown = timing.deadline_s if rt is None or timing.fixed_duration else rt
        t = onset + shown + timing.feedback_s + timing.iti_s
    return state.result(stopped=False)
