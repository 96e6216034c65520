"""The session's LSL marker outlet: one JSON marker per event, stamped at the event."""

from __future__ import annotations

import threading

import pylsl

from stimtrain.vocabulary import MARKER_STREAM_PREFIX, MARKER_STREAM_TYPE, encode_marker


class MarkerOutlet:
    """A string marker stream for one session run.

    Parameters
    ----------
    name_suffix : str
        Appended to the stream name so parallel sessions don't collide.
    """

    def __init__(self, name_suffix: str):
        self.name = f"{MARKER_STREAM_PREFIX}-{name_suffix}"
        info = pylsl.StreamInfo(
            self.name,
            MARKER_STREAM_TYPE,
            1,
            pylsl.IRREGULAR_RATE,
            "string",
            self.name,
        )
        info.desc().append_child_value("vocabulary", "stimtrain 1")
        self.info = info
        self._outlet = pylsl.StreamOutlet(info)
        # Markers come from the runner, the device reader and the task: one
        # lock keeps pushes from interleaving.
        self._lock = threading.Lock()
        self.count = 0

    def push(self, event: str, timestamp: float | None = None, **fields) -> str:
        """Push one marker; ``timestamp`` is the LSL clock time of the event.

        Returns the marker text.
        """
        text = encode_marker(event, **fields)
        ts = pylsl.local_clock() if timestamp is None else float(timestamp)
        with self._lock:
            self._outlet.push_sample([text], ts)
            self.count += 1
        return text

    def close(self) -> None:
        """Destroy the outlet (after the recorder has stopped)."""
        self._outlet = None
