"""The plan: pulse times, durations and totals of a protocol."""

import json

import numpy as np
import pytest

from stimtrain.cli import main
from stimtrain.orchestrator.language.protocol import (
    RTMSTrains,
    SinglePulses,
    ThetaBurst,
)
from stimtrain.orchestrator.safety.checking import check_file
from stimtrain.orchestrator.safety.plan import ARM_LEAD_S, pulse_offsets
from stimtrain.orchestrator.safety.rules import Thresholds
from stimtrain.protocols import protocol_path


def test_itbs_timing():
    offsets, end = pulse_offsets(
        ThetaBurst(
            variant="iTBS", pulses=600, train_duration_s=2.0, inter_train_interval_s=8.0
        ),
        np.random.default_rng(0),
    )
    assert len(offsets) == 600
    # Triplets 20 ms apart, bursts every 200 ms, trains every 10 s.
    assert np.allclose(offsets[:3], [0, 0.02, 0.04])
    assert offsets[3] == pytest.approx(0.2)
    assert offsets[30] == pytest.approx(10.0)
    assert offsets[-1] == pytest.approx(190 + 1.8 + 0.04)
    assert end == pytest.approx(offsets[-1] + 1.0)


def test_ctbs_is_continuous():
    offsets, _ = pulse_offsets(
        ThetaBurst(variant="cTBS", pulses=600), np.random.default_rng(0)
    )
    assert offsets[-1] == pytest.approx(39.8 + 0.04)
    assert np.allclose(np.diff(offsets[::3]), 0.2)


def test_rtms_trains():
    offsets, _ = pulse_offsets(
        RTMSTrains(
            frequency_hz=10, pulses_per_train=40, trains=3, inter_train_interval_s=26
        ),
        np.random.default_rng(0),
    )
    assert len(offsets) == 120
    assert offsets[40] == pytest.approx(30.0)
    assert np.allclose(np.diff(offsets[:40]), 0.1)


def test_jitter_stays_in_bounds_and_is_seeded():
    pattern = SinglePulses(pulses=200, interval_s=2.0, jitter_s=0.25)
    a, _ = pulse_offsets(pattern, np.random.default_rng([7, 2]))
    b, _ = pulse_offsets(pattern, np.random.default_rng([7, 2]))
    c, _ = pulse_offsets(pattern, np.random.default_rng([8, 2]))
    gaps = np.diff(a)
    assert gaps.min() >= 1.75 and gaps.max() <= 2.25
    assert gaps.std() > 0.1
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_demo_plan_totals():
    checked = check_file(protocol_path("demo.yaml"), thresholds=Thresholds(rmt=50))
    plan = checked.plan
    assert plan.total_pulses == 72
    stim = [b for b in plan.blocks if b.type == "stimulate"]
    assert [b.power for b in stim] == [60, 35]
    assert [b.delivery for b in stim] == ["serial", "trigger"]
    assert stim[0].pulse_offsets_s[0] == ARM_LEAD_S
    starts = [b.start_s for b in plan.blocks]
    assert starts == sorted(starts)
    assert plan.total_duration_s == pytest.approx(
        sum(b.duration_s for b in plan.blocks)
    )


def test_plan_json(capsys):
    assert main(["plan", str(protocol_path("demo.yaml")), "--rmt", "50", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total_pulses"] == 72
    assert {"start_s", "duration_s", "pulses"} <= set(data["blocks"][0])
    assert data["total_duration_s"] == pytest.approx(
        sum(b["duration_s"] for b in data["blocks"])
    )
    rules = {c["rule"] for c in data["safety"]}
    assert "theta-burst intensity cap" in rules


def test_plan_table_shows_margins(capsys):
    assert main(["plan", str(protocol_path("demo.yaml")), "--rmt", "50"]) == 0
    out = capsys.readouterr().out
    assert "72 pulses" in out and "safety margins" in out


def test_plan_refuses_unsafe(capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    text = protocol_path("demo.yaml").read_text().replace("70 %RMT", "90 %RMT")
    path.write_text(text)
    assert main(["plan", str(path), "--rmt", "50"]) == 1
    assert (
        "theta-burst intensity cap: must be at most 70 %RMT" in capsys.readouterr().out
    )
