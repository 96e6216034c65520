"""What the live view shows, kept whole so that any page can be drawn from it.

The view process feeds a :class:`ViewModel` with the runner's state snapshots,
the session's markers, the EEG/EMG samples and the journal's lines; a page
asks it for the sections that changed since it last looked. Everything since
the session started is kept in summary form (running sums, one amplitude per
pulse, one online phase per phase-locked pulse), so a page opened or reloaded
mid-session gets the whole view, and the memory it takes does not grow with
the length of the recording.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ....circular import circular_mean_deg, circular_sd_deg

#: The EMG window around each pulse (s): the MEP panel's traces.
MEP_WINDOW = (-0.050, 0.100)
#: The MEP is measured from 15 to 50 ms (see ``stimtrain.emg``).
MEP_PEAK_WINDOW = (0.015, 0.050)
#: The EEG window around each pulse (s), its baseline and the blanked artifact.
EEG_WINDOW = (-0.100, 0.300)
EEG_BASELINE = (-0.100, -0.005)
EEG_BLANK = (-0.002, 0.015)
#: Points per trace sent to a page: traces are thinned to about this many.
TRACE_POINTS = 300
#: Journal and warning lines a page shows.
LOG_LINES = 12
#: The phase panel's histogram bins (degrees, from 0): the report's 20 degrees.
PHASE_BIN_DEG = 20.0


@dataclass
class Channels:
    """The channels of the stream the view reads (labels and types)."""

    labels: list[str]
    types: list[str]
    rate: float
    emg: int | None = None

    @property
    def eeg(self) -> list[int]:
        """Indices of the EEG channels (every channel not typed otherwise)."""
        return [
            i
            for i, kind in enumerate(self.types)
            if i != self.emg and kind.upper() in ("EEG", "")
        ]


@dataclass
class _Average:
    """A running average of equal-length epochs."""

    total: np.ndarray
    n: int = 0

    def add(self, epoch: np.ndarray) -> None:
        self.total += epoch
        self.n += 1

    @property
    def mean(self) -> np.ndarray:
        return self.total / max(self.n, 1)


@dataclass
class _Pending:
    """A pulse waiting for the samples after it."""

    time: float
    marker: dict
    mep_done: bool = False
    eeg_done: bool = False


@dataclass
class ViewModel:
    """Everything the page shows, as sections with version numbers.

    Parameters
    ----------
    channels : Channels | None
        The EEG stream's channels (None: no EEG or EMG panels).
    """

    channels: Channels | None = None
    sections: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._labels: dict[int, str] = {}
        self._pending: list[_Pending] = []
        self._last_pulse: _Pending | None = None
        self._buffer: np.ndarray | None = None
        self._stamps: np.ndarray | None = None
        self._mep_latest: list | None = None
        self._mep_previous: list | None = None
        self._mep_mean: _Average | None = None
        self._mep_block = None
        self._amplitudes: list[dict] = []
        self._hunt: list[dict] = []
        self._hunt_estimate: dict | None = None
        self._evoked: dict[str, _Average] = {}
        self._evoked_current: str | None = None
        self._evoked_left_out = 0
        self._phases: dict[float, _Phases] = {}
        self._trials: dict = {}
        self._task: dict | None = None
        self._log: deque = deque(maxlen=LOG_LINES)
        self._markers = 0
        if self.channels is not None:
            rate = self.channels.rate
            keep = int(rate * 10)  # 10 s: more than any window plus lag
            self._buffer = np.zeros((2 * keep, len(self.channels.labels)), np.float32)
            self._stamps = np.full(2 * keep, np.inf)
            self._filled = 0
            self._mep_axis = _axis(MEP_WINDOW, rate)
            self._eeg_axis = _axis(EEG_WINDOW, rate)
        self._set("meta", {"has_emg": self._has_emg, "has_eeg": self._has_eeg})

    # -- inputs -------------------------------------------------------------------
    @property
    def _has_emg(self) -> bool:
        return self.channels is not None and self.channels.emg is not None

    @property
    def _has_eeg(self) -> bool:
        return self.channels is not None and bool(self.channels.eeg)

    def on_state(self, state: dict) -> None:
        """A snapshot of the runner's console state (see ``feed.state_dict``)."""
        self._labels = {b["index"]: b["label"] for b in state.get("blocks", [])}
        self._set("state", state)

    def on_journal(self, line: str) -> None:
        """One journal line (JSON text), shown among the last lines."""
        self._log.append(_journal_line(line))
        self._set("log", list(self._log)[::-1])

    def on_marker(self, marker: dict, time: float) -> None:
        """One decoded marker and its LSL time."""
        self._markers += 1
        event = marker.get("event")
        if event == "pulse":
            pending = _Pending(time, marker)
            self._pending.append(pending)
            self._on_pulse_time(pending)
            if marker.get("target_phase") is not None:
                self._on_triggered(marker)
        elif event == "mep":
            self._on_mep(marker)
        elif event == "threshold_estimate":
            self._hunt_estimate = {
                "pulses": marker.get("pulses"),
                "estimate": _number(marker.get("estimate")),
                "next_power": _number(marker.get("next_power")),
            }
            self._set_hunt()
        elif event in ("task_start", "stim_onset", "response", "task_end"):
            self._on_task(event, marker)

    def on_samples(self, samples: np.ndarray, stamps: np.ndarray) -> None:
        """A chunk of the stream (samples × channels) with its LSL times."""
        if self._buffer is None or len(stamps) == 0:
            return
        keep = len(self._buffer) // 2
        samples, stamps = samples[-keep:], stamps[-keep:]
        n = len(stamps)
        if self._filled + n > len(self._buffer):
            # Twice the kept length: the newest ``keep`` samples move to the
            # front once per ``keep`` samples, so each chunk costs its size.
            tail = slice(self._filled - (keep - n), self._filled)
            self._buffer[: keep - n] = self._buffer[tail]
            self._stamps[: keep - n] = self._stamps[tail]
            self._filled = keep - n
        self._buffer[self._filled : self._filled + n] = samples
        self._stamps[self._filled : self._filled + n] = stamps
        self._filled += n
        self._extract()

    # -- what a page gets ---------------------------------------------------------
    def changed_since(self, seen: dict) -> dict:
        """The sections whose version is newer than in ``seen`` (updated)."""
        out = {}
        for name, version in self.versions.items():
            if seen.get(name) != version:
                out[name] = self.sections[name]
                seen[name] = version
        return out

    # -- the pulses ---------------------------------------------------------------
    def _on_pulse_time(self, pulse: _Pending) -> None:
        # A pulse closer than the EEG epoch to the one before: their responses
        # overlap, neither goes into the evoked average.
        last = self._last_pulse
        if last is not None and pulse.time - last.time < EEG_WINDOW[1] - EEG_WINDOW[0]:
            for p in (last, pulse):
                if not p.eeg_done:
                    p.eeg_done = True
                    self._evoked_left_out += 1
        self._last_pulse = pulse

    def _extract(self) -> None:
        newest = self._stamps[self._filled - 1]
        for p in self._pending:
            if not p.mep_done and newest >= p.time + MEP_WINDOW[1]:
                p.mep_done = True
                if self._has_emg:
                    self._take_mep(p)
            if not p.eeg_done and newest >= p.time + EEG_WINDOW[1]:
                p.eeg_done = True
                if self._has_eeg:
                    self._take_eeg(p)
        self._pending = [p for p in self._pending if not (p.mep_done and p.eeg_done)]

    def _window(self, time: float, window: tuple[float, float], axis: np.ndarray):
        """The buffer's samples at ``time + axis`` (nearest), or None if gone."""
        stamps = self._stamps[: self._filled]
        start = int(np.searchsorted(stamps, time + window[0]))
        if start == 0 or start + len(axis) > self._filled:
            return None  # before the buffer (view opened late) or not yet there
        return self._buffer[start : start + len(axis)].astype(np.float64)

    def _take_mep(self, p: _Pending) -> None:
        data = self._window(p.time, MEP_WINDOW, self._mep_axis)
        if data is None:
            return
        trace = data[:, self.channels.emg]
        trace = trace - trace[self._mep_axis < 0].mean()
        peak = (self._mep_axis >= MEP_PEAK_WINDOW[0]) & (
            self._mep_axis <= MEP_PEAK_WINDOW[1]
        )
        p2p = float(trace[peak].max() - trace[peak].min())
        block = p.marker.get("block")
        if self._mep_mean is None or block != self._mep_block:
            # The mean of this block's pulses: blocks differ in intensity.
            self._mep_mean, self._mep_block = _Average(np.zeros_like(trace)), block
        self._mep_mean.add(trace)
        self._mep_previous, self._mep_latest = self._mep_latest, _thin(trace)
        m = p.marker
        self._amplitudes.append(
            {
                "t": p.time,
                "pulse": m.get("pulse"),
                "block": m.get("block"),
                "power": _number(m.get("power")),
                "p2p_uv": round(p2p, 2),
            }
        )
        self._set(
            "mep",
            {
                "t_ms": _thin(self._mep_axis * 1000),
                "latest": self._mep_latest,
                "previous": self._mep_previous,
                "mean": _thin(self._mep_mean.mean),
                "n": self._mep_mean.n,
                "block_label": self._labels.get(block, block),
                "latest_p2p_uv": round(p2p, 2),
                "amplitudes": self._amplitudes,
            },
        )

    def _take_eeg(self, p: _Pending) -> None:
        data = self._window(p.time, EEG_WINDOW, self._eeg_axis)
        if data is None:
            return
        epoch = data[:, self.channels.eeg]
        epoch -= epoch[
            (self._eeg_axis >= EEG_BASELINE[0]) & (self._eeg_axis <= EEG_BASELINE[1])
        ].mean(axis=0)
        m = p.marker
        condition = m.get("condition") or self._labels.get(m.get("block"))
        condition = str(condition if condition is not None else m.get("block"))
        average = self._evoked.setdefault(condition, _Average(np.zeros_like(epoch)))
        average.add(epoch)
        self._evoked_current = condition
        mean = average.mean
        blank = (self._eeg_axis >= EEG_BLANK[0]) & (self._eeg_axis <= EEG_BLANK[1])
        mean[blank] = np.nan
        gfp = np.std(mean, axis=1) if mean.shape[1] > 1 else np.abs(mean[:, 0])
        gfp[blank] = np.nan
        self._set(
            "evoked",
            {
                "condition": condition,
                "n": average.n,
                "conditions": {k: v.n for k, v in self._evoked.items()},
                "left_out": self._evoked_left_out,
                "t_ms": _thin(self._eeg_axis * 1000),
                "channels": [self.channels.labels[i] for i in self.channels.eeg],
                "butterfly": [_thin(mean[:, i]) for i in range(mean.shape[1])],
                "gfp": _thin(gfp),
            },
        )

    # -- phase-locked (triggered) pulses ------------------------------------------
    def _on_triggered(self, m: dict) -> None:
        target = _number(m.get("target_phase"))
        if target is None:
            return
        online = _number(m.get("online_phase"))
        phases = self._phases.setdefault(target, _Phases())
        phases.add(math.nan if online is None else online)
        self._set(
            "phase",
            {
                "bin_deg": PHASE_BIN_DEG,
                "bin_centers": [(k + 0.5) * PHASE_BIN_DEG for k in range(_PHASE_BINS)],
                "pulses": sum(p.pulses for p in self._phases.values()),
                "targets": [self._phases[t].summary(t) for t in sorted(self._phases)],
            },
        )

    # -- hunting and tasks --------------------------------------------------------
    def _on_mep(self, marker: dict) -> None:
        self._hunt.append(
            {
                "pulse": marker.get("pulse"),
                "power": _number(marker.get("power")),
                "amplitude_uv": _number(marker.get("amplitude_uv")),
                "hit": marker.get("hit"),
                "rejected": bool(marker.get("rejected")),
            }
        )
        self._set_hunt()

    def _set_hunt(self) -> None:
        self._set("hunt", {"pulses": self._hunt, "estimate": self._hunt_estimate})

    def _on_task(self, event: str, m: dict) -> None:
        if event == "task_start":
            self._task = {"task": m.get("task"), "block": m.get("block")}
            self._task.update(n_trials=m.get("n_trials"), trial=0, done=False)
            self._trials = {}
        if self._task is None:
            return
        if event == "stim_onset":
            self._task["trial"] = m.get("trial")
            self._trials.setdefault(m.get("trial"), {})["condition"] = m.get(
                "condition"
            )
        elif event == "response":
            trial = self._trials.setdefault(m.get("trial"), {})
            trial.update(rt=_number(m.get("rt")), correct=m.get("correct"))
        elif event == "task_end":
            self._task["done"] = True
        self._set("task", {**self._task, "by_condition": _by_condition(self._trials)})

    def _set(self, name: str, value) -> None:
        self.sections[name] = value
        self.versions[name] = self.versions.get(name, 0) + 1


_PHASE_BINS = int(round(360.0 / PHASE_BIN_DEG))


@dataclass
class _Phases:
    """The online phases (degrees) of one target's pulses and their histogram."""

    online: list[float] = field(default_factory=list)
    counts: np.ndarray = field(default_factory=lambda: np.zeros(_PHASE_BINS, int))

    @property
    def pulses(self) -> int:
        return len(self.online)

    def add(self, online: float) -> None:
        self.online.append(online)
        if math.isfinite(online):
            # Bin k holds [k, k + 1) * PHASE_BIN_DEG of the phase in [0, 360).
            k = int(np.mod(online, 360.0) // PHASE_BIN_DEG)
            self.counts[min(k, _PHASE_BINS - 1)] += 1

    def summary(self, target: float) -> dict:
        """Count, circular mean and SD, latest phase and histogram (degrees)."""
        mean = circular_mean_deg(self.online)
        return {
            "target_phase": target,
            "pulses": self.pulses,
            "with_phase": int(self.counts.sum()),
            "latest_deg": _rounded(self.online[-1]),
            "mean_deg": _rounded(mean),
            "sd_deg": _rounded(circular_sd_deg(self.online)),
            "counts": self.counts.tolist(),
        }


def _rounded(value: float, digits: int = 2):
    """``value`` rounded, or None (JSON null) when it is not finite."""
    return round(float(value), digits) if math.isfinite(value) else None


def _journal_line(line: str) -> str:
    """``HH:MM:SS event key=value …`` for one journal line."""
    try:
        entry = json.loads(line)
    except ValueError:
        return line.strip()[:200]
    if not isinstance(entry, dict):
        return line.strip()[:200]
    wall = entry.pop("wall", None)
    stamp = time.strftime("%H:%M:%S", time.localtime(wall)) if wall else "--:--:--"
    event = entry.pop("event", "?")
    for noisy in ("clock", "scheduled", "actual"):
        entry.pop(noisy, None)
    fields = " ".join(f"{k}={v}" for k, v in entry.items())
    return f"{stamp} {event} {fields}"[:200]


def _axis(window: tuple[float, float], rate: float) -> np.ndarray:
    n = int(round((window[1] - window[0]) * rate)) + 1
    return window[0] + np.arange(n) / rate


def _thin(values: np.ndarray) -> list:
    """At most about :data:`TRACE_POINTS` values, NaN as None (JSON null).

    Each point is the mean of the samples it stands for (picking every n-th
    sample would show the noise above the page's resolution as signal).
    """
    values = np.asarray(values, np.float64)
    step = max(1, math.ceil(len(values) / TRACE_POINTS))
    n = len(values) // step * step
    thinned = values[:n].reshape(-1, step).mean(axis=1)
    return [None if not math.isfinite(v) else round(float(v), 3) for v in thinned]


def _number(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _by_condition(trials: dict) -> list[dict]:
    """Trials answered, accuracy and median RT (correct trials) by condition."""
    groups: dict = {}
    for trial in trials.values():
        if "correct" not in trial:
            continue
        groups.setdefault(str(trial.get("condition")), []).append(trial)
    rows = []
    for condition, group in sorted(groups.items()):
        judged = [t["correct"] for t in group if t.get("correct") is not None]
        rts = [t["rt"] for t in group if t.get("correct") and t.get("rt") is not None]
        accuracy = None if not judged else sum(map(bool, judged)) / len(judged)
        rows.append(
            {
                "condition": condition,
                "trials": len(group),
                "accuracy": accuracy,
                "median_rt_ms": None if not rts else 1000 * float(np.median(rts)),
            }
        )
    return rows
