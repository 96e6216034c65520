"""The live view's model: MEPs, evoked EEG, hunting and task numbers from real inputs.

The inputs are what the view process reads: decoded markers with their LSL
times and chunks of samples with their stamps, here synthesised with known
responses so that what the page would show can be checked against the truth.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from stimtrain.orchestrator.session.view.model import (
    EEG_WINDOW,
    PHASE_BIN_DEG,
    Channels,
    ViewModel,
)

RATE = 1000.0


def _recording(seconds: float, pulses: list[float], mep_uv: float, tep_uv: float):
    """C3, Cz (EEG) and FDI (EMG) with a known MEP and TEP after each pulse."""
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(1)
    data = rng.normal(0, 0.5, (len(t), 3))
    for p in pulses:
        # MEP: +half at 22-27 ms, -half at 30-35 ms: peak-to-peak = mep_uv.
        data[(t >= p + 0.022) & (t < p + 0.027), 2] += mep_uv / 2
        data[(t >= p + 0.030) & (t < p + 0.035), 2] -= mep_uv / 2
        data[(t >= p + 0.090) & (t < p + 0.110), :2] += tep_uv
    return t, data.astype(np.float32)


def _model() -> ViewModel:
    return ViewModel(Channels(["C3", "Cz", "FDI"], ["EEG", "EEG", "EMG"], RATE, emg=2))


def _feed(model: ViewModel, t, data, chunk: int = 37) -> None:
    for start in range(0, len(t), chunk):
        model.on_samples(data[start : start + chunk], t[start : start + chunk])


def _pulse(model: ViewModel, time: float, n: int, block: int = 0) -> None:
    model.on_marker({"event": "pulse", "block": block, "pulse": n, "power": 55}, time)


def test_every_pulse_gets_its_mep_once_its_window_has_arrived():
    model = _model()
    pulses = [1.0, 2.0, 3.0]
    t, data = _recording(4.0, pulses, mep_uv=800.0, tep_uv=0.0)
    for n, p in enumerate(pulses):
        _pulse(model, p, n)
    # Samples up to 90 ms after the first pulse: its window is not complete.
    _feed(model, t[t < 1.09], data[t < 1.09])
    assert "mep" not in model.sections
    _feed(model, t[t >= 1.09], data[t >= 1.09])
    mep = model.sections["mep"]
    assert [a["pulse"] for a in mep["amplitudes"]] == [0, 1, 2]
    for a in mep["amplitudes"]:
        assert a["p2p_uv"] == pytest.approx(800.0, abs=5.0)
        assert a["power"] == 55
    assert mep["n"] == 3
    assert min(mep["t_ms"]) == pytest.approx(-50, abs=1)
    assert max(mep["t_ms"]) == pytest.approx(100, abs=1)


def test_the_evoked_average_blanks_the_artifact_and_leaves_out_overlapping_pulses():
    model = _model()
    single = [1.0, 2.0, 3.0]
    burst = [4.0, 4.02, 4.04]  # theta-burst spacing: responses overlap
    t, data = _recording(5.0, single + burst, mep_uv=0.0, tep_uv=10.0)
    for n, p in enumerate(single + burst):
        _pulse(model, p, n)
    _feed(model, t, data)
    evoked = model.sections["evoked"]
    assert evoked["n"] == 3
    assert evoked["left_out"] == 3
    assert evoked["channels"] == ["C3", "Cz"]
    times = np.array(evoked["t_ms"])
    c3 = np.array([np.nan if v is None else v for v in evoked["butterfly"][0]])
    assert np.isnan(c3[(times > 0) & (times < 14)]).all()
    assert np.nanmax(c3[(times > 90) & (times < 110)]) == pytest.approx(10, abs=1.5)
    assert abs(np.nanmean(c3[times < -10])) < 0.5
    assert len(times) <= 320 and times[-1] <= EEG_WINDOW[1] * 1000


def test_a_pulse_before_the_view_started_is_skipped_not_drawn_from_nothing():
    model = _model()
    t, data = _recording(3.0, [0.5, 2.0], mep_uv=500.0, tep_uv=0.0)
    late = t >= 1.0
    _pulse(model, 0.5, 0)
    _pulse(model, 2.0, 1)
    _feed(model, t[late], data[late])
    assert [a["pulse"] for a in model.sections["mep"]["amplitudes"]] == [1]


def test_task_numbers_by_condition():
    model = ViewModel()
    model.on_marker({"event": "task_start", "task": "flanker", "n_trials": 4}, 0.0)
    trials = [
        ("congruent", 0.400, True),
        ("incongruent", 0.550, True),
        ("incongruent", 0.700, False),
        ("congruent", 0.500, True),
    ]
    for n, (condition, rt, correct) in enumerate(trials):
        model.on_marker({"event": "stim_onset", "trial": n, "condition": condition}, n)
        model.on_marker(
            {"event": "response", "trial": n, "rt": rt, "correct": correct}, n
        )
    task = model.sections["task"]
    assert task["trial"] == 3 and task["n_trials"] == 4
    rows = {r["condition"]: r for r in task["by_condition"]}
    assert rows["congruent"]["accuracy"] == 1.0
    assert rows["congruent"]["median_rt_ms"] == pytest.approx(450)
    assert rows["incongruent"]["accuracy"] == 0.5
    # The median RT is of correct trials only.
    assert rows["incongruent"]["median_rt_ms"] == pytest.approx(550)


def test_hunting_pulses_and_estimate():
    model = ViewModel()
    for n, (power, amp) in enumerate([(40, 20.0), (50, 80.0), (45, 60.0)]):
        model.on_marker(
            {
                "event": "mep",
                "pulse": n,
                "power": power,
                "amplitude_uv": amp,
                "rejected": False,
            },
            n,
        )
    model.on_marker(
        {
            "event": "threshold_estimate",
            "pulses": 3,
            "estimate": 44.2,
            "next_power": 44,
        },
        3,
    )
    hunt = model.sections["hunt"]
    assert [p["power"] for p in hunt["pulses"]] == [40, 50, 45]
    assert hunt["estimate"]["estimate"] == 44.2


def test_a_page_gets_only_what_changed_and_a_new_page_gets_everything():
    model = ViewModel()
    model.on_state({"status": "running", "blocks": []})
    model.on_journal(json.dumps({"event": "paused", "wall": 0, "block": 2}))
    seen: dict = {}
    first = model.changed_since(seen)
    assert set(first) == {"meta", "state", "log"}
    assert model.changed_since(seen) == {}
    model.on_state({"status": "paused", "blocks": []})
    assert set(model.changed_since(seen)) == {"state"}
    assert set(model.changed_since({})) == {"meta", "state", "log"}
    (line,) = model.sections["log"]
    assert line.endswith("paused block=2")


def _triggered(model: ViewModel, n: int, target: float, online, block: int = 1):
    marker = {"event": "pulse", "block": block, "pulse": n, "power": 55}
    marker.update(target_phase=target)
    if online is not None:
        marker.update(online_phase=online)
    model.on_marker(marker, 10.0 + n)


def _truth(phases_deg) -> tuple[float, float]:
    """Circular mean and SD sqrt(-2 ln R) from the definition, in degrees."""
    z = np.mean(np.exp(1j * np.radians(phases_deg)))
    return float(np.degrees(np.angle(z))), float(
        np.degrees(np.sqrt(-2 * np.log(abs(z))))
    )


def test_phase_panel_per_target_counts_means_sds_and_histogram():
    rng = np.random.default_rng(7)
    # Target 0 (peak): von Mises about 10 degrees late, kappa 8 (SD about 21);
    # drawn in [0, 360) as the markers carry them, so they straddle 0/360.
    peak = np.mod(np.degrees(rng.vonmises(np.radians(10.0), 8.0, 20)), 360.0)
    # Target 180 (trough): five pulses each at 150, 170, 190 and 210 degrees.
    trough = np.repeat([150.0, 170.0, 190.0, 210.0], 5)
    model = ViewModel()
    _pulse(model, 1.0, 0, block=0)  # an untriggered pulse: no phase panel
    assert "phase" not in model.sections
    for n, (a, b) in enumerate(zip(peak, trough, strict=True)):
        _triggered(model, 2 * n, 0.0, round(float(a), 3), block=1)
        _triggered(model, 2 * n + 1, 180.0, float(b), block=2)
    phase = model.sections["phase"]
    assert phase["pulses"] == 40
    assert phase["bin_deg"] == PHASE_BIN_DEG == 20.0
    assert phase["bin_centers"] == [10.0 + 20.0 * k for k in range(18)]
    by = {t["target_phase"]: t for t in phase["targets"]}
    assert list(by) == [0.0, 180.0]

    zero = by[0.0]
    assert zero["pulses"] == zero["with_phase"] == 20
    mean, sd = _truth(peak)
    assert zero["mean_deg"] == pytest.approx(mean, abs=0.01)
    assert zero["sd_deg"] == pytest.approx(sd, abs=0.01)
    # The sample is near the distribution it came from.
    assert zero["mean_deg"] == pytest.approx(10.0, abs=10.0)
    assert 12.0 < zero["sd_deg"] < 32.0
    counts, _ = np.histogram(np.round(peak, 3), np.arange(0.0, 361.0, 20.0))
    assert zero["counts"] == counts.tolist()
    assert zero["counts"][0] + zero["counts"][-1] > 0  # both sides of 0 degrees
    assert zero["latest_deg"] == pytest.approx(peak[-1], abs=1e-3)

    half = by[180.0]
    assert half["pulses"] == 20
    # Symmetric about 180: R = (cos 30 + cos 10) / 2.
    r = (np.cos(np.radians(30)) + np.cos(np.radians(10))) / 2
    assert half["mean_deg"] == pytest.approx(180.0, abs=0.01)
    assert half["sd_deg"] == pytest.approx(np.degrees(np.sqrt(-2 * np.log(r))), 1e-3)
    # [140, 160), [160, 180), [180, 200), [200, 220): bins 7 to 10.
    assert half["counts"] == [0] * 7 + [5, 5, 5, 5] + [0] * 7


def test_phase_panel_counts_a_pulse_without_an_estimate_and_updates_a_page():
    model = ViewModel()
    seen: dict = {}
    model.changed_since(seen)
    _triggered(model, 0, 180.0, 175.0)
    _triggered(model, 1, 180.0, None)  # no online phase: counted, not binned
    assert set(model.changed_since(seen)) == {"phase"}
    (trough,) = model.sections["phase"]["targets"]
    assert trough["pulses"] == 2 and trough["with_phase"] == 1
    assert sum(trough["counts"]) == 1 and trough["counts"][8] == 1
    assert trough["mean_deg"] == pytest.approx(175.0)
    assert trough["sd_deg"] == pytest.approx(0.0, abs=1e-4)
    assert trough["latest_deg"] is None
    # Two opposite phases: no mean direction to speak of, the SD infinite.
    _triggered(model, 2, 90.0, 0.0)
    _triggered(model, 3, 90.0, 180.0)
    assert set(model.changed_since(seen)) == {"phase"}
    wide = model.sections["phase"]["targets"][0]
    assert wide["target_phase"] == 90.0 and wide["sd_deg"] is None
    assert json.loads(json.dumps(model.sections["phase"], allow_nan=False))
    assert model.changed_since(seen) == {}
