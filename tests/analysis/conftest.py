"""Fixtures for the analysis tests: synthetic sessions recorded over real LSL.

All recordings are made at once, each in its own process running
``synthetic_xdf.py`` (real pylsl outlets, the real LabRecorder library), and
reused by every test of the session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from synthetic_xdf import Recording  # noqa: E402

PULSES_5K = [1.0 + 0.7 * i + 0.05 * (i % 3) for i in range(20)]

SPECS = {
    # 20 pulses and 12 task trials at 5000 Hz, 8 channels, 16 s.
    "rec5k": dict(sfreq=5000.0, pulse_offsets=PULSES_5K, task_trials=12),
    # 1000 Hz, 4 channels, a 2 s dropout (a segment break) between pulses.
    "rec_gap": dict(
        sfreq=1000.0,
        ch_names=["Fz", "Cz", "Pz", "C3"],
        duration=10.0,
        pulse_offsets=[1.0, 2.0, 3.0, 7.0, 8.0, 9.0],
        gap=[4.0, 6.0],
        seed=1,
    ),
    # EEG without a marker stream.
    "rec_eeg_only": dict(
        sfreq=1000.0, ch_names=["Fz", "Cz", "Pz", "C3"], duration=4.0, markers=False
    ),
    # A marker stream without EEG.
    "rec_markers_only": dict(duration=2.0, pulse_offsets=[0.5, 1.0], eeg=False),
}


@pytest.fixture(scope="session")
def recordings(tmp_path_factory) -> dict[str, Recording]:
    """Record every synthetic session in parallel; return them by name."""
    root = tmp_path_factory.mktemp("recordings")
    procs = {}
    for name, spec in SPECS.items():
        folder = root / name
        folder.mkdir()
        kwargs = dict(spec, path=str(folder / "recording.xdf"))
        procs[name] = subprocess.Popen(
            [sys.executable, str(HERE / "synthetic_xdf.py"), json.dumps(kwargs)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
        )
    out = {}
    for name, proc in procs.items():
        log, _ = proc.communicate(timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"recording {name} failed:\n{log.decode()}")
        truth = (root / name / "recording.json").read_text()
        out[name] = Recording.from_json(truth)
    return out


@pytest.fixture(scope="session")
def rec5k(recordings) -> Recording:
    return recordings["rec5k"]


@pytest.fixture(scope="session")
def rec_gap(recordings) -> Recording:
    return recordings["rec_gap"]


@pytest.fixture(scope="session")
def rec_eeg_only(recordings) -> Recording:
    return recordings["rec_eeg_only"]


@pytest.fixture(scope="session")
def rec_markers_only(recordings) -> Recording:
    return recordings["rec_markers_only"]
