"""A task block that names a PsychoPy Builder experiment (``builder: file.psyexp``).

Read when the protocol is loaded, so that everything wrong with it is a
located problem before the session: the file (missing, broken, not a Builder
experiment), what it needs that stimtrain cannot provide (problems located in
the ``.psyexp`` itself), parameters it does not declare, and, with online
TMS, a locked component that is not in it or whose starts the file does not
bound. The bound is what the plan and the safety check judge: how often the
component can start (from the loops, or the block's ``trials``) and the
shortest time between two starts (its start time within its routine); the
run enforces both, so the pulses the check judged are the most there can be.
"""

from __future__ import annotations

import os
from typing import Any

from .blocks import BuilderFacts, OnlineTMS, TaskBlock
from .errors import Problem
from .fields import FieldReader


def read_builder_block(
    r: FieldReader, m: dict, path: tuple, v: dict, common: dict, read_tms
) -> list:
    """Read a ``type: task`` block with ``builder:`` into a :class:`TaskBlock`.

    Parameters
    ----------
    r : FieldReader
        Collects the problems.
    m : dict
        The block as written.
    path : tuple
        Its place in the document.
    v : dict
        Its fields as read by the task block's table.
    common : dict
        The fields every block has.
    read_tms : callable
        ``read_tms(r, raw, path, task)``: the loader's online-TMS reader.

    Returns
    -------
    list
        The block, or nothing when there were problems.
    """
    from stimtrain.tasks.builder import BuilderError, read_experiment

    n_problems = len(r.problems)
    if v["task"] is not None:
        r.fail(
            (*path, "builder"), "give either task or builder, not both", m["builder"]
        )
        return []
    name = v["builder"]
    if name is None:
        return []
    # Named relative to the protocol, like an include; shown as reachable from
    # where the user works, so messages open in their editor.
    here = "" if r.doc.file == "<string>" else os.path.dirname(r.doc.file)
    shown = os.path.normpath(os.path.join(here, name))
    try:
        experiment = read_experiment(shown, shown=shown)
    except BuilderError as exc:
        _fail(r, path, "builder", exc, name)
        return []
    for exc in experiment.problems:
        _fail(r, path, "builder", exc, name)
    params = v["params"] if v["params"] is not None else {}
    checked: dict[str, Any] = {}
    try:
        checked = experiment.exp_info(params)
    except BuilderError as exc:
        r.fail((*path, "params", exc.field), exc.rule, exc.value)
    trials = v["trials"]
    rows = experiment.max_rows
    if trials is not None:
        rows = trials if rows is None else min(rows, trials)
    tms = None
    onsets = gap = None
    if "tms" in m:
        tms = read_tms(r, m["tms"], (*path, "tms"), None)
        if tms is not None:
            onsets, gap = _bound(r, m, path, experiment, tms, trials)
    if len(r.problems) > n_problems:
        return []
    return [
        TaskBlock(
            **common,
            label=v["label"],
            task=experiment.name,
            trials=rows or 0,
            params=checked,
            tms=tms,
            builder=BuilderFacts(
                path=os.path.abspath(shown),
                shown=shown,
                sha256=experiment.sha256,
                max_trials=trials,
                estimated_s=_estimate(experiment, rows),
                onsets=onsets,
                onset_gap_s=gap,
            ),
        )
    ]


def _fail(r: FieldReader, path: tuple, key: str, exc, written) -> None:
    """A Builder problem: in the ``.psyexp`` when it is located there, else at
    the protocol's field."""
    if exc.file is not None and exc.line:
        field = exc.field or "(document)"
        r.problems.append(
            Problem(exc.file, exc.line, exc.col, field, exc.rule, exc.value)
        )
        return
    rule = exc.rule if exc.file is None else f"{exc.rule} ({exc.file})"
    r.fail((*path, key), rule, written if exc.file is None else exc.value)


def _bound(r: FieldReader, m: dict, path: tuple, experiment, tms: OnlineTMS, trials):
    """How often the locked component can start, and how close two starts can be."""
    at = (*path, "tms", "at")
    written = m["tms"].get("at") if isinstance(m["tms"], dict) else None
    component, _, edge = tms.event.partition(".")
    if not edge:
        r.fail(
            at,
            "in a Builder block, pulses lock to a component: "
            "'<component>.started' or '<component>.stopped' plus a delay",
            written,
        )
        return None, None
    comp = experiment.components.get(component)
    if comp is None:
        known = ", ".join(sorted(experiment.components)) or "none"
        r.fail(
            at, f"is not a component of the experiment (components: {known})", written
        )
        return None, None
    onsets = experiment.onsets(component)
    if trials is not None:
        per_row = sum(
            1 for name, loops in experiment.flow if name == comp.routine and loops
        )
        outside = sum(
            1 for name, loops in experiment.flow if name == comp.routine and not loops
        )
        capped = outside + trials * per_row
        onsets = capped if onsets is None else min(onsets, capped)
    if onsets is None:
        r.fail(
            at,
            f"the experiment's loops do not fix how often {component} starts (a "
            "staircase, or a count written as code): give the block's trials to "
            "bound its pulses",
            written,
        )
        return None, None
    gap = comp.start_s
    if gap is None or gap <= 0:
        r.fail(
            at,
            f"{component} must start at a fixed time after its routine begins, "
            "more than 0 s (that time bounds how close two pulses can be; it "
            f"starts at {comp.params.get('startType', '?')} "
            f"{comp.params.get('startVal') or 'empty'})",
            written,
        )
        return None, None
    return onsets, gap


def _estimate(experiment, rows: int | None) -> float:
    """The experiment's rough duration, scaled down to the block's ``trials``."""
    full = experiment.max_rows
    if rows is None or not full or rows >= full:
        return experiment.estimated_s
    return experiment.estimated_s * rows / full
