"""The simulated EEG's mu rhythm: its SNR, its delay, its true phase at each pulse.

Over a real LSL outlet and inlet on this machine.
"""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pylsl
import pytest
from scipy.signal import firwin, hilbert, welch

from stimtrain.devices.sim_eeg import SimulatedEEG
from stimtrain.devices.sim_eeg_process import mu_options
from stimtrain.devices.sim_mu import C3_HJORTH


def _name() -> str:
    return f"test-sim-mu-{uuid.uuid4().hex[:8]}"


def _hjorth(data, names):
    w = np.array([C3_HJORTH.get(ch, 0.0) for ch in names])
    return np.asarray(data, float)[:, : len(names)] @ w


def test_the_mu_rhythm_has_the_snr_asked_for_at_the_hjorth_output():
    """Same seed with and without mu: their difference is the rhythm exactly."""
    n = 120_000  # 120 s at 1 kHz
    with_mu = SimulatedEEG(sfreq=1000.0, name=_name(), mu_snr_db=3.0)
    without = SimulatedEEG(sfreq=1000.0, name=_name())
    try:
        a = _hjorth(with_mu._render(n), with_mu.ch_names)
        b = _hjorth(without._render(n), without.ch_names)
    finally:
        with_mu.stop()
        without.stop()
    f, p_mu = welch(a - b, 1000.0, nperseg=4000)
    _, p_bg = welch(b, 1000.0, nperseg=4000)
    inside = (f >= 8) & (f <= 13)
    snr = 10 * np.log10(p_mu[inside].sum() / p_bg[inside].sum())
    # The bursting envelope makes 2 minutes' power uncertain by about 1 dB.
    assert snr == pytest.approx(3.0, abs=1.5)


def test_stamps_are_late_by_the_delay_and_pulses_get_their_true_phase(tmp_path):
    """Stamps = true time + delay; the logged phase is the phase in the data."""
    log = tmp_path / "mu.jsonl"
    eeg = SimulatedEEG(
        sfreq=1000.0,
        name=_name(),
        noise_uv=2.0,
        alpha_uv=0.0,
        **mu_options(20.0, delay=0.05, log=str(log)),
    )
    infos = pylsl.resolve_byprop("name", eeg.info.name(), timeout=5)
    inlet = pylsl.StreamInlet(infos[0], as_numpy=True, recover=False)
    inlet.open_stream(timeout=5)
    eeg.start()
    try:
        data, stamps = [], []
        end = time.monotonic() + 4.0
        while time.monotonic() < end:
            d, t = inlet.pull_chunk(timeout=0.1, max_samples=10_000)
            if len(t):
                data.append(d)
                stamps.append(t)
        # A pulse at a sample that was already sent (2.5 s in): its true
        # phase comes from the amplifier's memory; the data are clean there.
        pulse_time = eeg.t0 + 2.5
        eeg.add_pulse(pulse_time, 50)
        # An edge the trigger box read late: its line says so.
        eeg.add_pulse(eeg.t0 + 3.0, 50, late_read=True)
    finally:
        eeg.stop()
    data, stamps = np.concatenate(data), np.concatenate(stamps)
    samples = np.round((stamps - 0.05 - eeg.t0) * eeg.sfreq).astype(int)
    # Stamped 50 ms after each sample's own time (to within a sample).
    np.testing.assert_array_equal(np.diff(samples), 1)
    offset = stamps - (eeg.t0 + samples / eeg.sfreq)
    assert np.all(np.abs(offset - 0.05) < 0.5 / eeg.sfreq)
    # The log holds the pulse, and it agrees with the data's own phase
    # (a long zero-phase FIR over the clean stretch, then Hilbert).
    entry, late = eeg.mu_pulses
    assert entry[0] == pulse_time and entry[1] == 2500
    logged, logged_late = (json.loads(x) for x in log.read_text().splitlines())
    assert logged["sample"] == 2500 and "late_read" not in logged
    assert logged["phase_deg"] == pytest.approx(entry[2])
    assert logged_late["sample"] == late[1] == 3000 and logged_late["late_read"]
    x = _hjorth(data, eeg.ch_names)
    taps = firwin(1001, [8, 13], pass_zero=False, fs=1000.0)
    phase = np.angle(hilbert(np.convolve(x, taps, mode="same")))
    k = int(np.flatnonzero(samples == 2500)[0])
    diff = np.degrees(np.angle(np.exp(1j * (phase[k] - np.radians(entry[2])))))
    assert abs(diff) < 20


def test_a_mu_rhythm_needs_the_hjorth_channels():
    with pytest.raises(ValueError, match="needs the channels"):
        SimulatedEEG(n_channels=8, name=_name(), mu_snr_db=5.0)


def test_mu_options_refuse_a_delay_out_of_range():
    assert mu_options(None, 0.0) is None
    with pytest.raises(ValueError, match="within 0-1 s"):
        mu_options(5.0, 2.0)
