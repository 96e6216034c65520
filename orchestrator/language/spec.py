"""Declarative field specifications: one table drives reading and the JSON Schema.

A :class:`RecordSpec` lists the fields of one kind of mapping in a protocol,
rig or course file. The loaders read mappings through it (collecting located
problems with :class:`~stimtrain.orchestrator.language.fields.FieldReader`) and
:mod:`stimtrain.orchestrator.language.schema` turns the same tables into JSON Schema,
so the editor's completion and the loader can never disagree about a field.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import fields as f
from .units import (
    parse_frequency,
    parse_intensity,
    parse_threshold_range,
    parse_time,
    parse_voltage,
)

_NUM = r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?"


@dataclass(frozen=True)
class Kind:
    """A value type: how to parse it and how JSON Schema describes it."""

    name: str
    parse: Callable[[Any], Any]
    schema: dict


def _quantity(name: str, parse, units: str, example: str) -> Kind:
    pattern = rf"^\s*{_NUM}\s*({units})\s*$"
    return Kind(
        name,
        parse,
        {"type": "string", "pattern": pattern, "examples": [example]},
    )


INTEGER = Kind("integer", f.integer, {"type": "integer"})
TEXT = Kind("text", f.text, {"type": "string", "minLength": 1})


def _date_or_text(value) -> str:
    # YAML reads an unquoted 2026-11-20 as a date: accept it as written.
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return TEXT.parse(value)


#: A date or a date and time, as YAML reads it or as text.
DATE = Kind("date", _date_or_text, {"type": "string"})
BOOLEAN = Kind("boolean", f.boolean, {"type": "boolean"})
TIME = _quantity("duration", parse_time, "us|µs|ms|s|sec|min|h", "150 ms")
FREQUENCY = _quantity("frequency", parse_frequency, "[Hh][Zz]|[Kk][Hh][Zz]", "20 Hz")
INTENSITY = _quantity(
    "intensity",
    parse_intensity,
    "%[ ]?([Mm][Ss][Oo]|[Rr][Mm][Tt]|[Aa][Mm][Tt])",
    "80 %RMT",
)
VOLTAGE = _quantity("voltage", parse_voltage, "[uUµ][Vv]|[mM][Vv]", "50 uV")
THRESHOLD_RANGE = Kind(
    "threshold range",
    parse_threshold_range,
    {
        "type": "string",
        "pattern": rf"^\s*{_NUM}\s*(-|–|to)\s*{_NUM}\s*%\s*[Mm][Ss][Oo]\s*$",
        "examples": ["30-80 %MSO"],
    },
)
#: A value passed through unchanged (validated by its owner, e.g. task params).
ANY_MAPPING = Kind("mapping", lambda v: v, {"type": "object"})


def choice(options: tuple[str, ...]) -> Kind:
    """A value that must be one of ``options``."""
    return Kind("choice", f.choice(options), {"enum": list(options)})


def number_range(lo: float | None = None, hi: float | None = None) -> Kind:
    """A plain finite number (int or float), optionally bounded, e.g. a percentage."""

    def parse(value: Any) -> float:
        if isinstance(value, float) and not math.isfinite(value):
            # NaN compares False with everything: range checks let it pass.
            raise f.UnitError("must be a finite number")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # Compared exactly, so a 400-digit integer is just too large.
            if lo is not None and value < lo:
                raise f.UnitError(f"must be at least {lo:g}")
            if hi is not None and value > hi:
                raise f.UnitError(f"must be at most {hi:g}")
        return f.finite_number(value)

    schema: dict = {"type": "number"}
    if lo is not None:
        schema["minimum"] = lo
    if hi is not None:
        schema["maximum"] = hi
    return Kind("number", parse, schema)


def list_of(kind: Kind, *, min_items: int = 1) -> Kind:
    """A list whose every item is of ``kind``."""

    def parse(value: Any) -> list:
        if not isinstance(value, list) or len(value) < min_items:
            raise f.UnitError(f"must be a list of at least {min_items} {kind.name}s")
        out = []
        for i, item in enumerate(value):
            try:
                out.append(kind.parse(item))
            except f.UnitError as exc:
                raise f.UnitError(f"item {i + 1}: {exc.rule}") from None
        return out

    return Kind(
        f"list of {kind.name}",
        parse,
        {"type": "array", "items": kind.schema, "minItems": min_items},
    )


@dataclass(frozen=True)
class FieldSpec:
    """One field of a mapping.

    Attributes
    ----------
    name : str
        The key as written in files.
    kind : Kind
        Its value type.
    doc : str
        One line for people (shown by editors as the field's description).
    default : object
        The value as it would be written (``"5 s"``) when the field is absent;
        None: no default. Parsed like a written value, shown by editors.
    required : bool
        Whether the field must be written.
    check : callable | None
        ``check(value) -> rule or None``, applied after parsing.
    """

    name: str
    kind: Kind
    doc: str
    default: Any = None
    required: bool = False
    check: Callable[[Any], str | None] | None = None


@dataclass(frozen=True)
class RecordSpec:
    """The fields of one kind of mapping (a block, a pattern, a rig section…)."""

    what: str
    doc: str
    fields: tuple[FieldSpec, ...]
    #: Further keys that are allowed but read elsewhere (e.g. a discriminator).
    extra_keys: tuple[str, ...] = field(default=())

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key allowed in the mapping."""
        # The discriminator reads best first in "known: …" lists.
        lead = tuple(k for k in self.extra_keys if k == "type")
        rest = tuple(k for k in self.extra_keys if k != "type")
        return (*lead, *(fs.name for fs in self.fields), *rest)

    def read(
        self, r: f.FieldReader, m: dict, path: tuple, *, check_known: bool = True
    ) -> dict[str, Any]:
        """Read every field of ``m``; problems go to ``r``.

        Returns a dict of field name → value (the default where absent or
        invalid), so callers can go on to cross-field checks.
        """
        if check_known:
            r.known(m, path, self.keys, self.what)
        return {
            fs.name: r.get(
                m,
                path,
                fs.name,
                fs.kind.parse,
                required=fs.required,
                default=None if fs.default is None else fs.kind.parse(fs.default),
                check=fs.check,
            )
            for fs in self.fields
        }

    def json_schema(self, **extra_properties: dict) -> dict:
        """JSON Schema of the mapping (``extra_properties`` for discriminators)."""
        props: dict[str, dict] = dict(extra_properties)
        for fs in self.fields:
            prop = dict(fs.kind.schema)
            prop["description"] = fs.doc
            if fs.default is not None:
                prop["default"] = fs.default
            props[fs.name] = prop
        schema: dict = {
            "type": "object",
            "description": self.doc,
            "properties": props,
            "additionalProperties": False,
        }
        required = [fs.name for fs in self.fields if fs.required]
        if required:
            schema["required"] = required
        return schema


# Re-exported checks so spec tables read in one place.
positive = f.positive
non_negative = f.non_negative
at_least_one = f.at_least_one
