"""The recording's disk, watched like a required stream: free space and growth.

A session whose recording can no longer be written must not go on
stimulating. Before the start, the free space is checked against what the
plan will record (its duration times the recorded streams' data rate, with a
margin); during the run a thread checks the free space and that the XDF file
keeps growing, and calls the owner back once when either fails, early enough
that the stimulation stops while the recording still has room.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pylsl

logger = logging.getLogger(__name__)

#: Bytes per value of each LSL channel format (strings: a short marker).
_VALUE_BYTES = {
    pylsl.cf_float32: 4,
    pylsl.cf_double64: 8,
    pylsl.cf_int32: 4,
    pylsl.cf_int16: 2,
    pylsl.cf_int8: 1,
    pylsl.cf_int64: 8,
    pylsl.cf_string: 200,
}
#: An irregular stream (markers) is counted at this many bytes per second.
IRREGULAR_BYTES_PER_S = 2_000.0
#: Room asked for beyond the estimate: XDF chunk overhead, clock offsets,
#: a late end, the summary.
MARGIN = 1.5
#: Stimulation stops while at least this many seconds of recording still fit
#: on the disk, and never with less than :data:`MIN_FREE_BYTES` free.
HEADROOM_S = 10.0
MIN_FREE_BYTES = 5 * 1024**2
#: The XDF file must grow at least once in this many seconds (the recording
#: library writes about every half second).
GROWTH_STALL_S = 3.0


def recording_rate(streams: Sequence[pylsl.StreamInfo]) -> float:
    """Bytes per second the recording of ``streams`` writes, estimated.

    Each sample costs its values plus an 8-byte timestamp.
    """
    total = 0.0
    for info in streams:
        rate = info.nominal_srate()
        if rate <= 0:
            total += IRREGULAR_BYTES_PER_S
            continue
        value = _VALUE_BYTES.get(info.channel_format(), 8)
        total += rate * (info.channel_count() * value + 9)
    return total


def min_free_bytes(rate: float) -> int:
    """Free space below which stimulation stops (see :data:`HEADROOM_S`)."""
    return int(max(MIN_FREE_BYTES, HEADROOM_S * rate))


def mb(n: float) -> str:
    """Bytes for people: ``12.3 MB``."""
    return f"{n / 1e6:.1f} MB"


def free_space_problem(
    folder: Path, duration_s: float, rate: float, *, free: int | None = None
) -> str | None:
    """Why the disk of ``folder`` can't hold the recording, or None.

    Parameters
    ----------
    folder : Path
        The session folder.
    duration_s : float
        The plan's duration.
    rate : float
        Bytes per second (:func:`recording_rate`).
    free : int | None
        Free bytes (measured when None).
    """
    if free is None:
        free = shutil.disk_usage(folder).free
    need = duration_s * rate * MARGIN + min_free_bytes(rate)
    if free >= need:
        return None
    return (
        f"not enough free space for the recording on {folder}: about "
        f"{mb(need)} needed ({duration_s / 60:.1f} min at {mb(rate)}/s, with a "
        f"{(MARGIN - 1) * 100:.0f} % margin and {mb(min_free_bytes(rate))} "
        f"kept free), {mb(free)} free"
    )


class DiskWatch:
    """Check the free space and the recording's growth from a thread.

    Parameters
    ----------
    recording : Path
        The XDF file being written.
    rate : float
        Bytes per second the recording writes.
    on_failure : callable
        ``on_failure(reason)``, called once, on the watch thread.
    interval_s : float
        Seconds between two checks.
    """

    def __init__(
        self,
        recording: Path,
        rate: float,
        on_failure: Callable[[str], None],
        *,
        interval_s: float = 0.2,
        growth_stall_s: float = GROWTH_STALL_S,
    ):
        self.recording = Path(recording)
        self.min_free = min_free_bytes(rate)
        self.on_failure = on_failure
        self.interval_s = interval_s
        self.growth_stall_s = growth_stall_s
        self.failure: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> DiskWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop watching (the recording is closing)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)

    def check(self, size: int, grown_at: float, now: float) -> str | None:
        """What is wrong now, or None (one round of the watch)."""
        try:
            free = shutil.disk_usage(self.recording.parent).free
        except OSError as exc:
            return f"the recording's disk can't be read: {exc}"
        if free < self.min_free:
            return (
                f"the recording's disk is nearly full: {mb(free)} free, "
                f"{mb(self.min_free)} needed to go on recording"
            )
        if now - grown_at > self.growth_stall_s:
            return (
                f"the recording stopped growing ({self.recording.name}: "
                f"{size} bytes for {now - grown_at:.1f} s)"
            )
        return None

    def _size(self) -> int:
        try:
            return os.stat(self.recording).st_size
        except OSError:
            return -1

    def _run(self) -> None:
        size, grown_at = self._size(), time.monotonic()
        while not self._stop.wait(self.interval_s):
            now = time.monotonic()
            new = self._size()
            if new > size:
                size, grown_at = new, now
            reason = self.check(size, grown_at, now)
            if reason is None:
                continue
            self.failure = reason
            logger.error("recording: %s", reason)
            try:
                self.on_failure(reason)
            except Exception:  # noqa: BLE001 - logged; the watch has done its job
                logger.exception("disk watch callback failed")
            return
