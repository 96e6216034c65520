"""The task example of docs/tasks.md, extracted and executed as written."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
from taskcheck import Recorder, check_rows_against_markers, read_tsv

from stimtrain.tasks import TASKS, SimulatedParticipant, get_task, simulate_block
from stimtrain.tasks.runner import run_task_block

DOC = Path(__file__).resolve().parents[2] / "docs" / "tasks.md"


@pytest.fixture(scope="module")
def simon(tmp_path_factory):
    """Import the doc's example as a module; unregister it afterwards."""
    text = DOC.read_text()
    match = re.search(
        r"<!-- example: simon -->\n```python\n(.*?)```\n<!-- end example -->",
        text,
        re.S,
    )
    assert match, "the example block is missing from docs/tasks.md"
    path = tmp_path_factory.mktemp("doc") / "simon_example.py"
    path.write_text(match.group(1))
    spec = importlib.util.spec_from_file_location("simon_example", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["simon_example"] = module
    spec.loader.exec_module(module)
    yield module
    TASKS.pop("simon", None)
    sys.modules.pop("simon_example", None)


SIMON_EFFECT = {
    "simon": {
        "conditions": {
            "congruent": {"mu": 0.15, "sigma": 0.01, "tau": 0.01, "p_error": 0.02},
            "incongruent": {"mu": 0.19, "sigma": 0.01, "tau": 0.01, "p_error": 0.08},
        }
    }
}


def test_example_is_a_working_task(simon, win, tmp_path):
    """Registered by name, validated, played in a window and without one."""
    task = get_task("simon")
    assert isinstance(task, simon.SimonTask)
    with pytest.raises(Exception, match="offset: must be in \\[0, 0.8\\] \\(got 2\\)"):
        task.validate_params({"offset": 2})
    emit = Recorder()
    result = run_task_block(
        win,
        "simon",
        {"fixation_s": 0.03, "iti_s": 0.03},
        n_trials=8,
        seed=1,
        tsv_path=tmp_path / "simon.tsv",
        emit=emit,
        participant=SimulatedParticipant(seed=2, profiles=SIMON_EFFECT),
    )
    rows = read_tsv(tmp_path / "simon.tsv")
    assert [r["side"] for r in rows] == [
        ("left", "right")[r.trial.stimulus["side"]] for r in result.results
    ]
    check_rows_against_markers(rows, emit, block=0, task="simon")
    sim = simulate_block(
        "simon",
        None,
        n_trials=400,
        seed=3,
        participant=SimulatedParticipant(seed=4, profiles=SIMON_EFFECT),
    )
    assert sim.measures["n_congruent"] == sim.measures["n_incongruent"] == 200
    # True effect 40 ms; SE of the difference ~ 14 ms * sqrt(2 / 190) = 1.5 ms.
    assert sim.measures["simon_effect_ms"] == pytest.approx(40, abs=6)
