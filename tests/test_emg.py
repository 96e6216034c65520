"""The MEP rule the session and the analysis share (stimtrain/emg.py)."""

import numpy as np
import pytest

from stimtrain.emg import measure_mep, measure_meps

SFREQ = 5000.0
TIMES = np.arange(-0.1, 0.1, 1 / SFREQ)


def _emg(amplitude=500.0, latency=0.021, offset=0.0, pre=0.0, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 2.0, TIMES.size) + offset
    mep = (TIMES >= latency) & (TIMES < latency + 0.015)
    x[mep] += amplitude / 2 * np.sin(2 * np.pi * (TIMES[mep] - latency) / 0.015)
    if pre:
        before = (TIMES > -0.04) & (TIMES < -0.02)
        x[before] += pre / 2 * np.sin(2 * np.pi * 60 * TIMES[before])
    return x


def test_peak_to_peak_latency_and_preactivation():
    mep = measure_mep(TIMES, _emg(amplitude=500.0, latency=0.021))
    assert mep.amplitude_uv == pytest.approx(500.0, rel=0.05)
    assert mep.latency_s == pytest.approx(0.021, abs=0.0008)
    assert mep.preactivation_uv < 20.0


def test_a_dc_offset_changes_nothing():
    # The sum of absolute max and min (as some tools take it) would add 2 mV.
    plain = measure_mep(TIMES, _emg())
    shifted = measure_mep(TIMES, _emg(offset=1000.0))
    assert shifted.amplitude_uv == pytest.approx(plain.amplitude_uv)
    assert shifted.latency_s == plain.latency_s


def test_preactivation_is_seen_and_no_response_has_no_latency():
    mep = measure_mep(TIMES, _emg(amplitude=0.0, pre=400.0))
    assert mep.preactivation_uv > 300.0
    assert mep.amplitude_uv < 20.0
    assert mep.latency_s is None


def test_many_at_once_match_one_at_a_time():
    data = np.stack([_emg(amplitude=a, seed=i) for i, a in enumerate((0, 80, 900))])
    amp, pre, lat = measure_meps(TIMES, data)
    for i in range(3):
        one = measure_mep(TIMES, data[i])
        assert amp[i] == one.amplitude_uv and pre[i] == one.preactivation_uv


def test_a_window_without_samples_is_refused():
    with pytest.raises(ValueError, match="no EMG sample"):
        measure_mep(TIMES, _emg(), window=(0.5, 0.6))
