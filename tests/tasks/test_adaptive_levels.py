"""Tests of adaptive difficulty (PsychoPy staircases), saved levels and entry points."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from stimtrain.tasks import (
    TASKS,
    SimulatedParticipant,
    get_task,
    load_levels,
    record_level,
    save_levels,
    simulate_block,
    task_names,
)
from stimtrain.tasks.adaptive import Adaptation, Staircase, n_down_for


@pytest.mark.parametrize("p, n", [(0.5, 1), (0.707, 2), (0.8, 3), (0.85, 4)])
def test_n_down_for_target_accuracy(p, n):
    """n-down/1-up converges where p**n = 0.5 (Levitt 1971)."""
    assert n_down_for(p) == n
    assert p**n == pytest.approx(0.5, abs=0.05)


def test_staircase_steps_and_bounds():
    """3-down/1-up on a deadline: 3 correct -> shorter, 1 wrong -> longer, clamped."""
    a = Adaptation("deadline_s", start=0.5, step=0.1, low=0.3, high=0.6)
    s = Staircase(a)
    assert s.level == 0.5
    for _ in range(2):
        s.update(True)
        assert s.level == 0.5
    s.update(True)
    assert s.level == pytest.approx(0.4)
    s.update(False)
    assert s.level == pytest.approx(0.5)
    s.update(False)
    s.update(False)
    assert s.level == pytest.approx(0.6)  # clamped at high
    for _ in range(12):
        s.update(True)
    assert s.level == pytest.approx(0.3)  # clamped at low
    assert Staircase(a, start=5.0).level == 0.6  # a saved level is clamped too
    # A larger-is-harder level (the stop-signal delay) goes up when correct.
    up = Staircase(
        Adaptation("ssd_s", 0.2, 0.05, 0.05, 1.2, harder=1, target_accuracy=0.5)
    )
    up.update(True)
    assert up.level == pytest.approx(0.25)


def test_adaptive_deadline_converges_on_target_accuracy():
    """Training flanker: the deadline falls until accuracy is about 80 %."""
    part = SimulatedParticipant(seed=2)
    result = simulate_block(
        "flanker", {"adaptive": True}, n_trials=600, seed=1, participant=part
    )
    assert result.start_level == 1.5
    assert 0.3 < result.level < 0.6  # near the participant's RT distribution
    late = result.results[200:]
    accuracy = sum(r.correct for r in late) / len(late)
    assert accuracy == pytest.approx(0.794, abs=0.06)
    # Each trial ran with the deadline the staircase set (misses past it).
    for r in late:
        assert r.rt is None or r.rt <= r.extra["level"]
    # A session starting from the saved level starts there.
    again = simulate_block(
        "flanker",
        {"adaptive": True},
        n_trials=5,
        seed=2,
        participant=part,
        start_level=result.level,
    )
    assert again.results[0].extra["level"] == result.level
    # Without "adaptive" there is no level.
    plain = simulate_block("flanker", None, n_trials=5, seed=1, participant=part)
    assert plain.level is None and "level" not in plain.results[0].extra


@pytest.mark.parametrize(
    "p_error, start, expected", [(0.0, 2, 3), (0.6, 2, 1), (0.6, 1, 1)]
)
def test_nback_level_moves_between_blocks(p_error, start, expected):
    """Jaeggi's rule: n up after >= 90 % correct, down after < 75 %, never below 1."""
    part = SimulatedParticipant(
        seed=1,
        profiles={
            "nback": {
                "conditions": {
                    c: {"p_error": p_error, "p_lapse": 0.0}
                    for c in ("target", "nontarget")
                },
                "load": {"p_error": 0.0},
            }
        },
    )
    result = simulate_block(
        "nback", None, n_trials=22, seed=3, participant=part, start_level=start
    )
    assert result.start_level == start
    assert result.measures["n"] == start
    assert result.level == expected and isinstance(result.level, int)


def test_levels_file_roundtrip_and_errors(tmp_path):
    """Levels survive a save/load; bad files and values are named."""
    path = tmp_path / "sub-01" / "levels.json"
    assert load_levels(path) == {}
    save_levels(path, {"flanker": 0.45, "nback": 3})
    assert load_levels(path) == {"flanker": 0.45, "nback": 3}
    record_level(path, "stroop", 0.8)
    record_level(path, "stopsignal", None)  # no level: nothing changes
    assert load_levels(path) == {"flanker": 0.45, "nback": 3, "stroop": 0.8}
    assert [p.name for p in path.parent.iterdir()] == ["levels.json"]  # no temp left
    with pytest.raises(ValueError, match="level of 'x' must be a finite number"):
        save_levels(path, {"x": float("nan")})
    assert load_levels(path)["nback"] == 3  # the failed save changed nothing
    path.write_text("[1, 2]")
    with pytest.raises(
        ValueError, match="levels.json: levels file must hold a JSON object"
    ):
        load_levels(path)
    path.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_levels(path)
    path.write_text(json.dumps({"flanker": "fast"}))
    with pytest.raises(
        ValueError, match="level of 'flanker' must be a finite number, got 'fast'"
    ):
        load_levels(path)


@pytest.fixture
def lab_package(tmp_path):
    """A lab's task package, installed as a real distribution in a sys.path dir."""
    (tmp_path / "labtasks").mkdir()
    (tmp_path / "labtasks" / "__init__.py").write_text(
        textwrap.dedent(
            '''
            """A lab's tasks."""
            from stimtrain.tasks.flanker import FlankerTask


            class WideFlanker(FlankerTask):
                """Flanker with three arrows on each side."""

                name = "wide_flanker"
                default_params = {**FlankerTask.default_params, "n_flankers": 3}


            NOT_A_TASK = 42
            '''
        )
    )
    dist = tmp_path / "labtasks-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: labtasks\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        "[stimtrain.tasks]\n"
        "wide_flanker = labtasks:WideFlanker\n"
        "lab_wide = labtasks:WideFlanker\n"
        "broken = labtasks:NOT_A_TASK\n"
    )
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    sys.modules.pop("labtasks", None)
    for name in ("wide_flanker", "lab_wide"):
        TASKS.pop(name, None)


def test_entry_point_task_usable_by_name(lab_package):
    """A task registered under the stimtrain.tasks group works by name."""
    assert "labtasks" not in sys.modules
    assert {"wide_flanker", "lab_wide", "broken"} <= set(task_names())
    task = get_task("wide_flanker")
    assert type(task).__module__ == "labtasks"
    params = task.validate_params({"p_congruent": 0.5})
    assert params["n_flankers"] == 3
    result = simulate_block(
        task, params, n_trials=10, seed=0, participant=SimulatedParticipant()
    )
    assert len(result.results[0].trial.stimulus["text"]) == 7
    # The entry point's own name works too, and is registered from then on.
    assert type(get_task("lab_wide")) is type(task)
    assert TASKS["lab_wide"] is type(task)
    with pytest.raises(
        KeyError, match="'broken'.*must name a subclass of stimtrain.tasks.Task"
    ):
        get_task("broken")
    with pytest.raises(
        KeyError, match="unknown task 'nope'; known tasks: .*wide_flanker"
    ):
        get_task("nope")
