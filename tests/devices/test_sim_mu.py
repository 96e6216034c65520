"""The simulated mu rhythm: known phase, chunk-independent, the SNR it is asked for."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import welch

from stimtrain.devices.sim_mu import (
    C3_HJORTH,
    RHYTHMS,
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


@pytest.mark.parametrize("rhythm", RHYTHMS)
@pytest.mark.parametrize("snr_db", [11.0, -1.0])
def test_the_snr_at_the_hjorth_output_is_the_one_asked_for(snr_db, rhythm):
    """Rhythm and background in 8-13 Hz at C3 Hjorth: their ratio is snr_db (±1 dB)."""
    rec = synthetic_recording(200, snr_db, sfreq=1000.0, seed=5, rhythm=rhythm)
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


def _mu_alone(rhythm: str, seconds: float = 60.0, sfreq: float = 1000.0):
    """The rhythm at the Hjorth output without background, and its truth."""
    rec = synthetic_recording(seconds, 300.0, sfreq=sfreq, seed=2, rhythm=rhythm)
    w = np.array([C3_HJORTH.get(ch, 0.0) for ch in rec.ch_names])
    return rec, rec.data @ w


def test_the_resonant_rhythm_has_no_single_frequency_and_its_truth_fits():
    """Its in-band part is envelope * cos(phase); its frequency wanders widely."""
    rec, out = _mu_alone("resonant")
    spec = np.fft.rfft(out)
    f = np.fft.rfftfreq(len(out), 1 / rec.sfreq)
    inband = np.fft.irfft(np.where((f >= 8) & (f <= 13), spec, 0), len(out))
    np.testing.assert_allclose(
        inband, rec.envelope * np.cos(rec.phase), atol=1e-9 * rec.envelope.max()
    )
    # The spectrum peaks at the resonance, and is not a line: the
    # instantaneous frequency spreads much more than the drifting rhythm's.
    assert 10.0 < f[np.argmax(np.abs(spec))] < 11.0
    inst = np.diff(np.unwrap(rec.phase)) * rec.sfreq / (2 * np.pi)
    strong = rec.envelope[1:] > np.median(rec.envelope)
    assert inst[strong].std() > 0.6


def test_the_arched_rhythm_peaks_sharply_at_phase_zero():
    """The harmonic makes peaks sharper than troughs; phase 0 stays the peak."""
    rec, out = _mu_alone("arched")
    drifting, plain = _mu_alone("drifting")
    np.testing.assert_allclose(rec.phase, drifting.phase)
    near = lambda p, at: np.abs(np.angle(np.exp(1j * (p - at)))) < 0.1  # noqa: E731
    peaks, troughs = near(rec.phase, 0.0), near(rec.phase, np.pi)
    # At the peak the wave is 1.4 envelopes, at the trough -0.6.
    assert np.median(out[peaks] / plain[peaks]) == pytest.approx(1.4, abs=0.05)
    assert np.median(out[troughs] / plain[troughs]) == pytest.approx(0.6, abs=0.05)


def test_an_unknown_rhythm_is_refused():
    with pytest.raises(ValueError, match="resonant"):
        synthetic_recording(1, 0.0, rhythm="square")
