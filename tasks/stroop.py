"""Colour-word Stroop task: name the ink colour of a colour word.

Canonical design (docs/specs/tasks.md): colour words × ink colours (RED, GREEN,
BLUE), congruent and incongruent trials 50/50, optionally a neutral row
(``XXXX``); one response key per ink colour. Main measure: the interference
effect, incongruent − congruent RT, and the error rates.
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
from .stimuli import TextStimulus, built

if TYPE_CHECKING:  # pragma: no cover
    from psychopy.visual import Window

CONDITIONS = ("congruent", "neutral", "incongruent")


class StroopTask(TextStimulus, AdaptiveDeadline, Task):
    """Colour-word Stroop.

    Parameters (``default_params``)
    -------------------------------
    fixation_s, deadline_s, iti_s : float
        Fixation (0.5), response window with the word up until the response
        (2.0), blank interval (0.5).
    p_congruent : float
        Share of congruent trials (0.5).
    p_neutral : float
        Share of neutral trials (0.0); the rest are incongruent.
    colours : list of str
        Ink colours, PsychoPy colour names (``["red", "green", "blue"]``); the
        words are their upper-case names.
    neutral_text : str
        The neutral row (``"XXXX"``).
    keys : list of str
        One key per colour, in the order of ``colours`` (``["r", "g", "b"]``).
    feedback, feedback_s : bool, float
        Feedback after each trial (False, 0.5).
    letter_height : float
        In window heights (0.1).
    adaptive, target_accuracy, deadline_step_s, deadline_min_s
        Training: a staircase on the deadline (off, 0.8, 0.025, 0.2).
    """

    name = "stroop"
    default_params = {
        "fixation_s": 0.5,
        "deadline_s": 2.0,
        "iti_s": 0.5,
        "p_congruent": 0.5,
        "p_neutral": 0.0,
        "colours": ["red", "green", "blue"],
        "neutral_text": "XXXX",
        "keys": ["r", "g", "b"],
        "feedback": False,
        "feedback_s": 0.5,
        "letter_height": 0.1,
        **DEADLINE_ADAPTATION_PARAMS,
    }
    tsv_stimulus_fields = ("word", "ink")
    text_field = "word"
    text_style = {"bold": True}

    def __init__(self) -> None:
        self._ink: str | None = None  # the ink the stimulus has now

    def _check_params(self, params: dict[str, Any]) -> None:
        super()._check_params(params)
        check_range("p_congruent", params["p_congruent"], low=0.0, high=1.0)
        check_range("p_neutral", params["p_neutral"], low=0.0, high=1.0)
        if params["p_congruent"] + params["p_neutral"] > 1:
            raise TaskParamError(
                "p_neutral",
                f"must be <= 1 - p_congruent = {1 - params['p_congruent']:g}",
                params["p_neutral"],
            )
        colours = params["colours"]
        if (
            len(colours) < 2
            or len(set(colours)) != len(colours)
            or not all(isinstance(c, str) and c for c in colours)
        ):
            raise TaskParamError(
                "colours", "must be a list of at least 2 distinct colour names", colours
            )
        check_keys("keys", params["keys"], len(colours))

    def make_trials(
        self, n_trials: int, rng: np.random.Generator, params: Mapping[str, Any]
    ) -> list[Trial]:
        """Make a block with the condition shares exact and inks balanced.

        ``rng`` also picks the word of each incongruent trial.
        """
        colours = list(params["colours"])
        shares = {
            "congruent": params["p_congruent"],
            "neutral": params["p_neutral"],
            "incongruent": None,
        }
        conditions = exact_conditions(n_trials, shares)
        # Every condition has (nearly) the same inks.
        inks = balanced(conditions, colours, rng)
        key_of = dict(zip(colours, params["keys"], strict=True))
        trials = []
        for index, k in enumerate(rng.permutation(n_trials)):
            cond, ink = conditions[k], inks[k]
            if cond == "congruent":
                word = ink.upper()
            elif cond == "neutral":
                word = params["neutral_text"]
            else:
                others = [c for c in colours if c != ink]
                word = str(others[int(rng.integers(len(others)))]).upper()
            trials.append(
                Trial(
                    index=index,
                    condition=cond,
                    stimulus={"word": word, "ink": ink, "text": f"{word}/{ink}"},
                    correct_key=key_of[ink],
                )
            )
        return trials

    def build_stimuli(self, win: Window, params: Mapping[str, Any]) -> None:
        """Create the word stimulus."""
        super().build_stimuli(win, params)
        self._ink = None

    def draw_stimulus(self, trial: Trial) -> None:
        """Draw the word in its ink."""
        ink = trial.stimulus["ink"]
        if self._ink != ink:
            # Setting a colour converts it every time: set only a change.
            built(self._stim).color = ink
            self._ink = ink
        super().draw_stimulus(trial)

    def instructions(self, params: Mapping[str, Any]) -> str:
        """Explain the key of each ink colour."""
        pairs = ", ".join(
            f"{c} ink: {k}"
            for c, k in zip(params["colours"], params["keys"], strict=True)
        )
        return f"Name the INK colour, not the word.\n\n{pairs}"

    def measures(self, results: Sequence[TrialResult]) -> dict[str, Any]:
        """Compute per-condition RT and accuracy and the interference effect.

        Returns
        -------
        measures : dict
            :func:`~stimtrain.tasks.measures.condition_summary` fields,
            ``interference_ms`` (incongruent − congruent mean correct RT),
            ``interference_accuracy`` (congruent − incongruent accuracy),
            ``error_rate_congruent`` and ``error_rate_incongruent``.
        """
        out = condition_summary(results, CONDITIONS)
        out.update(condition_effect(out, "interference", "incongruent", "congruent"))
        for cond in ("congruent", "incongruent"):
            out[f"error_rate_{cond}"] = 1 - out[f"accuracy_{cond}"]
        return out
