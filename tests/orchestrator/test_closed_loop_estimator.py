"""The phase estimator against known truth: clean rhythms, AR models, bad settings."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import lfilter

from stimtrain.orchestrator.session.closed_loop import ESTIMATORS, RhythmEstimator
from stimtrain.orchestrator.session.closed_loop.estimator import (
    PhaseEstimator,
    burg,
    wrap,
    yule_walker,
)

FS = 5000.0


def _cosine(freq, phase0, seconds=1.0, fs=FS):
    t = np.arange(0, seconds, 1 / fs)
    return t, np.cos(2 * np.pi * freq * t + phase0)


@pytest.mark.parametrize("freq", [9.0, 10.5, 12.0])
@pytest.mark.parametrize("phase0", [0.3, 2.0, -2.5])
@pytest.mark.parametrize("delay", [0.0, 0.05])
def test_a_clean_rhythm_gives_its_phase_and_next_peak(freq, phase0, delay):
    """Phase at "now" within 3 degrees, the next peak (up to 160 ms ahead) within 1.5 ms."""
    est = PhaseEstimator(FS)
    t, x = _cosine(freq, phase0)
    now = t[-1] + delay
    e = est.estimate(x, t[-1], now, 0.0, now, now + 0.2)
    true_now = wrap(2 * np.pi * freq * now + phase0)
    assert abs(math.degrees(wrap(e.phase - true_now))) < 3.0
    cycles = math.ceil((2 * np.pi * freq * now + phase0) / (2 * np.pi))
    peak = (2 * np.pi * cycles - phase0) / (2 * np.pi * freq)
    assert e.crossing == pytest.approx(peak, abs=1.5e-3)
    assert e.freq == pytest.approx(freq, abs=0.25)


def test_the_trough_is_found_half_a_cycle_from_the_peak():
    est = PhaseEstimator(FS)
    t, x = _cosine(10.0, 0.0)
    now = t[-1]
    peak = est.estimate(x, t[-1], now, 0.0, now, now + 0.2).crossing
    trough = est.estimate(x, t[-1], now, math.pi, now, now + 0.2).crossing
    assert abs(wrap(2 * np.pi * 10.0 * (trough - peak))) == pytest.approx(
        math.pi, abs=0.05
    )


def test_no_crossing_outside_the_span():
    """A span shorter than the time to the next peak finds nothing."""
    est = PhaseEstimator(FS)
    t, x = _cosine(10.0, 0.0)  # t[-1] = 0.9998 s: a peak was just there
    now = t[-1] + 0.001
    assert est.estimate(x, t[-1], now, 0.0, now, now + 0.05).crossing is None
    assert est.estimate(x, t[-1], now, 0.0, now, now + 0.12).crossing is not None


@pytest.mark.parametrize("fit", [burg, yule_walker])
def test_ar_fits_recover_a_known_process(fit):
    """An AR(2) resonance at 10 Hz (1 kHz) is recovered by both methods."""
    r, theta = 0.97, 2 * np.pi * 10 / 1000
    a = np.array([2 * r * np.cos(theta), -(r**2)])
    y = lfilter([1.0], np.r_[1.0, -a], np.random.default_rng(0).standard_normal(20_000))
    np.testing.assert_allclose(fit(y - y.mean(), 2), a, atol=0.01)


def test_the_window_is_averaged_down_to_about_1_khz():
    est = PhaseEstimator(5000.0)
    assert (est.q, est.rate, est.n_samples) == (5, 1000.0, 2500)
    assert PhaseEstimator(500.0).q == 1


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_a_band_above_nyquist_is_refused(name):
    """Every estimator checks its settings in the one shared place, alike."""
    assert issubclass(ESTIMATORS[name], RhythmEstimator)
    with pytest.raises(
        ValueError,
        match=r"band 8-300 Hz reaches the Nyquist frequency of the stream \(250 Hz at 500 Hz\)",
    ):
        ESTIMATORS[name](500.0, band=(8.0, 300.0))


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_a_window_shorter_than_two_cycles_is_refused(name):
    with pytest.raises(
        ValueError,
        match=r"window 0.2 s is shorter than two cycles of the band's lower edge \(0.25 s at 8 Hz\)",
    ):
        ESTIMATORS[name](FS, window_s=0.2)


def test_a_window_too_short_for_the_filter_and_model_is_refused():
    with pytest.raises(ValueError, match="needs at least 90: make the window longer"):
        PhaseEstimator(FS, band=(30.0, 40.0), window_s=0.1, filter_s=0.08)


@pytest.mark.parametrize("band", [(13.0, 8.0), (0.0, 4.0)])
def test_an_empty_band_is_refused(band):
    with pytest.raises(ValueError, match="0 < low < high"):
        PhaseEstimator(FS, band=band)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_too_few_samples_are_refused(name):
    est = ESTIMATORS[name](FS)
    with pytest.raises(ValueError, match="need 2500 samples, got 100"):
        est.estimate(np.zeros(100), 0.0, 0.0, 0.0, 0.0, 0.1)
