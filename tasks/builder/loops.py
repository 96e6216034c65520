"""A Builder experiment's flow: its loops, how often each runs, what rows they give.

A TrialHandler loop runs ``nReps`` times the rows of its conditions file (or
of the rows selected from it), read with PsychoPy's own
:func:`psychopy.data.importConditions`; a staircase, or a count written as
code (``$nReps``), is decided at run time and counts as not fixed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Loop:
    """A loop of the flow: its name, type and iterations (``None``: not fixed)."""

    name: str
    type: str
    iterations: int | None
    columns: tuple[str, ...]
    parent: str | None
    is_trials: bool


def _number(text) -> float | None:
    """A literal number written in a Builder field, or ``None`` (code, empty)."""
    if text is None:
        return None
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_flow(exp, folder: Path) -> tuple[dict[str, Loop], list]:
    """The loops (with their iterations) and the routines the flow runs.

    Parameters
    ----------
    exp : psychopy.experiment.Experiment
        The loaded experiment.
    folder : Path
        Its folder (conditions files are named relative to it).

    Returns
    -------
    loops : dict
        Loop name → :class:`Loop`, in flow order.
    flow : list of (routine, loops)
        Each routine the flow runs, with the loops around it, outermost first.
    """
    loops: dict[str, Loop] = {}
    flow: list[tuple[str, tuple[str, ...]]] = []
    stack: list[str] = []
    for element in exp.flow:
        kind = type(element).__name__
        if kind == "LoopInitiator":
            loop = element.loop
            name = str(loop.params["name"].val)
            n, columns = _loop_size(loop, folder)
            is_trials = (
                str(loop.params["isTrials"].val) == "True"
                if ("isTrials" in loop.params)
                else True
            )
            loops[name] = Loop(
                name, loop.type, n, columns, stack[-1] if stack else None, is_trials
            )
            stack.append(name)
        elif kind == "LoopTerminator":
            if stack:
                stack.pop()
        else:
            flow.append((str(element.name), tuple(stack)))
    return loops, flow


def _loop_size(loop, folder: Path) -> tuple[int | None, tuple[str, ...]]:
    """Iterations of one pass of a loop, and its conditions' columns.

    A TrialHandler runs ``nReps`` times its conditions' rows; staircases and
    values written as code decide at run time (``None``).
    """
    if loop.type != "TrialHandler":
        return None, ()
    reps = _number(loop.params["nReps"].val)
    file = str(loop.params["conditionsFile"].val).strip()
    columns: tuple[str, ...] = ()
    rows: int | None = 1
    if file:
        selection = str(loop.params["Selected rows"].val).strip()
        if "$" in file + selection or not (folder / file).is_file():
            rows = None
        else:
            from psychopy import data

            try:
                conditions, names = data.importConditions(
                    str(folder / file),
                    returnFieldNames=True,
                    selection=selection,
                )
            except Exception:  # noqa: BLE001 - decided at run time then
                return None, ()
            rows = len(conditions)
            columns = tuple(str(c) for c in names)
    if reps is None or rows is None or reps < 0 or not reps.is_integer():
        return None, columns
    return int(reps) * rows, columns
