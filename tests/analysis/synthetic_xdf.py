"""Make a synthetic stimtrain recording with real LSL outlets and the LabRecorder library.

The EEG carries TMS-like artifacts and a known evoked bump at a known latency
after each pulse; the markers follow the stimtrain vocabulary. Run as a script
(``python synthetic_xdf.py <json kwargs>``) so that several recordings can be
made at once: the recorder's destructor holds the GIL for up to its 5 s clock
offset interval, so threads would serialise them.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

CH_NAMES = ["Fz", "Cz", "Pz", "C3", "C4", "F3", "F4", "Oz"]
# Evoked bump: Gaussian at LATENCY after each pulse, per-channel amplitudes (µV).
LATENCY = 0.030
SIGMA = 0.004
WEIGHTS = np.array([6.0, 10.0, 4.0, 7.0, -5.0, 3.0, -2.0, 1.0])
ARTIFACT_UV = 20000.0  # the step: above 1e4 µV/ms even at 1000 Hz
ARTIFACT_TAU = 0.001


@dataclass
class Recording:
    """A recorded synthetic session and its ground truth."""

    path: Path
    sfreq: float
    ch_names: list[str]
    first_time: float  # LSL time of the first EEG sample pushed
    pulse_times: np.ndarray  # LSL times of the pulse markers
    scheduled: np.ndarray  # their "scheduled" field
    markers: list[tuple[float, dict]] = field(default_factory=list)
    gap: tuple[float, float] | None = None  # LSL times of a dropout

    def to_json(self) -> str:
        d = asdict(self)
        d["path"] = str(self.path)
        d["pulse_times"] = self.pulse_times.tolist()
        d["scheduled"] = self.scheduled.tolist()
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> Recording:
        d = json.loads(text)
        d["path"] = Path(d["path"])
        d["pulse_times"] = np.asarray(d["pulse_times"])
        d["scheduled"] = np.asarray(d["scheduled"])
        d["markers"] = [tuple(m) for m in d["markers"]]
        d["gap"] = None if d["gap"] is None else tuple(d["gap"])
        return cls(**d)


def _eeg_outlet(pylsl, name, ch_names, sfreq, uid):
    info = pylsl.StreamInfo(name, "EEG", len(ch_names), sfreq, "float32", uid)
    chans = info.desc().append_child("channels")
    for ch in ch_names:
        c = chans.append_child("channel")
        c.append_child_value("label", ch)
        c.append_child_value("unit", "microvolts")
        c.append_child_value("type", "EEG")
    return pylsl.StreamOutlet(info, chunk_size=0, max_buffered=360)


def _marker_outlet(pylsl, uid):
    from stimtrain.orchestrator.vocabulary import (
        MARKER_STREAM_PREFIX,
        MARKER_STREAM_TYPE,
    )

    info = pylsl.StreamInfo(
        f"{MARKER_STREAM_PREFIX}-test",
        MARKER_STREAM_TYPE,
        1,
        pylsl.IRREGULAR_RATE,
        "string",
        uid,
    )
    return pylsl.StreamOutlet(info)


def record(
    path: Path,
    *,
    sfreq: float = 5000.0,
    ch_names: list[str] | None = None,
    duration: float = 16.0,
    pulse_offsets: list[float] | None = None,
    task_trials: int = 0,
    gap: tuple[float, float] | None = None,
    eeg: bool = True,
    markers: bool = True,
    seed: int = 0,
) -> Recording:
    """Stream a synthetic session through LSL and record it with LabRecorder.

    ``pulse_offsets`` and ``gap`` are in seconds from the first EEG sample.
    Samples in ``gap`` are never pushed (a dropout).
    """
    import labrecorder
    import pylsl

    rng = np.random.default_rng(seed)
    ch_names = list(CH_NAMES if ch_names is None else ch_names)
    pulse_offsets = [] if pulse_offsets is None else list(pulse_offsets)
    tag = uuid.uuid4().hex[:8]
    outlets = {}
    if eeg:
        outlets["eeg"] = _eeg_outlet(pylsl, "TestEEG", ch_names, sfreq, f"eeg{tag}")
    if markers:
        outlets["mrk"] = _marker_outlet(pylsl, f"mrk{tag}")
    # The outlets' own infos carry their addresses: the recorder connects
    # without a resolve, which is flaky when several processes start LSL at
    # once (one of six took 3 s or more to see its own outlet here).
    infos = [outlet.get_info() for outlet in outlets.values()]

    rec = labrecorder.Recording(str(path), infos)
    time.sleep(1.0)  # let the recorder's inlets connect
    t0 = pylsl.local_clock()
    n = int(round(duration * sfreq))
    # Pulses fall between samples on purpose: the reader must round right.
    pulse_times = t0 + np.asarray(pulse_offsets) + 0.37 / sfreq
    scheduled = pulse_times - rng.uniform(0.0002, 0.0008, len(pulse_times))

    if eeg:
        data = rng.normal(0, 1.0, (n, len(ch_names)))
        t = np.arange(n) / sfreq
        for tp in pulse_times - t0:
            k = int(round(tp * sfreq))
            seg = np.arange(k, min(k + int(0.02 * sfreq), n))
            data[seg] += (
                ARTIFACT_UV * np.exp(-(seg - k) / sfreq / ARTIFACT_TAU)[:, None]
            )
            bump = np.exp(-0.5 * ((t - tp - LATENCY) / SIGMA) ** 2)
            data += bump[:, None] * np.resize(WEIGHTS, len(ch_names))
        keep = np.ones(n, bool)
        if gap is not None:
            keep[int(gap[0] * sfreq) : int(gap[1] * sfreq)] = False
        chunk = int(sfreq // 10)
        out = outlets["eeg"]
        idx = np.flatnonzero(keep)
        # Push contiguous runs in chunks; each chunk is stamped with the time
        # of its last sample (pylsl derives the others from the nominal rate).
        runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
        for run in runs:
            for start in range(0, len(run), chunk):
                sl = run[start : start + chunk]
                out.push_chunk(data[sl].astype(np.float32), t0 + sl[-1] / sfreq)
    marker_list: list[tuple[float, dict]] = []
    if markers:
        marker_list.append((t0 - 0.5, dict(event="session_start", participant="01")))
        marker_list.append((t0 + 0.5, dict(event="block_start", block=1, type="tms")))
        for ii, (tp, ts) in enumerate(zip(pulse_times, scheduled, strict=True)):
            marker_list.append(
                (
                    tp,
                    dict(
                        event="pulse",
                        block=1,
                        pulse=ii,
                        pattern="single",
                        intensity=120,
                        unit="%RMT",
                        power=60,
                        scheduled=float(ts),
                    ),
                )
            )
        for trial in range(task_trials):
            onset = t0 + 1.0 + 0.5 * trial + 0.0123
            cond = "congruent" if trial % 2 == 0 else "incongruent"
            rt = 0.4 + (0.1 if cond == "incongruent" else 0.0) + 0.001 * trial
            base = dict(block=2, task="flanker", trial=trial)
            marker_list.append(
                (onset, dict(event="stim_onset", **base, condition=cond))
            )
            marker_list.append(
                (
                    onset + rt,
                    dict(
                        event="response",
                        **base,
                        key="left",
                        rt=rt,
                        correct=trial % 5 != 4,
                    ),
                )
            )
        marker_list.append((t0 + duration + 1.0, dict(event="session_end")))
        marker_list.sort(key=lambda m: m[0])
        for ts, m in marker_list:
            outlets["mrk"].push_sample([json.dumps(m)], ts)
    time.sleep(1.2)  # the recorder pulls every ~0.5 s and does not drain on stop
    rec.stop()
    # The outlets must outlive the recorder: its clock offset thread queries
    # them once more before it ends, and a missing outlet costs a 2.5 s timeout.
    del rec
    del outlets
    return Recording(
        path=path,
        sfreq=sfreq,
        ch_names=list(ch_names),
        first_time=t0,
        pulse_times=pulse_times,
        scheduled=scheduled,
        markers=marker_list,
        gap=None if gap is None else (t0 + gap[0], t0 + gap[1]),
    )


if __name__ == "__main__":
    kwargs = json.loads(sys.argv[1])
    path = Path(kwargs.pop("path"))
    result = record(path, **kwargs)
    path.with_suffix(".json").write_text(result.to_json())
