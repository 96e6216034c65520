"""Per-participant task levels, kept between sessions in a small JSON file.

The file maps task name to the level reached (see
:mod:`stimtrain.tasks.adaptive`), e.g. ``{"flanker": 0.45, "nback": 3}``.
It is replaced atomically, so a crash while saving leaves the previous
levels intact.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

logger = logging.getLogger("stimtrain.tasks.levels")


def load_levels(path: str | os.PathLike) -> dict[str, float]:
    """Read a participant's levels.

    Parameters
    ----------
    path : path-like
        The levels file. A missing file means no levels yet.

    Returns
    -------
    levels : dict
        Task name to level.

    Raises
    ------
    ValueError
        If the file is not a JSON object of task names to finite numbers.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: levels file is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: levels file must hold a JSON object, got {data!r}")
    for name, level in data.items():
        _check_level(path, name, level)
    return dict(data)


def save_levels(path: str | os.PathLike, levels: Mapping[str, float]) -> None:
    """Write a participant's levels atomically (temporary file, fsync, rename).

    Parameters
    ----------
    path : path-like
        The levels file; its folder is created if needed.
    levels : mapping
        Task name to level (finite numbers).
    """
    path = Path(path)
    for name, level in levels.items():
        _check_level(path, name, level)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(dict(sorted(levels.items())), f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # The rename is durable only once the folder itself is synced.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    logger.info("Saved levels to %s: %s", path, dict(levels))


def record_level(path: str | os.PathLike, task: str, level: float | None) -> None:
    """Set one task's level in a levels file, keeping the others.

    Parameters
    ----------
    path : path-like
        The levels file.
    task : str
        Task name.
    level : float | None
        The level reached; ``None`` (a task without adaptation) changes
        nothing.
    """
    if level is None:
        return
    levels = load_levels(path)
    levels[task] = level
    save_levels(path, levels)


def _check_level(path: Path, name: object, level: object) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{path}: task name must be a non-empty string, got {name!r}")
    if (
        isinstance(level, bool)
        or not isinstance(level, int | float)
        or not math.isfinite(level)
    ):
        raise ValueError(
            f"{path}: level of {name!r} must be a finite number, got {level!r}"
        )
