"""Reading XDF recordings made with real LSL and LabRecorder."""

from __future__ import annotations

import mne
import numpy as np
import pytest

from stimtrain.analysis import (
    first_lsl_time,
    load_streams,
    read_markers,
    read_raw_xdf,
    timing_diagnostics,
)


def _pulse_onsets(raw):
    ann = raw.annotations
    return ann.onset[ann.description == "pulse"]


def test_raw_channels_units_and_montage(rec5k):
    raw = read_raw_xdf(rec5k.path)
    assert raw.ch_names == rec5k.ch_names
    assert raw.info["sfreq"] == rec5k.sfreq
    assert set(raw.get_channel_types()) == {"eeg"}
    assert raw.n_times == round(16.0 * rec5k.sfreq)
    # Every channel name is a 10-20 name: all have template positions.
    assert all(np.any(ch["loc"][:3] != 0) for ch in raw.info["chs"])
    # µV on the stream -> V in MNE: the artifact step is 20 mV.
    assert 0.015 < np.abs(raw.get_data()).max() < 0.03
    # The first sample's LSL time is kept (within the clock-offset correction).
    assert abs(first_lsl_time(raw) - rec5k.first_time) < 1e-3


def test_annotations_at_marker_times(rec5k):
    raw = read_raw_xdf(rec5k.path)
    onsets = _pulse_onsets(raw)
    assert len(onsets) == len(rec5k.pulse_times)
    expected = rec5k.pulse_times - rec5k.first_time
    np.testing.assert_allclose(onsets, expected, atol=1 / rec5k.sfreq)
    # Markers before the first / after the last EEG sample are left out.
    descriptions = set(raw.annotations.description)
    assert {"pulse", "stim_onset", "response", "block_start"} <= descriptions
    assert "session_start" not in descriptions
    assert "session_end" not in descriptions
    stim = raw.annotations.onset[raw.annotations.description == "stim_onset"]
    truth = [t for t, m in rec5k.markers if m["event"] == "stim_onset"]
    np.testing.assert_allclose(
        stim, np.asarray(truth) - rec5k.first_time, atol=1 / rec5k.sfreq
    )


def test_annotation_extras_carry_marker_fields(rec5k):
    raw = read_raw_xdf(rec5k.path)
    ann = raw.annotations
    pulses = [
        e for d, e in zip(ann.description, ann.extras, strict=True) if d == "pulse"
    ]
    assert [p["pulse"] for p in pulses] == list(range(20))
    first = pulses[0]
    assert first["event"] == "pulse"
    assert first["pattern"] == "single"
    assert first["intensity"] == 120
    assert first["unit"] == "%RMT"
    assert first["power"] == 60
    assert first["scheduled"] == pytest.approx(rec5k.scheduled[0])
    assert first["lsl_time"] == pytest.approx(rec5k.pulse_times[0], abs=1e-3)
    responses = [
        e for d, e in zip(ann.description, ann.extras, strict=True) if d == "response"
    ]
    # Booleans are stored as 0/1 (extras take str, int, float or None).
    assert {r["correct"] for r in responses} == {0, 1}
    assert responses[0]["key"] == "left"


def test_read_markers(rec5k):
    df = read_markers(rec5k.path)
    assert list(df.columns[:2]) == ["time", "event"]
    for col in (
        "block",
        "pulse",
        "pattern",
        "intensity",
        "unit",
        "power",
        "scheduled",
        "task",
        "trial",
        "condition",
        "key",
        "rt",
        "correct",
    ):
        assert col in df.columns
    assert len(df) == len(rec5k.markers)
    assert df["time"].is_monotonic_increasing
    assert (df["event"] == "pulse").sum() == 20
    assert (df["event"] == "stim_onset").sum() == 12
    # Markers outside the EEG are still in the table.
    assert df["event"].iloc[0] == "session_start"
    np.testing.assert_allclose(
        df.loc[df["event"] == "pulse", "time"], rec5k.pulse_times, atol=1e-3
    )


def test_timing_diagnostics(rec5k):
    diag = timing_diagnostics(load_streams(rec5k.path))
    eeg = diag["TestEEG"]
    assert eeg["n_samples"] == 80000
    assert eeg["nominal_srate"] == 5000
    assert abs(eeg["srate_error_ppm"]) < 1
    assert eeg["n_segments"] == 1 and eeg["dropped_samples"] == 0
    assert eeg["has_footer"] and eeg["footer_sample_count"] == 80000
    assert eeg["n_clock_offsets"] >= 1
    markers = [v for k, v in diag.items() if k.startswith("stimtrain-markers")]
    assert markers[0]["n_samples"] == len(rec5k.markers)


def test_gap_is_skipped_and_markers_stay_on_their_samples(rec_gap):
    raw = read_raw_xdf(rec_gap.path)
    sfreq = rec_gap.sfreq
    # The 2 s dropout is zero-filled at its place and annotated.
    assert raw.n_times == round(10.0 * sfreq)
    bad = raw.annotations[raw.annotations.description == "BAD_ACQ_SKIP"]
    assert len(bad) == 1
    assert bad.onset[0] == pytest.approx(4.0, abs=1.5 / sfreq)
    assert bad.duration[0] == pytest.approx(2.0, abs=1.5 / sfreq)
    # Pulses after the gap are still on their artifact's sample.
    np.testing.assert_allclose(
        _pulse_onsets(raw), rec_gap.pulse_times - rec_gap.first_time, atol=1 / sfreq
    )
    diag = timing_diagnostics(load_streams(rec_gap.path))["TestEEG"]
    assert diag["n_segments"] == 2
    assert diag["gaps_s"][0] == pytest.approx(2.0, abs=0.01)
    assert diag["dropped_samples"] == pytest.approx(2000, abs=2)


def test_no_marker_stream(rec_eeg_only):
    with pytest.warns(RuntimeWarning, match="No stimtrain marker stream"):
        raw = read_raw_xdf(rec_eeg_only.path)
    assert len(raw.annotations) == 0
    df = read_markers(rec_eeg_only.path)
    assert df.empty and list(df.columns) == ["time", "event"]


def test_no_eeg_stream(rec_markers_only):
    with pytest.raises(ValueError, match='no stream of type "EEG"'):
        read_raw_xdf(rec_markers_only.path)
    with pytest.raises(ValueError, match="no stream named 'nope'"):
        read_raw_xdf(rec_markers_only.path, eeg_stream="nope")
    assert (read_markers(rec_markers_only.path)["event"] == "pulse").sum() == 2


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_raw_xdf(tmp_path / "nothing.xdf")


def test_raw_survives_fif_roundtrip(rec_gap, tmp_path):
    raw = read_raw_xdf(rec_gap.path)
    raw.save(tmp_path / "x_raw.fif")
    back = mne.io.read_raw_fif(tmp_path / "x_raw.fif")
    assert first_lsl_time(back) == first_lsl_time(raw)
    np.testing.assert_allclose(_pulse_onsets(back), _pulse_onsets(raw))
    pulses = [
        e
        for d, e in zip(
            back.annotations.description, back.annotations.extras, strict=True
        )
        if d == "pulse"
    ]
    assert pulses[0]["pattern"] == "single"
