"""The per-run report, on a session folder laid out like the runner's."""

from __future__ import annotations

import json
import re
import shutil
import time

import numpy as np
import pandas as pd
import pytest

from stimtrain.analysis import analyze_session, behaviour_table, find_run
from stimtrain.analysis.report import SECTIONS

PREFIX = "sub-01_ses-1_run-{:02d}_"


def _session(tmp_path, rec, *, runs=(1,), trials=True):
    folder = tmp_path / "sub-01" / "ses-1"
    folder.mkdir(parents=True)
    for run in runs:
        prefix = PREFIX.format(run)
        shutil.copy(rec.path, folder / f"{prefix}recording.xdf")
        plan = {
            "blocks": [
                {
                    "index": 1,
                    "type": "tms",
                    "label": "spTMS",
                    "start_s": 0.0,
                    "duration_s": 15.0,
                    "pulses": 20,
                },
                {
                    "index": 2,
                    "type": "task",
                    "label": "flanker",
                    "start_s": 15.0,
                    "duration_s": 60.0,
                    "pulses": 0,
                },
            ],
            "total_pulses": 20,
        }
        (folder / f"{prefix}plan.json").write_text(json.dumps(plan))
        if trials:
            # As tasks/runner.py writes it: n/a for missing, correct as 1/0.
            rows = ["trial\tcondition\tkey\trt\tcorrect"]
            for trial, (cond, rt, ok) in enumerate(
                [
                    ("congruent", "0.4", 1),
                    ("incongruent", "0.5", 1),
                    ("congruent", "n/a", 0),
                    ("incongruent", "0.55", 0),
                ]
            ):
                rows.append(f"{trial}\t{cond}\tleft\t{rt}\t{ok}")
            (folder / f"{prefix}block-02_task-flanker_trials.tsv").write_text(
                "\n".join(rows) + "\n"
            )
    return folder


def test_analyze_session_folder(tmp_path, rec5k):
    folder = _session(tmp_path, rec5k, runs=(1, 2))
    t0 = time.perf_counter()
    path = analyze_session(folder)
    elapsed = time.perf_counter() - t0
    assert path == folder / f"{PREFIX.format(2)}report.html"
    assert path.is_file()
    text = path.read_text()
    for title in SECTIONS.values():
        assert title in text, title
    assert "block 02, task flanker" in text
    assert "0.500" in text  # accuracy of each condition
    # A table a lab can read: no wall of pulse offsets, whole block numbers,
    # one header row per table, wide tables in a scrolling box.
    assert "pulse_offsets_s" not in text
    assert "<th>block</th>" in text and "<td>1.0</td>" not in text
    assert 'class="dataframe table' in text and "overflow-x: auto" in text
    heads = re.findall(r'<table class="dataframe.*?<thead>(.*?)</thead>', text, re.S)
    named = [h for h in heads if "<th>count</th>" in h or "pulses delivered" in h]
    assert len(named) == 2 and all(h.count("<tr") == 1 for h in named)
    pulses = pd.read_csv(folder / f"{PREFIX.format(2)}pulses.tsv", sep="\t")
    assert len(pulses) == 20
    for col in (
        "scheduled",
        "delivered",
        "error_ms",
        "artifact_offset_samples",
        "artifact_offset_ms",
    ):
        assert col in pulses.columns
    truth_ms = (rec5k.pulse_times - rec5k.scheduled) * 1e3
    np.testing.assert_allclose(pulses["error_ms"], truth_ms, atol=0.1)
    assert pulses["artifact_offset_samples"].abs().max() <= 1
    prefix = folder / PREFIX.format(2)

    def table(name):
        return pd.read_csv(f"{prefix}{name}.tsv", sep="\t")

    plan = table("plan")
    assert list(plan["pulses delivered"]) == [20, 0]
    behaviour = table("behaviour").set_index("condition")
    assert behaviour.loc["incongruent", "accuracy"] == 0.5
    assert behaviour.loc["congruent", "mean_rt_ms"] == pytest.approx(400.0)
    measures = table("measures").set_index("measure")["value"]
    assert measures["rt_incongruent_ms"] == pytest.approx(500.0)
    assert measures["n_trials"] == 4
    peaks = table("peaks")
    gm = peaks[(peaks["signal"] == "GMFP") & (peaks["evoked"] == "all")]
    assert set(gm["component"]) == {"N15", "P30", "N45", "P60", "N100", "P180"}
    assert len(table("trials")) == 4 and "tms" in table("trials")
    assert set(table("timing")["stream"]) >= {"TestEEG"}
    assert elapsed < 30
    # An explicit run.
    fast = dict(ica_round1=False, ica_round2=False)
    assert (
        analyze_session(folder, run=1, tesa=fast).name
        == f"{PREFIX.format(1)}report.html"
    )


def test_analyze_xdf_without_markers(tmp_path, rec_eeg_only):
    folder = _session(tmp_path, rec_eeg_only, trials=False)
    with pytest.warns(RuntimeWarning, match="No stimtrain marker stream"):
        path = analyze_session(folder / f"{PREFIX.format(1)}recording.xdf")
    text = path.read_text()
    assert "No pulse markers in this run." in text
    assert "No pulses in the EEG: no TEP." in text
    assert "No task trials in this run." in text
    assert SECTIONS["raw"] in text


def test_analyze_markers_only_uses_task_markers(tmp_path, rec5k, rec_markers_only):
    # Behaviour is rebuilt from the markers when there are no trials TSVs.
    folder = _session(tmp_path, rec5k, trials=False)
    text = analyze_session(folder).read_text()
    assert "task flanker (from markers)" in text
    path = analyze_session(rec_markers_only.path)
    assert path == rec_markers_only.path.parent / "recording_report.html"
    text = path.read_text()
    assert "No EEG" in text and SECTIONS["pulses"] in text


def test_find_run_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        find_run(tmp_path)
    with pytest.raises(FileNotFoundError):
        find_run(tmp_path / "missing")


def test_behaviour_table():
    trials = pd.DataFrame(
        {
            "Condition": ["a", "a", "b", "b"],
            "RT": [0.3, 0.5, 0.6, None],
            "correct": ["True", "False", "1", "0"],
        }
    )
    table = behaviour_table(trials)
    assert list(table.index) == ["a", "b"]
    assert table.loc["a", "n_trials"] == 2
    assert table.loc["b", "n_responses"] == 1
    assert table.loc["a", "accuracy"] == 0.5
    # Mean RT over correct responses only.
    assert table.loc["a", "mean_rt_ms"] == pytest.approx(300)
    assert table.loc["b", "mean_rt_ms"] == pytest.approx(600)


def test_mep_and_recruitment_sections(make_raw, tmp_path):
    import mne

    from stimtrain.analysis.report_sections import _mep_sections

    powers = np.repeat(np.arange(35.0, 80.0, 5.0), 8)
    raw, _ = make_raw(
        sfreq=2000.0, n_pulses=len(powers), spacing=0.25, powers=powers, eeg=False
    )
    report = mne.Report(verbose=False)
    tables = _mep_sections(report, raw)
    assert len(tables["meps"]) == len(powers)
    fit = tables["recruitment"].set_index("parameter")
    assert fit.loc["s50", "estimate"] == pytest.approx(55.0, abs=2.0)
    assert fit.loc["s50", "low"] < fit.loc["s50", "estimate"] < fit.loc["s50", "high"]
    rmt = tables["motor_threshold"].iloc[0]
    assert 35 <= rmt["rmt_percent_mso"] <= 50
    report.save(tmp_path / "r.html", open_browser=False, verbose=False)
    text = (tmp_path / "r.html").read_text()
    assert SECTIONS["mep"] in text and SECTIONS["recruitment"] in text
