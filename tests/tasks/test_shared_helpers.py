"""Tests of the helpers the tasks share: exact shares, detection counts, text."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stimtrain.tasks import TASKS, TaskParamError, Trial, TrialResult, get_task
from stimtrain.tasks.api import exact_conditions
from stimtrain.tasks.measures import detection, mean_ms, proportion
from stimtrain.tasks.stimuli import draw_text, text_stim


@pytest.mark.parametrize(
    ("n", "shares", "counts"),
    [
        (40, {"go": None, "nogo": 0.25}, {"go": 30, "nogo": 10}),
        (7, {"congruent": 0.5, "incongruent": None}, {"congruent": 4}),
        # The second share is clamped to what the first left over.
        (10, {"a": 0.7, "b": 0.5, "c": None}, {"a": 7, "b": 3, "c": 0}),
        (0, {"x": 1.0, "y": None}, {}),
    ],
)
def test_exact_conditions_counts_and_order(n, shares, counts):
    """round(n * p) per share, the rest to the None one, grouped in order."""
    got = exact_conditions(n, shares)
    assert len(got) == n
    for cond, count in counts.items():
        assert got.count(cond) == count
    order = [c for c in shares if c in got]
    assert got == sorted(got, key=order.index)


def test_exact_conditions_errors():
    """A negative count and a missing or double rest are refused by name."""
    with pytest.raises(ValueError, match="n_trials must be >= 0, got -1"):
        exact_conditions(-1, {"a": None})
    with pytest.raises(ValueError, match="exactly one condition must take the rest"):
        exact_conditions(4, {"a": 0.5, "b": 0.5})
    with pytest.raises(ValueError, match=r"got \['a', 'b'\]"):
        exact_conditions(4, {"a": None, "b": None})


def _result(cond: str, key: str | None, rt: float | None = None) -> TrialResult:
    trial = Trial(0, cond, {"text": cond}, "space" if cond == "s" else None)
    return TrialResult(trial, 0.0, key, rt, key == trial.correct_key)


def test_detection_counts_and_rates():
    """Responses on signal trials are hits, on noise trials false alarms."""
    signal = [_result("s", "space", 0.3)] * 3 + [_result("s", None)]
    noise = [_result("n", "space", 0.2)] + [_result("n", None)] * 4
    sd = detection(signal, noise)
    assert (sd["hits"], sd["misses"]) == (3, 1)
    assert (sd["false_alarms"], sd["correct_rejections"]) == (1, 4)
    assert sd["hit_rate"] == 0.75
    assert sd["false_alarm_rate"] == 0.2
    assert sd["dprime"] > 0
    empty = detection([], noise)
    assert math.isnan(empty["hit_rate"]) and math.isnan(empty["dprime"])


def test_proportion_and_mean_ms():
    """nan for nothing; None values are left out of a mean."""
    assert proportion(1, 4) == 0.25
    assert math.isnan(proportion(0, 0))
    assert mean_ms([0.2, None, 0.4]) == pytest.approx(300.0)
    assert math.isnan(mean_ms([None]))


@pytest.mark.parametrize("name", sorted(TASKS))
def test_letter_height_checked_for_every_task(name):
    """The base class checks letter_height wherever a task has one."""
    task = get_task(name)
    if "letter_height" not in task.default_params:
        pytest.skip("no letter_height")
    with pytest.raises(TaskParamError, match=r"letter_height: must be in \(0, 1\]"):
        task.validate_params({"letter_height": 0})


@pytest.mark.parametrize("name", ["flanker", "gonogo", "nback", "stroop"])
def test_draw_before_build_is_a_clear_error(name):
    """Drawing before build_stimuli() says so (no window needed)."""
    task = get_task(name)
    params = task.validate_params(None)
    trial = task.make_trials(4, np.random.default_rng(0), params)[0]
    with pytest.raises(RuntimeError, match=r"build_stimuli\(\) must be called"):
        task.draw_stimulus(trial)


def test_draw_text_retexts_a_real_stimulus(win):
    """draw_text shows the new text on a real TextStim and draws it."""
    stim = text_stim(win, {"letter_height": 0.1}, color="white")
    assert stim.height == pytest.approx(0.1)
    draw_text(stim, "Q")
    assert stim.text == "Q"
    draw_text(stim, "Z")
    assert stim.text == "Z"
    win.flip()
