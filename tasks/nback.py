"""Adaptive n-back with letters (Jaeggi et al. 2008).

A letter every 3.0 s (shown for 0.5 s); press the key when it matches the
letter n positions back. A block has 20 + n trials with about 30 % targets
among those that can be one. The n level adapts block by block: up after a
block with accuracy ≥ 90 %, down (not below 1) after one below 75 %.
Measures: hits, false alarms, d′, accuracy, and the n reached.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .adaptive import Adaptation
from .api import Task, Trial, TrialResult
from .measures import accuracy, detection, mean_ms, of_condition
from .params import TaskParamError, check_keys, check_range
from .stimuli import TextStimulus

CONDITIONS = ("target", "nontarget")


def trials_per_block(n: int) -> int:
    """Return the canonical block length, 20 + n.

    Parameters
    ----------
    n : int
        The n level.

    Returns
    -------
    n_trials : int
    """
    return 20 + int(n)


class NBackTask(TextStimulus, Task):
    """Adaptive letter n-back.

    Parameters (``default_params``)
    -------------------------------
    n : int
        The starting n (2); the level.
    adaptive : bool
        Move n between blocks by accuracy (True).
    up_accuracy, down_accuracy : float
        n goes up at accuracy ≥ ``up_accuracy`` (0.9), down below
        ``down_accuracy`` (0.75).
    n_max : int
        Highest n (9).
    fixation_s : float
        Fixation before each letter (0.0: the sequence is paced).
    stimulus_s : float
        How long a letter is shown (0.5).
    deadline_s : float
        Time from one letter's onset to the end of its response window (3.0);
        trials are paced at this length whatever the response.
    iti_s : float
        Extra blank after the window (0.0).
    p_target : float
        Share of targets among the trials after the first n (0.3), exact.
    letters : list of str
        The letter set (8 consonants).
    keys : list of str
        The one "match" key (``["space"]``).
    feedback, feedback_s : bool, float
        Feedback after each trial (False, 0.5).
    letter_height : float
        In window heights (0.15).
    """

    name = "nback"
    default_params = {
        "n": 2,
        "adaptive": True,
        "up_accuracy": 0.9,
        "down_accuracy": 0.75,
        "n_max": 9,
        "fixation_s": 0.0,
        "stimulus_s": 0.5,
        "deadline_s": 3.0,
        "iti_s": 0.0,
        "p_target": 0.3,
        "letters": ["C", "H", "K", "N", "Q", "R", "T", "W"],
        "keys": ["space"],
        "feedback": False,
        "feedback_s": 0.5,
        "letter_height": 0.15,
    }
    text_field = "letter"

    def _check_params(self, params: dict[str, Any]) -> None:
        super()._check_params(params)
        for key in ("n", "n_max"):
            if not isinstance(params[key], int) or params[key] < 1:
                raise TaskParamError(key, "must be an integer >= 1", params[key])
        if params["n"] > params["n_max"]:
            raise TaskParamError(
                "n", f"must be <= n_max = {params['n_max']}", params["n"]
            )
        check_range("down_accuracy", params["down_accuracy"], low=0.0, high=1.0)
        check_range(
            "up_accuracy", params["up_accuracy"], low=params["down_accuracy"], high=1.0
        )
        check_range("p_target", params["p_target"], low=0.0, high=1.0)
        letters = params["letters"]
        if len(letters) < 2 or len(set(letters)) != len(letters):
            raise TaskParamError(
                "letters", "must be a list of at least 2 distinct letters", letters
            )
        check_keys("keys", params["keys"], 1)

    def default_n_trials(self, params: Mapping[str, Any]) -> int:
        """20 + n trials (Jaeggi 2008)."""
        return trials_per_block(params["n"])

    def timing(self, params: Mapping[str, Any]):
        """A paced sequence: the window runs to ``deadline_s`` after a response."""
        import dataclasses

        return dataclasses.replace(super().timing(params), fixed_duration=True)

    def adaptation(self, params: Mapping[str, Any]) -> Adaptation | None:
        """Return block-wise adaptation of ``n``, when ``adaptive``."""
        if not params["adaptive"]:
            return None
        return Adaptation(
            param="n",
            start=params["n"],
            step=1,
            low=1,
            high=params["n_max"],
            harder=1,
            per="block",
        )

    def next_level(
        self, measures: Mapping[str, Any], level: float, params: Mapping[str, Any]
    ) -> float:
        """Jaeggi's rule: up at accuracy ≥ ``up_accuracy``, down below the lower.

        Parameters
        ----------
        measures : mapping
            With ``accuracy``.
        level : float
            This block's n.
        params : mapping
        """
        acc = measures.get("accuracy", math.nan)
        if not math.isfinite(acc):
            return level
        if acc >= params["up_accuracy"]:
            return int(level) + 1
        if acc < params["down_accuracy"]:
            return max(1, int(level) - 1)
        return int(level)

    def make_trials(
        self, n_trials: int, rng: np.random.Generator, params: Mapping[str, Any]
    ) -> list[Trial]:
        """Make a letter sequence with an exact number of n-back targets.

        The first n letters cannot be targets; among the rest
        ``round(p_target * (n_trials - n))`` are. A non-target never repeats
        the letter n back.

        Parameters
        ----------
        n_trials : int
            Trials (canonically :func:`trials_per_block`).
        rng : numpy.random.Generator
        params : mapping
        """
        n = int(params["n"])
        letters = list(params["letters"])
        eligible = max(0, n_trials - n)
        n_targets = int(round(params["p_target"] * eligible))
        targets = set((n + rng.choice(eligible, n_targets, replace=False)).tolist())
        seq: list[str] = []
        trials = []
        for i in range(n_trials):
            if i in targets:
                letter, cond, key = seq[i - n], "target", params["keys"][0]
            else:
                pool = [c for c in letters if i < n or c != seq[i - n]]
                letter = pool[int(rng.integers(len(pool)))]
                cond, key = "nontarget", None
            seq.append(letter)
            trials.append(
                Trial(i, cond, {"letter": letter, "text": letter, "load": n}, key)
            )
        return trials

    def feedback_text(self, result: TrialResult) -> str:
        """Feedback names hits, misses and false alarms."""
        if result.trial.condition == "target":
            return "Hit" if result.correct else "Missed match"
        return "False alarm" if result.key is not None else ""

    def instructions(self, params: Mapping[str, Any]) -> str:
        """Explain the n-back rule at the block's n."""
        return (
            f"{params['n']}-back\n\nPress {params['keys'][0]} when the letter is the "
            f"same as {params['n']} letters before."
        )

    def measures(self, results: Sequence[TrialResult]) -> dict[str, Any]:
        """Compute hits, false alarms, d′ and accuracy.

        Returns
        -------
        measures : dict
            ``n`` (the block's n), ``n_trials``, ``n_targets``, ``hits``,
            ``misses``, ``false_alarms``, ``correct_rejections``,
            ``hit_rate``, ``false_alarm_rate``, ``dprime`` (log-linear
            corrected), ``accuracy`` (all trials) and ``rt_hit_ms``.
        """
        targets = of_condition(results, "target")
        others = [r for r in results if r.trial.condition != "target"]
        return {
            # "load" in the trial; the TSV (rebuilt by the analysis) says "n".
            "n": int(_load(results[0].trial)) if results else math.nan,
            "n_trials": len(results),
            "n_targets": len(targets),
            **detection(targets, others),
            "accuracy": accuracy(results),
            "rt_hit_ms": mean_ms(r.rt for r in targets if r.key is not None),
        }

    def tsv_fields(self, trial_result: TrialResult) -> dict[str, Any]:
        """Add the letter and n."""
        stim = trial_result.trial.stimulus
        return {"letter": stim["letter"], "n": stim["load"]}


def _load(trial: Trial) -> int:
    return trial.stimulus.get("load", trial.stimulus.get("n"))
