"""Tests of the simulated EEG amplifier, over real LSL and a real LabRecorder."""

import logging
import threading
import time
import uuid

import labrecorder
import numpy as np
import pylsl
import pytest
import pyxdf

from stimtrain.devices.sim_eeg import CHANNEL_NAMES_32, SimulatedEEG

SFREQ = 5000.0


@pytest.fixture
def make_eeg():
    """Make simulators with unique stream names; stop them all afterwards."""
    sims = []

    def make(**kwargs):
        kwargs.setdefault("name", f"test-sim-eeg-{uuid.uuid4().hex[:8]}")
        sim = SimulatedEEG(**kwargs)
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        sim.stop()


def _inlet(name):
    infos = pylsl.resolve_byprop("name", name, timeout=5)
    assert len(infos) == 1
    inlet = pylsl.StreamInlet(infos[0], as_numpy=True)
    inlet.open_stream(timeout=5)
    return inlet


def _pull_until(inlet, sim, n_until, timeout=5.0):
    """Pull until sample index ``n_until`` has arrived; return data and indices."""
    data, stamps = [], []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d, t = inlet.pull_chunk(timeout=0.1, max_samples=100_000)
        if len(t):
            data.append(d)
            stamps.append(t)
            if round((t[-1] - sim.t0) * sim.sfreq) >= n_until:
                break
    data, stamps = np.concatenate(data), np.concatenate(stamps)
    return data, stamps, np.round((stamps - sim.t0) * sim.sfreq).astype(int)


def _first_jump(data):
    """Index of the first sample that jumps by > 1000 µV on every channel."""
    jumps = np.all(np.abs(np.diff(data, axis=0)) > 1000, axis=1)
    assert jumps.any()
    return int(np.argmax(jumps)) + 1


def test_stream_info(make_eeg):
    """The outlet announces an EEG stream with 10-20 channel labels."""
    sim = make_eeg()
    inlet = _inlet(sim.info.name())
    info = inlet.info(timeout=5)
    assert info.type() == "EEG"
    assert info.channel_count() == 32
    assert info.nominal_srate() == SFREQ
    assert info.channel_format() == pylsl.cf_float32
    assert info.source_id().startswith(sim.info.name())
    assert info.get_channel_labels() == list(CHANNEL_NAMES_32) == sim.ch_names
    assert set(info.get_channel_units()) == {"microvolts"}
    assert set(info.get_channel_types()) == {"EEG"}
    assert CHANNEL_NAMES_32[-3:] == ("Oz", "O2", "PO10")
    del inlet


def test_stream_timestamps_and_pulse(make_eeg):
    """Samples arrive at t0 + i / sfreq, and a pulse lands on its sample."""
    sim = make_eeg()
    inlet = _inlet(sim.info.name())
    sim.start()
    assert sim.t0 is not None
    # The stimulator reports from its own thread, as in a session.
    reported = []
    timer = threading.Timer(
        0.5, lambda: reported.append(sim.add_pulse(pylsl.local_clock(), 100))
    )
    timer.start()
    data, stamps, idx = _pull_until(inlet, sim, int(1.0 * SFREQ))
    timer.join()
    del inlet

    assert data.shape[1] == 32 and data.dtype == np.float32
    assert len(stamps) > 0.8 * SFREQ
    np.testing.assert_array_equal(np.diff(idx), 1)  # no gap, no repeat
    np.testing.assert_allclose(stamps, sim.t0 + idx / SFREQ, rtol=0, atol=1e-6)
    assert sim.n_pushed >= idx[-1] + 1

    ((time_, sample),) = sim.pulses
    assert reported == [sample] == [round((time_ - sim.t0) * SFREQ)]
    assert sim.late_pulses == 0
    assert abs(idx[_first_jump(data)] - sample) <= 1
    # The artifact is huge and short; the background is EEG-sized.
    assert np.abs(data).max() > 5000
    assert 3 < np.std(data[: sample - idx[0] - 10]) < 30


def test_late_pulse(make_eeg, caplog):
    """A pulse reported after its samples were pushed is counted and logged."""
    sim = make_eeg(latency=0.02)
    sim.start()
    time.sleep(0.3)
    with caplog.at_level(logging.WARNING, logger="stimtrain.devices.sim_eeg"):
        sim.add_pulse(pylsl.local_clock() - 0.1, 50)
    assert sim.late_pulses == 1
    assert "after its sample" in caplog.text
    time.sleep(0.05)  # the tail of the response is still drawn, without error
    sim.stop()


def test_evoked_noise_free(make_eeg):
    """Without noise the stream carries exactly the artifact and the TEP."""
    power = 50
    sim = make_eeg(noise_uv=0.0, alpha_uv=0.0)
    inlet = _inlet(sim.info.name())
    sim.start()
    sample = sim.add_pulse(sim.t0 + 0.1 + 0.3 / SFREQ, power)  # in the future
    data, _, idx = _pull_until(inlet, sim, sample + int(0.3 * SFREQ))
    del inlet
    assert sim.late_pulses == 0
    pos = sample - idx[0]
    assert pos > 10
    np.testing.assert_array_equal(data[:pos], 0)
    assert _first_jump(data) == pos

    window = data[pos : pos + int(0.3 * SFREQ)].astype(float)
    times = np.arange(len(window)) / SFREQ
    artifact = sim.artifact(times, power)
    evoked = sim.evoked(times, power)
    np.testing.assert_allclose(window, artifact + evoked, rtol=1e-6, atol=1e-3)
    assert np.all(np.abs(artifact[25:]) < 50)  # fast part gone within 5 ms

    # The TEP is the sum of the published components (written out again here,
    # independently of SimulatedEEG.evoked).
    tep = window - artifact
    truth = sum(
        comp.amplitude_uv
        * power
        / 100
        * np.exp(-0.5 * ((times[:, None] - comp.latency_s) / comp.width_s) ** 2)
        * sim.tep_topography[j]
        for j, comp in enumerate(SimulatedEEG.TEP_COMPONENTS)
    )
    np.testing.assert_allclose(tep, truth, atol=1e-3)
    for comp in SimulatedEEG.TEP_COMPONENTS:
        centre, _ = SimulatedEEG.TEP_TOPOGRAPHY[comp.name]
        k = sim.ch_names.index(centre)
        assert sim.tep_topography[SimulatedEEG.TEP_COMPONENTS.index(comp), k] == 1
        trace = tep[:, k]
        lo, hi = (round((comp.latency_s + s * comp.width_s) * SFREQ) for s in (-2, 2))
        peak = lo + np.argmax(np.sign(comp.amplitude_uv) * trace[lo:hi])
        assert abs(peak / SFREQ - comp.latency_s) < 0.001, comp.name
        # Neighbouring components overlap a little (N45 and P60 most).
        expected = comp.amplitude_uv * power / 100
        assert trace[peak] == pytest.approx(expected, rel=0.15), comp.name
    # N100 is central-negative: its minimum over channels is at Cz.
    n100 = tep[round(0.1 * SFREQ)]
    assert sim.ch_names[int(np.argmin(n100))] == "Cz"


def test_background_deterministic():
    """The background depends on the seed only, not on how it is chunked."""
    a = SimulatedEEG(name="test-sim-eeg-offline-a", seed=3)
    b = SimulatedEEG(name="test-sim-eeg-offline-b", seed=3)
    c = SimulatedEEG(name="test-sim-eeg-offline-c", seed=4)
    try:
        chunked = np.concatenate([a._render(n) for n in (7, 50, 943, 4000, 20000)])
        whole = b._render(25000)
        np.testing.assert_array_equal(chunked, whole)
        assert not np.allclose(c._render(25000), whole)
    finally:
        for sim in (a, b, c):
            sim.stop()
    rms = whole.std(axis=0)
    assert np.all((rms > 5) & (rms < 20))
    # Alpha: a 10 Hz peak over occipital, not over frontal channels.
    spectrum = np.abs(np.fft.rfft(whole - whole.mean(axis=0), axis=0)) ** 2
    freqs = np.fft.rfftfreq(len(whole), 1 / SFREQ)
    alpha = (freqs > 9.5) & (freqs < 10.5)
    flank = ((freqs > 6) & (freqs < 8)) | ((freqs > 12) & (freqs < 14))

    def ratio(ch):
        k = CHANNEL_NAMES_32.index(ch)
        return spectrum[alpha, k].max() / spectrum[flank, k].mean()

    assert ratio("Oz") > 10
    assert ratio("Oz") > 5 * ratio("Fp1")


def test_invalid_use(make_eeg):
    """Pulses need a started stream and a power within 0-100."""
    sim = make_eeg(n_channels=40)
    assert sim.ch_names[31:33] == ["PO10", "EEG033"]
    with pytest.raises(RuntimeError, match="started"):
        sim.add_pulse(0.0, 50)
    sim.start()
    with pytest.raises(ValueError, match="power"):
        sim.add_pulse(pylsl.local_clock(), 101)
    with pytest.raises(RuntimeError, match="once"):
        sim.start()
    sim.stop()
    sim.stop()  # idempotent
    with pytest.raises(ValueError, match="n_channels"):
        SimulatedEEG(0)


def test_labrecorder_xdf(make_eeg, tmp_path):
    """LabRecorder records the stream; the artifact is at the pulse time in XDF."""
    path = tmp_path / "sim.xdf"
    with make_eeg() as sim:
        name = sim.info.name()
        infos = pylsl.resolve_byprop("name", name, timeout=5)
        rec = labrecorder.Recording(str(path), infos)
        time.sleep(1.0)
        pulse_time = pylsl.local_clock()
        sim.add_pulse(pulse_time, 80)
        # LabRecorder writes what it received about every 0.5 s and drops the
        # rest on stop(): keep recording for more than that after the pulse.
        time.sleep(1.0)
        rec.stop()
        # stop() returns at once; the file gets its footer and is closed only
        # when the Recording is destroyed (which waits for its clock-offset
        # thread, a few seconds). Read a finished file, not one being written.
        del rec
    assert sim.late_pulses == 0

    streams, _ = pyxdf.load_xdf(str(path))
    (stream,) = [s for s in streams if s["info"]["name"][0] == name]
    data, stamps = stream["time_series"], stream["time_stamps"]
    assert data.shape[1] == 32
    assert float(stream["info"]["nominal_srate"][0]) == SFREQ
    labels = [
        ch["label"][0] for ch in stream["info"]["desc"][0]["channels"][0]["channel"]
    ]
    assert labels == list(CHANNEL_NAMES_32)
    assert abs(stamps[_first_jump(data)] - pulse_time) <= 1 / SFREQ
