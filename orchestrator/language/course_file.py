"""Course files: sessions spread over days, each a protocol, as a plain model.

A course file lists sessions, each a protocol run as ``ses-<label>``, on days
counted from the participant's first session, with a window of days in which
it is due and what carries over from one session to the next. Where a
participant stands in a course is read from the session folders
(:mod:`~stimtrain.orchestrator.session.course`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stimtrain.sessionfiles import validate_label

from . import spec
from .errors import Problem, ProtocolError
from .fields import FieldReader, integer
from .protocol import FORMAT_VERSION, Protocol, load_protocol
from .units import UnitError, parse_time
from .yamlpos import LocatedDocument, load_yaml_file

STATUSES = ("done", "partial", "due", "overdue", "missed", "upcoming")
CARRY_OVER = ("level",)
_DAY_S = 86400.0
_NUM = r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?"
_DAYS = re.compile(rf"^\s*({_NUM})\s*(d|days?)\s*$")


# -- value kinds of course files ---------------------------------------------------
def _parse_version(value: Any) -> int:
    if isinstance(value, bool) or value != FORMAT_VERSION:
        raise UnitError(f"must be {FORMAT_VERSION} (the format version)")
    return value


def _parse_label(value: Any) -> str:
    # YAML reads `session: 1` as a number; ses-1 is still a good BIDS label.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    try:
        return validate_label(value, "session")
    except ValueError:
        raise UnitError("must be 1-64 letters or digits (a BIDS label)") from None


def parse_window(value: Any) -> float:
    """Parse a schedule tolerance such as ``1 d``, ``2 days`` or ``12 h`` (seconds).

    Parameters
    ----------
    value : str
        The duration as written; days (``d``) are allowed on top of the units
        of :func:`~stimtrain.orchestrator.language.units.parse_time`.

    Returns
    -------
    float
        The duration in seconds.
    """
    if isinstance(value, str):
        match = _DAYS.match(value)
        if match:
            return float(match.group(1)) * _DAY_S
    try:
        return parse_time(value)
    except UnitError:
        raise UnitError(
            "must be a duration with a unit (min, h or d), e.g. '1 d'"
        ) from None


def _located_list(what: str, items: dict) -> spec.Kind:
    """A non-empty list whose items the loader reads one by one, keeping positions."""

    def parse(value: Any) -> list:
        if not isinstance(value, list) or not value:
            raise UnitError(f"must be a non-empty list of {what}")
        return value

    return spec.Kind(
        f"list of {what}", parse, {"type": "array", "items": items, "minItems": 1}
    )


VERSION = spec.Kind(
    "format version", _parse_version, {"type": "integer", "enum": [FORMAT_VERSION]}
)
LABEL = spec.Kind(
    "BIDS label",
    _parse_label,
    {"type": ["string", "integer"], "minimum": 0, "pattern": "^[A-Za-z0-9]{1,64}$"},
)
CARRY_ITEM = spec.choice(CARRY_OVER)
DAY = spec.Kind("day", integer, {"type": "integer", "minimum": 0})
WINDOW = spec.Kind(
    "duration",
    parse_window,
    {
        "type": "string",
        "pattern": rf"^\s*{_NUM}\s*(us|µs|ms|s|sec|min|h|d|day|days)\s*$",
        "examples": ["1 d", "12 h"],
    },
)

COURSE_SESSION_SPEC = spec.RecordSpec(
    "a course session",
    "One session of the course: a protocol run as ses-<session> on a given day.",
    (
        spec.FieldSpec(
            "session",
            LABEL,
            "Session label (letters and digits), used as ses-<label>.",
            required=True,
        ),
        spec.FieldSpec(
            "protocol",
            spec.TEXT,
            "Protocol file of the session, relative to the course file.",
            required=True,
        ),
        spec.FieldSpec(
            "day",
            DAY,
            "Days after the first session's date (0: the first session's day).",
            required=True,
            check=spec.non_negative,
        ),
        spec.FieldSpec(
            "window",
            WINDOW,
            "How much earlier or later than its day the session may run.",
            default="0 d",
            check=spec.non_negative,
        ),
    ),
)

COURSE_SPEC = spec.RecordSpec(
    "a course",
    "A course: protocol sessions spread over days for one participant.",
    (
        spec.FieldSpec(
            "stimtrain", VERSION, "Format version of the file.", required=True
        ),
        spec.FieldSpec("course", spec.TEXT, "Name of the course.", required=True),
        spec.FieldSpec("description", spec.TEXT, "What the course is, for people."),
        spec.FieldSpec(
            "sessions",
            _located_list("sessions", COURSE_SESSION_SPEC.json_schema()),
            "The sessions in the order they are run.",
            required=True,
        ),
        spec.FieldSpec(
            "carry_over",
            _located_list("names", CARRY_ITEM.schema),
            "What carries from one session to the next (level: task levels).",
        ),
    ),
)


# -- the course model --------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class CourseSession:
    """One session of a course.

    Attributes
    ----------
    index : int
        Position in the course file.
    label : str
        The session label (``ses-<label>``).
    protocol_path : Path
        The protocol file, resolved against the course file's folder.
    protocol : Protocol
        The loaded protocol.
    day : int
        Days after the first session's date.
    window_s : float
        Allowed earliness or lateness, in seconds.
    """

    index: int
    label: str
    protocol_path: Path
    protocol: Protocol
    day: int
    window_s: float


@dataclass(frozen=True, kw_only=True)
class Course:
    """A checked course file."""

    name: str
    description: str
    sessions: tuple[CourseSession, ...]
    carry_over: tuple[str, ...]
    document: LocatedDocument

    @property
    def file(self) -> str:
        """The file the course was read from."""
        return self.document.file


def _load_session_protocol(
    r: FieldReader, path: tuple, written: str, base: Path, cache: dict
) -> tuple[Path, Protocol | None]:
    # normpath keeps the name relative like the user wrote it, for messages.
    resolved = Path(os.path.normpath(base / written))
    if not resolved.is_file():
        r.fail(
            (*path, "protocol"),
            "must name an existing protocol file (relative to the course file)",
            written,
        )
        return resolved, None
    if resolved not in cache:
        try:
            cache[resolved] = load_protocol(resolved)
        except ProtocolError as exc:
            # Reported once, located in the protocol file itself.
            cache[resolved] = None
            r.problems.extend(exc.problems)
    return resolved, cache[resolved]


def course_from_document(doc: LocatedDocument) -> Course:
    """Build a :class:`Course` from a located YAML document.

    Raises
    ------
    ProtocolError
        With every problem in the course file and in the protocols it names.
    """
    problems: list[Problem] = []
    r = FieldReader(doc, problems)
    top = r.mapping(doc.data, ())
    if top is None:
        raise ProtocolError(problems)
    values = COURSE_SPEC.read(r, top, ())
    carry_over = []
    for j, item in enumerate(values["carry_over"] or ()):
        try:
            carry_over.append(CARRY_ITEM.parse(item))
        except UnitError as exc:
            r.fail(("carry_over", j), exc.rule, item)
    base = Path(doc.file).parent
    sessions: list[CourseSession] = []
    seen: dict[str, int] = {}
    cache: dict[Path, Protocol | None] = {}
    previous_day: int | None = None
    for i, raw in enumerate(values["sessions"] or ()):
        path = ("sessions", i)
        m = r.mapping(raw, path)
        if m is None:
            continue
        n_problems = len(problems)
        v = COURSE_SESSION_SPEC.read(r, m, path)
        label, day = v["session"], v["day"]
        if label is not None:
            # Case-insensitive: ses-Day1 and ses-day1 are one folder on macOS.
            first = seen.setdefault(label.casefold(), i)
            if first != i:
                r.fail(
                    (*path, "session"),
                    "must be unique in the course, ignoring case "
                    f"(sessions[{first}] is {values['sessions'][first]['session']})",
                    m["session"],
                )
        if day is not None:
            if i == 0 and day != 0:
                r.fail(
                    (*path, "day"),
                    "must be 0 (the first session's date anchors the schedule)",
                    m["day"],
                )
            elif previous_day is not None and day < previous_day:
                r.fail(
                    (*path, "day"),
                    f"must not be before the previous session's day ({previous_day})",
                    m["day"],
                )
            previous_day = day
        protocol = None
        if v["protocol"] is not None:
            resolved, protocol = _load_session_protocol(
                r, path, v["protocol"], base, cache
            )
        if protocol is None or len(problems) > n_problems:
            continue
        sessions.append(
            CourseSession(
                index=i,
                label=label,
                protocol_path=resolved,
                protocol=protocol,
                day=day,
                window_s=v["window"],
            )
        )
    if problems:
        raise ProtocolError(problems)
    return Course(
        name=values["course"],
        description=values["description"] or "",
        sessions=tuple(sessions),
        carry_over=tuple(carry_over),
        document=doc,
    )


def load_course(path: str | Path) -> Course:
    """Load and check a course file and every protocol it names.

    Parameters
    ----------
    path : str | Path
        The YAML course file.

    Returns
    -------
    Course
        The course, its protocols loaded.

    Raises
    ------
    ProtocolError
        With one located problem per problem, in the course file or in a
        protocol file it names.
    """
    return course_from_document(load_yaml_file(path))
