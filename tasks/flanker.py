"""Eriksen flanker task with arrows (``<<<<<`` / ``<<><<``).

Canonical defaults (docs/specs/tasks.md): 50 % congruent trials, fixation 500 ms,
the stimulus stays up until the response or a 1.5 s deadline, optional
feedback. The participant reports the direction of the central arrow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .adaptive import DEADLINE_ADAPTATION_PARAMS, AdaptiveDeadline
from .api import Task, Trial, TrialResult
from .counterbalance import balanced, exact_conditions
from .measures import condition_effect, condition_summary
from .params import TaskParamError, check_keys, check_range
from .stimuli import TextStimulus

CONDITIONS = ("congruent", "incongruent")
_ARROW = {"left": "<", "right": ">"}


def flanker_text(target: str, flankers: str, n_flankers: int = 2) -> str:
    """Return the arrow string of a flanker stimulus.

    Parameters
    ----------
    target, flankers : str
        ``"left"`` or ``"right"``.
    n_flankers : int
        Flanking arrows on each side.

    Returns
    -------
    text : str
        E.g. ``"<<><<"`` for a right target among left flankers.
    """
    side = _ARROW[flankers] * n_flankers
    return side + _ARROW[target] + side


class FlankerTask(TextStimulus, AdaptiveDeadline, Task):
    """Eriksen flanker with arrows.

    Parameters (``default_params``)
    -------------------------------
    fixation_s : float
        Fixation cross before each stimulus (0.5).
    deadline_s : float
        Response window from onset; the stimulus stays up until then (1.5).
    iti_s : float
        Blank interval after each trial (0.5).
    p_congruent : float
        Proportion of congruent trials (0.5); the block holds exactly
        ``round(n_trials * p_congruent)`` of them, in random order.
    feedback : bool
        Show "Correct" / "Error" / "Too slow" after each trial (False).
    feedback_s : float
        How long feedback stays up (0.5).
    keys : list of str
        Keys for a left- and a right-pointing target (``["left", "right"]``).
    n_flankers : int
        Flanking arrows on each side (2, i.e. five arrows).
    letter_height : float
        Arrow height in window heights (0.08).
    adaptive, target_accuracy, deadline_step_s, deadline_min_s
        Training: a staircase on the deadline aiming at the target accuracy
        (off, 0.8, 0.025, 0.2); see :mod:`stimtrain.tasks.adaptive`.
    """

    name = "flanker"
    default_params = {
        "fixation_s": 0.5,
        "deadline_s": 1.5,
        "iti_s": 0.5,
        "p_congruent": 0.5,
        "feedback": False,
        "feedback_s": 0.5,
        "keys": ["left", "right"],
        "n_flankers": 2,
        "letter_height": 0.08,
        **DEADLINE_ADAPTATION_PARAMS,
    }
    tsv_stimulus_fields = ("target", "flankers")
    text_style = {"text": "<<<<<", "color": "white", "font": "DejaVu Sans Mono"}

    def _check_params(self, params: dict[str, Any]) -> None:
        super()._check_params(params)
        check_range("p_congruent", params["p_congruent"], low=0.0, high=1.0)
        check_keys("keys", params["keys"], 2)
        n = params["n_flankers"]
        if not isinstance(n, int) or n < 1 or n > 10:
            raise TaskParamError("n_flankers", "must be an integer in [1, 10]", n)

    def make_trials(
        self, n_trials: int, rng: np.random.Generator, params: Mapping[str, Any]
    ) -> list[Trial]:
        """Make a block with the congruent share and target sides balanced."""
        shares = {"congruent": params["p_congruent"], "incongruent": None}
        conditions = exact_conditions(n_trials, shares)
        # Balance left/right targets within each condition (as far as an odd
        # count allows) so that a side bias cannot masquerade as congruency.
        targets = balanced(conditions, ["left", "right"], rng)
        order = rng.permutation(n_trials)
        left_key, right_key = params["keys"]
        trials = []
        for index, k in enumerate(order):
            cond, target = conditions[k], targets[k]
            flankers = target if cond == "congruent" else _other(target)
            trials.append(
                Trial(
                    index=index,
                    condition=cond,
                    stimulus={
                        "target": target,
                        "flankers": flankers,
                        "text": flanker_text(target, flankers, params["n_flankers"]),
                    },
                    correct_key=left_key if target == "left" else right_key,
                )
            )
        return trials

    def measures(self, results: Sequence[TrialResult]) -> dict[str, Any]:
        """Compute mean correct RT and accuracy per condition and their effects.

        Returns
        -------
        measures : dict
            ``n_trials``; per condition ``n_<cond>``, ``rt_<cond>_ms`` (mean
            RT of correct responses), ``accuracy_<cond>``; ``misses`` (no
            response); ``congruency_effect_ms`` (incongruent - congruent RT)
            and ``congruency_effect_accuracy`` (congruent - incongruent
            accuracy). Undefined values are ``nan``.
        """
        out = condition_summary(results, CONDITIONS)
        out.update(condition_effect(out, "congruency_effect", *CONDITIONS[::-1]))
        return out


def _other(side: str) -> str:
    return "right" if side == "left" else "left"
