"""Behaviour from trials TSVs: task measures, pulses per trial, learning curves."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from stimtrain.analysis.behaviour import (
    join_pulses,
    learning_curves,
    read_trials,
    recorded_measures,
    session_measures,
    task_measures,
    tms_comparison,
    trial_pulses,
)

PREFIX = "sub-01_ses-{}_run-01_"


def _write_block(folder, session, block, task, rows, extra=""):
    header = "trial\tcondition\tstimulus\tcorrect_key\tonset\tkey\trt\tcorrect" + extra
    lines = [header] + ["\t".join(map(str, r)) for r in rows]
    path = folder / f"{PREFIX.format(session)}block-{block:02d}_task-{task}_trials.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _flanker_rows(rt_cong, rt_incong, n=8):
    rows = []
    for i in range(n):
        cond = "congruent" if i % 2 == 0 else "incongruent"
        rt = rt_cong if cond == "congruent" else rt_incong
        ok = 0 if i == n - 1 else 1
        rows.append(
            [
                i,
                cond,
                "<<<<<",
                "left",
                10.0 + i,
                "left",
                rt + 0.001 * i,
                ok,
                "left",
                "left",
            ]
        )
    return rows


def test_measures_come_from_the_journal_the_runner_wrote(tmp_path):
    _write_block(
        tmp_path, 1, 2, "flanker", _flanker_rows(0.4, 0.5), "\ttarget\tflankers"
    )
    trials = read_trials(tmp_path)
    assert list(trials["block"].unique()) == [1]  # file block 02 = marker block 1
    # What the runner journals when a task block ends (the task's own
    # measures), a line torn by a crash, and a line that is not an event.
    journal = tmp_path / f"{PREFIX.format(1)}journal.jsonl"
    ended = {
        "event": "block_end",
        "block": 1,
        "type": "task",
        "measures": {"n_trials": 8, "congruency_effect_ms": 100.0},
    }
    journal.write_text(json.dumps(ended) + "\n[1, 2]\n" + '{"event": "block_e')
    recorded = recorded_measures(journal)
    assert recorded == {1: {"n_trials": 8, "congruency_effect_ms": 100.0}}
    m = task_measures("flanker", trials, recorded[1])
    assert m == {"n_trials": 8, "congruency_effect_ms": 100.0, "source": "session"}
    # Without a journal the rows give generic measures.
    m = task_measures("flanker", trials)
    assert m["source"] == "generic" and m["n_trials"] == 8
    assert m["accuracy_incongruent"] == pytest.approx(0.75)


def test_unknown_task_gets_generic_measures(tmp_path):
    rows = [
        [
            i,
            "a" if i < 2 else "b",
            "x",
            "n/a",
            0.0,
            "n/a" if i == 3 else "k",
            "n/a" if i == 3 else 0.3 + 0.1 * i,
            int(i != 3),
        ]
        for i in range(4)
    ]
    _write_block(tmp_path, 1, 1, "mytask", rows)
    m = task_measures("mytask", read_trials(tmp_path))
    assert m["source"] == "generic"
    assert m["accuracy_a"] == 1.0 and m["accuracy_b"] == 0.5
    assert m["rt_a_ms"] == pytest.approx(350.0)


def _markers(pulse_times):
    rows = [dict(time=0.0, event="block_start", block=1)]
    for i in range(4):
        rows.append(
            dict(
                time=1.0 + i,
                event="stim_onset",
                block=1,
                task="flanker",
                trial=i,
                condition="c",
            )
        )
    rows.append(dict(time=5.0, event="block_end", block=1))
    rows += [dict(time=t, event="pulse", block=1) for t in pulse_times]
    return pd.DataFrame(rows).sort_values("time").reset_index(drop=True)


def test_pulses_join_the_trials_they_fell_in():
    # Pulses at 0.5 (before the first trial), 1.1 and 1.2 (trial 0), 3.0
    # (exactly trial 2's onset), 4.9 (trial 3, before block end), 6 (after).
    tp = trial_pulses(_markers([0.5, 1.1, 1.2, 3.0, 4.9, 6.0]))
    assert list(tp["n_pulses"]) == [2, 0, 1, 1]
    assert list(tp["tms"]) == [True, False, True, True]
    np.testing.assert_allclose(tp["first_pulse_ms"], [100.0, np.nan, 0.0, 900.0])
    assert list(tp["end"]) == [2.0, 3.0, 4.0, 5.0]


def test_tms_vs_no_tms(tmp_path):
    _write_block(
        tmp_path, 1, 2, "flanker", _flanker_rows(0.4, 0.5, n=4), "\ttarget\tflankers"
    )
    trials = join_pulses(read_trials(tmp_path), _markers([1.1, 3.05]))
    assert list(trials["tms"]) == [True, False, True, False]
    table = tms_comparison(trials)
    tms = table[(table["condition"] == "congruent") & table["tms"]]
    assert tms["n_trials"].item() == 2  # trials 0 and 2
    assert set(table["tms"]) == {True, False}


def test_withdrawn_pulses_are_left_out_of_the_tms_comparison(tmp_path):
    _write_block(
        tmp_path, 1, 2, "flanker", _flanker_rows(0.4, 0.5, n=4), "\ttarget\tflankers"
    )
    markers = _markers([1.1])
    # Trial 2 was chosen but its pulse was withdrawn (a stalled EEG stream);
    # trial 3 was simply not chosen (a no_pulse without a reason).
    extra = pd.DataFrame(
        [
            dict(
                time=3.15, event="no_pulse", block=1, trial=2, reason="stream_stalled"
            ),
            dict(time=4.15, event="no_pulse", block=1, trial=3),
        ]
    )
    markers = pd.concat([markers, extra]).sort_values("time").reset_index(drop=True)
    tp = trial_pulses(markers)
    assert list(tp["pulse_withdrawn"].fillna("")) == ["", "", "stream_stalled", ""]
    trials = join_pulses(read_trials(tmp_path), markers)
    assert list(trials["pulse_withdrawn"].isna()) == [True, True, False, True]
    table = tms_comparison(trials)
    assert table["n_trials"].sum() == 3
    assert table[table["tms"]]["n_trials"].sum() == 1


def test_learning_curves_across_sessions(tmp_path):
    tables = []
    for session, (rc, ri) in zip(
        [1, 2, 10], [(0.5, 0.6), (0.45, 0.52), (0.4, 0.43)], strict=True
    ):
        folder = tmp_path / f"ses-{session}"
        folder.mkdir()
        _write_block(
            folder, session, 2, "flanker", _flanker_rows(rc, ri), "\ttarget\tflankers"
        )
        # The flanker task's own congruency effect, as the runner journaled it.
        recorded = {1: {"congruency_effect_ms": (ri - rc) * 1e3}}
        tables.append(
            session_measures(
                read_trials(folder),
                participant="01",
                session=str(session),
                recorded=recorded,
            )
        )
    measures = pd.concat(tables)
    curves = learning_curves(measures, measure="congruency_effect_ms")
    # Sessions in numeric order (10 after 2), change from the first session.
    assert list(curves["session"]) == ["1", "2", "10"]
    assert list(curves["session_index"]) == [0, 1, 2]
    np.testing.assert_allclose(curves["value"], [100.0, 70.0, 30.0], atol=1e-6)
    np.testing.assert_allclose(curves["change"], [0.0, -30.0, -70.0], atol=1e-6)


def test_no_trials(tmp_path):
    assert read_trials(tmp_path).empty
    assert session_measures(read_trials(tmp_path)).empty
    assert trial_pulses(pd.DataFrame(columns=["time", "event"])).empty
