"""Recording with the LabRecorder library: required LSL streams into one XDF file."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pylsl

logger = logging.getLogger("stimtrain.orchestrator.session.recording")


class StreamsMissing(RuntimeError):
    """Required streams were not found; the message lists what is visible."""


def wait_for_streams(names: list[str], timeout: float) -> list[pylsl.StreamInfo]:
    """Resolve LSL streams by name, waiting at most ``timeout`` seconds in all.

    One continuous resolver asks for every stream in repeated waves until the
    named ones have answered. liblsl sends its unicast wave only after the
    multicast round trip (0.5 s by default), and on this machine the multicast
    wave reaches a single outlet: a one-shot resolve with a short timeout
    misses most streams under load (1 session in 20 in the test suite did).

    Raises
    ------
    StreamsMissing
        Naming the missing streams and listing every stream that is visible.
    """
    deadline = time.monotonic() + timeout
    found: dict[str, pylsl.StreamInfo] = {}
    resolver = pylsl.ContinuousResolver(forget_after=max(5.0, timeout))
    while True:
        everything = resolver.results()
        for info in everything:
            if info.name() in names and info.name() not in found:
                found[info.name()] = info
        if len(found) == len(names) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    missing = [n for n in names if n not in found]
    if missing:
        visible = sorted(f"{i.name()} ({i.type()})" for i in everything)
        raise StreamsMissing(
            f"required LSL stream(s) not found within {timeout:g} s: "
            f"{', '.join(missing)}; visible streams: {', '.join(visible) or 'none'}"
        )
    return [found[n] for n in names]


class Recorder:
    """Record streams to an XDF file with the LabRecorder library.

    Parameters
    ----------
    path : Path
        The XDF file to write (must not exist).
    streams : list of pylsl.StreamInfo
        The streams to record.
    settle : float
        Seconds to wait after starting for every stream to be connected, so the
        first events of the session are not lost.
    """

    def __init__(
        self, path: Path, streams: list[pylsl.StreamInfo], settle: float = 1.0
    ):
        import labrecorder

        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(
                f"{self.path} exists; recordings are never overwritten"
            )
        self._rec = labrecorder.Recording(str(self.path), streams)
        self.streams = [s.name() for s in streams]
        logger.info("recording %s to %s", self.streams, self.path)
        time.sleep(settle)

    def stop(self, drain: float = 1.2) -> None:
        """Stop after ``drain`` seconds and close the file with its footer.

        LabRecorder writes buffered data about every 0.5 s and drops what is
        unwritten at ``stop()``; the simulated EEG also lags by 50 ms. The
        footer is written when the recording object is destroyed.
        """
        if self._rec is None:
            return
        time.sleep(drain)
        self._rec.stop()
        rec, self._rec = self._rec, None
        del rec
        logger.info("recording closed: %s", self.path)
