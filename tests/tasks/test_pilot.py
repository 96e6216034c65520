"""Tests of the pilot command (``stimtrain task NAME``), run as its own program."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from taskcheck import read_tsv

from stimtrain.tasks.pilot import format_measures, parse_params


def _pilot(*argv, cwd):
    return subprocess.run(
        [sys.executable, "-m", "stimtrain.tasks.pilot", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_parse_params():
    """Values are YAML: numbers, booleans, lists."""
    assert parse_params(["deadline_s=1.0", "feedback=true", "keys=[f, j]"]) == {
        "deadline_s": 1.0,
        "feedback": True,
        "keys": ["f", "j"],
    }
    with pytest.raises(ValueError, match="--param must be KEY=VALUE, got 'deadline'"):
        parse_params(["deadline"])
    assert "n/a" in format_measures({"x": float("nan"), "y": 3})


def test_simulated_pilot_writes_tsv_markers_and_level(tmp_path):
    """A simulated n-back pilot: TSV, markers, measures printed, level saved."""
    levels = tmp_path / "levels.json"
    levels.write_text(json.dumps({"nback": 1}))
    proc = _pilot(
        "nback",
        "--simulated",
        "--trials",
        "6",
        "--param",
        "stimulus_s=0.05",
        "--param",
        "deadline_s=0.3",
        "--out",
        str(tmp_path / "out"),
        "--seed",
        "9",
        "--levels",
        str(levels),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    (tsv,) = (tmp_path / "out").glob("nback_*_9_trials.tsv")
    (markers,) = (tmp_path / "out").glob("nback_*_9_markers.jsonl")
    rows = read_tsv(tsv)
    assert len(rows) == 6 and {r["n"] for r in rows} == {"1"}  # started at the saved n
    events = [json.loads(line) for line in markers.read_text().splitlines()]
    assert [e["event"] for e in events].count("stim_onset") == 6
    assert [float(r["onset"]) for r in rows] == [
        e["timestamp"] for e in events if e["event"] == "stim_onset"
    ]
    assert "dprime" in proc.stdout and "6 of 6 trials, seed 9" in proc.stdout
    saved = json.loads(levels.read_text())["nback"]
    assert f"level:   1 -> {saved}" in proc.stdout


def test_pilot_bad_input(tmp_path):
    """Unknown tasks and bad parameters exit 2 with the field, rule and value."""
    proc = _pilot("flanker", "--param", "deadline_s=-1", cwd=tmp_path)
    assert proc.returncode == 2
    assert "error: --param deadline_s: must be > 0 (got -1)" in proc.stderr
    proc = _pilot("flankr", cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown task 'flankr'; known tasks: flanker" in proc.stderr
    assert not list(tmp_path.iterdir())  # nothing written
