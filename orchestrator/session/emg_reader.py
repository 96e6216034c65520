"""The live EMG: one channel of an LSL stream, read as the recorder reads it.

Threshold and hotspot blocks need each pulse's MEP within a fraction of a
second. The reader opens its own inlet on the stream the recorder also writes
(any amplifier on LSL), keeps the last seconds of one channel on this
machine's LSL clock, and hands out the samples around a pulse once they have
arrived.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque

import numpy as np
import pylsl

logger = logging.getLogger("stimtrain.orchestrator.session.emg_reader")

#: Channel units an amplifier may declare, as factors to µV.
UNITS_TO_UV = {
    "microvolts": 1.0,
    "microvolt": 1.0,
    "uv": 1.0,
    "µv": 1.0,
    "millivolts": 1e3,
    "mv": 1e3,
    "volts": 1e6,
    "v": 1e6,
}


class EMGUnavailable(RuntimeError):
    """The EMG stream or channel is not there, or its samples stopped."""


class EMGReader:
    """One EMG channel of an LSL stream, kept for the last ``keep_s`` seconds.

    Parameters
    ----------
    stream : str
        The LSL stream's name.
    channel : str
        The channel's label in the stream's description.
    keep_s : float
        How much of the past is kept.
    """

    def __init__(self, stream: str, channel: str, *, keep_s: float = 20.0) -> None:
        self.stream = stream
        self.channel = channel
        self.keep_s = keep_s
        self.sfreq = 0.0
        self._inlet: pylsl.StreamInlet | None = None
        self._index = 0
        self._scale = 1.0
        self._chunks: deque[tuple[np.ndarray, np.ndarray]] = deque()
        self._newest = -np.inf
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> EMGReader:
        """Find the stream and the channel and start reading.

        Raises
        ------
        EMGUnavailable
            When the stream is not found in ``timeout`` or has no such channel.
        """
        found = pylsl.resolve_byprop("name", self.stream, 1, timeout)
        if not found:
            raise EMGUnavailable(f"EMG stream {self.stream!r} not found")
        # A stream from this machine is stamped on this clock already: LSL's
        # clock-offset estimate there is 0 plus the noise of a round trip,
        # several ms on a busy machine, which would shift every MEP window
        # against the recording (whose stamps are the raw ones).
        same_host = found[0].hostname() == socket.gethostname()
        inlet = pylsl.StreamInlet(
            found[0],
            max_buflen=int(self.keep_s) + 1,
            processing_flags=0 if same_host else pylsl.proc_clocksync,
        )
        info = inlet.info()
        labels, units = _channels(info)
        if self.channel not in labels:
            inlet.close_stream()
            raise EMGUnavailable(
                f"EMG stream {self.stream!r} has no channel {self.channel!r} "
                f"(channels: {', '.join(labels) or 'none described'})"
            )
        self._index = labels.index(self.channel)
        unit = units[self._index].strip().lower()
        self._scale = UNITS_TO_UV.get(unit, 1.0)
        if unit and unit not in UNITS_TO_UV:
            logger.warning("EMG channel unit %r unknown: read as µV", unit)
        self.sfreq = info.nominal_srate()
        self._inlet = inlet
        self._thread = threading.Thread(target=self._read, daemon=True, name="emg")
        self._thread.start()
        return self

    def _read(self) -> None:
        inlet = self._inlet
        while not self._stop.is_set():
            try:
                data, stamps = inlet.pull_chunk(timeout=0.05)
            except pylsl.LostError:
                logger.warning("EMG stream %s lost", self.stream)
                return
            if not stamps:
                continue
            values = np.asarray(data, dtype=float)[:, self._index] * self._scale
            stamps = np.asarray(stamps, dtype=float)
            with self._cond:
                self._chunks.append((stamps, values))
                self._newest = float(stamps[-1])
                while (
                    self._chunks and self._chunks[0][0][-1] < self._newest - self.keep_s
                ):
                    self._chunks.popleft()
                self._cond.notify_all()

    def around(
        self, t: float, before: float, after: float, timeout: float = 2.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """The samples from ``t - before`` to ``t + after`` (clock time ``t``).

        Waits until the sample after ``t + after`` has arrived.

        Returns
        -------
        times, values : ndarray
            Seconds from ``t``, and µV.

        Raises
        ------
        EMGUnavailable
            When those samples do not arrive within ``timeout`` s.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._newest < t + after:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise EMGUnavailable(
                        f"EMG stream {self.stream!r}: no samples up to "
                        f"{after * 1e3:g} ms after the pulse within {timeout:g} s"
                    )
                self._cond.wait(left)
            chunks = list(self._chunks)
        stamps = np.concatenate([c[0] for c in chunks])
        values = np.concatenate([c[1] for c in chunks])
        keep = (stamps >= t - before) & (stamps <= t + after)
        return stamps[keep] - t, values[keep]

    def close(self) -> None:
        """Stop reading and close the inlet."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
        if self._inlet is not None:
            self._inlet.close_stream()

    def __enter__(self) -> EMGReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _channels(info: pylsl.StreamInfo) -> tuple[list[str], list[str]]:
    """Labels and units of a stream's channels, from its description."""
    labels, units = [], []
    ch = info.desc().child("channels").child("channel")
    while not ch.empty():
        labels.append(ch.child_value("label"))
        units.append(ch.child_value("unit"))
        ch = ch.next_sibling()
    return labels, units
