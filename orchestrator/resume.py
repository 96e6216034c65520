"""Resuming a session after a crash: what earlier runs did, read from their journals.

``stimtrain resume SESSION_DIR`` continues a session at its first unfinished
block, in a new run of the same session folder (nothing is overwritten). The
journals are fsynced per event, so they hold every block completed and every
pulse delivered up to the moment a run died, even after SIGKILL or power loss;
the pulse caps count those pulses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .journal import read_journal

_JOURNAL = re.compile(
    r"^sub-(?P<sub>[A-Za-z0-9]+)_ses-(?P<ses>[A-Za-z0-9]+)_run-(?P<run>\d+)_journal\.jsonl$"
)


@dataclass(frozen=True)
class ResumePoint:
    """Where a session stands, from the journals of all its runs.

    Attributes
    ----------
    session_dir : Path
        The session folder.
    participant, session : str
        BIDS labels.
    runs : tuple of int
        Run numbers found.
    protocol : str
        Protocol file the session ran (path as given to ``stimtrain run``).
    protocol_sha256 : str
        Its hash (file and includes) at the first run.
    thresholds : dict
        Thresholds used (``rmt``, ``amt`` in %MSO).
    rig : str
        Rig name (``sim``, ``sim-<model>`` or a rig file).
    completed_blocks : frozenset of int
        Blocks finished in any run.
    pulses_delivered : int
        Pulses delivered in all runs (also in blocks that did not finish).
    finished : bool
        Whether a run already completed every block.
    """

    session_dir: Path
    participant: str
    session: str
    runs: tuple[int, ...]
    protocol: str
    protocol_sha256: str
    thresholds: dict
    rig: str
    completed_blocks: frozenset[int]
    pulses_delivered: int
    finished: bool


def read_resume_point(session_dir: str | Path) -> ResumePoint:
    """Read every run's journal in a session folder.

    Raises
    ------
    ValueError
        When the folder holds no run, or runs of different protocols.
    """
    session_dir = Path(session_dir)
    journals = sorted(
        (int(m["run"]), p, m)
        for p in session_dir.glob("*_journal.jsonl")
        if (m := _JOURNAL.match(p.name))
    )
    if not journals:
        raise ValueError(f"{session_dir}: no run of a session here (no journal)")
    created: dict | None = None
    completed: set[int] = set()
    pulses = 0
    finished = False
    for run, path, _ in journals:
        entries = read_journal(path)
        first = next((e for e in entries if e.get("event") == "run_created"), None)
        if first is None:
            continue  # a run that died before it wrote anything
        if created is None:
            created = first
        elif first.get("protocol_sha256") != created.get("protocol_sha256"):
            raise ValueError(
                f"{path.name}: run {run} ran another protocol "
                f"({first.get('protocol_sha256', '?')[:12]} ≠ "
                f"{created.get('protocol_sha256', '?')[:12]}); resume refuses to mix"
            )
        for e in entries:
            kind = e.get("event")
            if kind == "pulse":
                pulses += 1
            elif kind == "block_end" and e.get("completed"):
                completed.add(int(e["block"]))
            elif kind == "session_end" and e.get("status") == "completed":
                finished = True
    if created is None:
        raise ValueError(f"{session_dir}: no run got as far as writing its plan")
    _, _, m = journals[0]
    return ResumePoint(
        session_dir=session_dir,
        participant=m["sub"],
        session=m["ses"],
        runs=tuple(run for run, _, _ in journals),
        protocol=created["protocol"],
        protocol_sha256=created["protocol_sha256"],
        thresholds=created.get("thresholds") or {},
        rig=created.get("rig", "sim"),
        completed_blocks=frozenset(completed),
        pulses_delivered=pulses,
        finished=finished,
    )
