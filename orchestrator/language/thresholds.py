"""The participant's motor thresholds, from a thresholds file or the command line.

A thresholds file is a small YAML file kept with the participant's data::

    stimtrain: 1
    participant: P01
    rmt: 48          # resting motor threshold, %MSO
    amt: 36          # active motor threshold, %MSO (optional)
    measured: 2026-11-20
    method: "ML-PEST, 20 pulses, FDI"
    phase_offset: -12.5  # degrees a triggered block adds to its target (optional)
    phase_calibration:   # what the phase offset was measured with
      estimator: ar
      montage: c3_hjorth
      band: 8-13 Hz
      crossings: 96
      sd: 31.2
      measured: 2026-11-20T10:42:00
      method: "phase_calibration block 2 'rest', 60 s"

Values given on the command line (``--rmt``, ``--amt``, ``--phase-offset``)
win over the file's; whatever is used is recorded in the plan of the session.
A phase offset in a file must say what it was measured with (estimator,
montage and band): a block with ``phase_offset: calibrated`` that uses
another is refused before the start. A ``--phase-offset`` is the operator's
word and is used as it is, whatever the block's estimator.

Every value is checked wherever it came from, and so is the merged result
(docs/specs/safety.md): a motor threshold is a finite number from 1 to 100 %MSO,
and an active motor threshold above the resting one is implausible. A file's
problem is located at its line; a command-line problem is reported as
``<command line>:0:0: error: --rmt: <rule> (got <value as typed>)``.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from . import spec as s
from .errors import Problem, ProtocolError, format_value
from .fields import FieldReader
from .phase_offset import (
    DEGREES,
    PHASE_CALIBRATION_SPEC,
    PhaseOffset,
    file_phase_offset,
)
from .units import UnitError
from .yamlpos import LocatedDocument, load_yaml_file


@dataclass(frozen=True)
class Thresholds:
    """The participant's motor thresholds in %MSO (None when unknown).

    Construction refuses values no participant can have (docs/specs/safety.md):
    each threshold is a finite number from 1 to 100 %MSO, and an active motor
    threshold is not above the resting one.

    Parameters
    ----------
    rmt : float | None
        Resting motor threshold, %MSO.
    amt : float | None
        Active motor threshold, %MSO.
    phase_offset : PhaseOffset | None
        The participant's phase offset (for ``phase_offset: calibrated``).

    Raises
    ------
    ValueError
        When a value breaks a rule; the message names the field, the rule and
        the value. Callers that know where a value was written (a thresholds
        file, the command line) check it with :meth:`value_rule` and
        :meth:`pair_rule` first, to report it there.
    """

    rmt: float | None = None
    amt: float | None = None
    phase_offset: PhaseOffset | None = None

    #: The rule every motor threshold must satisfy, in words.
    RANGE_RULE: ClassVar[str] = "must be a finite number from 1 to 100 %MSO"

    def __post_init__(self) -> None:
        broken = [
            f"{name}: {rule} (got {format_value(value)})"
            for name, value in (("rmt", self.rmt), ("amt", self.amt))
            if value is not None and (rule := self.value_rule(value))
        ]
        if not broken:
            rule = self.pair_rule(self.rmt, self.amt)
            if rule:
                broken.append(f"amt: {rule} (got {format_value(self.amt)})")
        if broken:
            raise ValueError("; ".join(broken))

    @classmethod
    def from_record(cls, record: dict) -> Thresholds:
        """Thresholds from a plan's ``thresholds`` record (a resumed session).

        Checked again as any thresholds are; other keys are ignored.
        """
        phase = record.get("phase_offset")
        return cls(
            rmt=record.get("rmt"),
            amt=record.get("amt"),
            phase_offset=None if phase is None else PhaseOffset.from_record(phase),
        )

    @classmethod
    def value_rule(cls, value: object) -> str | None:
        """The rule ``value`` breaks as a motor threshold, or None when it is one.

        Parameters
        ----------
        value : object
            A threshold as read (a bool or text is not a number).

        Returns
        -------
        str | None
            :attr:`RANGE_RULE` when the value is not a finite real number from
            1 to 100 (%MSO), else None.
        """
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return cls.RANGE_RULE
        if not math.isfinite(value) or not 1 <= value <= 100:
            return cls.RANGE_RULE
        return None

    @staticmethod
    def pair_rule(rmt: float | None, amt: float | None) -> str | None:
        """The rule an active threshold above the resting one breaks, or None.

        Parameters
        ----------
        rmt, amt : float | None
            Valid thresholds (see :meth:`value_rule`) or None.

        Returns
        -------
        str | None
            The rule, naming the resting threshold, when both are known and
            ``amt`` is above ``rmt``; else None.
        """
        if rmt is None or amt is None or amt <= rmt:
            return None
        return (
            "an active motor threshold above the resting one "
            f"({format_value(rmt)} %MSO) is implausible"
        )


#: The "file" of a problem in a command-line option (there is no line).
COMMAND_LINE = "<command line>"


def _motor_threshold(value: object) -> float:
    rule = Thresholds.value_rule(value)
    if rule:
        raise UnitError(rule)
    return float(value)


# Same JSON Schema as any number from 1 to 100; the parser also refuses NaN
# and infinity, which compare False with both bounds.
_PCT = s.Kind("number", _motor_threshold, dict(s.number_range(1, 100).schema))


THRESHOLDS_SPEC = s.RecordSpec(
    "a thresholds file",
    "A participant's motor thresholds in %MSO.",
    (
        s.FieldSpec("stimtrain", s.INTEGER, "Format version (1).", required=True),
        s.FieldSpec("participant", s.TEXT, "Participant ID."),
        s.FieldSpec("rmt", _PCT, "Resting motor threshold, %MSO."),
        s.FieldSpec("amt", _PCT, "Active motor threshold, %MSO."),
        s.FieldSpec("measured", s.DATE, "When the thresholds were measured."),
        s.FieldSpec("method", s.TEXT, "How they were measured."),
        s.FieldSpec(
            "phase_offset",
            DEGREES,
            "The participant's phase offset, degrees added to the target of a "
            "triggered block with phase_offset: calibrated.",
        ),
        s.FieldSpec(
            "phase_calibration",
            s.Kind(
                "mapping",
                lambda v: v,
                PHASE_CALIBRATION_SPEC.json_schema(),
            ),
            "What the phase offset was measured with (needed with phase_offset).",
        ),
    ),
)

# YAML's spellings of infinity and NaN; Python would print them inf and nan.
_YAML_SPECIAL = re.compile(r"[-+]?\.(?:inf|Inf|INF|nan|NaN|NAN)(?![\w.])")


def _as_written(doc: LocatedDocument, problem: Problem, key: str) -> Problem:
    """Show a non-finite value of ``key`` as written in the file (``.nan``)."""
    value = problem.value
    if problem.field != key or not isinstance(value, float) or math.isfinite(value):
        return problem
    line, col = doc.positions.get((key,), (0, 0))
    lines = doc.text.splitlines()
    if not 1 <= line <= len(lines):
        return problem
    m = _YAML_SPECIAL.match(lines[line - 1], col - 1)
    return replace(problem, value=m.group(0)) if m else problem


def threshold_option(
    option: str, value: str | float | None, problems: list[Problem]
) -> float | None:
    """Read a motor threshold given on the command line.

    Parameters
    ----------
    option : str
        The option's name, e.g. ``"--rmt"``; the field of any problem.
    value : str | float | None
        The value as typed (or a number from Python); None when not given.
    problems : list of Problem
        Where a problem is appended, located at ``<command line>:0:0``.

    Returns
    -------
    float | None
        The threshold in %MSO, or None when not given or not valid.
    """
    return _option(option, value, Thresholds.value_rule, problems)


def phase_offset_option(
    value: str | float | None, problems: list[Problem]
) -> float | None:
    """Read ``--phase-offset`` (degrees) as typed (see :func:`threshold_option`)."""
    return _option("--phase-offset", value, PhaseOffset.value_rule, problems)


def _option(option: str, value, rule_of, problems: list[Problem]) -> float | None:
    """A number typed on the command line, held to ``rule_of``, or None."""
    if value is None:
        return None
    number: object = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    rule = rule_of(number)
    if rule:
        problems.append(Problem(COMMAND_LINE, 0, 0, option, rule, value))
        return None
    return float(number)


def load_thresholds(
    path: str | Path | None,
    *,
    rmt: str | float | None = None,
    amt: str | float | None = None,
    participant: str | None = None,
    phase_offset: str | float | None = None,
) -> tuple[Thresholds, dict]:
    """Read a thresholds file and apply command-line values on top.

    Parameters
    ----------
    path : str | Path | None
        The thresholds file (None: command-line values only).
    rmt, amt : str | float | None
        Values from the command line, as typed (text) or as numbers; they win
        over the file's.
    phase_offset : str | float | None
        ``--phase-offset``, degrees as typed; wins over the file's (and is
        used whatever the blocks' estimator: the operator's word).
    participant : str | None
        When given, the file's ``participant`` must match it.

    Returns
    -------
    thresholds : Thresholds
        The values to use.
    record : dict
        What to record with the session: values, file and where each came from.

    Raises
    ------
    ProtocolError
        With every problem at once: the file's located to the line, the
        options' at ``<command line>:0:0``, and an active threshold above the
        resting one at the active threshold's source.
    """
    problems: list[Problem] = []
    given = {
        "rmt": threshold_option("--rmt", rmt, problems),
        "amt": threshold_option("--amt", amt, problems),
    }
    degrees = phase_offset_option(phase_offset, problems)
    record: dict = {**given, "file": None, "source": "command line"}
    values: dict = {}
    phase: PhaseOffset | None = None
    doc: LocatedDocument | None = None
    if path is not None:
        try:
            doc = load_yaml_file(path)
        except ProtocolError as exc:
            raise ProtocolError([*problems, *exc.problems]) from None
        file_problems: list[Problem] = []
        r = FieldReader(doc, file_problems)
        top = r.mapping(doc.data, ()) or {}
        values = THRESHOLDS_SPEC.read(r, top, ())
        if values.get("stimtrain") not in (None, 1):
            r.fail(
                ("stimtrain",), "must be 1 (the format version)", values["stimtrain"]
            )
        if (
            participant is not None
            and values.get("participant") is not None
            and values["participant"] != participant
        ):
            r.fail(
                ("participant",),
                f"is another participant's file (this session is {participant})",
                values["participant"],
            )
        phase = file_phase_offset(r, top, values, path)
        for key in ("rmt", "amt", "phase_offset"):
            file_problems = [_as_written(doc, p, key) for p in file_problems]
        problems += file_problems
        record.update(
            file=str(path),
            measured=values.get("measured"),
            method=values.get("method"),
            source="thresholds file",
        )
    if problems:
        raise ProtocolError(problems)
    final_rmt = given["rmt"] if rmt is not None else values.get("rmt")
    final_amt = given["amt"] if amt is not None else values.get("amt")
    rule = Thresholds.pair_rule(final_rmt, final_amt)
    if rule:
        if amt is not None or doc is None:
            problem = Problem(COMMAND_LINE, 0, 0, "--amt", rule, amt)
        else:
            problem = doc.problem(("amt",), rule, top.get("amt"))
        raise ProtocolError([problem])
    if path is not None and (rmt is not None or amt is not None):
        record["source"] = "thresholds file, overridden on the command line"
    if degrees is not None:
        phase = PhaseOffset(offset_deg=degrees, source="command line")
    record.update(rmt=final_rmt, amt=final_amt)
    if phase is not None:
        record["phase_offset"] = phase.as_record()
    return Thresholds(rmt=final_rmt, amt=final_amt, phase_offset=phase), record
