"""The participant's motor thresholds, from a thresholds file or the command line.

A thresholds file is a small YAML file kept with the participant's data::

    stimtrain: 1
    participant: P01
    rmt: 48          # resting motor threshold, %MSO
    amt: 36          # active motor threshold, %MSO (optional)
    measured: 2026-11-20
    method: "ML-PEST, 20 pulses, FDI"

Values given on the command line (``--rmt``, ``--amt``) win over the file;
whatever is used is recorded in the plan of the session.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from . import spec as s
from .dose import Thresholds
from .errors import ProtocolError
from .fields import FieldReader
from .yamlpos import load_yaml_file

_PCT = s.number_range(1, 100)


def _date_or_text(value) -> str:
    # YAML reads an unquoted 2026-11-20 as a date: accept it as written.
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return s.TEXT.parse(value)


_DATE = s.Kind("date", _date_or_text, {"type": "string"})

THRESHOLDS_SPEC = s.RecordSpec(
    "a thresholds file",
    "A participant's motor thresholds in %MSO.",
    (
        s.FieldSpec("stimtrain", s.INTEGER, "Format version (1).", required=True),
        s.FieldSpec("participant", s.TEXT, "Participant ID."),
        s.FieldSpec("rmt", _PCT, "Resting motor threshold, %MSO."),
        s.FieldSpec("amt", _PCT, "Active motor threshold, %MSO."),
        s.FieldSpec("measured", _DATE, "When the thresholds were measured."),
        s.FieldSpec("method", s.TEXT, "How they were measured."),
    ),
)


def load_thresholds(
    path: str | Path | None,
    *,
    rmt: float | None = None,
    amt: float | None = None,
    participant: str | None = None,
) -> tuple[Thresholds, dict]:
    """Read a thresholds file and apply command-line values on top.

    Parameters
    ----------
    path : str | Path | None
        The thresholds file (None: command-line values only).
    rmt, amt : float | None
        Values from the command line; they win over the file's.
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
        When the file has problems, located to the line.
    """
    record: dict = {"rmt": rmt, "amt": amt, "file": None, "source": "command line"}
    values: dict = {}
    if path is not None:
        doc = load_yaml_file(path)
        problems: list = []
        r = FieldReader(doc, problems)
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
        if problems:
            raise ProtocolError(problems)
        record.update(
            file=str(path),
            measured=values.get("measured"),
            method=values.get("method"),
            source="thresholds file",
        )
    final_rmt = rmt if rmt is not None else values.get("rmt")
    final_amt = amt if amt is not None else values.get("amt")
    if path is not None and (rmt is not None or amt is not None):
        record["source"] = "thresholds file, overridden on the command line"
    record.update(rmt=final_rmt, amt=final_amt)
    return Thresholds(rmt=final_rmt, amt=final_amt), record
