"""The journal: an append-only JSON-lines record of what was done, fsynced per event.

It is the ground truth after a crash: pulses delivered, blocks finished, the
reason a session stopped. Each line carries the LSL clock time and wall time.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pylsl


class Journal:
    """Append events to a JSON-lines file, each one flushed and fsynced.

    Parameters
    ----------
    path : Path
        The journal file (created if needed; never truncated).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self._lock = threading.Lock()

    def write(self, event: str, **fields) -> dict:
        """Append one event and make it durable before returning."""
        entry = {
            "event": event,
            "clock": pylsl.local_clock(),
            "wall": time.time(),
            **fields,
        }
        line = json.dumps(entry, default=str)
        with self._lock:
            if self._file.closed:
                raise RuntimeError(f"journal {self.path} is closed")
            self._file.write(line + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())
        return entry

    def close(self) -> None:
        """Close the file (later writes raise)."""
        with self._lock:
            if not self._file.closed:
                self._file.close()


def read_journal(path: str | Path) -> list[dict]:
    """Read a journal, skipping a torn last line left by a crash."""
    entries = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return entries
