"""Session-file naming: labels, folders and run files, read by every room.

A session folder is ``<data root>/sub-<id>/ses-<n>/``; each run's files are
named ``sub-<id>_ses-<n>_run-<rr>_<name>``. The session writes them, resume
and courses read them back, the analysis finds its runs by them: the one
parser of these names is here, in the shared layer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# BIDS labels are alphanumeric; this also makes path traversal through an ID
# ("../x", "a/b") impossible. Matched in full: "$" would let a final newline in.
_LABEL = r"[A-Za-z0-9]{1,64}"
LABEL = re.compile(_LABEL)
#: ``sub-<id>`` and ``ses-<n>`` folder names.
PARTICIPANT_FOLDER = re.compile(rf"sub-({_LABEL})")
SESSION_FOLDER = re.compile(rf"ses-({_LABEL})")
#: ``sub-<id>_ses-<n>_run-<rr>_<name>``.
RUN_FILE = re.compile(
    rf"sub-(?P<sub>{_LABEL})_ses-(?P<ses>{_LABEL})_run-(?P<run>\d{{2,}})_(?P<name>[^/]+)"
)


@dataclass(frozen=True)
class RunFile:
    """What a session file's name says: whose, which run, which file."""

    participant: str
    session: str
    run: int
    name: str


def parse_run_file(name: str) -> RunFile | None:
    """Read a session file's name (``sub-01_ses-1_run-02_journal.jsonl``).

    Parameters
    ----------
    name : str
        A file name (no folder).

    Returns
    -------
    RunFile | None
        None when the name is not a session file's, matched in full.
    """
    m = RUN_FILE.fullmatch(name)
    if m is None:
        return None
    return RunFile(m["sub"], m["ses"], int(m["run"]), m["name"])


def run_prefix(participant: str, session: str, run: int) -> str:
    """The file-name prefix of one run: ``sub-<id>_ses-<n>_run-<rr>_``."""
    return f"sub-{participant}_ses-{session}_run-{run:02d}_"


def validate_label(value: str, what: str) -> str:
    """Return ``value`` if it is a safe BIDS label, else raise ValueError.

    Parameters
    ----------
    value : str
        The label as given.
    what : str
        Its name in the message (``participant``, ``session``).
    """
    if not isinstance(value, str) or not LABEL.fullmatch(value):
        raise ValueError(
            f"{what}: must be 1-64 letters or digits (a BIDS label) (got {value!r})"
        )
    return value
