"""A small study: sessions in parallel (joblib), group TEPs and curves.

The same study on a Dask cluster is in ``test_study_cluster.py``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from stimtrain.analysis.study import analyze_study, find_sessions
from stimtrain.orchestrator.session.journal import Journal

# (participant, session, congruent RT, incongruent RT)
SESSIONS = [("01", "1", 0.50, 0.62), ("01", "2", 0.45, 0.52), ("02", "1", 0.48, 0.60)]


def make_study(root: Path, xdf: Path, sessions=SESSIONS) -> Path:
    """Session folders under ``root``: the same recording, own task results."""
    for sub, ses, rc, ri in sessions:
        folder = root / f"sub-{sub}" / f"ses-{ses}"
        folder.mkdir(parents=True)
        prefix = f"sub-{sub}_ses-{ses}_run-01_"
        shutil.copy(xdf, folder / f"{prefix}recording.xdf")
        rows = ["trial\tcondition\tstimulus\tcorrect_key\tonset\tkey\trt\tcorrect"]
        for i in range(8):
            cond = "congruent" if i % 2 == 0 else "incongruent"
            rt = rc if cond == "congruent" else ri
            rows.append(f"{i}\t{cond}\t<<<<<\tleft\t{i}.0\tleft\t{rt}\t1")
        (folder / f"{prefix}block-02_task-flanker_trials.tsv").write_text(
            "\n".join(rows) + "\n"
        )
        # The flanker task's own measures, as the runner journals them.
        journal = Journal(folder / f"{prefix}journal.jsonl", reserve=False)
        journal.write(
            "block_end",
            block=1,
            type="task",
            measures={"n_trials": 8, "congruency_effect_ms": (ri - rc) * 1e3},
        )
        journal.close()
    return root


@pytest.fixture
def study_dir(tmp_path, rec5k):
    make_study(tmp_path, rec5k.path)
    (tmp_path / "notes").mkdir()  # not a session: ignored
    return tmp_path


FAST = dict(ica_n_components=5, ica_decim=4)


def test_study_with_joblib(study_dir):
    assert len(find_sessions(study_dir)) == 3
    study = analyze_study(study_dir, n_jobs=2, session_reports=False, tesa=FAST)
    assert study.report_path.is_file()
    assert [(s.participant, s.session) for s in study.sessions] == [
        (p, s) for p, s, _, _ in SESSIONS
    ]
    curves = study.tables["learning_curves"]
    effect = curves[curves["measure"] == "congruency_effect_ms"]
    sub1 = effect[effect["participant"] == "01"]
    assert list(sub1["value"].round(6)) == [120.0, 70.0]
    assert list(sub1["change"].round(6)) == [0.0, -50.0]
    # Grand average of three identical recordings: the group peak equals each
    # session's, and the summary has three sessions per peak.
    ga = study.grand_averages["all"]
    assert ga.nave > 0 and "N=3" in ga.comment
    summary = study.tables["peak_summary"]
    # Peaks found in one session are found in all three (same recording).
    assert set(summary["latency_ms_count"]) <= {0, 3}
    assert (summary["latency_ms_count"] == 3).sum() >= 6
    gp = study.tables["group_peaks"].set_index(["evoked", "signal", "component"])
    sp = study.tables["peaks"]
    one = sp[(sp["participant"] == "01") & (sp["session"] == "1")]
    one = one.set_index(["evoked", "signal", "component"])
    assert (
        gp.loc[("all", "GMFP", "P30"), "latency_ms"]
        == one.loc[("all", "GMFP", "P30"), "latency_ms"]
    )
    for name in ("peaks", "learning_curves", "measures", "sessions"):
        assert (study_dir / "study" / f"study_{name}.tsv").is_file()
    measures = pd.read_csv(study_dir / "study" / "study_measures.tsv", sep="\t")
    assert {"participant", "session", "block", "task", "measure", "value"} <= set(
        measures.columns
    )
    text = study.report_path.read_text()
    assert "Learning curve: flanker congruency_effect_ms" in text
    assert "Peaks of the grand average" in text
    # Each session's tables are written next to its recording.
    assert (study_dir / "sub-02/ses-1/sub-02_ses-1_run-01_peaks.tsv").is_file()
    # Where each session ran: joblib's worker processes on this machine.
    assert [r.folder.name for r in study.runs] == ["ses-1", "ses-2", "ses-1"]
    assert all(r.worker == "" and r.pid not in (0, os.getpid()) for r in study.runs)
    assert all(r.seconds > 0 and r.attempts == 1 for r in study.runs)
    table = pd.read_csv(study_dir / "study" / "study_sessions.tsv", sep="\t")
    assert list(table["pid"]) == [r.pid for r in study.runs]
    assert "On this machine, 3 session(s)" in text


def test_empty_study(tmp_path):
    with pytest.raises(FileNotFoundError, match="found none"):
        analyze_study(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        analyze_study(tmp_path / "missing")
