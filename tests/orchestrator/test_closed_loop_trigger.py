"""Gate, trigger and the offline replay on a synthetic mu rhythm with known phase."""

from __future__ import annotations

import numpy as np
import pytest

from stimtrain.devices.sim_mu import synthetic_recording
from stimtrain.orchestrator.session.closed_loop import PRESETS, AmplitudeGate
from stimtrain.orchestrator.session.closed_loop.offline import phase_error, replay
from stimtrain.orchestrator.session.closed_loop.trigger import TriggerSettings


def test_the_gate_warms_up_then_compares_with_its_running_percentile():
    gate = AmplitudeGate(percentile=50, span_s=10, warmup_s=2)
    assert gate.update(0.0, 5.0) == (False, pytest.approx(float("nan"), nan_ok=True))
    for k in range(1, 21):
        gate.update(k * 0.1, float(k))
    assert gate.warmed_up
    assert gate.update(2.05, 100.0)[0]
    passed, threshold = gate.update(2.1, 1.0)
    history = [5.0, *range(1, 21), 100.0, 1.0]
    assert not passed and threshold == pytest.approx(np.percentile(history, 50))


def test_the_gate_forgets_what_is_older_than_its_span():
    gate = AmplitudeGate(percentile=50, span_s=1, warmup_s=0.5)
    for k in range(10):
        gate.update(k * 0.1, 100.0)
    for k in range(10, 30):
        passed, threshold = gate.update(k * 0.1, 1.0)
    # Only the small powers remain: a small one passes again.
    assert passed and threshold == 1.0


@pytest.fixture(scope="module")
def clean_mu():
    return synthetic_recording(70, snr_db=25.0, sfreq=1000.0, seed=11)


@pytest.mark.parametrize("target", [0.0, 180.0])
def test_pulses_land_at_the_target_phase_on_a_strong_rhythm(clean_mu, target):
    """At 25 dB with 50 ms amplifier delay: mean error < 10 degrees, SD < 25."""
    rec = clean_mu
    settings = TriggerSettings(
        target_deg=target, amp_delay_s=0.05, min_interval_s=1.0, gate_span_s=20
    )
    pulses = replay(
        rec.data,
        rec.ch_names,
        rec.sfreq,
        rec.phase,
        settings,
        PRESETS["c3_hjorth"],
        delay_s=0.05,
    )
    assert len(pulses) >= 25
    gaps = np.diff([p.time for p in pulses])
    assert gaps.min() >= 1.0
    mean_error, sd = phase_error(pulses, target)
    assert abs(mean_error) < 10 and sd < 25
    # The online estimate at the decision is a real phase estimate: it is
    # the target minus the rhythm's advance until the deadline, within 60°.
    for p in pulses:
        assert -180 <= p.online_deg <= 180


def test_ignoring_the_amplifier_delay_shifts_the_phase(clean_mu):
    """Data 50 ms old taken as fresh: the pulses land ~half a cycle late."""
    rec = clean_mu
    settings = TriggerSettings(
        target_deg=0.0, amp_delay_s=0.0, min_interval_s=1.0, gate_span_s=20
    )
    pulses = replay(
        rec.data,
        rec.ch_names,
        rec.sfreq,
        rec.phase,
        settings,
        PRESETS["c3_hjorth"],
        delay_s=0.05,
    )
    mean_error, _ = phase_error(pulses, 0.0)
    # 50 ms of a ~10.5 Hz rhythm is ~190 degrees.
    assert abs(mean_error) > 120


@pytest.mark.parametrize("estimator", ["ar", "ssp"])
def test_samples_that_are_not_finite_are_waited_out(estimator):
    """A NaN in the stream: no estimate while it is in the window, then the true phase."""
    from stimtrain.orchestrator.session.closed_loop.estimator import wrap
    from stimtrain.orchestrator.session.closed_loop.trigger import (
        NOT_FINITE,
        PhaseTrigger,
    )

    fs = 1000.0
    # 4 s: the gate is still warming up, so no pulse blanks a window.
    t = np.arange(0, 4.0, 1 / fs)
    x = np.cos(2 * np.pi * 10.0 * t)
    x[1500] = np.nan
    trigger = PhaseTrigger(
        TriggerSettings(estimator=estimator, gate_percentile=0.0), fs
    )
    n = trigger.n_samples
    reasons = {}
    for end in range(n, len(x) + 1, 10):
        d = trigger.decide(x[:end], t[end - 1], t[end - 1], 10)
        reasons[end] = d.reason
        if d.estimate is not None:
            assert np.isfinite(d.estimate.phase) and np.isfinite(d.estimate.power)
    held = [e for e, r in reasons.items() if r == NOT_FINITE]
    assert min(held) == 1510 and max(held) == 1500 + n
    d = trigger.decide(x, t[-1], t[-1], 0)
    assert abs(np.degrees(wrap(d.estimate.phase - 2 * np.pi * 10.0 * t[-1]))) < 6.0
