"""The block's trials TSV: one row per trial, flushed and fsynced as it is written."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stimtrain.taskfiles import TSV_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    from .api import TrialResult

#: Written for a missing value (BIDS convention).
NA = "n/a"


def _fmt(value: Any) -> str:
    """Format a TSV cell: floats round-trip exactly, None is n/a."""
    if value is None:
        return NA
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return NA if math.isnan(value) else repr(value)
    return str(value).replace("\t", " ").replace("\n", " ").replace("\r", " ")


class _TrialsTSV:
    """The block's trials TSV, each row flushed and fsynced as it is written."""

    def __init__(self, path: Path, extra_columns: list[str]) -> None:
        self.path = Path(path)
        self.columns = [*TSV_COLUMNS, *extra_columns]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # "x": never overwrite a recorded block.
        self._f = open(self.path, "x", encoding="utf-8", newline="")
        self._write(self.columns)

    def _write(self, cells: list[str]) -> None:
        self._f.write("\t".join(cells) + "\n")
        self._f.flush()
        # A crash must not lose the trials already run.
        os.fsync(self._f.fileno())

    def row(self, result: TrialResult, extras: Mapping[str, Any]) -> None:
        t = result.trial
        base = {
            "trial": t.index,
            "condition": t.condition,
            "stimulus": t.stimulus.get("text", ""),
            "correct_key": t.correct_key,
            "onset": result.onset,
            "key": result.key,
            "rt": result.rt,
            "correct": result.correct,
        }
        values = {**base, **extras}
        self._write([_fmt(values.get(c)) for c in self.columns])

    def close(self) -> None:
        self._f.close()
