"""Where a participant stands in a course, read from their session folders.

:func:`course_status` reads the participant's session folders (journals and
summaries, which survive a crash) and says what was done, what is due and what
carries over to the next session; :func:`participant_pulses_on` counts the
pulses delivered on one calendar day across every session, for the safety
check's per-day cap.

Slightly longer than most: reading the runs and judging the course's windows
share one reading of the journals.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stimtrain.journalfile import read_journal
from stimtrain.sessionfiles import parse_run_file, validate_label

from ..language.course_file import Course, CourseSession, load_course

logger = logging.getLogger("stimtrain.orchestrator.session.course")

_DAY_S = 86400.0


# -- what the session folders say ------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """One run of a session, as its journal and summary tell it.

    Attributes
    ----------
    session : str
        The session label.
    run : int
        The run number.
    started : datetime.datetime
        Local time of the journal's first event (the file's time if empty).
    status : str
        The summary's status (``completed``, ``aborted``…), else the
        journal's ``session_end`` status, else ``no summary`` (a crash).
    pulses : int
        Pulses delivered, counted in the journal (the summary's count if larger).
    protocol_sha256 : str or None
        Hash of the protocol text that was run.
    task_levels : dict
        Task name → level reached (the summary's ``task_levels``).
    """

    session: str
    run: int
    started: dt.datetime
    status: str
    pulses: int
    protocol_sha256: str | None
    task_levels: dict[str, Any]


def _wall(entry: dict) -> float | None:
    """The entry's wall time if it is a usable time stamp (a torn file may lie)."""
    wall = entry.get("wall")
    if isinstance(wall, bool) or not isinstance(wall, (int, float)):
        return None
    try:
        dt.datetime.fromtimestamp(wall)
    except (OverflowError, OSError, ValueError):
        return None
    return float(wall)


def _pulse_walls(entries: list[dict], fallback: float) -> list[float]:
    """Wall-clock time of every pulse in a journal's entries."""
    walls = []
    last = fallback
    for entry in entries:
        wall = _wall(entry)
        if wall is not None:
            last = wall
        if entry.get("event") == "pulse":
            # An entry without a readable time happened after the one before it.
            walls.append(last)
    return walls


def _read_entries(journal: Path) -> list[dict]:
    return [e for e in read_journal(journal) if isinstance(e, dict)]


def _journals(data_root: Path, participant: str, session: str = "*") -> list[Path]:
    """The participant's journals: named for them, and theirs by their content.

    A journal of another participant placed (or renamed) into the folder is
    left out, with a warning: it must not count toward this participant's caps.
    """
    folder = Path(data_root).expanduser() / f"sub-{participant}"
    pattern = f"ses-{session}/sub-{participant}_ses-{session}_run-*_journal.jsonl"
    out = []
    for path in sorted(folder.glob(pattern)):
        if parse_run_file(path.name) is None or not path.is_file():
            continue
        created = next(
            (e for e in _read_entries(path) if e.get("event") == "run_created"), {}
        )
        whose = created.get("participant", participant)
        if whose != participant:
            logger.warning(
                "%s: a journal of participant %r, not %r; not counted",
                path,
                whose,
                participant,
            )
            continue
        out.append(path)
    return out


def _read_summary(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        logger.warning("%s: unreadable summary (%s); using the journal", path, exc)
        return {}
    return summary if isinstance(summary, dict) else {}


def session_runs(
    data_root: str | Path, participant: str, session: str
) -> list[RunRecord]:
    """Read every run of one session of a participant, in run order.

    Parameters
    ----------
    data_root : str | Path
        Root of the data folders.
    participant, session : str
        BIDS labels.

    Returns
    -------
    list of RunRecord
        Empty when the session was never started.
    """
    participant = validate_label(participant, "participant")
    session = validate_label(str(session), "session")
    runs = []
    for journal in _journals(Path(data_root), participant, session):
        found = parse_run_file(journal.name)
        entries = _read_entries(journal)
        mtime = journal.stat().st_mtime
        start = next((w for w in map(_wall, entries) if w is not None), mtime)
        summary = _read_summary(
            journal.with_name(journal.name.replace("_journal.jsonl", "_summary.json"))
        )
        ends = [e for e in entries if e.get("event") == "session_end"]
        status = summary.get("status") or (ends[-1].get("status") if ends else None)
        pulses = len(_pulse_walls(entries, start))
        reported = summary.get("pulses_delivered")
        if isinstance(reported, int) and reported != pulses:
            logger.warning(
                "%s: summary says %d pulses, journal has %d; counting %d",
                journal,
                reported,
                pulses,
                max(reported, pulses),
            )
            pulses = max(reported, pulses)
        created = next((e for e in entries if e.get("event") == "run_created"), {})
        levels = summary.get("task_levels")
        runs.append(
            RunRecord(
                session=session,
                run=found.run,
                started=dt.datetime.fromtimestamp(start),
                status=str(status or "no summary"),
                pulses=pulses,
                protocol_sha256=summary.get("protocol_sha256")
                or created.get("protocol_sha256"),
                task_levels=dict(levels) if isinstance(levels, dict) else {},
            )
        )
    return sorted(runs, key=lambda run: run.run)


def participant_pulses_on(
    data_root: str | Path, participant: str, date: dt.date
) -> int:
    """Count the pulses a participant received on one calendar day.

    Every run of every session of the participant counts, each pulse on the
    local date of its journal entry, so a run that crosses midnight is split
    and a crashed run (a torn last journal line) still counts what it did.

    Parameters
    ----------
    data_root : str | Path
        Root of the data folders.
    participant : str
        BIDS label.
    date : datetime.date
        The local calendar date.

    Returns
    -------
    int
        Pulses delivered on ``date``.
    """
    participant = validate_label(participant, "participant")
    total = 0
    for journal in _journals(Path(data_root), participant):
        walls = _pulse_walls(_read_entries(journal), journal.stat().st_mtime)
        total += sum(1 for w in walls if dt.date.fromtimestamp(w) == date)
    return total


# -- where a participant stands -------------------------------------------------
@dataclass(kw_only=True)
class SessionStatus:
    """Where one course session stands for a participant.

    Attributes
    ----------
    session : CourseSession
        The course session.
    status : str
        One of :data:`STATUSES`: ``done`` (a run completed), ``partial``
        (started, no run completed), ``due`` (today is in its window),
        ``upcoming`` (before its window), ``overdue`` (after its window and
        nothing later started) or ``missed`` (after its window and a later
        session started).
    target, earliest, latest : datetime.date
        Its day and the window around it.
    date : datetime.date or None
        When it ran (the completed run, else the first run).
    on_time : bool or None
        Whether it ran within its window.
    runs : list of RunRecord
        Every run of the session.
    pulses : int
        Pulses delivered across its runs.
    note : str
        Anything the operator should know (e.g. another protocol was run).
    """

    session: CourseSession
    status: str
    target: dt.date
    earliest: dt.date
    latest: dt.date
    date: dt.date | None = None
    on_time: bool | None = None
    runs: list[RunRecord]
    pulses: int = 0
    note: str = ""

    @property
    def label(self) -> str:
        """The session label."""
        return self.session.label


@dataclass(kw_only=True)
class CourseStatus:
    """Where a participant stands in a course.

    Attributes
    ----------
    course : Course
        The course.
    participant : str
        The participant's label.
    data_root : Path
        Where the session folders were read.
    today : datetime.date
        The date the status is for.
    anchor : datetime.datetime
        Start of the first session; when it has not run, a projection (today,
        noon) and ``projected`` is true.
    projected : bool
        Whether the dates assume the first session runs today.
    sessions : list of SessionStatus
        One per course session, in course order.
    next : SessionStatus or None
        The first session neither done nor missed.
    task_levels : dict
        Task name → latest level reached (when the course carries levels over).
    levels_from : dict
        Task name → the session whose level carries over.
    pulses_today : int
        Pulses delivered today across every session of the participant.
    """

    course: Course
    participant: str
    data_root: Path
    today: dt.date
    anchor: dt.datetime
    projected: bool
    sessions: list[SessionStatus]
    next: SessionStatus | None
    task_levels: dict[str, Any]
    levels_from: dict[str, str]
    pulses_today: int

    @property
    def due(self) -> SessionStatus | None:
        """The session to run now (due, overdue or to be resumed), if any."""
        if self.next is not None and self.next.status in ("due", "overdue", "partial"):
            return self.next
        return None


def _first_start(runs: list[RunRecord]) -> dt.datetime | None:
    completed = [run for run in runs if run.status == "completed"]
    chosen = completed or runs
    return chosen[0].started if chosen else None


def course_status(
    course_path: str | Path | Course,
    participant: str,
    data_root: str | Path,
    today: dt.date | None = None,
) -> CourseStatus:
    """Say which course sessions a participant has done and which one is due.

    Parameters
    ----------
    course_path : str | Path | Course
        The course file (or a loaded course).
    participant : str
        BIDS label of the participant.
    data_root : str | Path
        Root of the data folders (``<root>/sub-<id>/ses-<label>/``).
    today : datetime.date | None
        The date to judge by; default: today's local date.

    Returns
    -------
    CourseStatus
        Status, dates and pulses per session, the next session, and what
        carries over.

    Raises
    ------
    ProtocolError
        When the course file or one of its protocols has problems.
    ValueError
        When the participant is not a BIDS label.
    """
    course = (
        course_path if isinstance(course_path, Course) else load_course(course_path)
    )
    participant = validate_label(participant, "participant")
    data_root = Path(data_root).expanduser()
    today = dt.date.today() if today is None else today
    runs = {
        s.label: session_runs(data_root, participant, s.label) for s in course.sessions
    }
    # The first session's day anchors the schedule: its completed run, else its
    # first attempt (a first session aborted and repeated counts from the repeat).
    first = _first_start(runs[course.sessions[0].label])
    projected = first is None
    anchor = dt.datetime.combine(today, dt.time(12)) if projected else first
    statuses: list[SessionStatus] = []
    for i, s in enumerate(course.sessions):
        target = anchor + dt.timedelta(days=s.day)
        window = dt.timedelta(seconds=s.window_s)
        st = SessionStatus(
            session=s,
            status="upcoming",
            target=target.date(),
            earliest=(target - window).date(),
            latest=(target + window).date(),
            runs=runs[s.label],
            pulses=sum(run.pulses for run in runs[s.label]),
        )
        started = _first_start(st.runs)
        if started is not None:
            done = any(run.status == "completed" for run in st.runs)
            st.status = "done" if done else "partial"
            st.date = started.date()
            st.on_time = st.earliest <= st.date <= st.latest
            if any(
                run.protocol_sha256 not in (None, s.protocol.sha256) for run in st.runs
            ):
                st.note = "a run used another version of the protocol"
        elif today < st.earliest:
            st.status = "upcoming"
        elif today <= st.latest:
            st.status = "due"
        else:
            later = any(runs[t.label] for t in course.sessions[i + 1 :])
            st.status = "missed" if later else "overdue"
        statuses.append(st)
    levels: dict[str, Any] = {}
    levels_from: dict[str, str] = {}
    if "level" in course.carry_over:
        done = [st for st in statuses if st.status == "done"]
        for st in sorted(done, key=lambda st: _first_start(st.runs)):
            completed = [run for run in st.runs if run.status == "completed"]
            for task, level in completed[-1].task_levels.items():
                levels[task] = level
                levels_from[task] = st.label
    return CourseStatus(
        course=course,
        participant=participant,
        data_root=data_root,
        today=today,
        anchor=anchor,
        projected=projected,
        sessions=statuses,
        next=next((st for st in statuses if st.status not in ("done", "missed")), None),
        task_levels=levels,
        levels_from=levels_from,
        pulses_today=participant_pulses_on(data_root, participant, today),
    )


# -- presenting it ---------------------------------------------------------------
def _window_text(st: SessionStatus) -> str:
    if st.earliest == st.latest:
        return st.earliest.isoformat()
    return f"{st.earliest.isoformat()}..{st.latest.isoformat()}"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def format_status(status: CourseStatus) -> str:
    """Render a course status as a plain-text table and a few lines for the operator.

    Parameters
    ----------
    status : CourseStatus
        From :func:`course_status`.

    Returns
    -------
    str
        The text, without a final newline.
    """
    course = status.course
    lines = [
        f"course: {course.name} ({course.file})",
        f"participant: {status.participant}, today: {status.today.isoformat()}, "
        + (
            f"first session: not yet run (dates assume {course.sessions[0].label} "
            "runs today)"
            if status.projected
            else f"first session: {status.anchor.date().isoformat()}"
        ),
        "",
    ]
    rows = [["session", "day", "window", "status", "ran on", "runs", "pulses", "note"]]
    for st in status.sessions:
        ran = ""
        if st.date is not None:
            ran = st.date.isoformat() + ("" if st.on_time else " (outside window)")
        rows.append(
            [
                st.label,
                str(st.session.day),
                _window_text(st),
                st.status,
                ran,
                str(len(st.runs)) if st.runs else "",
                str(st.pulses) if st.runs else "",
                st.note,
            ]
        )
    lines += _table(rows)
    lines.append("")
    nxt = status.next
    if nxt is None:
        lines.append("next: nothing, the course is finished")
    else:
        when = {
            "due": "due now",
            "overdue": f"overdue since {(nxt.latest + dt.timedelta(days=1))}",
            "partial": "started but not completed: run it again to resume",
            "upcoming": f"upcoming, window {_window_text(nxt)}",
        }[nxt.status]
        lines.append(f"next: {nxt.label} ({when})")
        if status.due is not None:
            lines.append(
                f"  stimtrain run {nxt.session.protocol_path} --participant "
                f"{status.participant} --session {nxt.label} --data {status.data_root}"
            )
    if "level" in course.carry_over:
        if status.task_levels:
            carried = ", ".join(
                f"{task} level {level} (from {status.levels_from[task]})"
                for task, level in status.task_levels.items()
            )
        else:
            carried = "no task levels recorded yet"
        lines.append(f"carries over: {carried}")
    lines.append(
        f"pulses delivered today: {status.pulses_today} "
        f"(all sessions of {status.participant})"
    )
    return "\n".join(lines)
