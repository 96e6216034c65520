"""A long TMS-EEG recording with known truth, written as XDF block by block.

:func:`write_lab_recording` writes what the simulated rig records in a
single-pulse session (one EEG stream of 10-10 channels plus the ``FDI`` EMG
channel, and the stimtrain marker stream) without holding the recording in
memory: an hour of 64 channels at 5 kHz is 4.8 GB of XDF, written in
10 s blocks with :class:`synthetic_xdf.XdfWriter`. Every pulse draws the
TMS artifact, a TEP of known components, a TMS-evoked muscle burst over T8
and an MEP from a known recruitment curve; blinks come every few seconds. The
benchmark ``benchmarks/analysis.py`` and ``test_lab_scale.py`` use it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.signal import lfilter
from synthetic_xdf import XdfWriter

#: 64 10-10 labels: the simulated amplifier's 32 first (they hold every
#: component centre, the blink and the muscle site), then 32 more.
CHANNELS_64 = (
    *("Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "FC5", "FC1", "FC2", "FC6"),
    *("T7", "C3", "Cz", "C4", "T8", "TP9", "CP5", "CP1", "CP2", "CP6", "TP10"),
    *("P7", "P3", "Pz", "P4", "P8", "PO9", "O1", "Oz", "O2", "PO10"),
    *("AF7", "AF3", "AFz", "AF4", "AF8", "F5", "F1", "F2", "F6", "FT7", "FC3"),
    *("FCz", "FC4", "FT8", "C5", "C1", "C2", "C6", "TP7", "CP3", "CPz", "CP4"),
    *("TP8", "P5", "P1", "P2", "P6", "PO7", "PO3", "POz", "PO4", "PO8"),
)

#: TEP truth: name, latency (s), amplitude at the centre channel (µV), width
#: (s), centre channel (as tests/analysis/conftest.py's in-memory TEP).
TEP_TRUTH = (
    ("N15", 0.015, -9.0, 0.004, "C3"),
    ("P30", 0.030, 10.0, 0.005, "F4"),
    ("N45", 0.045, -9.0, 0.005, "P3"),
    ("P60", 0.060, 8.0, 0.006, "Fz"),
    ("N100", 0.100, -12.0, 0.010, "Cz"),
    ("P180", 0.185, 10.0, 0.015, "Pz"),
)
#: Changes whenever the signal written changes (benchmark caches are named
#: with it).
VERSION = 2

#: Boltzmann truth of the MEPs (µV, %MSO) and the intensities cycled through.
RECRUITMENT = dict(mep_min=10.0, mep_max=2500.0, s50=55.0, k=4.0)
POWERS = (40, 45, 50, 55, 60, 65, 70, 75)

# Paul Kellet's "economy" pinking filter, as devices/sim_eeg.py's background.
_PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
_PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])


@dataclass
class LabRecording:
    """What :func:`write_lab_recording` wrote (saved next to it as JSON)."""

    path: str
    minutes: float
    n_channels: int
    sfreq: float
    n_pulses: int
    size_bytes: int
    data_bytes: int  # the EEG and EMG samples as float32

    def save(self) -> None:
        Path(self.path).with_suffix(".json").write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path) -> LabRecording | None:
        meta = Path(path).with_suffix(".json")
        if not (meta.is_file() and Path(path).is_file()):
            return None
        return cls(**json.loads(meta.read_text()))


def _positions(names) -> np.ndarray:
    import mne

    builtin = mne.channels.get_builtin_montages()
    kind = "colin27_1020" if "colin27_1020" in builtin else "standard_1020"
    pos = mne.channels.make_standard_montage(kind).get_positions()["ch_pos"]
    return np.array([pos[ch] for ch in names])


def _blob(pos, centre, sigma) -> np.ndarray:
    return np.exp(-np.sum((pos - centre) ** 2, axis=1) / (2 * sigma**2))


def pulse_plan(minutes: float, *, per_hour: int = 600, seed: int = 0):
    """Pulse times (s from the first sample), blocks and powers of a session.

    ``per_hour`` single pulses, 6 s apart on average with ±0.5 s of jitter
    (as ISIs are jittered); the first half is block 1, the second block 2;
    powers cycle through :data:`POWERS`.
    """
    rng = np.random.default_rng([seed, 7])
    n = max(int(round(per_hour * minutes / 60)), 2)
    spacing = minutes * 60 / (n + 1)
    times = spacing * (1 + np.arange(n)) + rng.uniform(-0.5, 0.5, n) * min(
        1.0, spacing / 6
    )
    blocks = np.where(np.arange(n) < n // 2, 1, 2)
    powers = np.resize(np.asarray(POWERS), n)
    return times, blocks, powers


def write_lab_recording(
    path,
    *,
    minutes: float = 60.0,
    n_channels: int = 64,
    sfreq: float = 5000.0,
    per_hour: int = 600,
    noise_uv: float = 5.0,
    artifact_uv: float = 8000.0,
    muscle_uv: float = 120.0,
    blink_uv: float = 150.0,
    chunk_seconds: float = 0.5,
    seed: int = 0,
) -> LabRecording:
    """Write a single-pulse TMS-EEG session as XDF; return its description.

    The EEG stream (``sim-eeg``, float32, µV) holds ``n_channels`` labels of
    :data:`CHANNELS_64` and the ``FDI`` EMG channel, every sample stamped;
    the marker stream holds one ``pulse`` marker per pulse (block, pulse,
    pattern, intensity, unit, power, scheduled) between block markers.
    Clock offsets are written every 5 s.
    """
    from stimtrain.analysis.recruitment import boltzmann
    from stimtrain.vocabulary import MARKER_STREAM_PREFIX, encode_marker

    if not 32 <= n_channels <= len(CHANNELS_64):
        raise ValueError(f"n_channels must be 32-64 (got {n_channels})")
    path = Path(path)
    rng = np.random.default_rng(seed)
    names = list(CHANNELS_64[:n_channels])
    pos = _positions(names)
    n_total = int(round(minutes * 60 * sfreq))
    pulse_s, blocks, powers = pulse_plan(minutes, per_hour=per_hour, seed=seed)
    pulse_k = np.round(pulse_s * sfreq).astype(int)
    meps = boltzmann(powers, *RECRUITMENT.values()) * rng.lognormal(
        0.0, 0.2, len(powers)
    )
    blinks = np.sort(rng.integers(0, n_total - int(0.3 * sfreq), n_total // 20000))

    # Spatial patterns (µV per unit source).
    mix = np.exp(-np.sum((pos[:, None] - pos[None]) ** 2, -1) / (2 * 0.06**2))
    mix /= np.linalg.norm(mix, axis=1, keepdims=True)
    # Electrodes differ in impedance and site: a spread of noise levels as in
    # real caps (without it, every channel's SD is so alike that the robust
    # z-score of the bad-channel rule flags any small difference).
    mix *= rng.lognormal(0.0, 0.25, n_channels)[:, None]
    t_resp = np.arange(int(0.4 * sfreq)) / sfreq
    evoked = np.zeros((len(t_resp), n_channels))
    centres = dict(zip(CHANNELS_64, _positions(CHANNELS_64), strict=True))
    for _, lat, amp, width, centre in TEP_TRUTH:
        wave = amp * np.exp(-0.5 * ((t_resp - lat) / width) ** 2)
        evoked += np.outer(wave, _blob(pos, centres[centre], 0.05))
    art = np.outer(
        artifact_uv * np.exp(-t_resp / 0.0008), rng.choice([-1.0, 1.0], n_channels)
    )
    t_m = t_resp - 0.008
    burst = np.where(
        t_m >= 0,
        np.sin(2 * np.pi * 70 * t_m) * np.exp(-t_m / 0.008) * (t_resp < 0.05),
        0.0,
    )
    muscle_w = _blob(pos, centres["T8"], 0.03)
    blink_w = _blob(pos, (centres["Fp1"] + centres["Fp2"]) / 2, 0.04)
    blink = np.sin(np.pi * np.arange(int(0.3 * sfreq)) / (0.3 * sfreq))
    mep = np.sin(2 * np.pi * (t_resp - 0.021) / 0.015) * (
        (t_resp >= 0.021) & (t_resp <= 0.036)
    )
    mep /= np.ptp(mep)
    muscle_gain = muscle_uv * rng.uniform(0.6, 1.4, len(pulse_k))

    impulse = np.zeros(20_000)
    impulse[0] = 1.0
    pink_gain = 1 / np.sqrt(np.sum(lfilter(_PINK_B, _PINK_A, impulse) ** 2))
    zi = np.zeros((len(_PINK_A) - 1, n_channels))

    t0 = 1000.0
    chunk = max(int(round(chunk_seconds * sfreq)), 1)
    block_n = chunk * max(int(round(10.0 / chunk_seconds)), 1)
    channels = [dict(label=ch, unit="microvolts", type="EEG") for ch in names]
    channels.append(dict(label="FDI", unit="microvolts", type="EMG"))
    tmp = path.with_name(path.name + ".part")
    markers = [
        (
            t0 + pulse_s[0] - 1.0,
            encode_marker("block_start", block=1, type="tms", label="single pulses"),
        ),
    ]
    half = len(pulse_k) // 2
    markers.append(
        (
            t0 + pulse_s[half] - 1.0,
            encode_marker("block_start", block=2, type="tms", label="single pulses"),
        )
    )
    for ii in range(len(pulse_k)):
        markers.append(
            (
                t0 + pulse_s[ii],
                encode_marker(
                    "pulse",
                    block=int(blocks[ii]),
                    pulse=ii,
                    pattern="single",
                    intensity=int(powers[ii]),
                    unit="%MSO",
                    power=int(powers[ii]),
                    scheduled=float(t0 + pulse_s[ii] - 0.0004),
                ),
            )
        )
    markers.sort(key=lambda m: m[0])
    next_marker, next_clock = 0, 0.0
    with XdfWriter(tmp) as w:
        w.add_stream(1, "sim-eeg", "EEG", n_channels + 1, sfreq, "float32", channels)
        w.add_stream(2, f"{MARKER_STREAM_PREFIX}-lab", "Markers", 1, 0, "string")
        for b0 in range(0, n_total, block_n):
            b1 = min(b0 + block_n, n_total)
            n = b1 - b0
            white = rng.standard_normal((n, n_channels), dtype=np.float32)
            pink, zi = lfilter(_PINK_B, _PINK_A, white, axis=0, zi=zi)
            data = np.empty((n, n_channels + 1), np.float32)
            data[:, :n_channels] = (pink @ mix.T) * (noise_uv * pink_gain)
            data[:, n_channels] = rng.normal(0.0, 2.0, n)
            # Responses that overlap this block (they last 0.4 s).
            for ii in np.flatnonzero((pulse_k < b1) & (pulse_k + len(t_resp) > b0)):
                k = pulse_k[ii]
                lo, hi = max(k, b0), min(k + len(t_resp), b1)
                r = slice(lo - k, hi - k)
                resp = (
                    art[r] + evoked[r] + np.outer(burst[r], muscle_gain[ii] * muscle_w)
                )
                data[lo - b0 : hi - b0, :n_channels] += resp
                emg = meps[ii] * mep[r]
                emg[: max(int(0.003 * sfreq) - (lo - k), 0)] += 300.0
                data[lo - b0 : hi - b0, n_channels] += emg
            for k in blinks[(blinks < b1) & (blinks + len(blink) > b0)]:
                lo, hi = max(k, b0), min(k + len(blink), b1)
                data[lo - b0 : hi - b0, :n_channels] += np.outer(
                    blink_uv * blink[lo - k : hi - k], blink_w
                )
            for c0 in range(0, n, chunk):
                c1 = min(c0 + chunk, n)
                stamps = t0 + (b0 + np.arange(c0, c1)) / sfreq
                w.write_samples(1, data[c0:c1], stamps)
                now = stamps[-1]
                while next_marker < len(markers) and markers[next_marker][0] <= now:
                    t, text = markers[next_marker]
                    w.write_samples(2, [[text]], [t])
                    next_marker += 1
                if now >= t0 + next_clock:
                    for sid in (1, 2):
                        w.write_clock_offset(sid, now, 0.0)
                    next_clock += 5.0
        for t, text in markers[next_marker:]:
            w.write_samples(2, [[text]], [t])
        last = t0 + (n_total - 1) / sfreq
        w.write_footer(1, t0, last, n_total)
        w.write_footer(2, markers[0][0], markers[-1][0], len(markers))
    tmp.replace(path)
    rec = LabRecording(
        path=str(path),
        minutes=minutes,
        n_channels=n_channels,
        sfreq=sfreq,
        n_pulses=len(pulse_k),
        size_bytes=path.stat().st_size,
        data_bytes=n_total * (n_channels + 1) * 4,
    )
    rec.save()
    return rec
