"""The session folder as the analysis sees it: runs, file prefixes, labels.

A session folder is ``<data>/sub-<id>/ses-<n>/``; each run's files start with
``sub-<id>_ses-<n>_run-<rr>_`` (named in ``stimtrain/sessionfiles.py``).
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

from stimtrain.sessionfiles import (
    PARTICIPANT_FOLDER,
    SESSION_FOLDER,
    parse_run_file,
)

__all__ = ["InputError", "find_runs", "find_run", "run_prefix", "session_labels"]


class InputError(ValueError):
    """Input an analysis cannot use; ``str()`` is ``<path>: <what is wrong>``.

    Parameters
    ----------
    path : path-like
        The file or folder at fault.
    reason : str | Exception
        What is wrong with it (an exception's message is used; a leading
        repetition of the path is dropped).
    """

    def __init__(self, path: str | PathLike, reason) -> None:
        self.path = Path(path)
        text = str(reason)
        if isinstance(reason, OSError) and reason.strerror:
            text = reason.strerror
        elif isinstance(reason, UnicodeDecodeError):
            text = f"undecodable byte at position {reason.start} ({reason.reason})"
        for lead in (f"{self.path}: ", f"{self.path} "):
            if text.startswith(lead):
                text = text[len(lead) :]
        self.reason = text or type(reason).__name__
        super().__init__(f"{self.path}: {self.reason}")


_SUFFIX = "recording.xdf"


def find_runs(folder: str | PathLike) -> dict[int, Path]:
    """Return every run's XDF file in a session folder.

    Parameters
    ----------
    folder : path-like
        A session folder.

    Returns
    -------
    runs : dict
        Run number to ``..._run-<rr>_recording.xdf``, in run order.
    """
    runs = {}
    for f in Path(folder).glob(f"*_run-*_{_SUFFIX}"):
        found = parse_run_file(f.name)
        if found is not None and found.name == _SUFFIX:
            runs[found.run] = f
    return dict(sorted(runs.items()))


def find_run(path: str | PathLike, run: int | None = None) -> Path:
    """Return the XDF file of one run of a session folder.

    Parameters
    ----------
    path : path-like
        A session folder (``sub-<id>/ses-<n>/``) or an ``.xdf`` file.
    run : int | None
        Run number; ``None`` takes the highest run in the folder.

    Returns
    -------
    Path
        The ``..._run-<rr>_recording.xdf`` file (or ``path`` itself if it is
        a file).
    """
    path = Path(path)
    if path.is_file():
        if run is not None and parse_run_file(path.name) is None:
            raise FileNotFoundError(f"{path} is one file: --run {run} does not apply")
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"No session folder or XDF file at {path}")
    runs = find_runs(path)
    if not runs:
        raise FileNotFoundError(
            f"No *_run-<rr>_{_SUFFIX} in {path}: not a session folder"
        )
    if run is None:
        return runs[max(runs)]
    if run not in runs:
        raise FileNotFoundError(f"No run {run} in {path}; runs: {sorted(runs)}")
    return runs[run]


def run_prefix(xdf: str | PathLike) -> str:
    """The run's file prefix (``sub-01_ses-1_run-01_``), or the stem + ``_``.

    Parameters
    ----------
    xdf : path-like
        A run's recording.

    Returns
    -------
    str
    """
    name = Path(xdf).name
    if name.endswith(_SUFFIX) and name != _SUFFIX:
        return name[: -len(_SUFFIX)]
    return Path(xdf).stem + "_"


def session_labels(folder: str | PathLike) -> tuple[str, str]:
    """Return the (participant, session) labels of a session folder.

    Parameters
    ----------
    folder : path-like
        ``<root>/sub-<id>/ses-<n>/``.

    Returns
    -------
    participant, session : str
    """
    folder = Path(folder)
    sub = PARTICIPANT_FOLDER.fullmatch(folder.parent.name)
    ses = SESSION_FOLDER.fullmatch(folder.name)
    if sub is None or ses is None:
        raise ValueError(
            f"session folder must be <root>/sub-<id>/ses-<n> (got {folder})"
        )
    return sub[1], ses[1]
