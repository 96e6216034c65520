"""The state-space phase estimator against known truth: clean rhythms, synthetic mu."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import circstd

from stimtrain.devices.sim_mu import synthetic_recording
from stimtrain.orchestrator.session.closed_loop import (
    ESTIMATORS,
    PRESETS,
    StateSpaceEstimator,
)
from stimtrain.orchestrator.session.closed_loop.estimator import wrap
from stimtrain.orchestrator.session.closed_loop.trigger import (
    PhaseTrigger,
    TriggerSettings,
)

FS = 5000.0


@pytest.mark.parametrize("freq", [9.0, 10.5, 12.0])
@pytest.mark.parametrize("phase0", [0.3, 2.0, -2.5])
@pytest.mark.parametrize("delay", [0.0, 0.05])
def test_a_clean_rhythm_gives_its_phase_and_next_peak(freq, phase0, delay):
    """Phase at "now" within 6 degrees, the next peak (up to 160 ms ahead) within 3 ms.

    Looser than the autoregressive estimator's 3 degrees: from a cold start
    the filter reads one window (backwards, then forwards) and its frequency
    comes out a few hundredths of a hertz off, which the rotation up to the
    peak multiplies (4 degrees at worst here).
    """
    est = StateSpaceEstimator(FS)
    t = np.arange(0, 1.0, 1 / FS)
    x = np.cos(2 * np.pi * freq * t + phase0)
    now = t[-1] + delay
    e = est.estimate(x, t[-1], now, 0.0, now, now + 0.2)
    true_now = wrap(2 * np.pi * freq * now + phase0)
    assert abs(math.degrees(wrap(e.phase - true_now))) < 6.0
    cycles = math.ceil((2 * np.pi * freq * now + phase0) / (2 * np.pi))
    peak = (2 * np.pi * cycles - phase0) / (2 * np.pi * freq)
    assert e.crossing == pytest.approx(peak, abs=3e-3)
    assert e.freq == pytest.approx(freq, abs=0.1)


def test_no_crossing_outside_the_span():
    est = StateSpaceEstimator(FS)
    t = np.arange(0, 1.0, 1 / FS)
    x = np.cos(2 * np.pi * 10.0 * t)  # t[-1] = 0.9998 s: a peak was just there
    now = t[-1] + 0.001
    assert est.estimate(x, t[-1], now, 0.0, now, now + 0.05).crossing is None
    assert est.estimate(x, t[-1], now, 0.0, now, now + 0.12).crossing is not None


def test_synthetic_mu_at_11_db_is_tracked():
    """High-power windows of the synthetic mu: phase 50 ms past the data, SD < 40 deg."""
    rec = synthetic_recording(30.0, 11.0, seed=3)
    x = PRESETS["c3_hjorth"].apply(rec.data, rec.ch_names)
    est = StateSpaceEstimator(rec.sfreq)
    n = est.n_samples
    powers, errors = [], []
    for j in range(n, len(x) - 1000, 250):
        t_last = j / rec.sfreq
        now = t_last + 0.05
        e = est.estimate(x[j - n + 1 : j + 1], t_last, now, 0.0, now, now + 0.2)
        powers.append(e.power)
        errors.append(wrap(e.phase - rec.phase[int(round(now * rec.sfreq))]))
    powers, errors = np.array(powers), np.array(errors)
    high = powers >= np.median(powers)
    assert math.degrees(circstd(errors[high])) < 40.0


def test_the_trigger_picks_the_estimator_by_name():
    trigger = PhaseTrigger(TriggerSettings(estimator="ssp"), FS)
    assert isinstance(trigger.estimator, StateSpaceEstimator)
    assert isinstance(PhaseTrigger(TriggerSettings(), FS).estimator, ESTIMATORS["ar"])
    with pytest.raises(ValueError, match="unknown estimator 'nope'"):
        PhaseTrigger(TriggerSettings(estimator="nope"), FS)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"band": (8.0, 2600.0)}, "Nyquist"),
        ({"band": (13.0, 8.0)}, "low < high"),
        ({"window_s": 0.1}, "two cycles"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StateSpaceEstimator(FS, **kwargs)


def _feed(est, x, chunk, *, start=None, t0=0.0):
    """Feed ``x`` chunk by chunk as the trigger would; the last estimate."""
    n = est.n_samples if start is None else start
    e = est.estimate(x[:n], t0 + (n - 1) / FS, t0 + (n - 1) / FS, 0.0, 0.0, 1.0)
    while n < len(x):
        k = min(chunk, len(x) - n)
        n += k
        t_last = t0 + (n - 1) / FS
        e = est.estimate(x[:n], t_last, t_last, 0.0, t_last, t_last + 0.2, new=k)
    return e


def test_a_drifting_frequency_is_followed_chunk_by_chunk():
    """A clean rhythm gliding from 9 to 12 Hz, then at 12 Hz, fed 10 ms at a time.

    The frequency is part of the filter's state: one second after the glide
    it reads 12 Hz within 0.1 Hz and the phase within 5 degrees.
    """
    t = np.arange(0, 4.5, 1 / FS)
    freq = np.clip(9.0 + (t - 0.5), 9.0, 12.0)
    phase = 0.4 + np.cumsum(2 * np.pi * freq / FS)
    e = _feed(StateSpaceEstimator(FS), np.cos(phase), 50)
    assert e.freq == pytest.approx(12.0, abs=0.1)
    assert abs(math.degrees(wrap(e.phase - phase[-1]))) < 5.0


def test_the_result_does_not_depend_on_the_chunking():
    """Chunks of 37 or of 50 samples: the same averaged-down blocks, the same state."""
    rec = synthetic_recording(4.0, 5.0, seed=1)
    x = PRESETS["c3_hjorth"].apply(rec.data, rec.ch_names)
    n = StateSpaceEstimator(FS).n_samples
    end = n + 37 * 50 * 5
    a = _feed(StateSpaceEstimator(FS), x[:end], 37)
    b = _feed(StateSpaceEstimator(FS), x[:end], 50)
    assert a.phase == pytest.approx(b.phase, abs=1e-9)
    assert a.freq == pytest.approx(b.freq, abs=1e-9)
    assert a.power == pytest.approx(b.power, rel=1e-9)


@pytest.mark.parametrize("new", [None, "beyond the window"])
def test_unseen_samples_start_the_filter_over(new):
    """A window that does not continue what the filter read is read afresh.

    The rhythm jumps by half a cycle while the filter is not fed (as during
    a gap in the stream): told that the samples are not all new, the
    filter starts over from the window and finds the new phase; fed the
    window as if it followed on, it would still be turning from the old one.
    """
    t = np.arange(0, 3.0, 1 / FS)
    before = np.cos(2 * np.pi * 10.0 * t)
    after = np.cos(2 * np.pi * 10.0 * t + np.pi)
    est = StateSpaceEstimator(FS)
    n = est.n_samples
    _feed(est, before[: 2 * n], 50)
    j = 2 * n + int(0.3 * FS) + n
    told = None if new is None else j - 2 * n
    e = est.estimate(after[:j], t[j - 1], t[j - 1], 0.0, t[j - 1], t[j - 1] + 0.2, told)
    true = wrap(2 * np.pi * 10.0 * t[j - 1] + np.pi)
    assert abs(math.degrees(wrap(e.phase - true))) < 10.0
