"""Problems found in a protocol, rig or limits file, located to the character.

Every problem renders as ``FILE:LINE:COL: error: <field>: <rule> (got <value>)``
so editors and CI logs can jump to it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One problem in a file.

    Parameters
    ----------
    file : str
        The file's path as given by the user.
    line, col : int
        1-based position of the offending value (0 when unknown).
    field : str
        Dotted path of the field, e.g. ``blocks[2].intensity``.
    rule : str
        What the value must satisfy, in words.
    value : object
        The offending value as written.
    """

    file: str
    line: int
    col: int
    field: str
    rule: str
    value: object

    def __str__(self) -> str:
        return (
            f"{self.file}:{self.line}:{self.col}: error: {self.field}: "
            f"{self.rule} (got {format_value(self.value)})"
        )


def format_value(value: object) -> str:
    """Render a value the way the user wrote it, briefly."""
    if isinstance(value, str):
        return repr(value) if value == "" else value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "[]" if not value else f"a list of {len(value)}"
    return str(value)


class ProtocolError(ValueError):
    """Raised when a file has one or more problems; nothing has been changed.

    Parameters
    ----------
    problems : list of Problem
        Every problem found, in file order.
    """

    def __init__(self, problems: list[Problem]):
        # A block repeated or included twice reports each problem once.
        unique = {str(p): p for p in problems}.values()
        self.problems = sorted(unique, key=lambda p: (p.file, p.line, p.col))
        super().__init__("\n".join(str(p) for p in self.problems))
