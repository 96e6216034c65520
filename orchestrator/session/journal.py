"""The journal: an append-only JSON-lines record of what was done, fsynced per event.

It is the ground truth after a crash: pulses delivered, blocks finished, the
reason a session stopped. Each line carries the LSL clock time and wall time.

A full disk must not cost the journal a line: each line is written whole or
not at all (a partial write is cut back), a reserve file set aside when the
journal opens is given up to make room for the last lines, and a line that
still cannot be written is kept in memory and written to a second copy on
another filesystem, and the owner is told at once (``on_failure``), so that
it stops stimulating.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pylsl

from stimtrain.journalfile import read_journal  # noqa: F401 - the journal's reader

logger = logging.getLogger(__name__)

#: Space set aside next to the journal for its last lines (and the summary):
#: given back when the disk is full. A stop record is a few hundred bytes.
RESERVE_BYTES = 256 * 1024
#: Session files are data: read and write for the owner, read for others.
FILE_MODE = 0o644


class Journal:
    """Append events to a JSON-lines file, each one flushed and fsynced.

    Parameters
    ----------
    path : Path
        The journal file (created if needed; never truncated).
    on_failure : callable | None
        Called once, with the error, the first time a line can't be written
        to ``path`` (the line then goes to the second copy, ``fallback``).
    reserve : bool
        Set aside :data:`RESERVE_BYTES` next to the journal for a full disk.
    """

    def __init__(
        self,
        path: Path,
        *,
        on_failure: Callable[[OSError], None] | None = None,
        reserve: bool = True,
    ):
        self.path = Path(path)
        self.on_failure = on_failure
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        self._fd: int | None = os.open(self.path, flags, FILE_MODE)
        self._lock = threading.Lock()
        self._reserve = self.path.with_name(self.path.name + ".reserve")
        self.error: OSError | None = None
        #: Lines that could not be written to ``path`` (also in ``fallback``).
        self.unwritten: list[str] = []
        self.fallback: Path | None = None
        if reserve:
            self._set_aside()

    def _set_aside(self) -> None:
        try:
            fd = os.open(self._reserve, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            return
        try:
            # Real bytes, not a sparse hole: the space must really be taken.
            os.write(fd, b"\0" * RESERVE_BYTES)
            os.fsync(fd)
        except OSError:
            self._reserve.unlink(missing_ok=True)
        finally:
            os.close(fd)

    def _give_back_reserve(self) -> bool:
        if not self._reserve.exists():
            return False
        self._reserve.unlink(missing_ok=True)
        return True

    def write(self, event: str, **fields) -> dict:
        """Append one event and make it durable before returning.

        Never raises for an I/O error: see the class description.
        """
        entry = {
            "event": event,
            "clock": pylsl.local_clock(),
            "wall": time.time(),
            **fields,
        }
        line = json.dumps(entry, default=str) + "\n"
        tell = None
        with self._lock:
            if self._fd is None:
                raise RuntimeError(f"journal {self.path} is closed")
            try:
                self._append(line.encode("utf-8"))
            except OSError as first:
                # Make room with the reserve and try once more.
                error = first
                if self._give_back_reserve():
                    try:
                        self._append(line.encode("utf-8"))
                        logger.warning("journal: disk full, reserve used (%s)", first)
                        return entry
                    except OSError as again:
                        error = again
                tell = self._failed(line, error)
        # Outside the lock: the owner's callback may well write to the journal.
        if tell is not None and self.on_failure is not None:
            try:
                self.on_failure(tell)
            except Exception:  # noqa: BLE001 - the owner's problem, not the line's
                logger.exception("journal on_failure callback failed")
        return entry

    def _append(self, data: bytes) -> None:
        """Write ``data`` whole, or cut the file back to where it was."""
        assert self._fd is not None
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            done = 0
            while done < len(data):
                done += os.write(self._fd, data[done:])
            os.fsync(self._fd)
        except OSError:
            try:
                os.ftruncate(self._fd, start)
            except OSError:
                pass
            raise

    def _failed(self, line: str, error: OSError) -> OSError | None:
        """Keep the line; return the error the first time (to tell the owner)."""
        self.unwritten.append(line)
        first = self.error is None
        if first:
            self.error = error
            logger.error("journal %s can't be written: %s", self.path, error)
        self._write_fallback(line)
        return error if first else None

    def _write_fallback(self, line: str) -> None:
        """The second copy, on the system's temporary filesystem."""
        try:
            if self.fallback is None:
                name = f"stimtrain-{os.getpid()}-{self.path.name}"
                self.fallback = Path(tempfile.gettempdir()) / name
            self._append_to(self.fallback, line)
        except OSError as exc:
            logger.error("journal: the second copy can't be written either: %s", exc)

    @staticmethod
    def _append_to(path: Path, line: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Close the file (later writes raise) and give back the reserve."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._give_back_reserve()
