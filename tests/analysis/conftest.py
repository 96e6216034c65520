"""Fixtures for the analysis tests: synthetic sessions with known truth.

The XDF recordings are made at once, each in its own process running
``synthetic_xdf.py`` (real pylsl outlets, the real LabRecorder library), and
reused by every test of the session. Where the XDF path is not the point,
:func:`simulate_raw` builds a Raw in memory like the reader's, with pulse
artifacts, a TEP of known components, TMS-evoked muscle, blinks and MEPs from
a known recruitment curve.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import mne
import numpy as np
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


# -- synthetic TMS recordings built in memory ---------------------------------
#: Ground truth of the in-memory TEP: name, latency (s), amplitude at the centre
#: channel (µV), width (s), centre channel. Centres are far apart so that each
#: component dominates its own channel.
TEP_TRUTH = (
    ("N15", 0.015, -9.0, 0.004, "C3"),
    ("P30", 0.030, 10.0, 0.005, "F4"),
    ("N45", 0.045, -9.0, 0.005, "P3"),
    ("P60", 0.060, 8.0, 0.006, "Fz"),
    ("N100", 0.100, -12.0, 0.010, "Cz"),
    ("P180", 0.185, 10.0, 0.015, "Pz"),
)
#: Boltzmann truth of the simulated EMG (µV, %MSO).
RECRUITMENT_TRUTH = dict(mep_min=10.0, mep_max=2500.0, s50=55.0, k=4.0)


def _blob(pos: np.ndarray, centre: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-np.sum((pos - centre) ** 2, axis=1) / (2 * sigma**2))


def simulate_raw(
    *,
    sfreq: float = 5000.0,
    n_pulses: int = 40,
    spacing: float = 1.3,
    powers=None,
    noise_uv: float = 2.0,
    artifact_uv: float = 8000.0,
    muscle_uv: float = 0.0,
    blink_uv: float = 0.0,
    emg: bool = True,
    tep: bool = True,
    eeg: bool = True,
    seed: int = 0,
):
    """Build a Raw like read_raw_xdf's: 32 EEG (+ 1 EMG) channels, pulse annotations.

    Returns the raw and a dict of ground truth (pulse samples, the noise-free
    TEP per channel, the MEP amplitude of every pulse, muscle weights).
    """
    from stimtrain.analysis.recruitment import boltzmann
    from stimtrain.devices.sim_eeg import CHANNEL_NAMES_32

    rng = np.random.default_rng(seed)
    ch_names = list(CHANNEL_NAMES_32) if eeg else []
    montage = mne.channels.make_standard_montage(
        "colin27_1020"
        if "colin27_1020" in mne.channels.get_builtin_montages()
        else "standard_1020"
    )
    mpos = montage.get_positions()["ch_pos"]
    pos = np.array([mpos[ch] for ch in ch_names]).reshape(len(ch_names), 3)
    n_ch = len(ch_names)
    duration = 1.4 + n_pulses * spacing
    n = int(round(duration * sfreq))
    pulse_samples = np.round((1.1 + spacing * np.arange(n_pulses)) * sfreq).astype(int)
    if powers is None:
        powers = np.full(n_pulses, 60.0)
    powers = np.asarray(powers, float)
    data = np.zeros((n_ch + int(emg), n))
    truth = dict(pulse_samples=pulse_samples, powers=powers, ch_names=ch_names)
    if eeg:
        # Spatially smooth 1/f (pink) noise, shaped in the frequency domain:
        # a plausible EEG background whose spectrum falls like real EEG's.
        spec = np.fft.rfft(rng.standard_normal((n_ch, n)), axis=1)
        freqs = np.fft.rfftfreq(n, 1 / sfreq)
        spec /= np.sqrt(np.maximum(freqs, 1.0))
        bg = np.fft.irfft(spec, n, axis=1)
        bg /= bg.std(axis=1, keepdims=True)
        # Volume conduction spreads each source over several centimetres.
        mix = np.exp(-np.sum((pos[:, None] - pos[None]) ** 2, -1) / (2 * 0.06**2))
        mix /= np.linalg.norm(mix, axis=1, keepdims=True)
        data[:n_ch] = noise_uv * (mix @ bg)
        t_resp = np.arange(int(0.4 * sfreq)) / sfreq
        weights = {}
        evoked = np.zeros((n_ch, len(t_resp)))
        for name, lat, amp, width, centre in TEP_TRUTH:
            w = _blob(pos, mpos[centre], 0.05)
            weights[name] = w
            evoked += np.outer(w, amp * np.exp(-0.5 * ((t_resp - lat) / width) ** 2))
        truth["tep"] = evoked if tep else np.zeros_like(evoked)
        truth["tep_times"] = t_resp
        truth["tep_weights"] = weights
        sign = rng.choice([-1.0, 1.0], n_ch)
        art = np.outer(sign, artifact_uv * np.exp(-t_resp / 0.0008))
        muscle_w = _blob(pos, mpos["T8"], 0.03)
        truth["muscle_weights"] = muscle_w
        t_m = t_resp - 0.008
        muscle = np.where(
            t_m >= 0,
            np.sin(2 * np.pi * 70 * t_m) * np.exp(-t_m / 0.008) * (t_resp < 0.05),
            0.0,
        )
        for k in pulse_samples:
            seg = slice(k, k + len(t_resp))
            data[:n_ch, seg] += art
            if tep:
                data[:n_ch, seg] += evoked
            if muscle_uv:
                gain = muscle_uv * rng.uniform(0.6, 1.4)
                data[:n_ch, seg] += np.outer(muscle_w, gain * muscle)
        if blink_uv:
            blink_w = _blob(pos, (mpos["Fp1"] + mpos["Fp2"]) / 2, 0.04)
            truth["blink_weights"] = blink_w
            shape = np.sin(np.pi * np.arange(int(0.3 * sfreq)) / (0.3 * sfreq))
            for start in rng.integers(0, n - len(shape), int(duration / 3)):
                data[:n_ch, start : start + len(shape)] += np.outer(
                    blink_w, blink_uv * shape
                )
    if emg:
        p = RECRUITMENT_TRUTH
        amps = boltzmann(powers, p["mep_min"], p["mep_max"], p["s50"], p["k"])
        amps = amps * rng.lognormal(0.0, 0.2, len(amps))
        t_m = np.arange(int(0.1 * sfreq)) / sfreq
        # A biphasic MEP 21-36 ms after the pulse, scaled to an exact p2p.
        shape = np.sin(2 * np.pi * (t_m - 0.021) / 0.015) * (
            (t_m >= 0.021) & (t_m <= 0.036)
        )
        shape /= np.ptp(shape)
        emg_trace = rng.normal(0.0, 2.0, n)
        for k, a in zip(pulse_samples, amps, strict=True):
            emg_trace[k : k + len(t_m)] += a * shape
            # A brief stimulus artifact, outside the MEP window.
            emg_trace[k : k + int(0.003 * sfreq)] += 300.0
        truth["mep_uv"] = amps
        data[-1] = emg_trace
    names = ch_names + (["FDI"] if emg else [])
    types = ["eeg"] * n_ch + (["emg"] if emg else [])
    info = mne.create_info(names, sfreq, types)
    raw = mne.io.RawArray(data * 1e-6, info, verbose=False)
    if eeg:
        raw.set_montage(montage)
    extras = [
        dict(
            event="pulse",
            block=1,
            pulse=ii,
            pattern="single",
            intensity=float(pw),
            unit="%MSO",
            power=float(pw),
            scheduled=float(k / sfreq),
            lsl_time=float(k / sfreq),
        )
        for ii, (k, pw) in enumerate(zip(pulse_samples, powers, strict=True))
    ]
    raw.set_annotations(
        mne.Annotations(
            pulse_samples / sfreq,
            np.zeros(n_pulses),
            ["pulse"] * n_pulses,
            extras=extras,
        )
    )
    return raw, truth


@pytest.fixture(scope="session")
def make_raw():
    """The in-memory synthetic recording builder (see simulate_raw)."""
    return simulate_raw
