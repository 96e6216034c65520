"""Resuming a session after a crash: what earlier runs did, read from their journals.

``stimtrain resume SESSION_DIR`` continues a session at its first unfinished
block, in a new run of the same session folder (nothing is overwritten). The
journals are fsynced per event, so they hold every block completed and every
pulse delivered up to the moment a run died, even after SIGKILL or power loss;
the pulse caps count those pulses.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from .journal import read_journal
from .session_folder import SessionFolder, folder_identity, run_files


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
    #: Thresholds a finished threshold block of an earlier run measured
    #: (``rmt``/``amt`` → %MSO): the blocks after it use them.
    measured: dict[str, float] = field(default_factory=dict)


def read_resume_point(session_dir: str | Path) -> ResumePoint:
    """Read every run's journal in a session folder.

    The folder must be what it says: ``…/sub-<id>/ses-<n>`` of real folders,
    every run's files and journal of that participant and session, and the
    first run's protocol copy as it was recorded.

    Raises
    ------
    ValueError
        When the folder is not a session folder, holds no run or another
        participant's or session's files, runs of different protocols, or a
        protocol copy that no longer matches its recorded hash.
    """
    session_dir = Path(session_dir)
    participant, session = folder_identity(session_dir)
    journals = sorted(run_files(session_dir, "journal.jsonl").items())
    if not journals:
        raise ValueError(f"{session_dir}: no run of a session here (no journal)")
    created: dict | None = None
    completed: set[int] = set()
    results: dict[int, dict] = {}
    pulses = 0
    finished = False
    for run, path in journals:
        entries = read_journal(path)
        first = next((e for e in entries if e.get("event") == "run_created"), None)
        if first is None:
            continue  # a run that died before it wrote anything
        # (A journal that does not say whose it is is judged by its name.)
        whose = (
            first.get("participant", participant),
            str(first.get("session", session)),
        )
        if whose != (participant, session):
            raise ValueError(
                f"{path}: its journal is of sub-{whose[0]} ses-{whose[1]}, not of "
                f"this folder (sub-{participant} ses-{session})"
            )
        if created is None:
            created = first
            _check_protocol_copy(session_dir, participant, session, run, first)
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
            elif kind == "threshold_result" and e.get("converged"):
                results[int(e["block"])] = e
    if created is None:
        raise ValueError(f"{session_dir}: no run got as far as writing its plan")
    # Every block done counts as finished even when the last line (the
    # session's end) was torn by a crash: a resume would run nothing.
    n_blocks = _planned_blocks(session_dir, participant, session, journals[-1][0])
    if n_blocks is not None and completed >= set(range(n_blocks)):
        finished = True
    return ResumePoint(
        session_dir=session_dir,
        participant=participant,
        session=session,
        runs=tuple(run for run, _ in journals),
        protocol=created["protocol"],
        protocol_sha256=created["protocol_sha256"],
        thresholds=created.get("thresholds") or {},
        rig=created.get("rig", "sim"),
        completed_blocks=frozenset(completed),
        pulses_delivered=pulses,
        finished=finished,
        measured={
            r["measures"]: float(r["value"])
            for block, r in sorted(results.items())
            if block in completed
        },
    )


def _check_protocol_copy(
    session_dir: Path, participant: str, session: str, run: int, created: dict
) -> None:
    """The first run's protocol copy must still be what the run recorded."""
    folder = SessionFolder(session_dir.parent.parent, participant, session, run)
    copy = folder.file("protocol.yaml")
    recorded = created.get("protocol_copy_sha256")
    if recorded is None or not copy.is_file():
        return
    now = hashlib.sha256(copy.read_bytes()).hexdigest()
    if now != recorded:
        raise ValueError(
            f"{copy}: the protocol copy changed since run {run} (sha256 "
            f"{recorded[:12]}… recorded, {now[:12]}… now); resume refuses a "
            "session whose record was edited"
        )


def _planned_blocks(
    session_dir: Path, participant: str, session: str, run: int
) -> int | None:
    folder = SessionFolder(session_dir.parent.parent, participant, session, run)
    try:
        plan = json.loads(folder.file("plan.json").read_text(encoding="utf-8"))
        return len(plan["blocks"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
