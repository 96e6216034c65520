"""The shared offline phase (stimtrain/rhythm.py) and its one montage table."""

from __future__ import annotations

import numpy as np
import pytest

from stimtrain.devices.sim_mu import C3_HJORTH
from stimtrain.orchestrator.language.trigger import MONTAGE_PRESETS
from stimtrain.rhythm import (
    MONTAGES,
    band_phase,
    bridge_pulses,
    filter_length,
    montage_weights,
    phase_at,
)


def test_every_room_has_the_same_montages():
    """The protocol language's presets and the simulator's C3 Hjorth are the table."""
    assert MONTAGE_PRESETS == {k: tuple(v.items()) for k, v in MONTAGES.items()}
    assert C3_HJORTH == dict(MONTAGES["c3_hjorth"])
    assert montage_weights("C4_Hjorth") == {
        "C4": 1.0,
        "FC2": -0.25,
        "FC6": -0.25,
        "CP2": -0.25,
        "CP6": -0.25,
    }
    with pytest.raises(TypeError):
        MONTAGES["c3_hjorth"]["C3"] = 2.0  # type: ignore[index]
    with pytest.raises(ValueError, match="unknown montage"):
        montage_weights("fz_laplace")
    with pytest.raises(ValueError, match="no channels"):
        montage_weights({})


def test_phase_of_a_cosine_through_artifacts():
    """Peaks read 0 and troughs 180 with a large artifact at each pulse."""
    sfreq = 1000.0
    t = np.arange(int(10 * sfreq)) / sfreq
    x = np.cos(2 * np.pi * 10.0 * t)
    idx = np.arange(2000, 8000, 1300)  # 1.3 s apart: peaks of the 10 Hz cosine
    troughs = idx + 50
    both = np.concatenate([idx, troughs])
    y = x.copy()
    for k in both:
        y[k : k + 15] += 50.0 * np.exp(-np.arange(15) / 3.0)
    got = phase_at(y, sfreq, (8.0, 13.0), both)
    assert np.all(np.abs(got[: idx.size]) < 3.0)
    assert np.all(np.abs(np.abs(got[idx.size :]) - 180.0) < 3.0)
    # The whole-signal phase in radians, the bridge a straight line.
    assert np.abs(band_phase(x, sfreq)[idx]).max() < np.radians(1.0)
    bridged = bridge_pulses(y, [5000], sfreq, (0.005, 0.02))
    assert np.allclose(np.diff(bridged[4994:5021], 2), 0.0)
    assert bridged is not y and np.array_equal(y[:4994], bridged[:4994])


def test_edges_and_short_signals():
    """Pulses outside are NaN; a signal shorter than the filter gives NaN."""
    sfreq = 500.0
    n = filter_length(sfreq, (8.0, 13.0))
    assert n % 2 == 1 and n == int(np.ceil(3.3 / 2.0 * sfreq)) | 1
    x = np.cos(2 * np.pi * 10.0 * np.arange(5000) / sfreq)
    got = phase_at(x, sfreq, (8.0, 13.0), [-1, 2500, 5000])
    assert np.isnan(got[[0, 2]]).all() and abs(got[1]) < 3.0
    assert np.isnan(band_phase(x[: n - 1], sfreq)).all()
    with pytest.raises(ValueError, match="must lie within"):
        band_phase(x, sfreq, (8.0, 300.0))
