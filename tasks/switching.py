"""Cued task switching with digits: parity or magnitude, as the cue says.

Canonical design (docs/specs/tasks.md): digits 1–9 without 5; a cue names the rule
(odd/even or lower/higher than 5); the cue–target interval (CTI) is 100 or
900 ms; response window 2 s; fixation 500 ms. The cue stays up with the
target. Main measure: the switch cost, switch − repeat RT and errors (also
per CTI: preparation shrinks it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .adaptive import DEADLINE_ADAPTATION_PARAMS, AdaptiveDeadline
from .api import Task, Trial, TrialResult
from .counterbalance import balanced, exact_conditions
from .measures import condition_effect, condition_summary
from .params import TaskParamError, check_keys, check_range
from .stimuli import draw_text, text_stim

if TYPE_CHECKING:  # pragma: no cover
    from psychopy.visual import Window

CONDITIONS = ("repeat", "switch")
RULES = ("parity", "magnitude")
DIGITS = (1, 2, 3, 4, 6, 7, 8, 9)


def rule_answer(rule: str, digit: int) -> int:
    """Return which of the two keys (0 or 1) a digit needs under a rule.

    Parameters
    ----------
    rule : str
        ``"parity"``: odd 0, even 1; ``"magnitude"``: below 5 0, above 5 1.
    digit : int
        1–9 without 5.

    Returns
    -------
    index : int
    """
    if rule == "parity":
        return int(digit % 2 == 0)
    return int(digit > 5)


class TaskSwitchingTask(AdaptiveDeadline, Task):
    """Cued parity/magnitude task switching.

    Parameters (``default_params``)
    -------------------------------
    fixation_s : float
        Fixation (0.5).
    cti_s : list of float
        Cue–target intervals, balanced within each condition (``[0.1, 0.9]``).
    deadline_s : float
        Response window from target onset (2.0).
    iti_s : float
        Blank interval (0.5).
    p_switch : float
        Share of switch trials among all but the first (0.5), exact.
    cues : list of str
        Cue words for parity and magnitude (``["ODD / EVEN", "LOW / HIGH"]``).
    keys : list of str
        Keys for odd/low and even/high (``["left", "right"]``).
    feedback, feedback_s : bool, float
        Feedback after each trial (False, 0.5).
    letter_height : float
        Digit height in window heights (0.12).
    adaptive, target_accuracy, deadline_step_s, deadline_min_s
        Training: a staircase on the deadline (off, 0.8, 0.025, 0.2).
    """

    name = "switching"
    default_params = {
        "fixation_s": 0.5,
        "cti_s": [0.1, 0.9],
        "deadline_s": 2.0,
        "iti_s": 0.5,
        "p_switch": 0.5,
        "cues": ["ODD / EVEN", "LOW / HIGH"],
        "keys": ["left", "right"],
        "feedback": False,
        "feedback_s": 0.5,
        "letter_height": 0.12,
        **DEADLINE_ADAPTATION_PARAMS,
    }
    tsv_stimulus_fields = ("rule", "digit", "cti")

    def __init__(self) -> None:
        self._digit = None
        self._cue = None

    def _check_params(self, params: dict[str, Any]) -> None:
        super()._check_params(params)
        ctis = params["cti_s"]
        if not ctis or not all(
            isinstance(c, int | float) and not isinstance(c, bool) and 0 < c <= 5
            for c in ctis
        ):
            raise TaskParamError(
                "cti_s", "must be a non-empty list of seconds in (0, 5]", ctis
            )
        check_range("p_switch", params["p_switch"], low=0.0, high=1.0)
        cues = params["cues"]
        if len(cues) != 2 or not all(isinstance(c, str) and c for c in cues):
            raise TaskParamError("cues", "must be a list of 2 cue texts", cues)
        check_keys("keys", params["keys"], 2)

    def timing(self, params: Mapping[str, Any]):
        """Add the longest cue, for planning."""
        import dataclasses

        return dataclasses.replace(
            super().timing(params), cue_s=float(max(params["cti_s"]))
        )

    def make_trials(
        self, n_trials: int, rng: np.random.Generator, params: Mapping[str, Any]
    ) -> list[Trial]:
        """Make a rule sequence with an exact share of switches.

        The first trial is labelled ``"first"`` (neither switch nor repeat);
        CTIs are balanced within switch and within repeat trials; digits are
        drawn at random.
        """
        if n_trials == 0:
            return []
        shares = {"switch": params["p_switch"], "repeat": None}
        transitions = np.array(exact_conditions(n_trials - 1, shares))[
            rng.permutation(n_trials - 1)
        ]
        conditions = ["first", *transitions.tolist()]
        cti_of = [float(c) for c in balanced(conditions, params["cti_s"], rng)]
        rule = RULES[int(rng.integers(2))]
        trials = []
        for index, cond in enumerate(conditions):
            if cond == "switch":
                rule = RULES[1 - RULES.index(rule)]
            digit = int(DIGITS[int(rng.integers(len(DIGITS)))])
            cue = params["cues"][RULES.index(rule)]
            trials.append(
                Trial(
                    index=index,
                    condition=cond,
                    stimulus={
                        "rule": rule,
                        "digit": digit,
                        "cue": cue,
                        "cti": cti_of[index],
                        "text": f"{rule}:{digit}",
                    },
                    correct_key=params["keys"][rule_answer(rule, digit)],
                    cue_s=cti_of[index],
                )
            )
        return trials

    def build_stimuli(self, win: Window, params: Mapping[str, Any]) -> None:
        """Create the cue (above) and the digit (centre)."""
        h = params["letter_height"]
        self._cue = text_stim(
            win, params, pos=(0, 1.5 * h), height=0.6 * h, color="yellow"
        )
        self._digit = text_stim(win, params, color="white")

    def draw_cue(self, trial: Trial) -> None:
        """Draw the cue alone (the cue–target interval)."""
        draw_text(self._cue, trial.stimulus["cue"])

    def draw_stimulus(self, trial: Trial) -> None:
        """Draw the cue and the digit."""
        self.draw_cue(trial)
        draw_text(self._digit, str(trial.stimulus["digit"]))

    def instructions(self, params: Mapping[str, Any]) -> str:
        """Explain both rules."""
        a, b = params["keys"]
        c1, c2 = params["cues"]
        return (
            f"{c1}: odd {a}, even {b}\n{c2}: below 5 {a}, above 5 {b}\n\n"
            "The cue above the digit tells the rule."
        )

    def measures(self, results: Sequence[TrialResult]) -> dict[str, Any]:
        """Compute the switch cost overall and per CTI.

        Returns
        -------
        measures : dict
            :func:`~stimtrain.tasks.measures.condition_summary` fields for
            repeat and switch; ``switch_cost_ms`` (switch − repeat mean
            correct RT) and ``switch_cost_accuracy`` (repeat − switch
            accuracy); and the same per CTI as ``switch_cost_ms_cti<ms>``.
        """
        out = condition_summary(results, CONDITIONS)
        out.update(condition_effect(out, "switch_cost", "switch", "repeat"))
        # The CTI from the stimulus: the analysis rebuilds trials from the TSV,
        # whose ``cti`` column lands there, not in cue_s.
        ctis = sorted({_cti(r) for r in results if r.trial.condition != "first"})
        for cti in ctis:
            sub = condition_summary(
                [r for r in results if _cti(r) == cti],
                CONDITIONS,
            )
            eff = condition_effect(sub, "switch_cost", "switch", "repeat")
            out[f"switch_cost_ms_cti{round(cti * 1e3)}"] = eff["switch_cost_ms"]
        return out


def _cti(result: TrialResult) -> float:
    return float(result.trial.stimulus.get("cti", result.trial.cue_s))
