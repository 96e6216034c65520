"""What the recording and LSL libraries print, kept in the session folder.

LabRecorder's C++ code, liblsl and PsychoPy write to the process's standard
output and error themselves (file descriptors 1 and 2): "Closing the file.",
"Offsets thread is finished", reconnection errors with source paths, mixed
into the operator's progress lines. During a session those descriptors point
to a log file in the session folder; Python's own output (progress lines,
the live console, errors) keeps going to the terminal through copies of the
original descriptors. Child processes (the device process, the simulated
rig) inherit the log.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def library_output_to(path: Path) -> Iterator[Path]:
    """Send what is written to file descriptors 1 and 2 to ``path``.

    ``sys.stdout`` and ``sys.stderr`` are replaced by streams on copies of the
    original descriptors for the duration, so Python's own output still
    reaches the terminal; everything is put back on exit.

    Parameters
    ----------
    path : Path
        The log file (appended to; created with mode 0644).
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    old_out, old_err = sys.stdout, sys.stderr
    try:
        for fd in (1, 2):
            os.dup2(log, fd)
        sys.stdout = _stream(saved[1], old_out)
        sys.stderr = _stream(saved[2], old_err)
        # Python's own log lines are for the operator: their handlers follow.
        moved = _move_handlers({id(old_out): sys.stdout, id(old_err): sys.stderr})
        yield path
    finally:
        moved = locals().get("moved", [])
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        for handler, stream in moved:
            handler.setStream(stream)
        sys.stdout, sys.stderr = old_out, old_err
        for fd in (1, 2):
            os.dup2(saved[fd], fd)
            os.close(saved[fd])
        os.close(log)


def _move_handlers(streams: dict[int, object]) -> list[tuple[logging.Handler, object]]:
    """Point the root logger's console handlers at the new streams.

    Returns each moved handler with the stream to give back.
    """
    moved = []
    for handler in logging.getLogger().handlers:
        stream = getattr(handler, "stream", None)
        if isinstance(handler, logging.StreamHandler) and id(stream) in streams:
            moved.append((handler, handler.setStream(streams[id(stream)])))
    return moved


def _stream(fd: int, like) -> io.TextIOWrapper:
    """A line-buffered text stream on ``fd`` with ``like``'s encoding."""
    return io.TextIOWrapper(
        os.fdopen(os.dup(fd), "wb", buffering=0),
        encoding=getattr(like, "encoding", None) or "utf-8",
        errors="replace",
        line_buffering=True,
        write_through=True,
    )
