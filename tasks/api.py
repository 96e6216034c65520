"""The small task API every training task implements, and the task registry.

A task is a class with a ``name`` and ``default_params``; it validates
parameters, makes a list of :class:`Trial` objects from a seeded random
generator, builds its PsychoPy stimuli once per block, draws one trial's
stimulus per frame, and computes its own measures from the
:class:`TrialResult` list. The timing of a trial (fixation, response window,
inter-trial interval, feedback) is run by :mod:`stimtrain.tasks.runner`, which
reads it through :meth:`Task.timing`.
"""

from __future__ import annotations

import importlib
import logging
import math
import pkgutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from psychopy.visual import Window

logger = logging.getLogger("stimtrain.tasks")


class TaskParamError(ValueError):
    """A task parameter is unknown or has a bad value.

    Parameters
    ----------
    field : str
        The parameter's name.
    rule : str
        The rule it breaks, phrased to follow the field name (e.g.
        ``"must be a number >= 0"``).
    value : object
        The offending value.

    Notes
    -----
    The protocol loader turns this into
    ``FILE:LINE:COL: error: field: rule (got value)``, so ``str()`` of the
    error is the same text without the position.
    """

    def __init__(self, field: str, rule: str, value: Any) -> None:
        self.field = field
        self.rule = rule
        self.value = value
        super().__init__(f"{field}: {rule} (got {value!r})")


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
    """

    index: int
    condition: str
    stimulus: dict[str, Any]
    correct_key: str | None


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
        Task-specific values (e.g. a staircase level), for the TSV.
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
    """

    fixation_s: float
    deadline_s: float
    iti_s: float
    feedback_s: float = 0.0


class Task:
    """Base class of the training tasks.

    Subclasses set :attr:`name` and :attr:`default_params` and implement
    :meth:`make_trials`, :meth:`build_stimuli`, :meth:`draw_stimulus`,
    :meth:`keys` and :meth:`measures`; they may extend
    :meth:`_check_params` (range checks), :meth:`tsv_fields`,
    :meth:`score` and :meth:`feedback_text`.
    """

    #: Name used in protocol files and the registry.
    name: ClassVar[str] = ""
    #: Every parameter the task accepts, with its default.
    default_params: ClassVar[dict[str, Any]] = {}

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

        The base class checks the timing parameters it knows about.
        """
        for key in ("fixation_s", "iti_s", "feedback_s"):
            if key in params:
                check_range(key, params[key], low=0.0)
        if "deadline_s" in params:
            check_range("deadline_s", params["deadline_s"], low=0.0, low_open=True)

    def timing(self, params: Mapping[str, Any]) -> TrialTiming:
        """Return the durations of a trial's phases.

        Parameters
        ----------
        params : mapping
            Validated parameters.

        Returns
        -------
        timing : TrialTiming
            Read from ``fixation_s``, ``deadline_s``, ``iti_s`` and, when
            ``feedback`` is true, ``feedback_s``.
        """
        feedback_s = (
            float(params.get("feedback_s", 0.0)) if params.get("feedback") else 0.0
        )
        return TrialTiming(
            fixation_s=float(params["fixation_s"]),
            deadline_s=float(params["deadline_s"]),
            iti_s=float(params["iti_s"]),
            feedback_s=feedback_s,
        )

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

    def keys(self, params: Mapping[str, Any]) -> list[str]:
        """Return the response keys of the task.

        Parameters
        ----------
        params : mapping
            Validated parameters.

        Returns
        -------
        keys : list of str
            PsychoPy key names.
        """
        raise NotImplementedError

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
            Column name to value; the same columns on every row.
        """
        return {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


# -- parameter checking helpers ------------------------------------------------
def _check_type(key: str, value: Any, default: Any) -> Any:
    """Check ``value`` against the type of its default; return it normalised."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise TaskParamError(key, "must be true or false", value)
        return value
    if isinstance(default, int | float):
        # bool is an int subclass; "true" is never a number here.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TaskParamError(key, "must be a number", value)
        if not math.isfinite(value):
            raise TaskParamError(key, "must be a finite number", value)
        return value
    if isinstance(default, str):
        if not isinstance(value, str):
            raise TaskParamError(key, "must be a string", value)
        return value
    if isinstance(default, list | tuple):
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise TaskParamError(key, "must be a list", value)
        return list(value)
    return value


def check_range(
    key: str,
    value: float,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> None:
    """Raise :class:`TaskParamError` if ``value`` is outside a range.

    Parameters
    ----------
    key : str
        Parameter name.
    value : float
        Its value.
    low, high : float | None
        Bounds (``high`` is inclusive).
    low_open : bool
        Whether ``low`` itself is excluded.
    """
    if low is not None and (value <= low if low_open else value < low):
        if high is not None:
            bracket = "(" if low_open else "["
            rule = f"must be in {bracket}{low:g}, {high:g}]"
        else:
            rule = f"must be {'>' if low_open else '>='} {low:g}"
        raise TaskParamError(key, rule, value)
    if high is not None and value > high:
        if low is not None:
            bracket = "(" if low_open else "["
            rule = f"must be in {bracket}{low:g}, {high:g}]"
        else:
            rule = f"must be <= {high:g}"
        raise TaskParamError(key, rule, value)


def check_keys(key: str, value: Sequence[Any], n: int) -> None:
    """Raise :class:`TaskParamError` unless ``value`` is ``n`` distinct key names.

    Parameters
    ----------
    key : str
        Parameter name.
    value : sequence
        The key names.
    n : int
        How many are needed.
    """
    if (
        len(value) != n
        or not all(isinstance(k, str) and k for k in value)
        or len(set(value)) != n
    ):
        raise TaskParamError(key, f"must be a list of {n} distinct key names", value)
    if "escape" in value:
        # Escape stops the block on the real keyboard.
        raise TaskParamError(key, "must not use 'escape' (it stops the block)", value)


# -- registry ------------------------------------------------------------------
#: Task name -> task class. Filled as task classes are defined
#: (:meth:`Task.__init_subclass__`); importing :mod:`stimtrain.tasks` imports
#: every task module of the package, so it is complete after that import.
TASKS: dict[str, type[Task]] = {}


def _register(cls: type[Task]) -> None:
    """Add a task class to :data:`TASKS` under its ``name``."""
    if not cls.name:
        return  # an abstract intermediate class
    other = TASKS.get(cls.name)
    if other is not None and other.__qualname__ != cls.__qualname__:
        raise RuntimeError(
            f"two tasks are named {cls.name!r}: {other.__module__}."
            f"{other.__qualname__} and {cls.__module__}.{cls.__qualname__}"
        )
    TASKS[cls.name] = cls


def import_task_modules() -> None:
    """Import every task module of this package, so that :data:`TASKS` is full."""
    package = __name__.rpartition(".")[0]
    infrastructure = {"api", "display", "runner", "participant"}
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if not info.name.startswith("_") and info.name not in infrastructure:
            importlib.import_module(f"{package}.{info.name}")


def get_task(name: str) -> Task:
    """Return a new instance of the task called ``name``.

    Parameters
    ----------
    name : str
        A key of :data:`TASKS`.

    Returns
    -------
    task : Task

    Raises
    ------
    KeyError
        If there is no such task; the message lists the known ones.
    """
    if not isinstance(name, str):
        raise KeyError(f"task name must be a string, got {name!r}")
    try:
        cls = TASKS[name]
    except KeyError:
        known = ", ".join(sorted(TASKS)) or "(none)"
        raise KeyError(f"unknown task {name!r}; known tasks: {known}") from None
    return cls()
