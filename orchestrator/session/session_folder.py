"""The session folder: ``<data root>/sub-<id>/ses-<n>/``, never overwritten.

Each run of a session gets the next free run number and every file it writes
carries ``sub-<id>_ses-<n>_run-<rr>_`` so that a second run (after a crash, or
by mistake) can never touch the first one's data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from stimtrain.sessionfiles import (
    PARTICIPANT_FOLDER,
    SESSION_FOLDER,
    parse_run_file,
    run_prefix,
    validate_label,
)
from stimtrain.taskfiles import trials_file_name


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
        return run_prefix(self.participant, self.session, self.run)

    def file(self, name: str) -> Path:
        """Path of one of this run's files, e.g. ``file("recording.xdf")``."""
        return self.path / f"{self.prefix}{name}"

    def task_tsv(self, block: int, task: str) -> Path:
        """Trials TSV of a task block (block numbers are 1-based in names)."""
        return self.file(trials_file_name(block, task))


def folder_identity(session_dir: str | Path) -> tuple[str, str]:
    """The participant and session a session folder's path names, checked.

    Raises
    ------
    ValueError
        When the path is not ``…/sub-<id>/ses-<n>`` of real folders (a
        symbolic link there could lead into another participant's data).
    """
    path = Path(session_dir).expanduser().absolute()
    if not path.is_dir():
        raise ValueError(f"{path}: not a folder")
    sub = PARTICIPANT_FOLDER.fullmatch(path.parent.name)
    ses = SESSION_FOLDER.fullmatch(path.name)
    if sub is None or ses is None:
        raise ValueError(
            f"{path}: not a session folder (expected <data root>/sub-<id>/ses-<n>)"
        )
    for part in (path.parent, path):
        if part.is_symlink():
            raise ValueError(
                f"{part}: is a symbolic link; session folders must be real folders "
                "(a link can lead into another participant's data)"
            )
    return sub[1], ses[1]


def run_files(session_dir: str | Path, name: str) -> dict[int, Path]:
    """Run number → the file ``name`` (e.g. ``journal.jsonl``) of each run.

    Raises
    ------
    ValueError
        When a session file in the folder belongs to another participant or
        session, or is not a regular file.
    """
    participant, session = folder_identity(session_dir)
    out = {}
    for path in sorted(Path(session_dir).iterdir()):
        found = parse_run_file(path.name)
        if found is None or found.name != name:
            continue
        if (found.participant, found.session) != (participant, session):
            raise ValueError(
                f"{path}: belongs to sub-{found.participant} ses-{found.session}, "
                f"not to this folder (sub-{participant} ses-{session})"
            )
        if path.is_symlink() or not path.is_file():
            raise ValueError(f"{path}: must be a regular file")
        out[found.run] = path
    return out


def new_run(root: str | Path, participant: str, session: str | int) -> SessionFolder:
    """Create the session folder and claim the next free run number.

    The run is claimed by creating its journal file exclusively, so two
    runners started at once can't take the same number.

    Raises
    ------
    ValueError
        A bad label, a data root that is not a writable folder, a symbolic
        link where the participant's or session's folder should be, or 99
        runs already there. Nothing is created then.
    """
    participant = validate_label(participant, "participant")
    session = validate_label(str(session), "session")
    root = Path(root).expanduser().resolve()
    folder = SessionFolder(root, participant, session, 1)
    for part in (folder.path.parent, folder.path):
        if part.is_symlink():
            raise ValueError(
                f"{part}: is a symbolic link; session folders must be real folders "
                "(a link can lead into another participant's data)"
            )
    if root.exists() and not root.is_dir():
        raise ValueError(f"{root}: the data root must be a folder")
    try:
        folder.path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(
            f"{folder.path}: cannot create the session folder ({exc.strerror})"
        ) from None
    for run in range(1, 100):
        candidate = SessionFolder(root, participant, session, run)
        try:
            fd = os.open(
                candidate.file("journal.jsonl"),
                os.O_CREAT | os.O_EXCL | os.O_WRONLY,
                0o644,
            )
        except FileExistsError:
            continue
        except OSError as exc:
            raise ValueError(
                f"{folder.path}: cannot write there ({exc.strerror})"
            ) from None
        os.close(fd)
        return candidate
    raise ValueError(f"{folder.path}: 99 runs already exist; start another session")


def write_new(path: Path, data: bytes | str) -> None:
    """Write a file that must not exist yet, and fsync it."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
