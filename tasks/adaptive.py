"""Adaptive difficulty: which parameter a task adapts, and PsychoPy's staircase on it.

A task's *level* is the value of one of its parameters (a response deadline,
a stop-signal delay, the n of n-back). Trial-wise adaptation runs a
:class:`psychopy.data.StairHandler` on it: a transformed up-down rule
(Levitt 1971) whose number of correct trials before a harder step is chosen
so that the staircase converges on the target accuracy. Block-wise
adaptation leaves the level fixed within a block and lets the task choose the
next block's level from its measures (e.g. the n-back rule of Jaeggi 2008).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .params import check_range

logger = logging.getLogger("stimtrain.tasks.adaptive")

#: Never ends by itself: the block decides how many trials there are.
_ENDLESS = 10**9


@dataclass(frozen=True)
class Adaptation:
    """How a task adapts its difficulty.

    Attributes
    ----------
    param : str
        The parameter that is the level (e.g. ``"deadline_s"``).
    start : float
        The level of the first trial (or block) unless a saved level is given.
    step : float
        Step of the level, in the parameter's unit.
    low, high : float
        Bounds of the level.
    harder : {-1, 1}
        ``-1`` if a smaller value is harder (a deadline), ``1`` if a larger
        one is (a stop-signal delay, the n of n-back).
    per : {"trial", "block"}
        ``"trial"``: a staircase moves the level after each trial;
        ``"block"``: the task's ``next_level`` moves it after the block.
    target_accuracy : float
        Accuracy the staircase converges on (trial-wise only).
    persist : bool
        Whether the level reached carries over to the next session (a
        training level does; the stop-signal delay, a measurement device,
        restarts at its canonical start every block).
    """

    param: str
    start: float
    step: float
    low: float
    high: float
    harder: Literal[-1, 1] = -1
    per: Literal["trial", "block"] = "trial"
    target_accuracy: float = 0.8
    persist: bool = True

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ValueError(f"{self.param}: level bounds [{self.low}, {self.high}]")
        if self.harder not in (-1, 1):
            raise ValueError(f"harder must be -1 or 1, got {self.harder!r}")
        if self.per not in ("trial", "block"):
            raise ValueError(f"per must be 'trial' or 'block', got {self.per!r}")
        if not 0.5 <= self.target_accuracy < 1:
            raise ValueError(
                f"target_accuracy must be in [0.5, 1), got {self.target_accuracy!r}"
            )

    def clamp(self, level: float) -> float:
        """Return ``level`` kept within the bounds."""
        return min(max(float(level), self.low), self.high)


def n_down_for(target_accuracy: float) -> int:
    """Return the number of correct trials before a harder step.

    An n-down/1-up staircase converges where ``p ** n = 0.5`` (Levitt 1971),
    so ``n = log(0.5) / log(p)`` rounded: 1 for 50 %, 2 for 70.7 %, 3 for
    79.4 %, 4 for 84.1 %.

    Parameters
    ----------
    target_accuracy : float
        In ``[0.5, 1)``.

    Returns
    -------
    n_down : int
    """
    if not 0.5 <= target_accuracy < 1:
        raise ValueError(f"target_accuracy must be in [0.5, 1), got {target_accuracy}")
    return max(1, round(math.log(0.5) / math.log(target_accuracy)))


class Staircase:
    """A trial-wise level on :class:`psychopy.data.StairHandler`.

    Parameters
    ----------
    adaptation : Adaptation
        What to adapt; ``per`` must be ``"trial"``.
    start : float | None
        Starting level (e.g. the level a previous session reached); default
        ``adaptation.start``. Clamped to the bounds.

    Notes
    -----
    StairHandler makes the intensity smaller after ``nDown`` correct trials.
    When a larger level is harder (``harder = 1``) the handler runs on the
    negated level, so that "correct means harder" holds either way.
    """

    def __init__(self, adaptation: Adaptation, start: float | None = None) -> None:
        from psychopy.data import StairHandler

        if adaptation.per != "trial":
            raise ValueError("a Staircase adapts trial by trial (per='trial')")
        self.adaptation = adaptation
        level = adaptation.clamp(adaptation.start if start is None else start)
        sign = -adaptation.harder  # handler intensity = sign * level
        self._sign = sign
        low, high = sorted((sign * adaptation.low, sign * adaptation.high))
        self._handler = StairHandler(
            startVal=sign * level,
            stepSizes=[adaptation.step],
            stepType="lin",
            nUp=1,
            nDown=n_down_for(adaptation.target_accuracy),
            # The initial 1-up/1-down phase would aim at 50 % until the first
            # reversal; training should start at the target right away.
            applyInitialRule=False,
            minVal=low,
            maxVal=high,
            nTrials=_ENDLESS,
            nReversals=_ENDLESS,
            autoLog=False,
        )
        self._level = level
        self._pending = False

    @property
    def level(self) -> float:
        """The level of the next trial (rounded to 1e-9 against float drift)."""
        if not self._pending:
            self._level = round(self._sign * next(self._handler), 9)
            self._pending = True
        return self._level

    def update(self, correct: bool) -> None:
        """Record the outcome of a trial run at :attr:`level`.

        Parameters
        ----------
        correct : bool
            Whether the trial succeeded (for a stop trial: the response was
            withheld).
        """
        _ = self.level  # the handler must have issued the trial's intensity
        self._handler.addResponse(1 if correct else 0)
        self._pending = False

    @property
    def reversals(self) -> list[float]:
        """Levels at which the staircase reversed direction."""
        return [round(self._sign * v, 9) for v in self._handler.reversalIntensities]


#: Parameters of a task that can adapt its response deadline (merged into its
#: ``default_params``): off by default, since a one-off measurement needs a
#: fixed deadline; training turns it on.
DEADLINE_ADAPTATION_PARAMS = {
    "adaptive": False,
    "target_accuracy": 0.8,
    "deadline_step_s": 0.025,
    "deadline_min_s": 0.2,
}


def deadline_adaptation(params: Mapping[str, Any]) -> Adaptation | None:
    """Return a staircase on the response deadline, if ``params["adaptive"]``.

    The deadline starts at ``deadline_s`` (its ceiling) and moves by
    ``deadline_step_s`` down to ``deadline_min_s``, aiming at
    ``target_accuracy``.

    Parameters
    ----------
    params : mapping
        Validated parameters holding :data:`DEADLINE_ADAPTATION_PARAMS`.

    Returns
    -------
    adaptation : Adaptation | None
    """
    if not params["adaptive"]:
        return None
    return Adaptation(
        param="deadline_s",
        start=float(params["deadline_s"]),
        step=float(params["deadline_step_s"]),
        low=float(params["deadline_min_s"]),
        high=float(params["deadline_s"]),
        harder=-1,
        per="trial",
        target_accuracy=float(params["target_accuracy"]),
    )


def check_deadline_params(params: Mapping[str, Any]) -> None:
    """Check :data:`DEADLINE_ADAPTATION_PARAMS`; raise ``TaskParamError``.

    Parameters
    ----------
    params : mapping
        Parameters after type checks.
    """
    check_range("deadline_step_s", params["deadline_step_s"], low=0.0, low_open=True)
    if params["adaptive"]:
        check_range(
            "deadline_min_s",
            params["deadline_min_s"],
            low=0.0,
            high=params["deadline_s"],
            low_open=True,
        )
    else:
        check_range("deadline_min_s", params["deadline_min_s"], low=0.0, low_open=True)


class AdaptiveDeadline:
    """Mixin for a :class:`~stimtrain.tasks.api.Task` whose level is its deadline.

    The task adds :data:`DEADLINE_ADAPTATION_PARAMS` to its
    ``default_params``; this mixin checks them and returns the staircase.
    """

    def adaptation(self, params: Mapping[str, Any]) -> Adaptation | None:
        """Return the deadline staircase when ``adaptive`` is true."""
        return deadline_adaptation(params)

    def _check_params(self, params: dict[str, Any]) -> None:
        super()._check_params(params)  # type: ignore[misc]
        check_deadline_params(params)
