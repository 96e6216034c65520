"""Builder experiments as task blocks: PsychoPy's own demos, run in a real window.

The demos ship inside the psychopy package and run unchanged, with PsychoPy's
Session, under Xvfb; the simulated participant presses their keys through
PsychoPy's keyboard device. Each run is cut to a few loop iterations
(``max_trials``, the block's ``trials``) to keep the suite short.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stimtrain.tasks import SimulatedParticipant
from stimtrain.tasks.builder import BuilderError, read_experiment, run_builder_block
from stimtrain.vocabulary import encode_marker

psychopy = pytest.importorskip("psychopy")
DEMOS = Path(psychopy.__file__).parent / "demos" / "builder"
STROOP = DEMOS / "Experiments" / "stroop" / "stroop.psyexp"


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _run(win, tmp_path, experiment=STROOP, **kwargs):
    markers = []
    kwargs.setdefault("participant", SimulatedParticipant(seed=2))
    kwargs.setdefault("seed", 5)
    result = run_builder_block(
        win,
        experiment,
        kwargs.pop("params", {"participant": "p01"}),
        tsv_path=tmp_path / "trials.tsv",
        data_dir=tmp_path / "psychopy",
        emit=lambda event, t, **f: markers.append({"event": event, "t": t, **f}),
        **kwargs,
    )
    return result, markers


def _variant(tmp_path: Path, **code: str) -> Path:
    """The Stroop demo with a code component added to its trial routine."""
    from psychopy import experiment
    from psychopy.experiment.components.code import CodeComponent

    folder = tmp_path / "stroop_variant"
    shutil.copytree(STROOP.parent, folder)
    exp = experiment.Experiment()
    exp.loadFromXML(str(folder / STROOP.name))
    exp.routines["trial"].addComponent(
        CodeComponent(exp, parentName="trial", name="extra", **code)
    )
    exp.saveToXML(str(folder / STROOP.name))
    return folder / STROOP.name


def test_stroop_markers_and_trials_match_row_by_row(win, tmp_path):
    """Every component start is a flip-stamped marker, every key a response at
    its key-down time, and each TSV row is its iteration's markers."""
    result, markers = _run(win, tmp_path, max_trials=4)
    assert not result.stopped and len(result.results) == 4
    onsets = [m for m in markers if m["event"] == "component_onset"]
    # The instructions (outside the loop), then resp and word in each trial.
    assert [(m["routine"], m["component"]) for m in onsets[:2]] == [
        ("instruct", "ready"),
        ("instruct", "instrText"),
    ]
    rows = _rows(tmp_path / "trials.tsv")
    assert len(rows) == 4
    for i, row in enumerate(rows):
        mine = [m for m in markers if m.get("trial") == i]
        assert {m["component"] for m in mine if m["event"] == "component_onset"} == {
            "resp",
            "word",
        }
        resp_on = next(
            m
            for m in mine
            if m["event"] == "component_onset" and m["component"] == "resp"
        )
        (response,) = [m for m in mine if m["event"] == "response"]
        (stim,) = [m for m in mine if m["event"] == "stim_onset"]
        assert stim["t"] == resp_on["t"]  # resp is the iteration's first onset
        assert float(row["onset"]) == resp_on["t"]
        assert row["key"] == response["key"] and float(row["rt"]) == response["rt"]
        assert response["t"] == pytest.approx(resp_on["t"] + response["rt"], abs=1e-9)
        # The simulated participant's RT went through PsychoPy's keyboard: it
        # is the one it planned, not a frame-quantised poll time.
        assert 0.1 < response["rt"] < 1.5
        assert row["correct"] == ("1" if response["correct"] else "0")
        assert row["correct_key"] == row["corrAns"]
        assert row["loop"] == "trials" and row["iteration"] == str(i)
        # The word appears 0.5 s into the routine, with the keyboard.
        word_on = next(
            m
            for m in mine
            if m["event"] == "component_onset" and m["component"] == "word"
        )
        assert word_on["t"] - resp_on["t"] < 0.005
        # The key (on its release) ended the routine: both leave the screen
        # on the next flip, before anything of the next iteration shows.
        offsets = {
            m["component"]: m["t"] for m in mine if m["event"] == "component_offset"
        }
        assert set(offsets) == {"resp", "word"}
        later = [m["t"] for m in markers if (m.get("trial") or -1) > i]
        for t in offsets.values():
            assert response["t"] < t <= min(later, default=t)
    # PsychoPy's own CSV, one line per trial (and the instructions).
    (csv_file,) = [p for p in result.data_files if p.suffix == ".csv"]
    assert csv_file.parent == tmp_path / "psychopy" / "data"
    assert csv_file.name.startswith("p01_")
    with open(csv_file, newline="", encoding="utf-8-sig") as f:
        data = [r for r in csv.DictReader(f) if r.get("resp.keys")]
    assert [r["resp.keys"] for r in data] == [r["key"] for r in rows]
    # Every marker is in the vocabulary, with its fields.
    for m in markers:
        encode_marker(
            m["event"], **{k: v for k, v in m.items() if k not in ("t", "event")}
        )
    assert [m["event"] for m in markers][0] == "task_start"
    assert markers[-1]["event"] == "task_end" and markers[-1]["trials_done"] == 4


def test_same_seed_same_trial_order(win, tmp_path):
    """Loops without a seed of their own take the block's: a protocol's seed
    reproduces the order, as for the built-in tasks."""
    first, _ = _run(win, tmp_path / "a", max_trials=2, seed=11)
    second, _ = _run(win, tmp_path / "b", max_trials=2, seed=11)
    assert [r.trial.stimulus for r in first.results] == [
        r.trial.stimulus for r in second.results
    ]


def test_go_nogo_demo_runs_unchanged(win, tmp_path):
    """Go/no-go runs headless too: the participant withholds on no-go rows
    (their correct answer is None) and presses on go rows."""
    gng = DEMOS / "Experiments/GoNoGo/gng.psyexp"
    result, markers = _run(win, tmp_path, gng, max_trials=4, seed=1)
    rows = _rows(tmp_path / "trials.tsv")
    assert len(rows) == 4 and not result.stopped
    assert {r["this_image"] for r in rows} == {"go.png", "nogo.png"}
    for i, row in enumerate(rows):
        responses = [m for m in markers if m["event"] == "response" and m["trial"] == i]
        assert (row["key"] == "n/a") == (not responses)
        if responses:
            assert row["key"] == responses[-1]["key"]
        if row["correct_key"] == "n/a":  # a no-go row: withholding is correct
            assert (row["correct"] == "1") == (row["key"] == "n/a")
    assert any(p.suffix == ".csv" for p in result.data_files)


def test_real_keyboard_without_presses(win, tmp_path):
    """Without the simulated participant, PsychoPy's own keyboard is read: no
    one presses it here (Psychtoolbox does not see XTest keys under Xvfb), so
    each 0.3 s keyboard times out, and the rows and markers say so."""
    timed = read_experiment(Path(__file__).parents[1] / "corpus/builder/timed.psyexp")
    locked = []
    result, markers = _run(
        win,
        tmp_path,
        timed,
        participant=None,
        params={},
        max_trials=3,
        on_event=lambda event, t, where: locked.append((event, t)),
    )
    assert not result.stopped and len(result.results) == 3
    assert not [m for m in markers if m["event"] == "response"]
    rows = _rows(tmp_path / "trials.tsv")
    assert [r["key"] for r in rows] == ["n/a"] * 3
    # A correct answer was due ($answer), so no key is an error.
    assert [r["correct"] for r in rows] == ["0"] * 3
    assert result.measures["responses"] == 0 and result.measures["accuracy"] == 0
    for i in range(3):
        mine = {
            (m["event"], m["component"]): m["t"]
            for m in markers
            if m.get("trial") == i and m["event"].startswith("component_")
        }

        assert set(mine) == {
            (e, c)
            for e in ("component_onset", "component_offset")
            for c in ("word", "resp")
        }
        # Both last 0.3 s, onset flip to offset flip (one 60 Hz frame either way).
        for c in ("word", "resp"):
            shown = mine["component_offset", c] - mine["component_onset", c]
            assert shown == pytest.approx(0.3, abs=0.02), (i, c, shown)
    # Online TMS hears of every start and stop at its marker's flip time, the
    # last iteration's stops too (on the flip that ends the run).
    edges = {"component_onset": "started", "component_offset": "stopped"}
    assert locked == [
        (f"{m['component']}.{edges[m['event']]}", m["t"])
        for m in markers
        if m["event"] in edges
    ]
    assert len(locked) == 12


def test_pause_and_stop_at_iteration_boundaries(win, tmp_path):
    """between_trials holds the run between iterations and can end it there."""
    seen = []

    def between(done):
        seen.append(done)
        return done < 2

    result, markers = _run(win, tmp_path, between_trials=between)
    assert result.stopped and len(result.results) == 2
    assert seen == [0, 1, 2]  # after the instructions, then after each row
    assert len(_rows(tmp_path / "trials.tsv")) == 2
    assert not [m for m in markers if m.get("trial") == 2]
    assert any(p.suffix == ".csv" for p in result.data_files)


def test_stop_mid_frame_shows_nothing_more(win, tmp_path):
    """A stop takes effect before the next flip: nothing starts after it."""
    from time import perf_counter

    t_stop = perf_counter() + 2.2  # into the first trial

    result, markers = _run(win, tmp_path, should_stop=lambda: perf_counter() > t_stop)
    assert result.stopped
    last = [m for m in markers if m["event"] == "component_onset"][-1]
    end = next(m for m in markers if m["event"] == "task_end")
    assert end["stopped"] is True and last["t"] < end["t"]
    assert len(_rows(tmp_path / "trials.tsv")) == len(result.results) < 3


def test_window_and_process_are_put_back(win, tmp_path):
    """The run leaves the window, the working directory, sys.path and PsychoPy's
    listener loop as they were, and draws nothing after."""
    from psychopy.hardware.listener import loop as listener

    before = (list(win.color), win.units, os.getcwd(), list(sys.path))
    listener_active = listener._active
    modules = set(sys.modules)
    _run(win, tmp_path, max_trials=1)
    assert (list(win.color), win.units, os.getcwd(), list(sys.path)) == before
    assert listener._active == listener_active
    assert not getattr(win, "_toDraw", [])
    assert "timeOnFlip" not in win.__dict__ and "flip" not in win.__dict__
    assert not [m for m in set(sys.modules) - modules if "stimtrain_builder" in m]


def test_crash_inside_the_experiment_propagates_after_its_data(win, tmp_path):
    """An exception in the experiment's code ends the block with that exception,
    after the rows run so far and PsychoPy's data were written."""
    boom = _variant(
        tmp_path,
        beginRoutine='if trials.thisN == 2:\n    raise RuntimeError("boom")',
    )
    with pytest.raises(RuntimeError, match="boom"):
        _run(win, tmp_path, boom)
    assert len(_rows(tmp_path / "trials.tsv")) == 2
    assert list((tmp_path / "psychopy" / "data").glob("*.csv"))
    assert os.getcwd() != str(boom.parent)
    assert "flip" not in win.__dict__


# -- located errors, before anything runs --------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(BuilderError, match="must name an existing .psyexp file"):
        read_experiment(tmp_path / "nope.psyexp")


def test_broken_file_is_located(tmp_path):
    bad = tmp_path / "bad.psyexp"
    bad.write_text('<?xml version="1.0" ?>\n<PsychoPy2experiment>\n  <Settings>\n')
    with pytest.raises(BuilderError) as info:
        read_experiment(bad)
    assert (info.value.file, info.value.line) == (str(bad), 4)
    assert "broken XML" in info.value.located()
    other = tmp_path / "other.psyexp"
    other.write_text("<html></html>\n")
    with pytest.raises(BuilderError, match="root element"):
        read_experiment(other)


def test_undeclared_and_wrong_params():
    exp = read_experiment(STROOP)
    assert exp.exp_info({"participant": 7}) == {"participant": "7"}
    with pytest.raises(BuilderError) as info:
        exp.exp_info({"colour": "red"})
    assert info.value.field == "colour" and info.value.file is None
    assert "declared: session, participant" in info.value.rule
    with pytest.raises(BuilderError, match="text or a number"):
        exp.exp_info({"session": [1, 2]})


@pytest.mark.parametrize(
    ("demo", "field", "needs"),
    [
        (
            "Hardware/microphone/microphone.psyexp",
            "routines.proseRecord.mic",
            "a microphone",
        ),
        (
            "Hardware/eyetracking/eyetracking.psyexp",
            "settings.eyetracker",
            "an eye tracker",
        ),
        (
            "Experiments/BART/bart.psyexp",
            "routines.instructions.pop_sound",
            "a sound output",
        ),
    ],
)
def test_devices_stimtrain_cannot_provide_are_located(demo, field, needs):
    path = DEMOS / demo
    exp = read_experiment(path)
    problem = next(p for p in exp.problems if p.field == field)
    assert f"needs {needs}, which stimtrain does not provide" in problem.rule
    line = path.read_text(encoding="utf-8-sig").splitlines()[problem.line - 1]
    assert field.rsplit(".", 1)[-1] in line


def test_counts_from_the_loops():
    """Iterations come from the loops: nReps times the conditions' rows."""
    stroop = read_experiment(STROOP)
    assert stroop.max_rows == 30 and stroop.onsets("word") == 30
    assert stroop.onsets("ready") == 1 and stroop.components["word"].start_s == 0.5
    sternberg = read_experiment(DEMOS / "Experiments/sternberg/sternberg.psyexp")
    assert sternberg.loops["pracTrials"].iterations == 12
    assert sternberg.onsets("resp") == 12 + 126
    bart = read_experiment(DEMOS / "Experiments/BART/bart.psyexp")
    assert bart.max_rows is None  # its inner loop's length is code


# -- the pilot command -------------------------------------------------------------
def _pilot(*argv, cwd):
    return subprocess.run(
        [sys.executable, "-m", "stimtrain.cli", "task", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_pilot_runs_a_demo_headless(tmp_path):
    """``stimtrain task --builder FILE --simulated``: TSV, markers and PsychoPy's
    CSV in the output folder, measures printed, a quiet console."""
    out = tmp_path / "out"
    proc = _pilot(
        "--builder", str(STROOP), "--simulated", "--trials", "2", "--seed", "3",
        "--param", "session=4", "--out", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (tsv,) = out.glob("stroop_*_3_trials.tsv")
    (markers,) = out.glob("stroop_*_3_markers.jsonl")
    (data,) = out.glob("stroop_*_3_data/data/pilot_*.csv")
    assert len(_rows(tsv)) == 2
    events = [json.loads(line)["event"] for line in markers.read_text().splitlines()]
    assert events.count("response") == 3  # the instructions' key, then 2 trials
    assert "trials     2" in proc.stdout and f"data:    {data}" in proc.stdout
    assert "WARNING" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--builder", str(DEMOS / "Hardware/microphone/microphone.psyexp")],
            f"{DEMOS / 'Hardware/microphone/microphone.psyexp'}:169:7: error: "
            "routines.proseRecord.mic: needs a microphone, which stimtrain does not "
            "provide (got MicrophoneComponent)",
        ),
        (
            ["--builder", str(STROOP), "--param", "colour=red"],
            "error: --param colour: is not a field the experiment declares in its "
            "Experiment info (declared: session, participant) (got colour)",
        ),
        (
            ["--builder", "missing.psyexp"],
            "error: --builder: must name an existing .psyexp file (got missing.psyexp)",
        ),
        (["stroop", "--builder", str(STROOP)], "error: name a task or give --builder"),
    ],
)
def test_pilot_refuses_before_the_start(tmp_path, argv, message):
    proc = _pilot(*argv, "--simulated", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(message), proc.stderr
    assert not list(tmp_path.iterdir())
