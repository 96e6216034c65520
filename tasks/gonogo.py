"""Go/no-go task: respond to every letter except the no-go letter.

Canonical design (docs/specs/tasks.md): 75 % go, 25 % no-go trials, one response
key, the stimulus shown for ~500 ms and a response window of ~1 s. Measures:
commission errors (responses on no-go trials), omission errors (no response
on go trials) and the mean go RT.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .adaptive import DEADLINE_ADAPTATION_PARAMS, AdaptiveDeadline
from .api import Task, Trial, TrialResult
from .counterbalance import exact_conditions
from .measures import condition_summary, detection, mean_ms, of_condition, proportion
from .params import TaskParamError, check_keys, check_range
from .stimuli import TextStimulus

CONDITIONS = ("go", "nogo")


class GoNoGoTask(TextStimulus, AdaptiveDeadline, Task):
    """Go/no-go with letters.

    Parameters (``default_params``)
    -------------------------------
    fixation_s : float
        Fixation before each stimulus (0.5).
    stimulus_s : float
        How long the letter is shown (0.5).
    deadline_s : float
        Response window from onset (1.0); a trial lasts this long unless a
        response ends it.
    iti_s : float
        Blank interval (0.5).
    p_nogo : float
        Share of no-go trials (0.25), exact per block.
    go_stimuli : list of str
        Letters of go trials, drawn at random (``["M", "P", "R", "K"]``).
    nogo_stimulus : str
        The no-go letter (``"X"``).
    keys : list of str
        The one response key (``["space"]``).
    feedback, feedback_s : bool, float
        Feedback after each trial (False, 0.5).
    letter_height : float
        In window heights (0.12).
    adaptive, target_accuracy, deadline_step_s, deadline_min_s
        Training: a staircase on the deadline (off, 0.8, 0.025, 0.2).
    """

    name = "gonogo"
    default_params = {
        "fixation_s": 0.5,
        "stimulus_s": 0.5,
        "deadline_s": 1.0,
        "iti_s": 0.5,
        "p_nogo": 0.25,
        "go_stimuli": ["M", "P", "R", "K"],
        "nogo_stimulus": "X",
        "keys": ["space"],
        "feedback": False,
        "feedback_s": 0.5,
        "letter_height": 0.12,
        **DEADLINE_ADAPTATION_PARAMS,
    }
    tsv_stimulus_fields = ("letter",)
    text_field = "letter"

    def _check_params(self, params: dict[str, Any]) -> None:
        super()._check_params(params)
        check_range("p_nogo", params["p_nogo"], low=0.0, high=1.0)
        go = params["go_stimuli"]
        if not go or not all(isinstance(g, str) and g for g in go):
            raise TaskParamError(
                "go_stimuli", "must be a non-empty list of strings", go
            )
        if params["nogo_stimulus"] in go or not params["nogo_stimulus"]:
            raise TaskParamError(
                "nogo_stimulus",
                "must be a non-empty string not among go_stimuli",
                params["nogo_stimulus"],
            )
        check_keys("keys", params["keys"], 1)

    def make_trials(
        self, n_trials: int, rng: np.random.Generator, params: Mapping[str, Any]
    ) -> list[Trial]:
        """Make a block with exactly ``round(n * p_nogo)`` no-go trials."""
        shares = {"go": None, "nogo": params["p_nogo"]}
        conditions = np.array(exact_conditions(n_trials, shares))
        conditions = conditions[rng.permutation(n_trials)]
        go = list(params["go_stimuli"])
        trials = []
        for index, cond in enumerate(conditions):
            if cond == "go":
                letter = go[int(rng.integers(len(go)))]
                key = params["keys"][0]
            else:
                letter, key = params["nogo_stimulus"], None
            trials.append(
                Trial(index, str(cond), {"letter": letter, "text": letter}, key)
            )
        return trials

    def feedback_text(self, result: TrialResult) -> str:
        """Name a no-go error as such."""
        if result.trial.condition == "nogo" and result.key is not None:
            return "Don't press for " + result.trial.stimulus["letter"]
        return super().feedback_text(result)

    def instructions(self, params: Mapping[str, Any]) -> str:
        """Explain go and no-go."""
        return (
            f"Press {params['keys'][0]} for every letter\n"
            f"except {params['nogo_stimulus']}."
        )

    def measures(self, results: Sequence[TrialResult]) -> dict[str, Any]:
        """Compute commission and omission rates and the go RT.

        Returns
        -------
        measures : dict
            :func:`~stimtrain.tasks.measures.condition_summary` fields,
            ``commission_rate`` (responses on no-go trials),
            ``omission_rate`` (no response on go trials), ``go_rt_ms`` (mean
            RT of go responses), ``commission_rt_ms`` and ``dprime`` (go hits
            vs no-go false alarms).
        """
        out = condition_summary(results, CONDITIONS)
        go, nogo = of_condition(results, "go"), of_condition(results, "nogo")
        sd = detection(go, nogo)
        out["commissions"] = sd["false_alarms"]
        out["omissions"] = sd["misses"]
        out["commission_rate"] = sd["false_alarm_rate"]
        out["omission_rate"] = proportion(sd["misses"], len(go))
        out["go_rt_ms"] = out["rt_go_ms"]
        out["commission_rt_ms"] = mean_ms(r.rt for r in nogo if r.key is not None)
        out["dprime"] = sd["dprime"]
        return out
