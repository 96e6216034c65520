"""The simulated EEG amplifier in a process of its own, read over real LSL."""

import os
import time

import numpy as np
import pylsl

from stimtrain.devices.sim_eeg_process import EEGProcess


def test_pulse_drawn_at_its_time_and_stop_ends_the_stream():
    name = f"test-eeg-process-{os.getpid()}"
    amp = EEGProcess(name, emg_channels=["FDI"]).start()
    try:
        (info,) = pylsl.resolve_byprop("name", name, 1, 10)
        assert info.channel_count() == 33
        inlet = pylsl.StreamInlet(info)
        inlet.open_stream(5)
        # A pulse a little in the past still lands at its own time: the
        # amplifier holds its samples back by 50 ms.
        pulse = pylsl.local_clock() - 0.01
        amp.add_pulse(pulse, 60)
        chunks, stamps = [], []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (not stamps or stamps[-1] < pulse + 0.1):
            data, ts = inlet.pull_chunk(timeout=0.2)
            chunks.extend(data)
            stamps.extend(ts)
        data = np.asarray(chunks)[:, :32]
        stamps = np.asarray(stamps)
        jump = np.abs(np.diff(data, axis=0)).mean(axis=1)
        at = stamps[1:][np.argmax(jump)]
        assert abs(at - pulse) <= 1 / 5000 + 1e-6
    finally:
        amp.stop()
    assert not amp._proc.is_alive()
    assert not pylsl.resolve_byprop("name", name, 1, 1.0)
