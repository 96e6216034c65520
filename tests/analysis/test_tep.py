"""TEP processing on synthetic recordings with known artifacts and responses."""

from __future__ import annotations

import mne
import numpy as np
import pytest
from synthetic_xdf import ARTIFACT_UV, LATENCY, WEIGHTS

from stimtrain.analysis import (
    artifact_alignment,
    gmfp,
    interpolate_artifact,
    pulse_epochs,
    pulse_events,
    read_raw_xdf,
    tep,
)


@pytest.fixture(scope="module")
def raw5k(rec5k):
    return read_raw_xdf(rec5k.path)


def test_pulse_events(raw5k, rec5k):
    events = pulse_events(raw5k)
    assert events.shape == (20, 3)
    assert (events[:, 2] == 1).all()
    # The artifact was put on the sample nearest to each pulse time.
    truth = np.round((rec5k.pulse_times - rec5k.first_time) * rec5k.sfreq)
    assert np.abs(events[:, 0] - truth).max() <= 1


def test_artifact_alignment_within_one_sample(raw5k):
    al = artifact_alignment(raw5k)
    assert len(al) == 20 and al["found"].all()
    assert al["offset_samples"].abs().max() <= 1
    assert al["offset_ms"].abs().max() <= 1e3 / raw5k.info["sfreq"]
    assert list(al["pulse"]) == list(range(20))


def test_artifact_alignment_at_1000_hz_across_a_gap(rec_gap):
    raw = read_raw_xdf(rec_gap.path)
    al = artifact_alignment(raw)
    assert len(al) == 6 and al["found"].all()
    assert al["offset_samples"].abs().max() <= 1


def test_artifact_alignment_reports_missing(raw5k):
    al = artifact_alignment(raw5k, threshold_uv_per_ms=1e9)
    assert not al["found"].any()
    assert al["offset_ms"].isna().all()


def test_pulse_epochs_and_tep(raw5k):
    epochs = pulse_epochs(raw5k)
    assert len(epochs) == 20
    assert epochs.info["sfreq"] == 1000
    assert epochs.times[0] == pytest.approx(-0.1) and epochs.times[-1] == pytest.approx(
        0.35
    )
    assert 0 in np.round(epochs.times * 1e3)
    md = epochs.metadata
    assert list(md["pulse"]) == list(range(20))
    assert {
        "block",
        "pattern",
        "intensity",
        "unit",
        "power",
        "scheduled",
        "lsl_time",
        "onset",
    } <= set(md.columns)
    # The 20 mV artifact is gone after interpolation.
    assert np.abs(epochs.get_data()).max() < 50e-6
    evoked = tep(epochs)
    for ch, weight in zip(raw5k.ch_names, WEIGHTS, strict=True):
        if abs(weight) < 5:
            continue
        mode = "pos" if weight > 0 else "neg"
        _, lat, amp = (
            evoked.copy()
            .pick([ch])
            .get_peak(tmin=0.015, tmax=0.1, mode=mode, return_amplitude=True)
        )
        assert lat == pytest.approx(LATENCY, abs=0.001 + 1e-9)
        assert amp * 1e6 == pytest.approx(weight, rel=0.1)
    power = gmfp(evoked)
    assert power.shape == evoked.times.shape
    assert evoked.times[power.argmax()] == pytest.approx(LATENCY, abs=0.001 + 1e-9)
    assert power.max() * 1e6 == pytest.approx(np.std(WEIGHTS), rel=0.1)


def test_pulse_epochs_without_interpolation_keep_the_artifact(raw5k):
    epochs = pulse_epochs(raw5k, exclude_artifact=None, sfreq=None, baseline=None)
    assert epochs.info["sfreq"] == 5000
    assert np.abs(epochs.get_data()).max() > 0.5 * ARTIFACT_UV * 1e-6


def test_pulse_epochs_drop_across_gap(rec_gap):
    raw = read_raw_xdf(rec_gap.path)
    # 1000 Hz: no resampling; the fit uses 2 samples per side.
    epochs = pulse_epochs(raw, tmin=-0.1, tmax=0.35)
    assert len(epochs) == 6
    epochs = pulse_epochs(raw, tmin=-1.5, tmax=0.35)
    # The pulse at 1 s has no 1.5 s before it; the one at 7 s reaches into
    # the gap (4-6 s, BAD_ACQ_SKIP): both are dropped, with their metadata.
    assert list(epochs.metadata["pulse"]) == [1, 2, 4, 5]


def test_interpolate_artifact_recovers_a_cubic():
    sfreq = 5000.0
    times = np.arange(-0.05, 0.05, 1 / sfreq)
    signal = 1e-6 * (1 + 30 * times - 2e3 * times**2 + 4e4 * times**3)
    data = np.tile(signal, (3, 2, 1))
    dirty = data.copy()
    window = (times >= -0.002 - 1e-9) & (times <= 0.010 + 1e-9)
    dirty[..., window] += 1e-2
    info = mne.create_info(["Cz", "Fz"], sfreq, "eeg")
    events = np.c_[np.arange(3) * 1000 + 250, np.zeros(3, int), np.ones(3, int)]
    epochs = mne.EpochsArray(dirty, info, events=events, tmin=times[0], verbose=False)
    interpolate_artifact(epochs)
    np.testing.assert_allclose(epochs.get_data(), data, atol=1e-12)


def test_no_pulses_raise(rec_eeg_only):
    with pytest.warns(RuntimeWarning):
        raw = read_raw_xdf(rec_eeg_only.path)
    assert pulse_events(raw).shape == (0, 3)
    with pytest.raises(ValueError, match="no 'pulse' annotations"):
        pulse_epochs(raw)
    assert artifact_alignment(raw).empty
