"""Make a synthetic stimtrain recording with real LSL outlets and the LabRecorder library.

The EEG carries TMS-like artifacts and a known evoked bump at a known latency
after each pulse; the markers follow the stimtrain vocabulary. Run as a script
(``python synthetic_xdf.py <json kwargs>``) so that several recordings can be
made at once: the recorder's destructor holds the GIL for up to its 5 s clock
offset interval, so threads would serialise them.

:class:`XdfWriter` writes XDF files directly (numpy, no LSL) and
:func:`simulate_xdf` uses it for recordings whose timing faults are known
exactly: dropouts, clock offsets and drift, jitter, deduced timestamps, no
footer.
"""

from __future__ import annotations

import json
import struct
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
    from stimtrain.vocabulary import (
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


# -- A direct XDF writer: files with known truth, written fast with numpy --

_FORMATS = {
    "int8": "<i1",
    "int16": "<i2",
    "int32": "<i4",
    "int64": "<i8",
    "float32": "<f4",
    "double64": "<f8",
}


def _varlen(value: int) -> bytes:
    if value < 1 << 8:
        return b"\x01" + value.to_bytes(1, "little")
    if value < 1 << 32:
        return b"\x04" + value.to_bytes(4, "little")
    return b"\x08" + value.to_bytes(8, "little")


def _xml(tag: str, fields: dict) -> str:
    inner = "".join(
        _xml(k, v) if isinstance(v, dict) else f"<{k}>{v}</{k}>"
        for k, v in fields.items()
    )
    return f"<{tag}>{inner}</{tag}>"


class XdfWriter:
    """Write an XDF file chunk by chunk, as the XDF 1.0 specification lays out.

    Numeric Samples chunks are built as one numpy record array, so an hour of
    64-channel 5 kHz data takes seconds. Use as a context manager.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._f = open(self.path, "wb")
        self._f.write(b"XDF:")
        self._chunk(1, b'<?xml version="1.0"?><info><version>1.0</version></info>')
        self._formats: dict[int, str] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._f.close()

    def _chunk(self, tag: int, content: bytes, stream_id: int | None = None) -> None:
        head = b"" if stream_id is None else stream_id.to_bytes(4, "little")
        body = tag.to_bytes(2, "little") + head
        self._f.write(_varlen(len(body) + len(content)) + body)
        self._f.write(content)

    def add_stream(
        self,
        stream_id: int,
        name: str,
        type: str,
        channel_count: int,
        nominal_srate: float,
        channel_format: str = "float32",
        channels: list[dict] | None = None,
        desc_extra: dict | None = None,
    ) -> None:
        """Write a StreamHeader; ``channels`` are dicts of label/unit/type."""
        desc = {}
        if channels:
            desc["channels"] = "".join(_xml("channel", c) for c in channels)
        desc.update(desc_extra or {})
        info = dict(
            name=name,
            type=type,
            channel_count=channel_count,
            channel_format=channel_format,
            source_id=f"src{stream_id}",
            nominal_srate=repr(float(nominal_srate)),
            version="1.1",
            created_at="0",
            uid=f"uid{stream_id}",
            session_id="default",
            hostname="synthetic",
        )
        xml = _xml("info", {**info, "desc": desc})
        self._formats[stream_id] = channel_format
        self._chunk(2, f'<?xml version="1.0"?>{xml}'.encode(), stream_id)

    def write_samples(self, stream_id: int, values, stamps, has_stamp=None) -> None:
        """Write one Samples chunk.

        ``has_stamp`` (bool per sample, default all) says which samples carry
        their timestamp; the others are deduced by readers from the previous
        one plus 1/nominal_srate.
        """
        fmt = self._formats[stream_id]
        stamps = np.asarray(stamps, "<f8")
        n = len(stamps)
        has = np.ones(n, bool) if has_stamp is None else np.asarray(has_stamp, bool)
        out = [_varlen(n)]
        if fmt == "string":
            for k in range(n):
                out.append(b"\x08" + stamps[k].tobytes() if has[k] else b"\x00")
                for text in values[k]:
                    raw = str(text).encode()
                    out.append(_varlen(len(raw)) + raw)
            self._chunk(3, b"".join(out), stream_id)
            return
        values = np.ascontiguousarray(values, _FORMATS[fmt])
        nch = values.shape[1]
        if has.all():
            rec = np.empty(n, [("f", "u1"), ("t", "<f8"), ("v", _FORMATS[fmt], (nch,))])
            rec["f"], rec["t"], rec["v"] = 8, stamps, values
            out.append(rec.tobytes())
        else:
            # Samples of two lengths: place each by the cumulative lengths.
            vsize = values.itemsize * nch
            size = 1 + vsize + 8 * has.astype(np.int64)
            pos = np.concatenate(([0], np.cumsum(size)[:-1]))
            body = np.zeros(int(size.sum()), np.uint8)
            body[pos[has]] = 8
            at = pos[has, None] + 1 + np.arange(8)
            body[at] = stamps[has].view(np.uint8).reshape(-1, 8)
            at = (pos + 1 + 8 * has)[:, None] + np.arange(vsize)
            body[at] = values.view(np.uint8).reshape(n, vsize)
            out.append(body.tobytes())
        self._chunk(3, b"".join(out), stream_id)

    def write_clock_offset(self, stream_id: int, time: float, value: float) -> None:
        """Write a ClockOffset chunk (collection time, offset), in seconds."""
        self._chunk(4, struct.pack("<dd", time, value), stream_id)

    def write_boundary(self) -> None:
        self._chunk(5, bytes.fromhex("43a546dccbf5410fb30ed5467383cbe4"))

    def write_footer(
        self, stream_id: int, first: float, last: float, count: int
    ) -> None:
        xml = _xml(
            "info",
            dict(
                first_timestamp=repr(first),
                last_timestamp=repr(last),
                sample_count=count,
            ),
        )
        self._chunk(6, f'<?xml version="1.0"?>{xml}'.encode(), stream_id)


@dataclass
class Simulated:
    """Ground truth of a file written by :func:`simulate_xdf`."""

    path: Path
    sfreq: float
    n_channels: int
    first_time: float  # recorder-clock time of the first EEG sample
    sample_times: np.ndarray  # recorder-clock time of every sample sent
    data: np.ndarray  # (n_sent, n_channels), as written
    marker_times: np.ndarray  # recorder-clock times of the pulse markers
    gaps: list[tuple[float, float]]  # recorder-clock (start, stop) of dropouts


def simulate_xdf(
    path,
    *,
    sfreq: float = 1000.0,
    n_channels: int = 4,
    duration: float = 10.0,
    channel_format: str = "float32",
    stream_type: str = "EEG",
    chunk_seconds: float = 0.1,
    dropouts: list[tuple[float, float]] = (),
    eeg_offset: float = 0.0,
    eeg_drift_ppm: float = 0.0,
    marker_offset: float = 0.0,
    jitter_s: float = 0.0,
    stamp_every: int = 1,
    rate_error_ppm: float = 0.0,
    pulses: list[float] = (),
    clock_interval: float = 5.0,
    footer: bool = True,
    t0: float = 1000.0,
    seed: int = 0,
) -> Simulated:
    """Write a two-stream recording (signal + stimtrain markers) with known truth.

    The signal's sender clock reads ``t - eeg_offset`` (plus ``eeg_drift_ppm``
    drift) when the recorder's reads ``t``; the marker sender's reads
    ``t - marker_offset``. ClockOffset chunks record those offsets as LSL
    does. Samples whose offsets (s from the first sample) fall in a
    ``dropouts`` window are never written; each chunk's timestamps are off by
    a random jitter of ``jitter_s`` (standard deviation). Every
    ``stamp_every``-th sample carries its timestamp, the others are deduced.
    Each pulse marker is written at ``t0 + pulse`` (recorder clock) and the
    signal has a step of 1000 units at the first sample at or after it.
    """
    from stimtrain.vocabulary import MARKER_STREAM_PREFIX, encode_marker

    rng = np.random.default_rng(seed)
    true_rate = sfreq * (1 + rate_error_ppm * 1e-6)
    n = int(round(duration * sfreq))
    offsets = np.arange(n) / true_rate
    keep = np.ones(n, bool)
    for a, b in dropouts:
        keep &= ~((offsets >= a) & (offsets < b))
    t_true = t0 + offsets
    data = rng.normal(0, 10, (n, n_channels))
    for p in pulses:
        data[np.searchsorted(offsets, p) :, 0] += 1000.0
    if channel_format in ("int8", "int16", "int32", "int64"):
        data = np.clip(np.round(data), -100 if channel_format == "int8" else -1e9, 100)
    dtype = _FORMATS.get(channel_format, "<f4")
    data = data.astype(dtype)

    def eeg_clock(t):  # sender's clock reading at recorder time t
        return (t - eeg_offset) - (t - t0) * eeg_drift_ppm * 1e-6

    channels = [
        dict(label=f"C{i + 1}", unit="microvolts", type=stream_type)
        for i in range(n_channels)
    ]
    path = Path(path)
    with XdfWriter(path) as w:
        w.add_stream(
            1, "SimSignal", stream_type, n_channels, sfreq, channel_format, channels
        )
        w.add_stream(2, f"{MARKER_STREAM_PREFIX}-sim", "Markers", 1, 0, "string")
        sent = np.flatnonzero(keep)
        step = max(1, int(round(chunk_seconds * sfreq)))
        # Chunks in recorder time order, interleaved with markers and offsets.
        events = []
        for s in range(0, len(sent), step):
            rows = sent[s : s + step]
            events.append((t_true[rows[-1]], "eeg", rows))
        for ii, p in enumerate(pulses):
            events.append((t0 + p, "marker", ii))
        for t in np.arange(t0, t0 + duration + clock_interval, clock_interval):
            events.append((t, "clock", None))
        events.sort(key=lambda e: (e[0], e[1]))
        count = 0
        for t, kind, what in events:
            if kind == "eeg":
                stamps = eeg_clock(t_true[what]) + rng.normal(0, jitter_s) * (
                    jitter_s > 0
                )
                has = (np.arange(count, count + len(what)) % stamp_every) == 0
                w.write_samples(1, data[what], stamps, has)
                count += len(what)
            elif kind == "marker":
                text = encode_marker(
                    "pulse",
                    block=1,
                    pulse=what,
                    pattern="single",
                    intensity=110,
                    unit="%RMT",
                    power=55,
                    scheduled=t0 + pulses[what] - marker_offset,
                )
                w.write_samples(2, [[text]], [t - marker_offset])
            else:
                # LSL's offset: add it to the sender's time to get the recorder's.
                w.write_clock_offset(1, eeg_clock(t), t - eeg_clock(t))
                w.write_clock_offset(2, t - marker_offset, marker_offset)
        if footer:
            w.write_footer(
                1, eeg_clock(t_true[sent[0]]), eeg_clock(t_true[sent[-1]]), len(sent)
            )
            w.write_footer(2, t0, t0 + duration, len(pulses))
    return Simulated(
        path=path,
        sfreq=sfreq,
        n_channels=n_channels,
        first_time=float(t_true[sent[0]]),
        sample_times=t_true[sent],
        data=data[sent],
        marker_times=t0 + np.asarray(pulses, float),
        gaps=[(t0 + a, t0 + b) for a, b in dropouts],
    )


#: The timestamp layouts of the reading benchmark (``benchmarks/xdf_read.py``).
LAYOUTS = ["even", "jittered", "omitted", "small chunks", "interleaved"]


def write_layout(
    path,
    layout: str,
    seconds: float,
    channels: int = 64,
    sfreq: float = 5000.0,
    chunk_seconds: float | None = None,
) -> Path:
    """Write a recording whose signal timestamps follow one of :data:`LAYOUTS`.

    float32 channels at ``sfreq`` plus a stimtrain marker stream (a pulse a
    second) and clock offsets every 5 s. ``even``: only each chunk's first
    sample stamped, the others deduced; ``jittered``: every sample stamped
    with a jittered time; ``omitted``: one sample in four stamped, at random;
    ``small chunks``: every sample stamped, 10 ms chunks; ``interleaved``: the
    channels split over an EEG stream stamped per chunk and a 4-channel EMG
    stream stamped per sample, their chunks alternating. Chunks are 0.5 s
    (0.1 s interleaved) unless ``chunk_seconds`` says otherwise.
    """
    path = Path(path)
    rng = np.random.default_rng(0)
    if chunk_seconds is None:
        chunk_seconds = {"small chunks": 0.01, "interleaved": 0.1}.get(layout, 0.5)
    chunk = max(1, int(round(sfreq * chunk_seconds)))
    n_chunks = max(1, int(round(seconds * sfreq / chunk)))
    # A pool of noise reused with a per-chunk offset: generating gigabytes of
    # fresh random numbers would dominate the writing time.
    pool_n = max(chunk, int(sfreq))
    pool = rng.standard_normal((pool_n * 2, channels), dtype=np.float32) * 10
    emg = 4 if layout == "interleaved" else 0
    t0 = 1000.0
    duration = n_chunks * chunk / sfreq

    def described(n, kind):
        return [
            dict(label=f"{kind}{i + 1}", unit="microvolts", type=kind) for i in range(n)
        ]

    with XdfWriter(path) as w:
        eeg = channels - emg
        w.add_stream(1, "BenchEEG", "EEG", eeg, sfreq, "float32", described(eeg, "EEG"))
        w.add_stream(2, "stimtrain-markers-bench", "Markers", 1, 0, "string")
        if emg:
            w.add_stream(
                3, "BenchEMG", "EMG", emg, sfreq, "float32", described(emg, "EMG")
            )
        ids = (1, 2, 3) if emg else (1, 2)
        next_marker, next_clock = 1, 0.0
        first_only = np.zeros(chunk, bool)
        first_only[0] = True
        for c in range(n_chunks):
            start = c * chunk
            t = t0 + (start + np.arange(chunk)) / sfreq
            at = (start % pool_n) if chunk < pool_n else 0
            values = pool[at : at + chunk] + np.float32(c % 7)
            jitter = t + rng.normal(0, 2e-5, chunk)
            if layout == "even":
                w.write_samples(1, values, t, first_only)
            elif layout in ("jittered", "small chunks"):
                w.write_samples(1, values, jitter)
            elif layout == "omitted":
                w.write_samples(1, values, jitter, rng.random(chunk) < 0.25)
            elif layout == "interleaved":
                w.write_samples(1, values[:, emg:], t, first_only)
                w.write_samples(3, values[:, :emg], jitter)
            else:
                raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
            now = (start + chunk) / sfreq
            while next_marker < now and next_marker < duration - 1:
                text = json.dumps(dict(event="pulse", pulse=next_marker))
                w.write_samples(2, [[text]], [t0 + next_marker + 0.0004])
                next_marker += 1
            if now >= next_clock:
                for sid in ids:
                    w.write_clock_offset(sid, t0 + now, 1e-5 * np.sin(now))
                next_clock += 5.0
        last = t0 + (n_chunks * chunk - 1) / sfreq
        for sid in ids:
            if sid == 2:
                count = next_marker - 1
                w.write_footer(2, t0 + 1.0004, t0 + count + 0.0004, count)
            else:
                w.write_footer(sid, t0, last, n_chunks * chunk)
    return path
