"""Reading a session's journal (JSON lines), in the shared layer.

The session writes the journal (:mod:`stimtrain.orchestrator.session.journal`); the
session's own checks, resume, the course status and the analysis read it back
through this one reader.
"""

from __future__ import annotations

import json
from pathlib import Path


def read_journal(path: str | Path) -> list[dict]:
    """Read a journal, skipping a torn last line left by a crash.

    A line that is not an event (not a JSON object, or not text) is skipped
    too.
    """
    entries = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
    return entries
