"""The small task API every training task implements.

A task is a class with a ``name`` and ``default_params``; it validates
parameters, makes a list of :class:`Trial` objects from a seeded random
generator, builds its PsychoPy stimuli once per block, draws one trial's
stimulus per frame, and computes its own measures from the
:class:`TrialResult` list. The timing of a trial (fixation, optional cue,
stimulus, response window, stop signal, feedback, inter-trial interval) is run
by :mod:`stimtrain.tasks.runner`, which reads it through :meth:`Task.timing`
and the trial's own ``cue_s`` and ``signal_s``. A task may adapt one of its
parameters (its *level*) through :meth:`Task.adaptation`.

The parameter checks live in :mod:`~stimtrain.tasks.params`, the
counterbalancing helpers in :mod:`~stimtrain.tasks.counterbalance` and the
registry (:func:`get_task`, entry points) in :mod:`~stimtrain.tasks.registry`;
their names are re-exported here, where task modules have always imported
them.

Longer than most because it is the task contract in one place: the trial,
result and timing records a task exchanges with the runner, and the Task base
class whose every hook is documented here, where a task's author reads them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from stimtrain.taskfiles import TSV_COLUMNS

from .counterbalance import balanced, exact_conditions
from .params import TaskParamError, _check_type, check_keys, check_range
from .registry import (
    BUILTIN_TASK_MODULES,
    ENTRY_POINT_GROUP,
    TASKS,
    _register,
    get_task,
    import_task_modules,
    task_names,
)

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from psychopy.visual import Window

    from .adaptive import Adaptation

__all__ = [
    "BUILTIN_TASK_MODULES",
    "ENTRY_POINT_GROUP",
    "TASKS",
    "TSV_COLUMNS",
    "Task",
    "TaskParamError",
    "Trial",
    "TrialResult",
    "TrialTiming",
    "balanced",
    "check_keys",
    "check_range",
    "exact_conditions",
    "get_task",
    "import_task_modules",
    "task_names",
]

logger = logging.getLogger("stimtrain.tasks")


@dataclass(frozen=True)
class Trial:
    """One planned trial.

    Attributes
    ----------
    index : int
        Trial number within the block, from 0.
    condition : str
        The condition label (e.g. ``"congruent"``).
    stimulus : dict
        The task's stimulus fields (what to draw); must hold a ``"text"``
        entry, a short printable description for the trials TSV.
    correct_key : str | None
        The key a correct response uses, or ``None`` when withholding the
        response is correct (e.g. a no-go trial).
    cue_s : float
        Duration of a cue shown (by :meth:`Task.draw_cue`) between the
        fixation and the stimulus, e.g. the cue-target interval of task
        switching; ``0`` for no cue.
    signal_s : float | None
        Delay from stimulus onset to a signal drawn over the stimulus (by
        :meth:`Task.draw_signal`), e.g. the stop-signal delay; ``None`` for
        no signal.
    """

    index: int
    condition: str
    stimulus: dict[str, Any]
    correct_key: str | None
    cue_s: float = 0.0
    signal_s: float | None = None


@dataclass
class TrialResult:
    """What happened on one trial.

    Attributes
    ----------
    trial : Trial
        The trial that was run.
    onset : float
        LSL clock time of the flip that first showed the stimulus.
    key : str | None
        The response key, or ``None`` if there was no response in time.
    rt : float | None
        Response time in seconds from ``onset`` (key-down time minus onset).
    correct : bool
        Whether the response (or its absence) was correct.
    extra : dict
        Values the runner measured besides the response: ``cue_onset`` and
        ``signal_onset`` (clock times of the flips that showed the cue and
        the signal, when there were any) and ``level`` (the adaptive
        parameter's value on this trial, when the block adapts one).
    """

    trial: Trial
    onset: float
    key: str | None
    rt: float | None
    correct: bool
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrialTiming:
    """Durations of one trial's phases, in seconds.

    Attributes
    ----------
    fixation_s : float
        Fixation cross before the stimulus.
    deadline_s : float
        Response window from stimulus onset; the stimulus stays up until the
        response or the deadline.
    iti_s : float
        Blank inter-trial interval after the stimulus (and feedback).
    feedback_s : float
        How long feedback is shown, ``0`` for no feedback.
    stimulus_s : float | None
        How long the stimulus stays up from onset; ``None``: until the
        response or the deadline. The response window is ``deadline_s``
        either way.
    fixed_duration : bool
        If true the response window runs to ``deadline_s`` even after a
        response (a paced sequence such as n-back); otherwise a response
        ends it.
    cue_s : float
        The longest cue of a trial (see :attr:`Trial.cue_s`), for planning.
    """

    fixation_s: float
    deadline_s: float
    iti_s: float
    feedback_s: float = 0.0
    stimulus_s: float | None = None
    fixed_duration: bool = False
    cue_s: float = 0.0

    @property
    def min_trial_s(self) -> float:
        """The shortest time (s) from an event of one trial to the same event of
        the next: fixation, feedback and ITI always lie between, and the whole
        response window too in a paced task."""
        paced = self.deadline_s if self.fixed_duration else 0.0
        return self.fixation_s + self.feedback_s + self.iti_s + paced

    @property
    def max_trial_s(self) -> float:
        """The longest a trial can last (every phase at its longest), in seconds."""
        return (
            self.fixation_s
            + self.cue_s
            + self.deadline_s
            + self.feedback_s
            + self.iti_s
        )


class Task:
    """Base class of the training tasks.

    Subclasses set :attr:`name` and :attr:`default_params` and implement
    :meth:`make_trials`, :meth:`build_stimuli`, :meth:`draw_stimulus`,
    :meth:`keys` (unless a ``keys`` parameter lists them) and :meth:`measures`.
    They may extend :meth:`_check_params`
    (range checks), :meth:`timing`, :meth:`tsv_fields` (or name stimulus
    entries in :attr:`tsv_stimulus_fields`), :meth:`score`,
    :meth:`feedback_text` and :meth:`instructions`; multi-phase trials add
    :meth:`draw_cue` or :meth:`draw_signal`; adaptive tasks
    :meth:`adaptation` (and :meth:`updates_level` or :meth:`next_level`);
    tasks whose trials depend on what happened before (e.g. the stop-signal
    delay) :meth:`prepare_trial`.

    One instance runs one block at a time: :meth:`build_stimuli` may keep
    stimuli on ``self``.
    """

    #: Name used in protocol files and the registry.
    name: ClassVar[str] = ""
    #: Every parameter the task accepts, with its default.
    default_params: ClassVar[dict[str, Any]] = {}
    #: Entries of :attr:`Trial.stimulus` copied into the trials TSV as columns.
    tsv_stimulus_fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _register(cls)

    # -- parameters ---------------------------------------------------------
    def validate_params(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Merge parameters with the defaults and check them.

        Parameters
        ----------
        params : mapping | None
            Parameters from a protocol file; missing ones take their default.

        Returns
        -------
        params : dict
            A complete, checked parameter dict (a new object).

        Raises
        ------
        TaskParamError
            For an unknown key, or a value of the wrong type or out of range.
        """
        params = dict(params or {})
        for key in params:
            if key not in self.default_params:
                known = ", ".join(sorted(self.default_params))
                raise TaskParamError(
                    key,
                    f"unknown parameter for task {self.name!r} (known: {known})",
                    params[key],
                )
        merged = {**self.default_params, **params}
        for key, default in self.default_params.items():
            merged[key] = _check_type(key, merged[key], default)
        self._check_params(merged)
        return merged

    def _check_params(self, params: dict[str, Any]) -> None:
        """Check ranges and relations; raise :class:`TaskParamError`.

        The base class checks the timing parameters, ``target_accuracy`` and
        ``letter_height`` (window heights, in (0, 1]) where the task has them.
        """
        for key in ("fixation_s", "iti_s", "feedback_s"):
            if key in params:
                check_range(key, params[key], low=0.0)
        if "deadline_s" in params:
            check_range("deadline_s", params["deadline_s"], low=0.0, low_open=True)
        if "stimulus_s" in params:
            check_range("stimulus_s", params["stimulus_s"], low=0.0)
        if "target_accuracy" in params:
            check_range(
                "target_accuracy", params["target_accuracy"], low=0.5, high=0.99
            )
        if "letter_height" in params:
            check_range(
                "letter_height",
                params["letter_height"],
                low=0.0,
                high=1.0,
                low_open=True,
            )

    def timing(self, params: Mapping[str, Any]) -> TrialTiming:
        """Return the durations of a trial's phases.

        Parameters
        ----------
        params : mapping
            Validated parameters.

        Returns
        -------
        timing : TrialTiming
            Read from ``fixation_s``, ``deadline_s``, ``iti_s``,
            ``stimulus_s`` (if the task has it and it is not 0) and, when
            ``feedback`` is true, ``feedback_s``. Override it for a paced
            task (``fixed_duration``) or a cue (``cue_s``).
        """
        feedback_s = (
            float(params.get("feedback_s", 0.0)) if params.get("feedback") else 0.0
        )
        return TrialTiming(
            fixation_s=float(params["fixation_s"]),
            deadline_s=float(params["deadline_s"]),
            iti_s=float(params["iti_s"]),
            feedback_s=feedback_s,
            stimulus_s=(
                float(params["stimulus_s"]) if params.get("stimulus_s") else None
            ),
        )

    def default_n_trials(self, params: Mapping[str, Any]) -> int:
        """Return the canonical number of trials of a block.

        Parameters
        ----------
        params : mapping
            Validated parameters.

        Returns
        -------
        n_trials : int
            40 unless the task's design says otherwise.
        """
        return 40

    # -- adaptation ---------------------------------------------------------
    def adaptation(self, params: Mapping[str, Any]) -> Adaptation | None:
        """Return how the task adapts its difficulty, or ``None`` if it does not.

        Parameters
        ----------
        params : mapping
            Validated parameters.

        Returns
        -------
        adaptation : Adaptation | None
            Which parameter is the *level*, its bounds, its step, and whether
            a staircase moves it trial by trial or :meth:`next_level` moves
            it block by block.
        """
        return None

    def updates_level(self, trial: Trial) -> bool:
        """Return whether a trial's outcome moves a trial-wise staircase.

        Parameters
        ----------
        trial : Trial
            The trial just run.

        Returns
        -------
        bool
            ``True`` by default; the stop-signal task moves its delay on stop
            trials only.
        """
        return True

    def next_level(
        self, measures: Mapping[str, Any], level: float, params: Mapping[str, Any]
    ) -> float:
        """Return the level of the next block, for block-wise adaptation.

        Parameters
        ----------
        measures : mapping
            This block's measures.
        level : float
            This block's level.
        params : mapping
            Validated parameters.

        Returns
        -------
        level : float
        """
        return level

    def prepare_trial(self, trial: Trial, params: Mapping[str, Any]) -> Trial:
        """Return the trial as it will be run, just before running it.

        Parameters
        ----------
        trial : Trial
            The planned trial.
        params : mapping
            Validated parameters, with the adaptive parameter (if any) set to
            this trial's level.

        Returns
        -------
        trial : Trial
            The planned trial by default; e.g. the stop-signal task sets
            ``signal_s`` to the staircase's current delay.
        """
        return trial

    def instructions(self, params: Mapping[str, Any]) -> str:
        """Return the instructions shown before the block.

        Parameters
        ----------
        params : mapping
            Validated parameters.

        Returns
        -------
        text : str
        """
        keys = ", ".join(self.keys(params))
        return f"{self.name}\n\nRespond with: {keys}"

    # -- trials and drawing -------------------------------------------------
    def make_trials(
        self, n_trials: int, rng: np.random.Generator, params: Mapping[str, Any]
    ) -> list[Trial]:
        """Make the block's trials, in presentation order.

        Parameters
        ----------
        n_trials : int
            Number of trials.
        rng : numpy.random.Generator
            The only source of randomness, so a seed reproduces the block.
        params : mapping
            Validated parameters.

        Returns
        -------
        trials : list of Trial
        """
        raise NotImplementedError

    def build_stimuli(self, win: Window, params: Mapping[str, Any]) -> None:
        """Create the PsychoPy stimuli for a block (once, not per trial).

        Parameters
        ----------
        win : psychopy.visual.Window
            The window to draw into.
        params : mapping
            Validated parameters.
        """
        raise NotImplementedError

    def draw_stimulus(self, trial: Trial) -> None:
        """Draw one trial's stimulus into the back buffer (called every frame).

        Parameters
        ----------
        trial : Trial
            The trial to draw.
        """
        raise NotImplementedError

    def draw_cue(self, trial: Trial) -> None:
        """Draw the cue of a trial with ``cue_s > 0`` (called every cue frame).

        Parameters
        ----------
        trial : Trial
            The trial.
        """
        raise NotImplementedError(f"{self.name}: a trial has a cue but no draw_cue")

    def draw_signal(self, trial: Trial) -> None:
        """Draw the signal over the stimulus, from ``signal_s`` after onset.

        Parameters
        ----------
        trial : Trial
            The trial.
        """
        raise NotImplementedError(
            f"{self.name}: a trial has a signal but no draw_signal"
        )

    def keys(self, params: Mapping[str, Any]) -> list[str]:
        """Return the response keys of the task.

        Parameters
        ----------
        params : mapping
            Validated parameters.

        Returns
        -------
        keys : list of str
            PsychoPy key names: by default the ``keys`` parameter, for a
            task that has one.
        """
        if "keys" in params:
            return list(params["keys"])
        raise NotImplementedError(f"{self.name}: no 'keys' parameter and no keys()")

    def score(self, trial: Trial, key: str | None) -> bool:
        """Return whether ``key`` (``None`` = no response) is correct on ``trial``.

        Parameters
        ----------
        trial : Trial
            The trial.
        key : str | None
            The response.

        Returns
        -------
        correct : bool
        """
        return key == trial.correct_key

    def feedback_text(self, result: TrialResult) -> str:
        """Return the feedback shown after a trial.

        Parameters
        ----------
        result : TrialResult
            The trial's outcome.

        Returns
        -------
        text : str
        """
        if result.key is None and result.trial.correct_key is not None:
            return "Too slow"
        return "Correct" if result.correct else "Error"

    # -- results ------------------------------------------------------------
    def measures(self, results: Sequence[TrialResult]) -> dict[str, Any]:
        """Compute the task's own measures from a block's results.

        Parameters
        ----------
        results : sequence of TrialResult

        Returns
        -------
        measures : dict
            Plain numbers (``nan`` where undefined), JSON-friendly.
        """
        raise NotImplementedError

    def tsv_fields(self, trial_result: TrialResult) -> dict[str, Any]:
        """Return task-specific extra columns for one trials-TSV row.

        Parameters
        ----------
        trial_result : TrialResult

        Returns
        -------
        fields : dict
            Column name to value; the same columns on every row. By default
            the stimulus entries named in :attr:`tsv_stimulus_fields`.
        """
        stim = trial_result.trial.stimulus
        return {name: stim[name] for name in self.tsv_stimulus_fields}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
