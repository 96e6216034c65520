"""Stop-signal task, consensus version (Verbruggen et al. 2019, eLife 8:e46323).

A choice reaction to an arrow (left/right); on a quarter of the trials the
arrow turns red after a stop-signal delay (SSD) and the response must be
withheld. The SSD follows a 1-up/1-down staircase (PsychoPy's
:class:`~psychopy.data.StairHandler`): it starts at 200 ms, goes up 50 ms
after a successful stop and down 50 ms after a failed one, within
[50, 1200] ms, so that p(respond | signal) converges on 0.5. Fixation 250 ms,
maximum RT 1250 ms, inter-trial interval 500 ms, 64 trials per block. SSRT
by the integration method with go omissions replaced by the maximum RT.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .adaptive import Adaptation
from .api import Task, Trial, TrialResult
from .counterbalance import balanced, exact_conditions
from .measures import (
    condition_summary,
    mean_ms,
    of_condition,
    proportion,
    ssrt_integration,
)
from .params import TaskParamError, check_keys, check_range
from .stimuli import draw_text, text_stim

if TYPE_CHECKING:  # pragma: no cover
    from psychopy.visual import Window

CONDITIONS = ("go", "stop")
_ARROW = {"left": "←", "right": "→"}
#: Trials per block in the consensus design.
TRIALS_PER_BLOCK = 64


class StopSignalTask(Task):
    """Stop-signal task with an SSD staircase.

    Parameters (``default_params``)
    -------------------------------
    fixation_s : float
        Fixation (0.25).
    deadline_s : float
        Maximum RT (1.25); go omissions count as this RT for the SSRT.
    iti_s : float
        Blank interval (0.5).
    p_stop : float
        Share of stop trials (0.25), exact per block.
    ssd_s : float
        Starting stop-signal delay (0.2).
    ssd_step_s : float
        Staircase step (0.05).
    ssd_min_s, ssd_max_s : float
        Bounds of the delay (0.05, 1.2).
    keys : list of str
        Keys for a left and a right arrow (``["left", "right"]``).
    signal_colour : str
        Colour the arrow turns at the stop signal (``"red"``).
    feedback, feedback_s : bool, float
        Feedback after each trial (False, 0.5).
    letter_height : float
        Arrow height in window heights (0.12).
    """

    name = "stopsignal"
    default_params = {
        "fixation_s": 0.25,
        "deadline_s": 1.25,
        "iti_s": 0.5,
        "p_stop": 0.25,
        "ssd_s": 0.2,
        "ssd_step_s": 0.05,
        "ssd_min_s": 0.05,
        "ssd_max_s": 1.2,
        "keys": ["left", "right"],
        "signal_colour": "red",
        "feedback": False,
        "feedback_s": 0.5,
        "letter_height": 0.12,
    }

    def __init__(self) -> None:
        self._go = None
        self._stop = None

    def _check_params(self, params: dict[str, Any]) -> None:
        super()._check_params(params)
        check_range("p_stop", params["p_stop"], low=0.0, high=1.0)
        check_range("ssd_step_s", params["ssd_step_s"], low=0.0, low_open=True)
        check_range("ssd_min_s", params["ssd_min_s"], low=0.0)
        check_range("ssd_max_s", params["ssd_max_s"], low=params["ssd_min_s"])
        check_range(
            "ssd_s", params["ssd_s"], low=params["ssd_min_s"], high=params["ssd_max_s"]
        )
        if params["ssd_max_s"] >= params["deadline_s"]:
            raise TaskParamError(
                "ssd_max_s",
                f"must be < deadline_s = {params['deadline_s']:g}",
                params["ssd_max_s"],
            )
        check_keys("keys", params["keys"], 2)

    def default_n_trials(self, params: Mapping[str, Any]) -> int:
        """64 trials per block (consensus design)."""
        return TRIALS_PER_BLOCK

    def adaptation(self, params: Mapping[str, Any]) -> Adaptation:
        """Return the SSD staircase: 1-up/1-down, longer delay is harder."""
        return Adaptation(
            param="ssd_s",
            start=float(params["ssd_s"]),
            step=float(params["ssd_step_s"]),
            low=float(params["ssd_min_s"]),
            high=float(params["ssd_max_s"]),
            harder=1,
            per="trial",
            target_accuracy=0.5,
            persist=False,
        )

    def updates_level(self, trial: Trial) -> bool:
        """Only stop trials move the delay."""
        return trial.condition == "stop"

    def make_trials(
        self, n_trials: int, rng: np.random.Generator, params: Mapping[str, Any]
    ) -> list[Trial]:
        """Make a block with exactly ``round(n * p_stop)`` stop trials.

        Arrow directions are balanced within go and within stop trials.
        """
        conditions = exact_conditions(n_trials, {"go": None, "stop": params["p_stop"]})
        sides = balanced(conditions, ["left", "right"], rng)
        left, right = params["keys"]
        trials = []
        for index, k in enumerate(rng.permutation(n_trials)):
            side = sides[k]
            trials.append(
                Trial(
                    index,
                    conditions[k],
                    # The maximum RT travels with the trial (and the TSV),
                    # so the SSRT can be recomputed from the TSV alone.
                    {
                        "arrow": side,
                        "text": _ARROW[side],
                        "max_rt": float(params["deadline_s"]),
                    },
                    left if side == "left" else right,
                )
            )
        return trials

    def prepare_trial(self, trial: Trial, params: Mapping[str, Any]) -> Trial:
        """Give a stop trial the staircase's current delay.

        Parameters
        ----------
        trial : Trial
        params : mapping
            With ``ssd_s`` = the staircase's level.
        """
        if trial.condition != "stop":
            return trial
        return dataclasses.replace(trial, signal_s=float(params["ssd_s"]))

    def score(self, trial: Trial, key: str | None) -> bool:
        """A stop trial is correct when no key was pressed."""
        if trial.condition == "stop":
            return key is None
        return key == trial.correct_key

    def build_stimuli(self, win: Window, params: Mapping[str, Any]) -> None:
        """Create the white arrow and its stop-signal (coloured) version."""
        kw = dict(text="←", font="DejaVu Sans")
        self._go = text_stim(win, params, color="white", **kw)
        self._stop = text_stim(win, params, color=params["signal_colour"], **kw)

    def draw_stimulus(self, trial: Trial) -> None:
        """Draw the arrow."""
        draw_text(self._go, trial.stimulus["text"])

    def draw_signal(self, trial: Trial) -> None:
        """Draw the arrow in the signal colour over the white one."""
        draw_text(self._stop, trial.stimulus["text"])

    def feedback_text(self, result: TrialResult) -> str:
        """Say whether a stop succeeded."""
        if result.trial.condition == "stop":
            return "Stopped" if result.correct else "Try to stop"
        return super().feedback_text(result)

    def instructions(self, params: Mapping[str, Any]) -> str:
        """Explain go and stop."""
        left, right = params["keys"]
        return (
            f"Arrow left: {left}, arrow right: {right}. Be fast.\n\n"
            f"If the arrow turns {params['signal_colour']}, try not to respond."
        )

    def measures(self, results: Sequence[TrialResult]) -> dict[str, Any]:
        """Compute the consensus measures and the SSRT.

        Returns
        -------
        measures : dict
            :func:`~stimtrain.tasks.measures.condition_summary` fields
            (``misses``: go omissions); ``p_respond_signal``;
            ``mean_ssd_ms``; ``go_rt_ms`` (mean RT of correct go
            responses); ``go_omission_rate``;
            ``go_choice_error_rate``; ``signal_respond_rt_ms``;
            ``ssrt_ms`` (integration method, go omissions replaced by the
            maximum RT); ``race_model_ok`` (signal-respond RT shorter than
            the mean go RT, the condition for estimating SSRT at all).
        """
        out = condition_summary(results, CONDITIONS)
        go, stop = of_condition(results, "go"), of_condition(results, "stop")
        responded = [r for r in stop if r.key is not None]
        p_respond = proportion(len(responded), len(stop))
        ssds = [d for d in map(_ssd, stop) if d is not None]
        mean_ssd = float(np.mean(ssds)) if ssds else math.nan
        go_rts = [r.rt for r in go]
        all_go_rt = [rt for rt in go_rts if rt is not None]
        # Withholding on a stop trial is no miss: only go omissions are.
        out["misses"] = sum(r.key is None for r in go)
        out["p_respond_signal"] = p_respond
        out["mean_ssd_ms"] = mean_ssd * 1e3
        out["go_rt_ms"] = out["rt_go_ms"]
        out["go_omission_rate"] = proportion(out["misses"], len(go))
        out["go_choice_error_rate"] = proportion(
            sum(r.key is not None and not r.correct for r in go), len(go)
        )
        sr = [r.rt for r in responded]
        out["signal_respond_rt_ms"] = mean_ms(sr)
        out["ssrt_ms"] = (
            ssrt_integration(go_rts, p_respond, mean_ssd, _max_rt(results)) * 1e3
        )
        out["race_model_ok"] = bool(
            sr and all_go_rt and np.mean(sr) < np.mean(all_go_rt)
        )
        return out

    def tsv_fields(self, trial_result: TrialResult) -> dict[str, Any]:
        """Add the arrow, the planned SSD and the SSD actually shown.

        Returns
        -------
        fields : dict
            ``arrow``; ``max_rt`` (the response window, s); ``ssd``
            (planned, s) on stop trials; ``ssd_actual``
            (signal flip − onset flip, s) when the signal was shown.
        """
        t = trial_result.trial
        shown = trial_result.extra.get("signal_onset")
        return {
            "arrow": t.stimulus["arrow"],
            "max_rt": t.stimulus["max_rt"],
            "ssd": t.signal_s,
            "ssd_actual": None if shown is None else shown - trial_result.onset,
        }


def inhibition_function(
    results: Sequence[TrialResult],
) -> dict[float, tuple[int, float]]:
    """Return p(respond | signal) at each stop-signal delay.

    Parameters
    ----------
    results : sequence of TrialResult
        A stop-signal block.

    Returns
    -------
    function : dict
        SSD in ms (rounded to 1 ms) → (number of stop trials, p(respond)).
    """
    by_ssd: dict[float, list[bool]] = {}
    for r in results:
        ssd = _ssd(r)
        if r.trial.condition == "stop" and ssd is not None:
            by_ssd.setdefault(round(ssd * 1e3), []).append(r.key is not None)
    return {ssd: (len(v), float(np.mean(v))) for ssd, v in sorted(by_ssd.items())}


def _ssd(result: TrialResult) -> float | None:
    """The planned stop-signal delay of a trial, also when rebuilt from a TSV row.

    The analysis rebuilds trials from the trials TSV, where the delay is the
    ``ssd`` column (in the stimulus dict) rather than ``signal_s``.
    """
    if result.trial.signal_s is not None:
        return result.trial.signal_s
    ssd = result.trial.stimulus.get("ssd")
    return None if ssd is None else float(ssd)


def _max_rt(results: Sequence[TrialResult]) -> float:
    """The response window given to go omissions (the block's ``deadline_s``)."""
    for r in results:
        if r.trial.stimulus.get("max_rt") is not None:
            return float(r.trial.stimulus["max_rt"])
    return float(StopSignalTask.default_params["deadline_s"])
