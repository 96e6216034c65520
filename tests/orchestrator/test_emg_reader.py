"""The live EMG reader on a real LSL outlet: the samples around a pulse, in µV."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pylsl
import pytest

from stimtrain.emg import measure_mep
from stimtrain.orchestrator.session.emg_reader import EMGReader, EMGUnavailable

SFREQ = 2000.0


class _Amplifier:
    """A small LSL amplifier: an EEG channel and an EMG channel (in mV), with
    a 0.5 mV MEP 22 ms after each pulse time it is given."""

    def __init__(self, name: str) -> None:
        info = pylsl.StreamInfo(name, "EEG", 2, SFREQ, pylsl.cf_float32, name)
        chans = info.desc().append_child("channels")
        for label, unit in (("Cz", "microvolts"), ("FDI", "millivolts")):
            ch = chans.append_child("channel")
            ch.append_child_value("label", label)
            ch.append_child_value("unit", unit)
        self.outlet = pylsl.StreamOutlet(info, chunk_size=20)
        self.pulses: list[float] = []
        self.stop = threading.Event()
        self.t0 = pylsl.local_clock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            due = self.t0 + (n + 20) / SFREQ
            while pylsl.local_clock() < due:
                time.sleep(0.002)
            stamps = self.t0 + (n + np.arange(20)) / SFREQ
            emg = np.zeros(20)
            for p in self.pulses:
                rel = stamps - p - 0.022
                inside = (rel >= 0) & (rel < 0.01)
                emg[inside] += 0.25 * np.sin(2 * np.pi * rel[inside] / 0.01)
            chunk = np.column_stack([np.zeros(20), emg]).tolist()
            self.outlet.push_chunk(chunk, stamps.tolist())
            n += 20


@pytest.fixture
def amplifier():
    amp = _Amplifier(f"emg-reader-test-{os.getpid()}")
    yield amp
    amp.stop.set()
    amp.thread.join(1.0)


def test_samples_around_a_pulse_in_microvolts(amplifier):
    with EMGReader(amplifier.outlet.get_info().name(), "FDI") as reader:
        reader.start(timeout=5.0)
        assert reader.sfreq == SFREQ
        pulse = pylsl.local_clock() + 0.3
        amplifier.pulses.append(pulse)
        times, values = reader.around(pulse, 0.06, 0.06, timeout=3.0)
    assert times[0] >= -0.06 and times[-1] <= 0.06
    assert len(times) == pytest.approx(0.12 * SFREQ, abs=2)
    mep = measure_mep(times, values)
    # 0.25 mV half-amplitude sine read from a millivolt channel: 500 µV p-p.
    assert mep.amplitude_uv == pytest.approx(500.0, rel=0.05)
    assert mep.latency_s == pytest.approx(0.022, abs=0.002)


def test_a_missing_channel_or_stream_is_named(amplifier):
    name = amplifier.outlet.get_info().name()
    with pytest.raises(EMGUnavailable, match=r"no channel 'APB' \(channels: Cz, FDI\)"):
        EMGReader(name, "APB").start(timeout=5.0)
    with pytest.raises(EMGUnavailable, match="not found"):
        EMGReader("no-such-stream-here", "FDI").start(timeout=0.5)


def test_samples_that_do_not_come_are_an_error(amplifier):
    with EMGReader(amplifier.outlet.get_info().name(), "FDI") as reader:
        reader.start(timeout=5.0)
        amplifier.stop.set()
        with pytest.raises(EMGUnavailable, match="no samples up to 60 ms"):
            reader.around(pylsl.local_clock() + 0.5, 0.06, 0.06, timeout=1.0)
