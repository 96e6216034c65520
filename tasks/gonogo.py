"""Go/no-go task: respond to every letter except the no-go letter.

Canonical design (specs/tasks.md): 75 % go, 25 % no-go trials, one response
key, the stimulus shown for ~500 ms and a response window of ~1 s. Measures:
commission errors (responses on no-go trials), omission errors (no response
on go trials) and the mean go RT.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .adaptive import DEADLINE_ADAPTATION_PARAMS, AdaptiveDeadline
from .api import Task, TaskParamError, Trial, TrialResult, check_keys, check_range
from .measures import condition_summary, dprime

if TYPE_CHECKING:  # pragma: no cover
    from psychopy.visual import Window

CONDITIONS = ("go", "nogo")


class GoNoGoTask(AdaptiveDeadline, Task):
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

    def __init__(self) -> None:
        self._stim = None

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
        check_range(
            "letter_height", params["letter_height"], low=0.0, high=1.0, low_open=True
        )

    def make_trials(
        self, n_trials: int, rng: np.random.Generator, params: Mapping[str, Any]
    ) -> list[Trial]:
        """Make a block with exactly ``round(n * p_nogo)`` no-go trials.

        Parameters
        ----------
        n_trials : int
        rng : numpy.random.Generator
        params : mapping

        Returns
        -------
        trials : list of Trial
        """
        n_nogo = int(round(n_trials * params["p_nogo"]))
        conditions = np.array(["go"] * (n_trials - n_nogo) + ["nogo"] * n_nogo)
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

    def build_stimuli(self, win: Window, params: Mapping[str, Any]) -> None:
        """Create the letter stimulus.

        Parameters
        ----------
        win : psychopy.visual.Window
        params : mapping
        """
        from psychopy import visual

        self._stim = visual.TextStim(
            win, text="", height=params["letter_height"], color="white", autoLog=False
        )

    def draw_stimulus(self, trial: Trial) -> None:
        """Draw the letter.

        Parameters
        ----------
        trial : Trial
        """
        if self._stim is None:
            raise RuntimeError("build_stimuli() must be called before drawing")
        if self._stim.text != trial.stimulus["letter"]:
            self._stim.text = trial.stimulus["letter"]
        self._stim.draw()

    def keys(self, params: Mapping[str, Any]) -> list[str]:
        """Return the response key.

        Parameters
        ----------
        params : mapping

        Returns
        -------
        keys : list of str
        """
        return list(params["keys"])

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

        Parameters
        ----------
        results : sequence of TrialResult

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
        go = [r for r in results if r.trial.condition == "go"]
        nogo = [r for r in results if r.trial.condition == "nogo"]
        commissions = [r for r in nogo if r.key is not None]
        hits = sum(r.key is not None for r in go)
        out["commissions"] = len(commissions)
        out["omissions"] = len(go) - hits
        out["commission_rate"] = len(commissions) / len(nogo) if nogo else math.nan
        out["omission_rate"] = out["omissions"] / len(go) if go else math.nan
        out["go_rt_ms"] = out["rt_go_ms"]
        rts = [r.rt for r in commissions]
        out["commission_rt_ms"] = float(np.mean(rts)) * 1e3 if rts else math.nan
        out["dprime"] = dprime(hits, len(go), len(commissions), len(nogo))
        return out

    def tsv_fields(self, trial_result: TrialResult) -> dict[str, Any]:
        """Add the letter shown.

        Parameters
        ----------
        trial_result : TrialResult

        Returns
        -------
        fields : dict
        """
        return {"letter": trial_result.trial.stimulus["letter"]}
