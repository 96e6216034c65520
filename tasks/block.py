"""What a block is, apart from its presentation: trials, levels, scoring, result.

:class:`BlockState` holds the logic that the windowed runner
(:func:`stimtrain.tasks.runner.run_task_block`) and the window-free
simulation (:func:`stimtrain.tasks.simulate.simulate_block`) share: the
seeded trial list, the adaptive level (a PsychoPy staircase, or a block-wise
rule), the per-trial parameters and timing, scoring, and the measures. So a
simulated block goes through exactly the trial logic of a real one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .adaptive import Staircase
from .api import Task, Trial, TrialResult, TrialTiming
from .registry import get_task

logger = logging.getLogger("stimtrain.tasks.block")


@dataclass
class TaskBlockResult:
    """The outcome of a block.

    Attributes
    ----------
    task : str
        Task name.
    n_trials : int
        Trials planned.
    results : list of TrialResult
        Trials run (fewer than ``n_trials`` if stopped).
    measures : dict
        The task's measures over ``results``.
    stopped : bool
        Whether the block ended early (escape key or ``should_stop``).
    tsv_path : Path | None
        The trials TSV written.
    params : dict
        The validated parameters used.
    start_level : float | None
        The level the block started at (``None``: the task does not adapt).
    level : float | None
        The level reached: where the next block or session should start
        (``None`` if the task does not adapt, or its level does not carry
        over, like the stop-signal delay).
    """

    task: str
    n_trials: int
    results: list[TrialResult]
    measures: dict[str, Any]
    stopped: bool
    tsv_path: Path | None = None
    params: dict[str, Any] = field(default_factory=dict)
    start_level: float | None = None
    level: float | None = None


class BlockState:
    """The trial logic of one block.

    Parameters
    ----------
    task : Task | str
        The task or its name.
    params : mapping | None
        Task parameters (validated here).
    n_trials : int
        Trials in the block.
    seed : int
        Seed of the trial order.
    start_level : float | None
        Level to start at (e.g. from :func:`~stimtrain.tasks.levels.load_levels`);
        default: the task's own start. Ignored by a task that does not adapt
        or whose level does not carry over (``Adaptation.persist``).

    Raises
    ------
    TaskParamError
        For invalid parameters.
    ValueError
        For a negative ``n_trials``.
    """

    def __init__(
        self,
        task: Task | str,
        params: Mapping[str, Any] | None,
        *,
        n_trials: int,
        seed: int,
        start_level: float | None = None,
    ) -> None:
        self.task = get_task(task) if isinstance(task, str) else task
        self.params = self.task.validate_params(params)
        if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 0:
            raise ValueError(f"n_trials must be an integer >= 0, got {n_trials!r}")
        self.n_trials = n_trials
        self.adaptation = self.task.adaptation(self.params)
        self.staircase: Staircase | None = None
        self.start_level: float | None = None
        self._block_level: float | None = None
        block_params = self.params
        if self.adaptation is not None:
            a = self.adaptation
            if start_level is None or not a.persist:
                start_level = a.start
            self.start_level = self._typed(a.clamp(start_level))
            if a.per == "trial":
                self.staircase = Staircase(a, self.start_level)
            else:
                self._block_level = self.start_level
                block_params = self._with_level(self.start_level)
        self.block_params = block_params
        self.trials = self.task.make_trials(
            n_trials, np.random.default_rng(seed), block_params
        )
        self.results: list[TrialResult] = []

    def _typed(self, level: float) -> float:
        """The level in its parameter's type: the n of n-back stays an integer."""
        if isinstance(self.params[self.adaptation.param], int):
            return int(round(level))
        return float(level)

    def _with_level(self, level: float) -> dict[str, Any]:
        return {**self.params, self.adaptation.param: self._typed(level)}

    @property
    def level(self) -> float | None:
        """The level of the next trial (``None`` if the task does not adapt)."""
        if self.staircase is not None:
            return self.staircase.level
        return self._block_level

    def begin(self, trial: Trial) -> tuple[Trial, TrialTiming, dict[str, Any]]:
        """Return a trial as it will be run, its timing and its parameters.

        Parameters
        ----------
        trial : Trial
            The planned trial (from :attr:`trials`).

        Returns
        -------
        trial : Trial
            After :meth:`Task.prepare_trial`.
        timing : TrialTiming
            With the trial's level applied (e.g. an adapted deadline).
        params : dict
            The trial's parameters.
        """
        params = self.block_params
        if self.staircase is not None:
            params = self._with_level(self.staircase.level)
        trial = self.task.prepare_trial(trial, params)
        return trial, self.task.timing(params), params

    def finish(
        self,
        trial: Trial,
        onset: float,
        key: str | None,
        rt: float | None,
        extra: Mapping[str, Any] | None = None,
    ) -> TrialResult:
        """Score a trial, move the staircase and keep the result.

        Parameters
        ----------
        trial : Trial
            The trial as run (from :meth:`begin`).
        onset : float
            Clock time of the stimulus onset.
        key : str | None
            The response, ``None`` for none.
        rt : float | None
            Response time from onset, seconds.
        extra : mapping | None
            Measured times (``cue_onset``, ``signal_onset``).

        Returns
        -------
        result : TrialResult
        """
        extra = dict(extra or {})
        if self.adaptation is not None:
            extra["level"] = self.level
        correct = self.task.score(trial, key)
        result = TrialResult(trial, onset, key, rt, correct, extra)
        if self.staircase is not None and self.task.updates_level(trial):
            self.staircase.update(correct)
        self.results.append(result)
        return result

    def result(self, *, stopped: bool, tsv_path: Path | None = None) -> TaskBlockResult:
        """Return the block's result with its measures and the level reached.

        A block-wise level moves only after a complete block.
        """
        measures = self.task.measures(self.results)
        level = self.level
        if self._block_level is not None and not stopped:
            level = self._typed(
                self.adaptation.clamp(
                    self.task.next_level(measures, self._block_level, self.block_params)
                )
            )
        if self.adaptation is not None and not self.adaptation.persist:
            level = None
        return TaskBlockResult(
            task=self.task.name,
            n_trials=self.n_trials,
            results=list(self.results),
            measures=measures,
            stopped=stopped,
            tsv_path=tsv_path,
            params=self.params,
            start_level=self.start_level,
            level=level,
        )
