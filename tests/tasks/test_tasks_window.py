"""Each task played headless in a real PsychoPy window by the simulated participant.

Short phases keep each block to a few seconds; the trials TSV is checked row
by row against the markers, and the online-TMS hook against the markers.
"""

from __future__ import annotations

import pytest
from taskcheck import FAST_PROFILES, Recorder, check_rows_against_markers, read_tsv

from stimtrain.tasks import SimulatedParticipant
from stimtrain.tasks.runner import run_task_block

# Its module fixtures are costly: every test of it runs on one worker.
pytestmark = pytest.mark.xdist_group("test_tasks_window")

SHORT = {"fixation_s": 0.03, "iti_s": 0.03}
PARAMS = {
    "flanker": {**SHORT, "feedback": True, "feedback_s": 0.03},
    "stroop": {**SHORT, "p_neutral": 0.25},
    "gonogo": {**SHORT, "stimulus_s": 0.1, "deadline_s": 0.4},
    "stopsignal": {**SHORT, "ssd_s": 0.1, "ssd_min_s": 0.05, "p_stop": 0.5},
    "nback": {"stimulus_s": 0.1, "deadline_s": 0.4, "n": 1},
    "switching": {**SHORT, "cti_s": [0.05, 0.15]},
}
N_TRIALS = 8


@pytest.fixture(scope="module")
def blocks(win, tmp_path_factory):
    """One short simulated block of each task (shared by the checks below)."""
    out = {}
    folder = tmp_path_factory.mktemp("blocks")
    for name in PARAMS:
        emit = Recorder()
        hooked = []
        result = run_task_block(
            win,
            name,
            PARAMS[name],
            n_trials=N_TRIALS,
            seed=4,
            tsv_path=folder / f"{name}.tsv",
            emit=emit,
            block=2,
            participant=SimulatedParticipant(seed=1, profiles=FAST_PROFILES),
            on_event=lambda event, t, trial, h=hooked: h.append(
                (event, t, trial.index)
            ),
        )
        out[name] = result, emit, hooked, folder / f"{name}.tsv"
    return out


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_task_block_tsv_matches_markers(blocks, name):
    """A simulated block: one TSV row per trial, each matching its markers."""
    result, emit, hooked, tsv = blocks[name]
    rows = read_tsv(tsv)
    assert not result.stopped and len(rows) == len(result.results) == N_TRIALS
    check_rows_against_markers(rows, emit, block=2, task=name)
    # The hook saw every trial event, at the markers' times, before the marker.
    trial_events = [
        (e, t, f["trial"])
        for e, t, f in emit.markers
        if e not in ("task_start", "task_end")
    ]
    assert hooked == trial_events
    due = sum(r["correct_key"] != "n/a" for r in rows)
    assert sum(e == "response" for e, _, _ in hooked) >= due // 2 >= 1
    # Measures are those of the rows.
    assert result.measures["n_trials"] == N_TRIALS
    if name == "switching":
        assert len(emit.of("cue")) == N_TRIALS
    if name == "stopsignal":
        assert emit.of("stop_signal"), "no stop signal was shown"
    if name == "nback":
        # Paced: every trial lasts the full window whatever the response.
        onsets = [float(r["onset"]) for r in rows]
        gaps = [b - a for a, b in zip(onsets, onsets[1:], strict=False)]
        assert min(gaps) >= 0.4 - 1 / 60
        assert result.level in (1, 2)


def test_adaptive_block_starts_at_saved_level(win, tmp_path):
    """The TSV records each trial's deadline; the block starts at start_level."""
    emit = Recorder()
    result = run_task_block(
        win,
        "flanker",
        {**SHORT, "adaptive": True, "deadline_s": 0.5, "deadline_step_s": 0.05},
        n_trials=10,
        seed=1,
        tsv_path=tmp_path / "a.tsv",
        emit=emit,
        participant=SimulatedParticipant(seed=3, profiles=FAST_PROFILES),
        start_level=0.3,
    )
    rows = read_tsv(tmp_path / "a.tsv")
    levels = [float(r["level"]) for r in rows]
    assert levels[0] == 0.3
    assert [r.extra["level"] for r in result.results] == levels
    for r in rows:
        assert r["rt"] == "n/a" or float(r["rt"]) <= float(r["level"])
    ((_, start),) = emit.of("task_start")
    ((_, end),) = emit.of("task_end")
    assert start["level"] == 0.3 and end["level"] == result.level
    assert result.start_level == 0.3
    assert 0.2 <= result.level <= 0.5


def test_instructions_practice_breaks_and_frame_times(win, tmp_path):
    """Instructions, practice and breaks take their time, practice leaves no data;
    frame CPU times are collected."""
    import time

    class Counting(SimulatedParticipant):
        calls = 0

        def respond(self, *args, **kwargs):
            self.calls += 1
            return super().respond(*args, **kwargs)

    participant = Counting(seed=1, profiles=FAST_PROFILES)
    frames: list[float] = []
    emit = Recorder()
    t0 = time.perf_counter()
    result = run_task_block(
        win,
        "gonogo",
        PARAMS["gonogo"],
        n_trials=4,
        seed=1,
        tsv_path=tmp_path / "b.tsv",
        emit=emit,
        participant=participant,
        instructions_s=0.2,
        practice_trials=3,
        break_every=2,
        break_s=0.2,
        frame_times=frames,
    )
    elapsed = time.perf_counter() - t0
    assert len(result.results) == 4
    assert len(read_tsv(tmp_path / "b.tsv")) == 4
    assert [f["trial"] for _, f in emit.of("stim_onset")] == [0, 1, 2, 3]
    assert participant.calls == 3 + 4  # practice trials were played
    # Instructions (0.2 s), one break (0.2 s) and 7 trials of >= 0.06 s each.
    assert elapsed >= 0.2 + 0.2 + 7 * 0.06
    assert len(frames) >= 4 and all(0 <= f < 1 for f in frames)


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_analysis_reads_the_tasks_measures_from_the_journal(blocks, name, tmp_path):
    """The runner journals the task's measures when a block ends; the
    analysis reads them back from that file, without the task code."""
    import math

    import pandas as pd

    from stimtrain.analysis.behaviour import recorded_measures, task_measures
    from stimtrain.orchestrator.session.journal import Journal

    result, _, _, tsv = blocks[name]
    journal = Journal(tmp_path / "journal.jsonl", reserve=False)
    journal.write("block_end", block=3, type="task", measures=result.measures)
    journal.close()
    df = pd.read_csv(tsv, sep="\t", na_values=["n/a"])
    again = task_measures(name, df, recorded_measures(journal.path).get(3))
    assert again.pop("source") == "session"
    assert again.keys() == result.measures.keys()
    for key, value in result.measures.items():
        if isinstance(value, float) and math.isnan(value):
            assert again[key] is None or math.isnan(again[key]), key
        else:
            assert again[key] == pytest.approx(value, abs=1e-9), key
    # From the rows alone the analysis counts the same trials.
    assert task_measures(name, df)["n_trials"] == len(result.results)
