"""The fast analysis path against the plain one on a small recording.

Fast: only the windows around the pulses are read (:func:`read_raw_windows`)
and the ICAs are Picard fits on a subsample (:func:`run_tesa`'s defaults).
Plain: the whole file as a float64 Raw and FastICA on every sample, as the
analysis did before. Both must give the same epochs, remove the same ICA
components (one for one, topographies |r| >= 0.99, same round and rule) and
find the same TEP peaks (latency within 2 ms, amplitude within 10 %).
"""

from __future__ import annotations

import mne
import numpy as np
import pytest
from synthetic_session import write_lab_recording

from stimtrain.analysis import tesa
from stimtrain.analysis.mep import mep_epochs
from stimtrain.analysis.pulse_windows import NOT_READ, read_raw_windows
from stimtrain.analysis.tep import pulse_epochs
from stimtrain.analysis.tesa import run_tesa
from stimtrain.analysis.xdf import read_raw_xdf

#: Tolerances of the fast path against the plain one.
LATENCY_MS = 2.0
AMPLITUDE_REL = 0.10
TOPOGRAPHY_R = 0.99
N_PULSES = 25


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A 2.5-minute, 32-channel session (25 pulses), read both ways."""
    path = tmp_path_factory.mktemp("lab") / "lab.xdf"
    write_lab_recording(path, minutes=2.5, n_channels=32, seed=3)
    return read_raw_xdf(path, verbose="error"), read_raw_windows(path, verbose="error")


def test_windows_give_the_whole_files_epochs(lab):
    whole, windows = lab
    assert isinstance(whole, mne.io.RawArray) and not windows.preload
    assert windows.n_times == whole.n_times
    assert windows.ch_names == whole.ch_names
    kept = [d for d in windows.annotations.description if d != NOT_READ]
    assert kept == list(whole.annotations.description)
    pulses = whole.annotations.description == "pulse"
    np.testing.assert_array_equal(
        windows.annotations.onset[windows.annotations.description == "pulse"],
        whole.annotations.onset[pulses],
    )
    # The same numbers, sample for sample: TESA's epochs and the MEPs' EMG.
    for make in (
        lambda raw: pulse_epochs(raw, tmin=-1, tmax=1, baseline=None),
        lambda raw: mep_epochs(raw),
    ):
        a, b = make(whole), make(windows)
        assert len(a) == len(b) == int(pulses.sum())
        np.testing.assert_array_equal(a.get_data(), b.get_data())
        assert a.metadata.equals(b.metadata)
    # The first 20 s are read whole (the report's raw overview).
    stop = int(20 * whole.info["sfreq"])
    np.testing.assert_array_equal(
        windows.get_data(stop=stop), whole.get_data(stop=stop)
    )
    # A copy shares the samples read instead of doubling them.
    copy = windows.copy()
    assert copy._raw_extras[0]["samples"] is windows._raw_extras[0]["samples"]


def test_epochs_beyond_the_windows_are_dropped_not_zero_filled(lab):
    _, windows = lab
    assert (windows.annotations.description == NOT_READ).sum() >= 10
    epochs = pulse_epochs(windows, tmin=-2.0, tmax=1.0, baseline=None, sfreq=None)
    # Only pulses in the first 20 s, which are read whole, keep their epochs.
    assert 0 < len(epochs) < N_PULSES
    assert (epochs.metadata["onset"] + 1.0 <= 20.0).all()
    dropped = [log for log in epochs.drop_log if log]
    assert len(dropped) == N_PULSES - len(epochs)
    assert all(NOT_READ in log for log in dropped)


def test_epochs_in_batches_are_the_epochs_of_the_whole(lab, monkeypatch):
    whole, windows = lab
    # One pulse per batch: a batch may hold no pulse of another's epochs.
    monkeypatch.setattr(tesa, "EPOCH_BATCH_BYTES", 1)
    assert len(tesa._pulse_batches(windows, 2.1, 32, 10500)) == N_PULSES
    kwargs = dict(ica_round1=False, ica_round2=False, verbose="error")
    a, b = run_tesa(whole, **kwargs), run_tesa(windows, **kwargs)
    assert len(a.epochs) == len(b.epochs) == N_PULSES
    # Demeaning sums in another order: equal to 1e-9 µV.
    np.testing.assert_allclose(a.epochs.get_data(), b.epochs.get_data(), atol=1e-15)
    np.testing.assert_array_equal(a.epochs.events, b.epochs.events)
    assert a.epochs.metadata.reset_index(drop=True).equals(
        b.epochs.metadata.reset_index(drop=True)
    )


def _match(fast, plain) -> list[tuple[int, str, float]]:
    """Each removed fast component's best |r| with a plain one of its round."""
    out = []
    for _, row in fast.ica.iterrows():
        topo = fast.icas[row["round"]].get_components()[:, row["component"]]
        same = plain.ica[plain.ica["round"] == row["round"]]
        r = [
            abs(
                np.corrcoef(
                    topo, plain.icas[o["round"]].get_components()[:, o["component"]]
                )[0, 1]
            )
            for _, o in same.iterrows()
        ]
        out.append((row["round"], row["rule"], max(r, default=0.0)))
    return out


def test_fast_path_removes_the_same_components_and_finds_the_same_peaks(lab):
    whole, windows = lab
    plain = run_tesa(whole, ica_method="fastica", ica_decim=None, verbose="error")
    fast = run_tesa(windows, verbose="error")
    # The fast path really fitted on a subsample, with Picard.
    assert fast.icas[1].method == "picard" and plain.icas[1].method == "fastica"
    for rnd in (1, 2):
        assert fast.icas[rnd].n_samples_ < plain.icas[rnd].n_samples_ // 2 + 100
    # Both rounds found something (muscle, then the blinks) ...
    assert set(plain.ica["round"]) == {1, 2}
    assert "TMS-evoked muscle/decay" in set(plain.ica["rule"])
    assert any(r.startswith("eye") for r in plain.ica["rule"])
    # ... and the same, one for one.
    assert sorted(fast.ica["round"]) == sorted(plain.ica["round"])
    for rnd, rule, r in _match(fast, plain):
        assert r >= TOPOGRAPHY_R, (rnd, rule, r)
    assert sorted(fast.ica["rule"]) == sorted(plain.ica["rule"])
    key = ["evoked", "signal", "component"]
    a = fast.peaks.set_index(key)
    b = plain.peaks.set_index(key).loc[a.index]
    assert a["found"].all() and b["found"].all()
    np.testing.assert_allclose(a["latency_ms"], b["latency_ms"], atol=LATENCY_MS)
    np.testing.assert_allclose(a["amplitude_uv"], b["amplitude_uv"], rtol=AMPLITUDE_REL)
