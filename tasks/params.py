"""Task parameter checks: the error they raise and the checks tasks share.

:class:`TaskParamError` names the parameter, the rule it breaks and the
value; the protocol loader turns it into ``FILE:LINE:COL: error: ...``.
:meth:`Task.validate_params <stimtrain.tasks.api.Task.validate_params>`
checks every parameter's type against its default with :func:`_check_type`;
tasks check ranges and key lists with :func:`check_range` and
:func:`check_keys`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


class TaskParamError(ValueError):
    """A task parameter is unknown or has a bad value.

    Parameters
    ----------
    field : str
        The parameter's name.
    rule : str
        The rule it breaks, phrased to follow the field name (e.g.
        ``"must be a number >= 0"``).
    value : object
        The offending value.

    Notes
    -----
    The protocol loader turns this into
    ``FILE:LINE:COL: error: field: rule (got value)``, so ``str()`` of the
    error is the same text without the position.
    """

    def __init__(self, field: str, rule: str, value: Any) -> None:
        self.field = field
        self.rule = rule
        self.value = value
        super().__init__(f"{field}: {rule} (got {value!r})")


def _check_type(key: str, value: Any, default: Any) -> Any:
    """Check ``value`` against the type of its default; return it normalised."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise TaskParamError(key, "must be true or false", value)
        return value
    if isinstance(default, int | float):
        # bool is an int subclass; "true" is never a number here.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TaskParamError(key, "must be a number", value)
        if not math.isfinite(value):
            raise TaskParamError(key, "must be a finite number", value)
        return value
    if isinstance(default, str):
        if not isinstance(value, str):
            raise TaskParamError(key, "must be a string", value)
        return value
    if isinstance(default, list | tuple):
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise TaskParamError(key, "must be a list", value)
        return list(value)
    return value


def check_range(
    key: str,
    value: float,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> None:
    """Raise :class:`TaskParamError` if ``value`` is outside a range.

    Parameters
    ----------
    key : str
        Parameter name.
    value : float
        Its value.
    low, high : float | None
        Bounds (``high`` is inclusive).
    low_open : bool
        Whether ``low`` itself is excluded.
    """
    if low is not None and (value <= low if low_open else value < low):
        if high is not None:
            bracket = "(" if low_open else "["
            rule = f"must be in {bracket}{low:g}, {high:g}]"
        else:
            rule = f"must be {'>' if low_open else '>='} {low:g}"
        raise TaskParamError(key, rule, value)
    if high is not None and value > high:
        if low is not None:
            bracket = "(" if low_open else "["
            rule = f"must be in {bracket}{low:g}, {high:g}]"
        else:
            rule = f"must be <= {high:g}"
        raise TaskParamError(key, rule, value)


def check_keys(key: str, value: Sequence[Any], n: int) -> None:
    """Raise :class:`TaskParamError` unless ``value`` is ``n`` distinct key names.

    Parameters
    ----------
    key : str
        Parameter name.
    value : sequence
        The key names.
    n : int
        How many are needed.
    """
    if (
        len(value) != n
        or not all(isinstance(k, str) and k for k in value)
        or len(set(value)) != n
    ):
        raise TaskParamError(key, f"must be a list of {n} distinct key names", value)
    if "escape" in value:
        # Escape stops the block on the real keyboard.
        raise TaskParamError(key, "must not use 'escape' (it stops the block)", value)
