"""The session folder: ``<data root>/sub-<id>/ses-<n>/``, never overwritten.

Each run of a session gets the next free run number and every file it writes
carries ``sub-<id>_ses-<n>_run-<rr>_`` so that a second run (after a crash, or
by mistake) can never touch the first one's data.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from stimtrain.taskfiles import trials_file_name

# BIDS labels are alphanumeric; this also makes path traversal through an ID
# ("../x", "a/b") impossible.
_LABEL = re.compile(r"^[A-Za-z0-9]{1,64}$")


def validate_label(value: str, what: str) -> str:
    """Return ``value`` if it is a safe BIDS label, else raise ValueError."""
    if not isinstance(value, str) or not _LABEL.match(value):
        raise ValueError(
            f"{what}: must be 1-64 letters or digits (a BIDS label) (got {value!r})"
        )
    return value


@dataclass(frozen=True)
class SessionFolder:
    """Paths of one run of one session."""

    root: Path
    participant: str
    session: str
    run: int

    @property
    def path(self) -> Path:
        """The session folder."""
        return self.root / f"sub-{self.participant}" / f"ses-{self.session}"

    @property
    def prefix(self) -> str:
        """File-name prefix of this run."""
        return f"sub-{self.participant}_ses-{self.session}_run-{self.run:02d}_"

    def file(self, name: str) -> Path:
        """Path of one of this run's files, e.g. ``file("recording.xdf")``."""
        return self.path / f"{self.prefix}{name}"

    def task_tsv(self, block: int, task: str) -> Path:
        """Trials TSV of a task block (block numbers are 1-based in names)."""
        return self.file(trials_file_name(block, task))


def new_run(root: str | Path, participant: str, session: str | int) -> SessionFolder:
    """Create the session folder and claim the next free run number.

    The run is claimed by creating its journal file exclusively, so two
    runners started at once can't take the same number.
    """
    participant = validate_label(participant, "participant")
    session = validate_label(str(session), "session")
    root = Path(root).expanduser().resolve()
    folder = SessionFolder(root, participant, session, 1)
    folder.path.mkdir(parents=True, exist_ok=True)
    for run in range(1, 100):
        candidate = SessionFolder(root, participant, session, run)
        try:
            fd = os.open(
                candidate.file("journal.jsonl"), os.O_CREAT | os.O_EXCL | os.O_WRONLY
            )
        except FileExistsError:
            continue
        os.close(fd)
        return candidate
    raise RuntimeError(f"{folder.path}: 99 runs already exist")


def write_new(path: Path, data: bytes | str) -> None:
    """Write a file that must not exist yet, and fsync it."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
