"""Tests of the task API, the registry and the flanker task's logic (no display)."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from stimtrain.tasks import TASKS, TaskParamError, Trial, TrialResult, get_task
from stimtrain.tasks.flanker import FlankerTask


def test_registry_and_unknown_task():
    """The registry holds the flanker; an unknown name lists the known ones."""
    assert TASKS["flanker"] is FlankerTask
    assert isinstance(get_task("flanker"), FlankerTask)
    with pytest.raises(KeyError, match="unknown task 'nope'; known tasks: .*flanker"):
        get_task("nope")


def test_flanker_defaults_are_canonical():
    """Defaults follow docs/specs/tasks.md (50 % congruent, 500 ms, 1.5 s deadline)."""
    p = get_task("flanker").validate_params(None)
    assert p["p_congruent"] == 0.5
    assert p["fixation_s"] == 0.5
    assert p["deadline_s"] == 1.5
    assert p["feedback"] is False
    assert p["keys"] == ["left", "right"]
    # Validation returns a new dict, never the class defaults themselves.
    p["keys"].append("x")
    assert FlankerTask.default_params["keys"] == ["left", "right"]


@pytest.mark.parametrize(
    "params, field, rule",
    [
        ({"fixaton_s": 0.5}, "fixaton_s", "unknown parameter"),
        ({"fixation_s": "500 ms"}, "fixation_s", "must be a number"),
        ({"fixation_s": True}, "fixation_s", "must be a number"),
        ({"fixation_s": float("nan")}, "fixation_s", "must be a finite number"),
        ({"fixation_s": -0.1}, "fixation_s", "must be >= 0"),
        ({"deadline_s": 0}, "deadline_s", "must be > 0"),
        ({"p_congruent": 1.5}, "p_congruent", "must be in [0, 1]"),
        ({"feedback": "yes"}, "feedback", "must be true or false"),
        ({"keys": "left"}, "keys", "must be a list"),
        ({"keys": ["left", "left"]}, "keys", "must be a list of 2 distinct"),
        ({"keys": ["escape", "right"]}, "keys", "must not use 'escape'"),
        ({"n_flankers": 2.5}, "n_flankers", "must be an integer"),
    ],
)
def test_param_errors_carry_field_rule_value(params, field, rule):
    """Each bad parameter names its field, the rule and the value given."""
    with pytest.raises(TaskParamError) as excinfo:
        get_task("flanker").validate_params(params)
    err = excinfo.value
    value = params[field]
    assert err.field == field
    assert err.rule.startswith(rule)
    assert err.value == value or (
        isinstance(value, float) and math.isnan(value) and math.isnan(err.value)
    )
    # The loader prefixes FILE:LINE:COL: error: to exactly this text.
    assert str(err) == f"{field}: {err.rule} (got {value!r})"


@pytest.mark.parametrize("n_trials, p", [(40, 0.5), (40, 0.25), (31, 0.5), (10, 1.0)])
def test_flanker_trials_balanced_and_reproducible(n_trials, p):
    """The block has round(n * p) congruent trials and balanced target sides."""
    task = get_task("flanker")
    params = task.validate_params({"p_congruent": p})
    trials = task.make_trials(n_trials, np.random.default_rng(7), params)
    assert [t.index for t in trials] == list(range(n_trials))
    n_con = sum(t.condition == "congruent" for t in trials)
    assert n_con == round(n_trials * p)
    for cond in ("congruent", "incongruent"):
        sides = [t.stimulus["target"] for t in trials if t.condition == cond]
        assert abs(sides.count("left") - sides.count("right")) <= 1
    for t in trials:
        text, target = t.stimulus["text"], t.stimulus["target"]
        assert len(text) == 5
        assert text[2] == {"left": "<", "right": ">"}[target]
        assert (len(set(text)) == 1) == (t.condition == "congruent")
        assert t.correct_key == target  # keys default to left/right
    again = task.make_trials(n_trials, np.random.default_rng(7), params)
    assert again == trials


def test_flanker_measures_by_hand():
    """Measures: mean correct RT and accuracy per condition, and their effects."""
    task = get_task("flanker")

    def res(i, cond, rt, correct):
        trial = Trial(
            i, cond, {"text": "", "target": "left", "flankers": "left"}, "left"
        )
        key = None if rt is None else ("left" if correct else "right")
        return TrialResult(trial, 10.0 + i, key, rt, correct)

    results = [
        res(0, "congruent", 0.400, True),
        res(1, "congruent", 0.500, True),
        res(2, "congruent", 0.300, False),  # error: not in the RT mean
        res(3, "incongruent", 0.550, True),
        res(4, "incongruent", None, False),  # miss
    ]
    m = task.measures(results)
    assert m["n_trials"] == 5
    assert m["n_congruent"] == 3 and m["n_incongruent"] == 2
    assert m["rt_congruent_ms"] == pytest.approx(450.0)
    assert m["rt_incongruent_ms"] == pytest.approx(550.0)
    assert m["congruency_effect_ms"] == pytest.approx(100.0)
    assert m["accuracy_congruent"] == pytest.approx(2 / 3)
    assert m["accuracy_incongruent"] == pytest.approx(0.5)
    assert m["congruency_effect_accuracy"] == pytest.approx(2 / 3 - 0.5)
    assert m["misses"] == 1
    assert math.isnan(task.measures([])["congruency_effect_ms"])


def test_import_is_cheap_and_needs_no_display():
    """``import stimtrain.tasks`` loads neither PsychoPy nor pylsl, nor needs X."""
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    code = (
        "import sys, stimtrain.tasks as t; t.get_task('flanker');"
        "bad = [m for m in ('psychopy', 'pylsl', 'pyglet') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)


def test_tasks_do_not_import_orchestrator_or_devices():
    """DESIGN.md: tasks know nothing of devices or the orchestrator."""
    from pathlib import Path

    import stimtrain.tasks

    for path in Path(stimtrain.tasks.__file__).parent.glob("*.py"):
        text = path.read_text()
        for other in ("orchestrator", "devices"):
            assert f"stimtrain.{other}" not in text, path
            assert f"from ..{other}" not in text, path
