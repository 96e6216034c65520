"""Reading typed fields out of located YAML mappings, collecting every problem.

Shared by the protocol, rig and limits loaders so that all of them report
problems in the same ``FILE:LINE:COL: error: field: rule (got value)`` form.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .errors import Problem
from .units import UnitError
from .yamlpos import LocatedDocument


class FieldReader:
    """Reads fields of one mapping, collecting problems instead of stopping."""

    def __init__(self, doc: LocatedDocument, problems: list[Problem]):
        self.doc = doc
        self.problems = problems

    def fail(self, path: tuple, rule: str, value: object) -> None:
        self.problems.append(self.doc.problem(path, rule, value))

    def mapping(self, value: Any, path: tuple) -> dict | None:
        if not isinstance(value, dict):
            self.fail(path, "must be a mapping of field: value", value)
            return None
        return value

    def known(self, mapping: dict, path: tuple, allowed: tuple[str, ...], what: str):
        for key in mapping:
            if key not in allowed:
                self.problems.append(
                    self.doc.problem(
                        (*path, key),
                        f"is not a field of {what} (known: {', '.join(allowed)})",
                        key,
                        at_key=True,
                    )
                )

    def get(
        self,
        mapping: dict,
        path: tuple,
        key: str,
        parse: Callable[[Any], Any],
        *,
        required: bool = False,
        default: Any = None,
        check: Callable[[Any], str | None] | None = None,
    ) -> Any:
        if key not in mapping:
            if required:
                self.fail((*path, key), "is required", "nothing")
            return default
        raw = mapping[key]
        try:
            value = parse(raw)
        except UnitError as exc:
            self.fail((*path, key), exc.rule, raw)
            return default
        if check is not None:
            rule = check(value)
            if rule:
                self.fail((*path, key), rule, raw)
                return default
        return value


def integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnitError("must be a whole number")
    return value


def finite_number(value: Any) -> float:
    """A plain number (int or float) as a finite float.

    Raises
    ------
    UnitError
        For anything but a number, for ``.nan`` and ``.inf`` (every later
        comparison would mishandle them) and for integers too large for a
        float.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UnitError("must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise UnitError("must be a finite number")
    try:
        return float(value)
    except OverflowError:
        raise UnitError("must be a number within ±1.8e308") from None


def text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UnitError("must be non-empty text")
    return value


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise UnitError("must be true or false")
    return value


def choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in options:
            raise UnitError(f"must be one of {', '.join(options)}")
        return value

    return parse


def positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than zero"


def non_negative(value: float) -> str | None:
    return None if value >= 0 else "must not be negative"


def at_least_one(value: int) -> str | None:
    return None if value >= 1 else "must be at least 1"
