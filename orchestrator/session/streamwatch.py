"""Supervise the required LSL streams during a session: rate, age, stalls.

:class:`StreamWatch` holds one inlet per required stream (the EEG, the EMG)
and pulls from all of them on one background thread, so that the console can
show each stream's health and the runner can pause stimulation when a stream
stops. The thread never blocks in liblsl (pulls with timeout 0) and sleeps
between rounds, because the main process renders the participant's task.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pylsl

from .console import ConsoleState, StreamHealth
from .recording import StreamsMissing, wait_for_streams

logger = logging.getLogger("stimtrain.orchestrator.session.streamwatch")

# liblsl channel formats that can be pulled into a numpy buffer without
# creating Python objects per value.
_NUMPY_FORMATS = {
    pylsl.cf_float32: np.float32,
    pylsl.cf_double64: np.float64,
    pylsl.cf_int32: np.int32,
    pylsl.cf_int16: np.int16,
    pylsl.cf_int8: np.int8,
    pylsl.cf_int64: np.int64,
}


@dataclass
class _Watched:
    """What the watch knows about one stream (guarded by the watch's lock)."""

    name: str
    type: str
    nominal_srate: float
    threshold_s: float  # age above which the stream counts as stalled
    inlet: pylsl.StreamInlet
    buffer: np.ndarray | None  # None for string streams
    max_samples: int
    n_samples: int = 0
    last_time: float | None = None  # LSL time of the newest sample (local clock)
    watch_start: float = 0.0
    stalled: bool = False
    # (local clock at a pull, samples received so far), for the rate.
    history: deque = field(default_factory=deque)


class StreamWatch:
    """Watch LSL streams from a background thread and report stalls.

    Parameters
    ----------
    streams : list of (pylsl.StreamInfo | str)
        The streams to watch; names are resolved with
        :func:`~stimtrain.orchestrator.session.recording.wait_for_streams`.
    stall_s : float
        A regular stream is stalled when its newest sample is older than
        ``stall_s``, or than ``stall_samples`` sampling intervals for a slow
        stream, whichever is longer. Irregular streams never stall.
    on_stall : callable | None
        ``on_stall(name, age_s)`` is called once when a stream stalls.
    on_recover : callable | None
        ``on_recover(name)`` is called when a stalled stream flows again.
    interval_s : float
        Sleep between two rounds of pulls.
    window_s : float
        The measured rate is over this many seconds of the recent past.
    stall_samples : float
        See ``stall_s``.
    resolve_timeout : float
        Seconds to wait for streams given by name, and for each inlet to
        connect in :meth:`start`.

    Notes
    -----
    The callbacks run on the watch thread: they must return quickly (set a
    flag, put on a queue). An exception in a callback is logged and ignored
    so that supervision goes on. Sample times are mapped to this machine's
    LSL clock by liblsl's clock synchronisation, so the age of the last
    sample is comparable across streams from other machines.
    """

    def __init__(
        self,
        streams: Sequence[pylsl.StreamInfo | str],
        *,
        stall_s: float = 1.0,
        on_stall: Callable[[str, float], None] | None = None,
        on_recover: Callable[[str], None] | None = None,
        interval_s: float = 0.05,
        window_s: float = 3.0,
        stall_samples: float = 3.0,
        resolve_timeout: float = 5.0,
    ):
        for key, value in dict(
            stall_s=stall_s,
            interval_s=interval_s,
            window_s=window_s,
            stall_samples=stall_samples,
            resolve_timeout=resolve_timeout,
        ).items():
            if not (isinstance(value, int | float) and math.isfinite(value)) or (
                value <= 0
            ):
                raise ValueError(
                    f"StreamWatch {key} must be a positive number, got {value!r}"
                )
        if isinstance(streams, str | pylsl.StreamInfo) or not len(streams):
            raise ValueError(
                f"StreamWatch needs a non-empty list of streams, got {streams!r}"
            )
        self.stall_s = float(stall_s)
        self.interval_s = float(interval_s)
        self.window_s = float(window_s)
        self.resolve_timeout = float(resolve_timeout)
        self._on_stall = on_stall
        self._on_recover = on_recover
        infos = _resolve(list(streams), self.resolve_timeout)
        names = [info.name() for info in infos]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(
                f"StreamWatch streams must have unique names; repeated: {repeated}"
            )
        self._streams = [_watched(info, self, stall_samples) for info in infos]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def names(self) -> list[str]:
        """The watched streams' names, in the order given."""
        return [s.name for s in self._streams]

    @property
    def stalled(self) -> list[str]:
        """Names of the streams that are stalled now."""
        with self._lock:
            return [s.name for s in self._streams if s.stalled]

    def start(self) -> StreamWatch:
        """Connect every inlet, then start watching.

        Raises
        ------
        StreamsMissing
            If an inlet does not connect within ``resolve_timeout``.
        """
        if self._thread is not None:
            raise RuntimeError("StreamWatch can only be started once")
        # Each first clock-offset measure takes ~0.6 s: measure all at once.
        with ThreadPoolExecutor(len(self._streams)) as pool:
            list(pool.map(self._connect, self._streams))
        now = pylsl.local_clock()
        for s in self._streams:
            s.watch_start = now
            s.history.append((now, 0))
        self._thread = threading.Thread(
            target=self._run, name="stimtrain-streamwatch", daemon=True
        )
        self._thread.start()
        logger.info("watching streams %s", self.names)
        return self

    def _connect(self, s: _Watched) -> None:
        """Open the inlet and measure its clock offset once.

        Without the first measure, liblsl's clock synchronisation would
        block the watch thread's first pull for it.
        """
        try:
            s.inlet.open_stream(self.resolve_timeout)
            s.inlet.time_correction(self.resolve_timeout)
        except RuntimeError as exc:  # pylsl's TimeoutError or LostError
            raise StreamsMissing(
                f"could not connect to LSL stream {s.name!r} within "
                f"{self.resolve_timeout:g} s ({exc})"
            ) from None

    def stop(self) -> None:
        """Stop the thread and close the inlets (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for s in self._streams:
            s.inlet.close_stream()

    def __enter__(self) -> StreamWatch:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def health(self) -> list[dict]:
        """The health of each stream, for the console.

        Returns
        -------
        health : list of dict
            One per stream, in the order given: ``name``, ``type``,
            ``nominal_srate`` (Hz, 0 for irregular streams), ``srate`` (Hz
            measured over the last ``window_s``; None until there is a
            measure), ``age_s`` (seconds since the newest sample, by its LSL
            time; None before the first), ``n_samples`` received, and ``ok``
            (a regular stream has sent samples and is not stalled; an
            irregular one is always ok).
        """
        now = pylsl.local_clock()
        out = []
        with self._lock:
            for s in self._streams:
                age = None if s.last_time is None else now - s.last_time
                regular = s.nominal_srate > 0
                out.append(
                    dict(
                        name=s.name,
                        type=s.type,
                        nominal_srate=s.nominal_srate,
                        srate=_rate(s.history),
                        age_s=age,
                        n_samples=s.n_samples,
                        ok=not s.stalled and (s.n_samples > 0 or not regular),
                    )
                )
        return out

    # -- the thread ----------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                events = self._poll()
            except Exception:  # noqa: BLE001 - supervision must go on
                logger.exception("stream watch round failed")
                continue
            for callback, args in events:
                try:
                    callback(*args)
                except Exception:  # noqa: BLE001 - a bad callback must not stop us
                    logger.exception("stream watch callback %r failed", callback)

    def _poll(self) -> list[tuple[Callable, tuple]]:
        """Pull everything available; return the callbacks to make."""
        events = []
        for s in self._streams:
            n_new, newest = _drain(s)
            now = pylsl.local_clock()
            with self._lock:
                s.n_samples += n_new
                if n_new:
                    s.last_time = newest
                s.history.append((now, s.n_samples))
                while len(s.history) > 2 and s.history[1][0] <= now - self.window_s:
                    s.history.popleft()
                if s.nominal_srate <= 0:
                    continue
                age = now - (s.watch_start if s.last_time is None else s.last_time)
                if not s.stalled and age > s.threshold_s:
                    s.stalled = True
                    logger.warning(
                        "stream %r stalled: last sample %.3f s ago", s.name, age
                    )
                    if self._on_stall is not None:
                        events.append((self._on_stall, (s.name, age)))
                elif s.stalled and n_new and age <= s.threshold_s:
                    s.stalled = False
                    logger.warning("stream %r flows again", s.name)
                    if self._on_recover is not None:
                        events.append((self._on_recover, (s.name,)))
        return events


def _resolve(streams: list, timeout: float) -> list[pylsl.StreamInfo]:
    """StreamInfos for a list of infos and names (names resolved at once)."""
    for item in streams:
        if not isinstance(item, str | pylsl.StreamInfo):
            raise TypeError(
                f"StreamWatch streams must be pylsl.StreamInfo or names, got {item!r}"
            )
    names = [item for item in streams if isinstance(item, str)]
    found = (
        dict(zip(names, wait_for_streams(names, timeout), strict=True)) if names else {}
    )
    return [found[item] if isinstance(item, str) else item for item in streams]


def _watched(
    info: pylsl.StreamInfo, watch: StreamWatch, stall_samples: float
) -> _Watched:
    nominal = float(info.nominal_srate())
    threshold = watch.stall_s
    if nominal > 0:
        threshold = max(threshold, stall_samples / nominal)
    # Room for twice a round's worth of samples, so one pull usually drains.
    max_samples = max(64, math.ceil(2 * watch.interval_s * nominal))
    dtype = _NUMPY_FORMATS.get(info.channel_format())
    buffer = None
    if dtype is not None:
        buffer = np.empty((max_samples, info.channel_count()), dtype)
    inlet = pylsl.StreamInlet(
        info,
        max_buflen=max(2, math.ceil(watch.window_s)),
        recover=True,
        processing_flags=pylsl.proc_clocksync,
    )
    return _Watched(
        name=info.name(),
        type=info.type(),
        nominal_srate=nominal,
        threshold_s=threshold,
        inlet=inlet,
        buffer=buffer,
        max_samples=max_samples,
    )


def _drain(s: _Watched) -> tuple[int, float | None]:
    """Pull every sample available now; return their count and newest time."""
    n_total, newest = 0, None
    while True:
        # A numpy destination keeps liblsl from building a Python float per
        # value (a 64-channel 5 kHz EEG would otherwise cost real GIL time).
        _, stamps = s.inlet.pull_chunk(
            timeout=0.0, max_samples=s.max_samples, dest_obj=s.buffer, as_numpy=True
        )
        n = len(stamps)
        if n:
            n_total += n
            newest = float(stamps[-1])
        if n < s.max_samples:
            return n_total, newest


def _rate(history: deque) -> float | None:
    """Samples per second over the history of (time, count) pairs."""
    if len(history) < 2:
        return None
    (t0, n0), (t1, n1) = history[0], history[-1]
    if t1 - t0 <= 0:
        return None
    return (n1 - n0) / (t1 - t0)


class HealthFeed:
    """Copies the streams' health into the operator console twice a second."""

    def __init__(self, watch: StreamWatch, state: ConsoleState) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(watch, state), daemon=True, name="health-feed"
        )
        self._thread.start()

    def _run(self, watch: StreamWatch, state: ConsoleState) -> None:
        while not self._stop.wait(0.5):
            state.update(
                streams=[
                    StreamHealth(
                        name=h["name"],
                        nominal_rate=h["nominal_srate"],
                        measured_rate=h["srate"],
                        age_s=h["age_s"],
                        ok=h["ok"],
                    )
                    for h in watch.health()
                ]
            )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
