"""Helpers of the task tests: a marker recorder and the TSV-vs-markers check.

The recorder checks every marker against the marker vocabulary
(``stimtrain/vocabulary.py``) plus :data:`PROPOSED_EVENTS`, the events
the task runner adds that the vocabulary does not list yet.
"""

from __future__ import annotations

import csv
import math

import pytest

from stimtrain.vocabulary import EVENTS, encode_marker

#: Events emitted by the task runner, with their required fields, for the
#: vocabulary (until it lists them).
PROPOSED_EVENTS: dict[str, tuple[str, ...]] = {
    "task_start": ("block", "task", "n_trials", "seed", "level"),
    "task_end": ("block", "task", "trials_done", "stopped", "level"),
    "cue": ("block", "task", "trial", "condition"),
    "stop_signal": ("block", "task", "trial", "ssd"),
}

#: Fast, low-variance behaviour for every task, so windowed blocks are short.
FAST_PROFILES = {
    task: {
        "conditions": {
            cond: {"mu": mu, "sigma": 0.01, "tau": 0.01, "p_error": pe, "p_lapse": 0.0}
            for cond, mu, pe in conds
        }
    }
    for task, conds in {
        "flanker": [("congruent", 0.15, 0.05), ("incongruent", 0.2, 0.1)],
        "stroop": [("congruent", 0.15, 0.05), ("incongruent", 0.2, 0.1)],
        "gonogo": [("go", 0.15, 0.0), ("nogo", 0.12, 0.2)],
        "stopsignal": [("go", 0.25, 0.05), ("stop", 0.25, 0.05)],
        "nback": [("target", 0.15, 0.1), ("nontarget", 0.15, 0.1)],
        "switching": [
            ("first", 0.2, 0.05),
            ("repeat", 0.15, 0.05),
            ("switch", 0.2, 0.1),
        ],
    }.items()
}


class Recorder:
    """Collects markers; checks each against the vocabulary."""

    def __init__(self):
        self.markers: list[tuple[str, float, dict]] = []

    def __call__(self, event: str, timestamp: float, **fields) -> None:
        if event in EVENTS:
            encode_marker(event, **fields)  # raises on a missing field
        else:
            assert event in PROPOSED_EVENTS, event
            missing = set(PROPOSED_EVENTS[event]) - set(fields)
            assert not missing, (event, missing)
        assert isinstance(timestamp, float), (event, timestamp)
        self.markers.append((event, timestamp, fields))

    def of(self, event: str) -> list[tuple[float, dict]]:
        return [(t, f) for e, t, f in self.markers if e == event]


def read_tsv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def check_rows_against_markers(rows, emit: Recorder, *, block: int, task: str):
    """Check a block's trials TSV row by row against its markers.

    Every row has one ``stim_onset`` marker with its onset, condition and
    trial; every answered row one ``response`` marker with its key, RT,
    correctness and key-down time (onset + rt); rows with a cue or a stop
    signal have their marker; the block is framed by task_start/task_end.
    """
    onsets = emit.of("stim_onset")
    assert len(onsets) == len(rows)
    for (t, f), row in zip(onsets, rows, strict=True):
        assert f["trial"] == int(row["trial"])
        assert f["condition"] == row["condition"]
        assert f["block"] == block and f["task"] == task
        assert t == float(row["onset"])
    responses = {f["trial"]: (t, f) for t, f in emit.of("response")}
    assert len(responses) == len(emit.of("response"))  # at most one per trial
    for row in rows:
        trial = int(row["trial"])
        if row["key"] == "n/a":
            assert trial not in responses
            assert row["rt"] == "n/a"
            continue
        t, f = responses[trial]
        assert f["key"] == row["key"]
        assert f["correct"] == (row["correct"] == "1")
        assert float(row["rt"]) == pytest.approx(f["rt"], abs=1e-12)
        assert t == pytest.approx(float(row["onset"]) + float(row["rt"]), abs=1e-9)
    cues = {f["trial"]: t for t, f in emit.of("cue")}
    for row in rows:
        if "cti" in row:
            t = cues[int(row["trial"])]
            # The cue came one cue-target interval (whole frames) before onset;
            # only a sanity bound above: a loaded machine drops frames.
            cti = float(row["cti"])
            assert cti - 0.009 <= float(row["onset"]) - t <= cti + 0.25
    signals = {f["trial"]: (t, f) for t, f in emit.of("stop_signal")}
    for row in rows:
        if row.get("ssd_actual", "n/a") != "n/a":
            t, f = signals[int(row["trial"])]
            assert f["ssd"] == pytest.approx(float(row["ssd_actual"]), abs=1e-9)
            assert t == pytest.approx(float(row["onset"]) + f["ssd"], abs=1e-9)
            assert float(row["ssd"]) - 0.009 <= f["ssd"] <= float(row["ssd"]) + 0.25
        elif "ssd" in row:
            assert int(row["trial"]) not in signals
    ((t0, start),) = emit.of("task_start")
    ((t1, end),) = emit.of("task_end")
    assert start["task"] == end["task"] == task
    assert end["trials_done"] == len(rows)
    assert t0 <= min(t for t, _ in onsets) and t1 >= max(t for t, _ in onsets)
    assert not math.isnan(t1)
