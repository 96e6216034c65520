"""Tests of the block runner in a real PsychoPy window under Xvfb."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from taskcheck import PROPOSED_EVENTS, Recorder, read_tsv

from stimtrain.tasks import SimulatedParticipant, TaskParamError
from stimtrain.tasks.runner import (
    TSV_COLUMNS,
    run_task_block,
    show_fixation,
    show_text,
)

# Its module fixtures are costly: every test of it runs on one worker.
pytestmark = pytest.mark.xdist_group("test_runner")

N_TRIALS = 40
PARAMS = {
    "fixation_s": 0.05,
    "iti_s": 0.05,
    "feedback": True,
    "feedback_s": 0.05,
}
# A fast, low-variance participant keeps the block short and the congruency
# effect measurable from 40 trials: RT SD = hypot(sigma, tau) = 14 ms, so
# with >= 15 correct trials per condition SE(effect) <= 14 * sqrt(2 / 15)
# = 5.2 ms; the 20 ms tolerance below is about 4 SE.
FAST = {
    "flanker": {
        "conditions": {
            "congruent": {
                "mu": 0.30,
                "sigma": 0.01,
                "tau": 0.01,
                "p_error": 0.05,
                "p_lapse": 0.03,
            },
            "incongruent": {
                "mu": 0.36,
                "sigma": 0.01,
                "tau": 0.01,
                "p_error": 0.10,
                "p_lapse": 0.03,
            },
        }
    }
}


@pytest.fixture(scope="module")
def block(win, tmp_path_factory):
    """One 40-trial simulated flanker block, shared by the checks below."""
    emit = Recorder()
    participant = SimulatedParticipant(seed=11, profiles=FAST)
    tsv = tmp_path_factory.mktemp("block") / "flanker.tsv"
    t0, c0 = time.perf_counter(), time.process_time()
    result = run_task_block(
        win,
        "flanker",
        PARAMS,
        n_trials=N_TRIALS,
        seed=5,
        tsv_path=tsv,
        emit=emit,
        block=3,
        participant=participant,
    )
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    return result, emit, read_tsv(tsv), participant, elapsed, cpu


def test_tsv_rows_match_markers(block):
    """TSV rows and markers are one-to-one, with identical times."""
    result, emit, rows, _, _, _ = block
    assert not result.stopped
    assert len(result.results) == len(rows) == N_TRIALS
    assert list(rows[0])[: len(TSV_COLUMNS)] == list(TSV_COLUMNS)
    assert list(rows[0])[len(TSV_COLUMNS) :] == ["target", "flankers"]
    onsets = emit.of("stim_onset")
    assert [f["trial"] for _, f in onsets] == [int(r["trial"]) for r in rows]
    assert [float(r["onset"]) for r in rows] == [t for t, _ in onsets]
    assert all(f["block"] == 3 and f["task"] == "flanker" for _, f in onsets)
    assert [f["condition"] for _, f in onsets] == [r["condition"] for r in rows]
    assert np.all(np.diff([t for t, _ in onsets]) > 0.2)

    answered = [r for r in rows if r["key"] != "n/a"]
    responses = emit.of("response")
    assert len(responses) == len(answered) >= N_TRIALS * 0.8
    for (t, f), row in zip(responses, answered, strict=True):
        assert f["trial"] == int(row["trial"])
        assert f["key"] == row["key"]
        assert f["correct"] == (row["correct"] == "1")
        assert f["rt"] == pytest.approx(t - float(row["onset"]), abs=1e-9)
        assert float(row["rt"]) == pytest.approx(f["rt"], abs=1e-12)
        assert 0 < f["rt"] <= PARAMS.get("deadline_s", 1.5)
    for row in rows:
        if row["key"] == "n/a":
            assert row["rt"] == "n/a" and row["correct"] == "0"
        else:
            assert (row["key"] == row["correct_key"]) == (row["correct"] == "1")

    # Feedback follows every trial, after its response.
    feedback = emit.of("feedback")
    assert [f["trial"] for _, f in feedback] == list(range(N_TRIALS))
    by_trial = {f["trial"]: t for t, f in responses}
    for t, f in feedback:
        assert t >= by_trial.get(f["trial"], -math.inf)
    assert {e for e, _, _ in emit.markers} <= {"task_start", "task_end"} | {
        "stim_onset",
        "response",
        "feedback",
    }
    assert set(PROPOSED_EVENTS) >= {"task_start", "task_end"}


def test_conditions_balanced(block):
    """p_congruent = 0.5 gives exactly half congruent trials."""
    result, _, rows, _, _, _ = block
    assert sum(r["condition"] == "congruent" for r in rows) == N_TRIALS // 2
    assert result.measures["n_congruent"] == result.measures["n_incongruent"] == 20


def test_measures_recover_simulated_effect(block):
    """The congruency effect recovers the true 60 ms within ~4 SE (20 ms)."""
    result, _, rows, participant, _, _ = block
    m = result.measures
    true = (
        participant.expected_rt("flanker", "incongruent")
        - participant.expected_rt("flanker", "congruent")
    ) * 1e3
    assert true == pytest.approx(60.0)
    assert m["congruency_effect_ms"] == pytest.approx(true, abs=20)
    assert m["rt_congruent_ms"] == pytest.approx(310, abs=20)
    # The measures are exactly those of the TSV.
    for cond in ("congruent", "incongruent"):
        rts = [
            float(r["rt"])
            for r in rows
            if r["condition"] == cond and r["correct"] == "1"
        ]
        assert m[f"rt_{cond}_ms"] == pytest.approx(np.mean(rts) * 1e3)
    assert 0.7 <= m["accuracy"] < 1


def test_block_takes_nominal_time_without_spinning(block):
    """Duration = sum of fixation + RT + feedback + ITI, give or take frames.

    Each phase is rounded to whole 1/60 s frames and a response is seen on
    the first frame after it, so a trial may run up to ~2 frames long;
    the first block also measures the refresh (12 frames). The extra 10 %
    allows for late frames on a loaded machine (a late frame skips a slot).
    """
    result, _, _, _, elapsed, cpu = block
    per_trial = PARAMS["fixation_s"] + PARAMS["iti_s"] + PARAMS["feedback_s"]
    nominal = sum(
        per_trial + (r.rt if r.rt is not None else 1.5) for r in result.results
    )
    assert nominal * 0.97 <= elapsed <= nominal * 1.1 + N_TRIALS * 3 / 60
    # Flips under Xvfb are paced with sleeps, not a busy loop.
    assert cpu < 0.6 * elapsed


def test_should_stop_between_trials(win, tmp_path):
    """The operator's abort ends the block after the current trial."""
    emit = Recorder()
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > 3

    result = run_task_block(
        win,
        "flanker",
        {"fixation_s": 0.02, "iti_s": 0.02},
        n_trials=10,
        seed=1,
        tsv_path=tmp_path / "t.tsv",
        emit=emit,
        participant=SimulatedParticipant(),
        should_stop=should_stop,
    )
    assert result.stopped
    assert len(result.results) == 3
    assert len(read_tsv(tmp_path / "t.tsv")) == 3
    assert result.measures["n_trials"] == 3


def test_between_trials_hook_holds_and_stops(win, tmp_path):
    """The session's pause point: after each trial's ITI but the last."""
    emit = Recorder()
    seen, gaps = [], []

    def between(done):
        seen.append(done)
        if done == 2:
            # A pause: the hook holds the block (the runner draws meanwhile).
            t = time.perf_counter()
            while time.perf_counter() - t < 0.3:
                win.flip()
            gaps.append(time.perf_counter() - t)
        return done < 4

    params = {"fixation_s": 0.02, "iti_s": 0.02}
    common = dict(n_trials=6, seed=1, emit=emit, participant=SimulatedParticipant())
    result = run_task_block(
        win, "flanker", params, tsv_path=tmp_path / "t.tsv", between_trials=between,
        **common,
    )  # fmt: skip
    assert seen == [1, 2, 3, 4] and result.stopped
    assert len(result.results) == 4 == len(read_tsv(tmp_path / "t.tsv"))
    onsets = [t for event, t, _ in emit.markers if event == "stim_onset"]
    # The hold between trials 2 and 3 shows in the onsets.
    assert onsets[2] - onsets[1] > onsets[1] - onsets[0] + 0.25
    # Never after the last trial.
    seen.clear()
    run_task_block(
        win, "flanker", params, tsv_path=tmp_path / "u.tsv",
        between_trials=lambda done: seen.append(done) or True, **common,
    )  # fmt: skip
    assert seen == [1, 2, 3, 4, 5]


def test_keyboard_block_without_presses(win, tmp_path):
    """The real (Psychtoolbox) keyboard path: no presses, so every trial misses.

    Key presses cannot be injected here (Psychtoolbox's queue does not see
    XTest events under Xvfb), so only the no-response path is exercised.
    """
    emit = Recorder()
    result = run_task_block(
        win,
        get_flanker(),
        {"fixation_s": 0.02, "iti_s": 0.02, "deadline_s": 0.1},
        n_trials=3,
        seed=1,
        tsv_path=tmp_path / "k.tsv",
        emit=emit,
    )
    assert not result.stopped
    assert [r.key for r in result.results] == [None] * 3
    assert not emit.of("response")
    assert len(emit.of("stim_onset")) == 3
    rows = read_tsv(tmp_path / "k.tsv")
    assert [r["key"] for r in rows] == ["n/a"] * 3
    assert result.measures["misses"] == 3


def get_flanker():
    from stimtrain.tasks import get_task

    return get_task("flanker")


def test_bad_params_and_existing_tsv(win, tmp_path):
    """Bad parameters fail before anything runs; a TSV is never overwritten."""
    path = tmp_path / "t.tsv"
    with pytest.raises(TaskParamError) as excinfo:
        run_task_block(
            win,
            "flanker",
            {"iti": 1},
            n_trials=2,
            seed=0,
            tsv_path=path,
            emit=Recorder(),
            participant=SimulatedParticipant(),
        )
    assert excinfo.value.field == "iti"
    assert not path.exists()
    path.write_text("keep me")
    with pytest.raises(FileExistsError):
        run_task_block(
            win,
            "flanker",
            None,
            n_trials=2,
            seed=0,
            tsv_path=path,
            emit=Recorder(),
            participant=SimulatedParticipant(),
        )
    assert path.read_text() == "keep me"


def test_show_text_and_fixation(win):
    """Helpers last their duration on the clock, or stop when asked."""
    stamps = []
    t0 = time.perf_counter()
    assert show_text(win, "Get ready", 0.3, on_onset=stamps.append)
    assert 0.28 <= time.perf_counter() - t0 <= 0.6
    assert len(stamps) == 1 and isinstance(stamps[0], float)
    t0 = time.perf_counter()
    assert not show_fixation(
        win, 10.0, should_stop=lambda: time.perf_counter() - t0 > 0.2
    )
    assert time.perf_counter() - t0 < 0.5
