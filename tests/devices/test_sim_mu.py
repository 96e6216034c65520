"""The simulated mu rhythm: known phase, chunk-independent, the SNR it is asked for."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import welch

from stimtrain.devices.sim_mu import (
    C3_HJORTH,
    MuRhythm,
    band_power_fraction,
    synthetic_recording,
)


def test_the_wave_is_its_envelope_times_the_cosine_of_its_phase():
    """The ground truth describes the signal exactly, and the frequency stays in band."""
    mu = MuRhythm(1000.0, seed=3).render(20_000)
    np.testing.assert_allclose(mu.wave, mu.envelope * np.cos(mu.phase), atol=1e-12)
    freq = np.diff(np.unwrap(mu.phase)) * 1000.0 / (2 * np.pi)
    assert 8.5 - 1e-9 <= freq.min() and freq.max() <= 12.5 + 1e-9
    # It drifts and bursts: not a fixed sinusoid.
    assert freq.std() > 0.2
    assert mu.envelope.max() > 3 * np.median(mu.envelope)


def test_rendering_in_chunks_gives_the_same_rhythm():
    """Chunking (as the streaming amplifier does) does not change the samples."""
    whole = MuRhythm(5000.0, seed=1).render(3000)
    parts = MuRhythm(5000.0, seed=1)
    pieces = [parts.render(n) for n in (1000, 7, 1993)]
    np.testing.assert_allclose(np.concatenate([p.wave for p in pieces]), whole.wave)
    np.testing.assert_allclose(np.concatenate([p.phase for p in pieces]), whole.phase)


def test_pink_band_fraction_matches_the_spectrum():
    """The analytic in-band share agrees with a Welch estimate of generated noise."""
    rec = synthetic_recording(120, snr_db=-200.0, sfreq=1000.0, seed=4)
    f, p = welch(rec.data[:, 0], 1000.0, nperseg=4000)
    inside = (f >= 8) & (f <= 13)
    measured = p[inside].sum() / p.sum()
    assert measured == pytest.approx(band_power_fraction(1000.0), rel=0.15)


@pytest.mark.parametrize("snr_db", [11.0, -1.0])
def test_the_snr_at_the_hjorth_output_is_the_one_asked_for(snr_db):
    """Rhythm and background in 8-13 Hz at C3 Hjorth: their ratio is snr_db (±1 dB)."""
    rec = synthetic_recording(200, snr_db, sfreq=1000.0, seed=5)
    w = np.array([C3_HJORTH.get(ch, 0.0) for ch in rec.ch_names])
    out = rec.data @ w
    noise = synthetic_recording(200, -200.0, sfreq=1000.0, seed=5).data @ w
    f, p_all = welch(out, 1000.0, nperseg=4000)
    _, p_noise = welch(noise, 1000.0, nperseg=4000)
    inside = (f >= 8) & (f <= 13)
    p_mu = p_all[inside].sum() - p_noise[inside].sum()
    measured = 10 * np.log10(p_mu / p_noise[inside].sum())
    assert measured == pytest.approx(snr_db, abs=1.0)


def test_a_recording_without_the_hjorth_channels_is_refused():
    with pytest.raises(ValueError, match="FC5"):
        synthetic_recording(1, 0.0, channels=("C3", "FC1", "CP1", "CP5"))
