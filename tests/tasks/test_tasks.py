"""Tests of the six tasks' logic without a display: defaults, trials, measures.

The measures are checked by hand on small result lists, and against the
simulated participant's true parameters on long window-free simulations
(:func:`stimtrain.tasks.simulate.simulate_block`, the same trial logic as a
windowed block).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from stimtrain.tasks import (
    SimulatedParticipant,
    TaskParamError,
    Trial,
    TrialResult,
    get_task,
    simulate_block,
    task_names,
)
from stimtrain.tasks.measures import dprime, ssrt_integration
from stimtrain.tasks.stopsignal import inhibition_function

SIX = ("flanker", "stroop", "gonogo", "stopsignal", "nback", "switching")


def test_six_tasks_registered():
    """All six tasks are known by name."""
    assert set(SIX) <= set(task_names())
    for name in SIX:
        assert get_task(name).name == name


@pytest.mark.parametrize(
    "name, expected",
    [
        ("stroop", {"p_congruent": 0.5, "colours": ["red", "green", "blue"]}),
        ("gonogo", {"p_nogo": 0.25, "stimulus_s": 0.5, "deadline_s": 1.0}),
        (
            "stopsignal",
            {
                "p_stop": 0.25,
                "fixation_s": 0.25,
                "deadline_s": 1.25,
                "iti_s": 0.5,
                "ssd_s": 0.2,
                "ssd_step_s": 0.05,
                "ssd_min_s": 0.05,
                "ssd_max_s": 1.2,
            },
        ),
        (
            "nback",
            {
                "stimulus_s": 0.5,
                "deadline_s": 3.0,
                "p_target": 0.3,
                "up_accuracy": 0.9,
                "down_accuracy": 0.75,
            },
        ),
        (
            "switching",
            {"cti_s": [0.1, 0.9], "deadline_s": 2.0, "fixation_s": 0.5},
        ),
    ],
)
def test_defaults_are_canonical(name, expected):
    """Defaults follow docs/specs/tasks.md."""
    params = get_task(name).validate_params(None)
    for key, value in expected.items():
        assert params[key] == value, key


def test_timing_of_multi_phase_tasks():
    """n-back is paced (3 s per letter); switching plans for its longest cue."""
    nback = get_task("nback")
    t = nback.timing(nback.validate_params(None))
    assert t.fixed_duration and t.stimulus_s == 0.5
    assert t.max_trial_s == pytest.approx(3.0)
    sw = get_task("switching")
    t = sw.timing(sw.validate_params(None))
    assert t.cue_s == 0.9 and t.max_trial_s == pytest.approx(0.5 + 0.9 + 2.0 + 0.5)


@pytest.mark.parametrize(
    "name, params, field, rule",
    [
        ("stroop", {"p_neutral": 0.6}, "p_neutral", "must be <= 1 - p_congruent"),
        ("stroop", {"keys": ["r", "g"]}, "keys", "must be a list of 3 distinct"),
        ("gonogo", {"nogo_stimulus": "M"}, "nogo_stimulus", "must be a non-empty"),
        ("gonogo", {"keys": ["a", "b"]}, "keys", "must be a list of 1 distinct"),
        ("stopsignal", {"ssd_s": 2.0}, "ssd_s", "must be in [0.05, 1.2]"),
        ("stopsignal", {"ssd_max_s": 1.3}, "ssd_max_s", "must be < deadline_s"),
        ("nback", {"n": 0}, "n", "must be an integer >= 1"),
        ("nback", {"n": 2.5}, "n", "must be an integer >= 1"),
        ("switching", {"cti_s": [0.1, -1]}, "cti_s", "must be a non-empty list"),
        (
            "switching",
            {"adaptive": True, "deadline_min_s": 3},
            "deadline_min_s",
            "must be in (0, 2]",
        ),
        (
            "flanker",
            {"target_accuracy": 0.3},
            "target_accuracy",
            "must be in [0.5, 0.99]",
        ),
    ],
)
def test_param_errors(name, params, field, rule):
    """Bad parameters name the field, the rule and the value."""
    with pytest.raises(TaskParamError) as excinfo:
        get_task(name).validate_params(params)
    assert excinfo.value.field == field
    assert excinfo.value.rule.startswith(rule), excinfo.value.rule
    assert excinfo.value.value == params[field]


@pytest.mark.parametrize("name", SIX)
def test_trials_reproducible_and_keys_valid(name):
    """Same seed, same block; every correct key is a response key."""
    task = get_task(name)
    params = task.validate_params(None)
    a = task.make_trials(40, np.random.default_rng(3), params)
    b = task.make_trials(40, np.random.default_rng(3), params)
    c = task.make_trials(40, np.random.default_rng(4), params)
    assert a == b and a != c
    assert [t.index for t in a] == list(range(40))
    keys = set(task.keys(params))
    assert all(t.correct_key is None or t.correct_key in keys for t in a)
    assert all(isinstance(t.stimulus["text"], str) for t in a)


def test_stroop_trials():
    """Exact condition shares; congruent words name their ink; keys follow inks."""
    task = get_task("stroop")
    params = task.validate_params({"p_congruent": 0.4, "p_neutral": 0.2})
    trials = task.make_trials(50, np.random.default_rng(1), params)
    conds = [t.condition for t in trials]
    assert (conds.count("congruent"), conds.count("neutral")) == (20, 10)
    key_of = dict(zip(params["colours"], params["keys"], strict=True))
    for t in trials:
        word, ink = t.stimulus["word"], t.stimulus["ink"]
        assert t.correct_key == key_of[ink]
        if t.condition == "congruent":
            assert word == ink.upper()
        elif t.condition == "neutral":
            assert word == "XXXX"
        else:
            assert word != ink.upper() and word.lower() in params["colours"]
    inks = [t.stimulus["ink"] for t in trials if t.condition == "incongruent"]
    assert (
        max(inks.count(c) for c in params["colours"])
        - min(inks.count(c) for c in params["colours"])
        <= 1
    )


def test_gonogo_and_stopsignal_shares():
    """Exactly 25 % no-go and 25 % stop trials; stop arrows balanced."""
    gng = get_task("gonogo")
    trials = gng.make_trials(40, np.random.default_rng(2), gng.validate_params(None))
    nogo = [t for t in trials if t.condition == "nogo"]
    assert len(nogo) == 10
    assert all(t.correct_key is None and t.stimulus["letter"] == "X" for t in nogo)
    sst = get_task("stopsignal")
    params = sst.validate_params(None)
    trials = sst.make_trials(64, np.random.default_rng(2), params)
    stop = [t for t in trials if t.condition == "stop"]
    assert len(stop) == 16
    assert [t.stimulus["arrow"] for t in stop].count("left") == 8
    # The delay is set just before the trial, from the staircase.
    assert all(t.signal_s is None for t in trials)
    prepared = sst.prepare_trial(stop[0], {**params, "ssd_s": 0.35})
    assert prepared.signal_s == 0.35
    assert sst.score(prepared, None) and not sst.score(prepared, prepared.correct_key)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_nback_sequence(n):
    """Targets are exactly the letters equal to the one n back; 30 % of them."""
    task = get_task("nback")
    params = task.validate_params({"n": n})
    n_trials = 20 + n
    trials = task.make_trials(n_trials, np.random.default_rng(n), params)
    letters = [t.stimulus["letter"] for t in trials]
    for i, t in enumerate(trials):
        is_target = i >= n and letters[i] == letters[i - n]
        assert (t.condition == "target") == is_target
        assert (t.correct_key is not None) == is_target
        assert t.stimulus["load"] == n
    assert sum(t.condition == "target" for t in trials) == round(0.3 * 20)


def test_switching_sequence():
    """Switch means the rule changed; CTIs balanced; the key follows the rule."""
    task = get_task("switching")
    params = task.validate_params(None)
    trials = task.make_trials(41, np.random.default_rng(5), params)
    assert trials[0].condition == "first"
    assert sum(t.condition == "switch" for t in trials) == 20
    for prev, t in zip(trials, trials[1:], strict=False):
        switched = prev.stimulus["rule"] != t.stimulus["rule"]
        assert (t.condition == "switch") == switched
    for t in trials:
        d, rule = t.stimulus["digit"], t.stimulus["rule"]
        assert d in (1, 2, 3, 4, 6, 7, 8, 9)
        want = (d % 2 == 0) if rule == "parity" else (d > 5)
        assert t.correct_key == params["keys"][int(want)]
        assert t.cue_s == t.stimulus["cti"]
    for cond in ("switch", "repeat"):
        ctis = [t.cue_s for t in trials if t.condition == cond]
        assert ctis.count(0.1) == ctis.count(0.9)


# -- measures by hand ----------------------------------------------------------
def _res(i, cond, rt, correct, key="a", correct_key="a", signal_s=None, stim=None):
    trial = Trial(i, cond, {"text": "", **(stim or {})}, correct_key, signal_s=signal_s)
    return TrialResult(trial, float(i), None if rt is None else key, rt, correct)


def test_ssrt_integration_by_hand():
    """nth go RT (omissions = max RT) minus the mean SSD."""
    go = [0.3, 0.5, None, 0.4]  # sorted with max RT: .3 .4 .5 1.25
    assert ssrt_integration(go, 0.5, 0.2, 1.25) == pytest.approx(0.4 - 0.2)
    assert ssrt_integration(go, 0.75, 0.1, 1.25) == pytest.approx(0.5 - 0.1)
    assert ssrt_integration(go, 1.0, 0.1, 1.25) == pytest.approx(1.25 - 0.1)
    assert ssrt_integration(go, 0.0, 0.1, 1.25) == pytest.approx(0.3 - 0.1)
    assert math.isnan(ssrt_integration([], 0.5, 0.2, 1.25))


def test_stopsignal_measures_by_hand():
    """p(respond|signal), mean SSD, go RT, SSRT and the race check."""
    task = get_task("stopsignal")
    results = [
        _res(0, "go", 0.30, True),
        _res(1, "go", 0.50, True),
        _res(2, "go", None, False),  # omission -> 1.25 s
        _res(3, "go", 0.40, False, key="b"),  # choice error, still a go RT
        _res(4, "stop", 0.25, False, signal_s=0.15),
        _res(5, "stop", None, True, signal_s=0.25),
    ]
    m = task.measures(results)
    assert m["p_respond_signal"] == 0.5
    assert m["mean_ssd_ms"] == pytest.approx(200)
    assert m["go_rt_ms"] == pytest.approx(400)
    assert m["go_omission_rate"] == 0.25 and m["go_choice_error_rate"] == 0.25
    assert m["signal_respond_rt_ms"] == pytest.approx(250)
    assert m["ssrt_ms"] == pytest.approx((0.40 - 0.20) * 1e3)
    assert m["race_model_ok"] and m["misses"] == 1
    assert inhibition_function(results) == {150: (1, 1.0), 250: (1, 0.0)}


def test_gonogo_nback_stroop_switching_measures_by_hand():
    """Each task's main measure from a handful of trials."""
    gng = get_task("gonogo").measures(
        [
            _res(0, "go", 0.3, True),
            _res(1, "go", None, False),
            _res(2, "nogo", 0.25, False, correct_key=None),
            _res(3, "nogo", None, True, correct_key=None),
        ]
    )
    assert gng["commission_rate"] == 0.5 and gng["omission_rate"] == 0.5
    assert gng["go_rt_ms"] == pytest.approx(300)
    assert gng["commission_rt_ms"] == pytest.approx(250)
    nb = get_task("nback").measures(
        [
            _res(0, "nontarget", None, True, correct_key=None, stim={"load": 2}),
            _res(1, "nontarget", 0.5, False, correct_key=None, stim={"load": 2}),
            _res(2, "target", 0.6, True, stim={"load": 2}),
            _res(3, "target", None, False, stim={"load": 2}),
        ]
    )
    assert (nb["hits"], nb["misses"], nb["false_alarms"]) == (1, 1, 1)
    assert nb["n"] == 2 and nb["accuracy"] == 0.5
    assert nb["dprime"] == pytest.approx(dprime(1, 2, 1, 2)) == pytest.approx(0.0)
    assert dprime(9, 10, 1, 10) > 2
    st = get_task("stroop").measures(
        [
            _res(0, "congruent", 0.5, True),
            _res(1, "incongruent", 0.6, True),
            _res(2, "incongruent", 0.4, False, key="b"),
        ]
    )
    assert st["interference_ms"] == pytest.approx(100)
    assert st["error_rate_incongruent"] == 0.5 and st["error_rate_congruent"] == 0
    sw = get_task("switching").measures(
        [
            _res(0, "first", 0.9, True),
            _res(1, "repeat", 0.5, True),
            _res(2, "switch", 0.7, True),
        ]
    )
    assert sw["switch_cost_ms"] == pytest.approx(200)
    assert sw["n_repeat"] == sw["n_switch"] == 1


# -- measures recover the simulated participant's effects ----------------------
def _effect(part, task, hard, easy):
    return (part.expected_rt(task, hard) - part.expected_rt(task, easy)) * 1e3


@pytest.mark.parametrize(
    "task, measure, hard, easy",
    [
        ("flanker", "congruency_effect_ms", "incongruent", "congruent"),
        ("stroop", "interference_ms", "incongruent", "congruent"),
        ("switching", "switch_cost_ms", "switch", "repeat"),
    ],
)
def test_rt_effects_recovered(task, measure, hard, easy):
    """Congruency, interference and switch cost within 4 SE of the truth.

    2000 trials: about 950 correct per condition; SE of a mean <= 117 ms /
    sqrt(950) = 3.8 ms, of a difference 5.4 ms; 4 SE = 22 ms.
    """
    part = SimulatedParticipant(seed=7)
    result = simulate_block(task, None, n_trials=2000, seed=1, participant=part)
    true = _effect(part, task, hard, easy)
    assert true >= 60
    assert result.measures[measure] == pytest.approx(true, abs=22)
    # The harder condition also has more errors, as the profile says.
    assert result.measures[f"accuracy_{hard}"] < result.measures[f"accuracy_{easy}"]


def test_ssrt_recovered_and_inhibition_function():
    """SSRT within 20 ms of the simulated 220 ms; p(respond) rises with SSD."""
    part = SimulatedParticipant(seed=3)
    true = part.task_param("stopsignal", "stop")["ssrt"] * 1e3
    result = simulate_block(
        "stopsignal", None, n_trials=64 * 40, seed=2, participant=part
    )
    m = result.measures
    assert m["ssrt_ms"] == pytest.approx(true, abs=20)
    assert m["p_respond_signal"] == pytest.approx(0.5, abs=0.05)
    assert m["race_model_ok"]
    func = {
        ssd: p for ssd, (n, p) in inhibition_function(result.results).items() if n >= 30
    }
    assert len(func) >= 3
    ps = [func[s] for s in sorted(func)]
    assert all(b > a for a, b in zip(ps, ps[1:], strict=False)), func
    # The staircase moved the delay by 50 ms steps on stop trials only.
    levels = [(r.trial.condition, r.extra["level"], r.correct) for r in result.results]
    for (cond, level, ok), (_, nxt, _) in zip(levels, levels[1:], strict=False):
        if cond == "go":
            assert nxt == level
        else:
            want = min(level + 0.05, 1.2) if ok else max(level - 0.05, 0.05)
            assert nxt == pytest.approx(want)
    assert result.level is None  # the delay is a measurement, not carried over


def test_gonogo_rates_recovered():
    """Commission and omission rates within 4 SE of the profile."""
    part = SimulatedParticipant(seed=5)
    result = simulate_block("gonogo", None, n_trials=2000, seed=1, participant=part)
    nogo = part.condition_params("gonogo", "nogo")
    go = part.condition_params("gonogo", "go")
    se = math.sqrt(0.15 * 0.85 / 500)
    assert result.measures["commission_rate"] == pytest.approx(
        nogo["p_error"], abs=4 * se
    )
    assert result.measures["omission_rate"] == pytest.approx(go["p_lapse"], abs=0.015)


def test_nback_load_effect():
    """Accuracy and d′ fall, hit RT rises, as n goes up (adaptation off)."""
    acc, dp, rt = [], [], []
    for n in (1, 2, 3):
        part = SimulatedParticipant(seed=n)
        ms = [
            simulate_block(
                "nback",
                {"n": n, "adaptive": False},
                n_trials=20 + n,
                seed=s,
                participant=part,
            ).measures
            for s in range(30)
        ]
        acc.append(np.mean([m["accuracy"] for m in ms]))
        dp.append(np.mean([m["dprime"] for m in ms]))
        rt.append(np.nanmean([m["rt_hit_ms"] for m in ms]))
    assert acc[0] > acc[1] > acc[2]
    assert dp[0] > dp[1] > dp[2]
    assert rt[0] < rt[1] < rt[2]


def test_stopsignal_max_rt_travels_with_the_trials():
    """Omissions get the block's own max RT, also when rebuilt from the TSV."""
    task = get_task("stopsignal")
    params = task.validate_params({"deadline_s": 1.0, "ssd_max_s": 0.9})
    trials = task.make_trials(8, np.random.default_rng(0), params)
    assert {t.stimulus["max_rt"] for t in trials} == {1.0}
    results = [
        _res(0, "go", None, False, stim={"max_rt": 1.0}),
        _res(1, "stop", 0.3, False, signal_s=0.2, stim={"max_rt": 1.0}),
    ]
    # p(respond | signal) = 1: the SSRT is the slowest go RT (the omission).
    assert task.measures(results)["ssrt_ms"] == pytest.approx((1.0 - 0.2) * 1e3)


def test_balanced_assignment():
    """Each value equally often per condition; the remainder differs at most by 1."""
    from stimtrain.tasks.api import balanced

    conditions = ["a"] * 7 + ["b"] * 6
    out = balanced(conditions, ["x", "y", "z"], np.random.default_rng(0))
    for cond, n in (("a", 7), ("b", 6)):
        got = [v for c, v in zip(conditions, out, strict=True) if c == cond]
        counts = [got.count(v) for v in "xyz"]
        assert sum(counts) == n and max(counts) - min(counts) <= 1
    assert out != balanced(conditions, ["x", "y", "z"], np.random.default_rng(1))
