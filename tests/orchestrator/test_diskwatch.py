"""The recording's disk watch: the free-space estimate and the growth check."""

from __future__ import annotations

import threading
import time

import pylsl

from stimtrain.orchestrator.session.diskwatch import (
    DiskWatch,
    free_space_problem,
    min_free_bytes,
    recording_rate,
)


def test_rate_counts_values_and_timestamps():
    eeg = pylsl.StreamInfo("eeg", "EEG", 33, 5000, pylsl.cf_float32, "t-eeg")
    markers = pylsl.StreamInfo("m", "Markers", 1, 0, pylsl.cf_string, "t-m")
    # 5000 samples/s of 33 float32 values and a stamp, plus a marker budget.
    assert recording_rate([eeg]) == 5000 * (33 * 4 + 9)
    assert recording_rate([eeg, markers]) == 5000 * (33 * 4 + 9) + 2000


def test_free_space_refusal_names_the_numbers(tmp_path):
    rate = 705_000.0
    need = 60 * rate * 1.5 + min_free_bytes(rate)
    assert free_space_problem(tmp_path, 60, rate, free=int(need) + 1) is None
    problem = free_space_problem(tmp_path, 60, rate, free=16_000_000)
    assert problem == (
        f"not enough free space for the recording on {tmp_path}: about 70.5 MB "
        "needed (1.0 min at 0.7 MB/s, with a 50 % margin and 7.0 MB kept free), "
        "16.0 MB free"
    )


def test_a_file_that_stops_growing_is_reported_once(tmp_path):
    recording = tmp_path / "r.xdf"
    recording.write_bytes(b"XDF:")
    reasons = []
    called = threading.Event()

    def failed(reason):
        reasons.append(reason)
        called.set()

    with DiskWatch(recording, 1000.0, failed, interval_s=0.05, growth_stall_s=0.5):
        # Growing: no report.
        for _ in range(8):
            with open(recording, "ab") as f:
                f.write(b"x" * 100)
            time.sleep(0.1)
        assert not called.is_set()
        assert called.wait(3.0)
        time.sleep(0.3)
    assert len(reasons) == 1
    assert reasons[0].startswith("the recording stopped growing (r.xdf: 804 bytes")
