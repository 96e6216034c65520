"""The trigger process over real LSL: deadlines on a simulated mu rhythm, refusals.

A real simulated amplifier (mu rhythm at C3 with known phase, 20 dB) streams
over LSL on this machine; the trigger process reads it and hands over
deadlines; each deadline is given to the amplifier as a pulse at that time,
and the amplifier's own log says which phase the rhythm had there.
"""

from __future__ import annotations

import math
import threading
import time
import uuid

import numpy as np
import pytest
from scipy.stats import circmean

from stimtrain.devices.sim_eeg import SimulatedEEG
from stimtrain.devices.sim_eeg_process import mu_options
from stimtrain.orchestrator.session.closed_loop import PRESETS
from stimtrain.orchestrator.session.closed_loop.process import (
    TriggerConfig,
    TriggerProcess,
)
from stimtrain.orchestrator.session.closed_loop.trigger import TriggerSettings

pytestmark = pytest.mark.xdist_group("rig")


def _settings(**kw) -> TriggerSettings:
    base = {
        "target_deg": 0.0,
        "amp_delay_s": 0.02,
        "min_interval_s": 1.0,
        "gate_span_s": 10.0,
        "gate_percentile": 25.0,
    }
    return TriggerSettings(**{**base, **kw})


@pytest.fixture
def mu_eeg():
    eeg = SimulatedEEG(
        sfreq=1000.0,
        name=f"test-trigger-{uuid.uuid4().hex[:8]}",
        chunk_interval=0.005,
        **mu_options(20.0, delay=0.02),
    ).start()
    yield eeg
    eeg.stop()


def test_deadlines_land_at_the_target_phase(mu_eeg):
    """Pulses at the deadlines the process hands over hit the peak of the rhythm."""
    handed = []
    done = threading.Event()

    def on_deadline(h):
        handed.append(h)
        mu_eeg.add_pulse(h.deadline, 0)
        if len(handed) >= 6:
            done.set()

    config = TriggerConfig(mu_eeg.info.name(), PRESETS["c3_hjorth"], _settings())
    proc = TriggerProcess(config, on_deadline=on_deadline).start()
    try:
        assert proc.sfreq == 1000.0
        done.wait(40.0)
    finally:
        proc.stop()
    assert len(handed) >= 6, f"only {len(handed)} deadlines in 40 s"
    for h in handed:
        # Handed over before it is due, with the lead the device needs.
        assert h.deadline - h.sent_at > 0.002
        assert h.target_deg == 0.0
    time.sleep(0.1)
    true = np.radians([p[2] for p in mu_eeg.mu_pulses])
    assert len(true) >= 6
    mean = math.degrees(float(np.angle(np.exp(1j * circmean(true)))))
    assert abs(mean) < 35, f"true phases at the pulses: {np.degrees(true)}"
    # Latency measured on every decision, in the process that decides.
    assert len(proc.latencies) > 100
    assert np.median(proc.latencies) < 0.005


def test_decisions_over_the_latency_bound_give_no_pulse(mu_eeg):
    refused, handed = [], []
    config = TriggerConfig(
        mu_eeg.info.name(),
        PRESETS["c3_hjorth"],
        _settings(),
        latency_bound_s=0.0,
    )
    proc = TriggerProcess(
        config, on_deadline=handed.append, on_refusal=refused.append
    ).start()
    try:
        end = time.monotonic() + 20
        while not refused and time.monotonic() < end:
            time.sleep(0.1)
    finally:
        proc.stop()
    assert refused and not handed
    assert "above the rig's bound of 0 ms" in refused[0].reason


def test_a_missing_stream_or_channel_is_named():
    config = TriggerConfig(
        "no-such-stream-here", PRESETS["c3_hjorth"], _settings(), resolve_timeout_s=1
    )
    with pytest.raises(RuntimeError, match="'no-such-stream-here' not found"):
        TriggerProcess(config, on_deadline=print).start()
    eeg = SimulatedEEG(n_channels=8, name=f"test-trigger-{uuid.uuid4().hex[:8]}")
    try:
        config = TriggerConfig(eeg.info.name(), PRESETS["c3_hjorth"], _settings())
        with pytest.raises(RuntimeError, match=r"\['C3', 'FC1', 'CP1', 'CP5'\] not in"):
            TriggerProcess(config, on_deadline=print).start()
    finally:
        eeg.stop()


def test_samples_that_are_not_numbers_are_told_once_then_waited_out():
    """An amplifier that sends NaN for a moment: one refusal saying so, then pulses.

    A real LSL outlet with the C3 Hjorth channels streams a clean 10 Hz
    rhythm at 1 kHz; 50 ms of it are NaN after 7 s (past the gate's 5 s
    warm-up).
    """
    import pylsl

    names = ["C3", "FC1", "FC5", "CP1", "CP5"]
    info = pylsl.StreamInfo(
        f"test-nan-{uuid.uuid4().hex[:8]}", "EEG", len(names), 1000.0, "float32"
    )
    chans = info.desc().append_child("channels")
    for name in names:
        chans.append_child("channel").append_child_value("label", name)
    outlet = pylsl.StreamOutlet(info)
    stop = threading.Event()

    def stream() -> None:
        t0 = pylsl.local_clock()
        n = 0
        while not stop.is_set():
            due = int((pylsl.local_clock() - t0) * 1000.0)
            if due > n:
                t = np.arange(n, due) / 1000.0
                x = np.zeros((len(t), len(names)), np.float32)
                x[:, 0] = np.cos(2 * np.pi * 10.0 * t)
                x[(t >= 7.0) & (t < 7.05)] = np.nan
                outlet.push_chunk(x, t0 + (due - 1) / 1000.0)
                n = due
            time.sleep(0.005)

    pusher = threading.Thread(target=stream, daemon=True)
    pusher.start()
    refused, handed = [], []
    config = TriggerConfig(
        info.name(),
        PRESETS["c3_hjorth"],
        _settings(amp_delay_s=0.0, gate_percentile=0.0, estimator="ssp"),
    )
    proc = TriggerProcess(
        config,
        on_deadline=handed.append,
        on_refusal=lambda r: refused.append((pylsl.local_clock(), r)),
    ).start()

    def pulsed_after_the_nan() -> bool:
        return bool(refused) and any(h.pulled_at > refused[0][0] for h in handed)

    try:
        end = time.monotonic() + 30
        while time.monotonic() < end and not pulsed_after_the_nan():
            time.sleep(0.1)
    finally:
        proc.stop()
        stop.set()
        pusher.join(2)
    reasons = [r.reason for _, r in refused]
    assert len(reasons) == 1 and "not finite" in reasons[0], reasons
    assert refused[0][1].deadline is None
    assert pulsed_after_the_nan()
