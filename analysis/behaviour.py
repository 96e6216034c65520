"""Task behaviour: per-block measures, pulses per trial, learning curves.

Reads the trials TSVs the task runner writes (``<prefix>block-<bb>_task-
<name>_trials.tsv``; ``n/a`` for missing values, ``correct`` as 1/0) and the
measures each task computed when its block ended, as the run's journal
recorded them (``block_end``), so that the numbers are the ones the runner
printed; without them a block gets RT and accuracy by condition. The analysis
reads files only: it never imports the task code. Pulses are joined to the trials they
fell in from the markers: a pulse belongs to a trial when it came between the
trial's ``stim_onset`` and the next trial's (or the block's end).
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
from mne.utils import logger

from stimtrain.journalfile import read_journal
from stimtrain.taskfiles import TRIALS_FILE

__all__ = [
    "behaviour_table",
    "read_trials",
    "recorded_measures",
    "task_measures",
    "trial_pulses",
    "join_pulses",
    "tms_comparison",
    "session_measures",
    "learning_curves",
]


def _bool_series(values: pd.Series) -> pd.Series:
    """Read a correctness column written as bools, 0/1 or text."""
    if values.dtype == bool:
        return values.astype(float)
    text = values.astype(str).str.strip().str.lower()
    mapping = {"true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0, "1.0": 1.0, "0.0": 0.0}
    return text.map(mapping)


def behaviour_table(trials: pd.DataFrame, *, by: str | list[str] = "condition"):
    """Summarise task trials per condition.

    Parameters
    ----------
    trials : pandas.DataFrame
        One row per trial with (case-insensitive) columns ``condition``,
        ``rt`` (s, empty when there was no response) and ``correct``.
        Missing columns give NaN measures.
    by : str | list of str
        Grouping column(s); ``"condition"`` by default (``"all"`` when the
        table has none). Other columns (e.g. ``["condition", "tms"]``) are
        used as they are.

    Returns
    -------
    table : pandas.DataFrame
        Indexed by the groups: ``n_trials``, ``n_responses``, ``accuracy``
        (proportion correct), ``mean_rt_ms`` and ``median_rt_ms`` (correct
        responses only) and ``sd_rt_ms``.
    """
    cols = {c.lower(): c for c in trials.columns}
    by = [by] if isinstance(by, str) else list(by)
    df = pd.DataFrame(index=trials.index)
    for key in by:
        if key == "condition":
            df[key] = (
                trials[cols["condition"]].astype(str) if "condition" in cols else "all"
            )
        else:
            df[key] = trials[cols.get(key.lower(), key)]
    rt = pd.to_numeric(trials[cols["rt"]], errors="coerce") if "rt" in cols else np.nan
    df["rt_ms"] = rt * 1e3
    df["correct"] = (
        _bool_series(trials[cols["correct"]]) if "correct" in cols else np.nan
    )
    rt_correct = df["rt_ms"].where(df["correct"] != 0)
    grouped = df.assign(rt_correct=rt_correct).groupby(
        by if len(by) > 1 else by[0], sort=True
    )
    return pd.DataFrame(
        {
            "n_trials": grouped.size(),
            "n_responses": grouped["rt_ms"].count(),
            "accuracy": grouped["correct"].mean(),
            "mean_rt_ms": grouped["rt_correct"].mean(),
            "median_rt_ms": grouped["rt_correct"].median(),
            "sd_rt_ms": grouped["rt_correct"].std(),
        }
    )


def read_trials(folder: str | PathLike, prefix: str = "") -> pd.DataFrame:
    """Read every trials TSV of a run into one table.

    Parameters
    ----------
    folder : path-like
        The session folder.
    prefix : str
        The run's file prefix (``sub-01_ses-1_run-01_``); ``""`` reads all.

    Returns
    -------
    trials : pandas.DataFrame
        The TSV rows with ``block_file`` (the block number in the file name,
        1-based), ``block`` (the marker's 0-based block index) and ``task``
        prepended; ``n/a`` is NaN. Empty if there are no TSVs.
    """
    frames = []
    pattern = f"{prefix or '*'}block-*_task-*_trials.tsv"
    for f in sorted(Path(folder).glob(pattern)):
        match = TRIALS_FILE.search(f.name)
        if match is None:
            continue
        df = pd.read_csv(f, sep="\t", na_values=["n/a"], keep_default_na=True)
        df.insert(0, "task", match.group(2))
        # The runner names files with the 1-based block, markers carry the
        # 0-based index (orchestrator.session.session_folder.task_tsv).
        df.insert(0, "block", int(match.group(1)) - 1)
        df.insert(0, "block_file", int(match.group(1)))
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["block_file", "block", "task"])
    return pd.concat(frames, ignore_index=True)


def recorded_measures(journal: str | PathLike) -> dict[int, dict]:
    """The measures each task block's own code computed, from a run's journal.

    Parameters
    ----------
    journal : path-like
        The run's ``…_journal.jsonl``.

    Returns
    -------
    dict
        Block index (0-based) → the measures the runner recorded when the
        block ended (``block_end`` lines). A line torn by a crash, or one
        that is not an event, is skipped.
    """
    out: dict[int, dict] = {}
    for entry in read_journal(journal):
        if entry.get("event") != "block_end":
            continue
        measures = entry.get("measures")
        if isinstance(measures, dict) and isinstance(entry.get("block"), int):
            out[entry["block"]] = measures
    return out


def task_measures(
    task: str, trials: pd.DataFrame, recorded: dict | None = None
) -> dict:
    """Compute one block's measures.

    Parameters
    ----------
    task : str
        Task name.
    trials : pandas.DataFrame
        The block's rows (as from :func:`read_trials`).
    recorded : dict | None
        The measures the task computed when the block ran (see
        :func:`recorded_measures`).

    Returns
    -------
    measures : dict
        ``recorded`` when given (``source`` = ``"session"``); else
        ``n_trials``, ``accuracy``, ``rt_ms`` and per-condition
        ``accuracy_<c>`` and ``rt_<c>_ms`` from the rows (``source`` =
        ``"generic"``).
    """
    if recorded:
        return {**recorded, "source": "session"}
    logger.info(f"Generic measures for task {task!r} (none recorded)")
    overall = behaviour_table(trials.assign(condition="all")).iloc[0]
    out = {
        "n_trials": int(overall["n_trials"]),
        "accuracy": float(overall["accuracy"]),
        "rt_ms": float(overall["mean_rt_ms"]),
    }
    for cond, row in behaviour_table(trials).iterrows():
        out[f"accuracy_{cond}"] = float(row["accuracy"])
        out[f"rt_{cond}_ms"] = float(row["mean_rt_ms"])
    out["source"] = "generic"
    return out


def trial_pulses(markers: pd.DataFrame) -> pd.DataFrame:
    """Count the pulses that fell in each task trial, from the markers.

    Parameters
    ----------
    markers : pandas.DataFrame
        As from :func:`~stimtrain.analysis.read_markers` (``time``, ``event``,
        ``block``, ``task``, ``trial`` …).

    Returns
    -------
    trials : pandas.DataFrame
        One row per ``stim_onset``: ``block``, ``task``, ``trial``,
        ``onset`` (s), ``end`` (next trial's onset in the block, else the
        block's end, else the last marker), ``n_pulses``, ``tms`` (bool),
        ``first_pulse_ms`` (first pulse − onset; NaN without pulses) and
        ``pulse_withdrawn``: the ``reason`` of the trial's ``no_pulse``
        marker when a pulse chosen for it was withdrawn (``stream_stalled``,
        ``operator_pause``), else missing. A pulse before the first onset of a
        block is not counted.
    """
    cols = [
        "block",
        "task",
        "trial",
        "onset",
        "end",
        "n_pulses",
        "tms",
        "first_pulse_ms",
        "pulse_withdrawn",
    ]
    if markers.empty or "event" not in markers:
        return pd.DataFrame(columns=cols)
    onsets = markers[markers["event"] == "stim_onset"]
    if onsets.empty:
        return pd.DataFrame(columns=cols)
    pulses = np.sort(markers.loc[markers["event"] == "pulse", "time"].to_numpy(float))
    withdrawn = {}
    if "reason" in markers:
        lost = markers[(markers["event"] == "no_pulse") & markers["reason"].notna()]
        withdrawn = {
            (float(m["block"]), float(m["trial"])): m["reason"]
            for _, m in lost.iterrows()
        }
    ends = markers[markers["event"] == "block_end"]
    last = float(markers["time"].max())
    rows = []
    for block, grp in onsets.sort_values("time").groupby("block", sort=False):
        block_end = ends.loc[ends["block"] == block, "time"] if "block" in ends else []
        stop = float(block_end.iloc[0]) if len(block_end) else last
        times = grp["time"].to_numpy(float)
        nexts = np.r_[times[1:], max(stop, times[-1])]
        for (_, m), t0, t1 in zip(grp.iterrows(), times, nexts, strict=True):
            # Half-open: a pulse exactly at the next onset belongs to that trial.
            lo, hi = np.searchsorted(pulses, [t0, t1], side="left")
            inside = pulses[lo:hi]
            rows.append(
                [
                    block,
                    m.get("task"),
                    m.get("trial"),
                    t0,
                    t1,
                    len(inside),
                    len(inside) > 0,
                    (inside[0] - t0) * 1e3 if len(inside) else np.nan,
                    withdrawn.get((float(block), float(m.get("trial")))),
                ]
            )
    return pd.DataFrame(rows, columns=cols)


def join_pulses(trials: pd.DataFrame, markers: pd.DataFrame) -> pd.DataFrame:
    """Add the pulses of each trial to the trials TSV rows.

    Parameters
    ----------
    trials : pandas.DataFrame
        As from :func:`read_trials` (``block``, ``task``, ``trial``).
    markers : pandas.DataFrame
        The run's markers.

    Returns
    -------
    trials : pandas.DataFrame
        A copy with ``n_pulses``, ``tms``, ``first_pulse_ms`` and
        ``pulse_withdrawn`` (see :func:`trial_pulses`; trials without a
        ``stim_onset`` marker get ``n_pulses`` 0, ``tms`` False).
    """
    per_trial = trial_pulses(markers)[
        ["block", "task", "trial", "n_pulses", "tms", "first_pulse_ms"]
        + ["pulse_withdrawn"]
    ]
    out = trials.copy()
    if per_trial.empty or out.empty:
        out["n_pulses"] = 0
        out["tms"] = False
        out["first_pulse_ms"] = np.nan
        out["pulse_withdrawn"] = None
        return out
    keys = ["block", "task", "trial"]
    per_trial = per_trial.astype({"block": float, "trial": float, "task": str})
    left = out.astype({"block": float, "trial": float, "task": str})
    merged = left[keys].merge(per_trial, on=keys, how="left")
    out["n_pulses"] = merged["n_pulses"].fillna(0).astype(int).to_numpy()
    out["tms"] = out["n_pulses"] > 0
    out["first_pulse_ms"] = merged["first_pulse_ms"].to_numpy()
    out["pulse_withdrawn"] = merged["pulse_withdrawn"].to_numpy()
    return out


def tms_comparison(trials: pd.DataFrame) -> pd.DataFrame:
    """RT and accuracy of TMS versus no-TMS trials, per task and condition.

    Parameters
    ----------
    trials : pandas.DataFrame
        From :func:`join_pulses`.

    Returns
    -------
    table : pandas.DataFrame
        :func:`behaviour_table` grouped by ``task``, ``condition`` and ``tms``,
        as columns. Trials whose chosen pulse was withdrawn (a stalled
        stream, a pause) are left out: they were neither stimulated nor
        left unstimulated by the protocol's choice.
    """
    if trials.empty or "tms" not in trials:
        return pd.DataFrame()
    if "pulse_withdrawn" in trials:
        trials = trials[trials["pulse_withdrawn"].isna()]
    return behaviour_table(trials, by=["task", "condition", "tms"]).reset_index()


def session_measures(
    trials: pd.DataFrame,
    *,
    participant: str = "",
    session: str = "",
    recorded: dict[int, dict] | None = None,
) -> pd.DataFrame:
    """Every block's measures as a tidy table.

    Parameters
    ----------
    trials : pandas.DataFrame
        From :func:`read_trials` (one or several blocks).
    participant, session : str
        Written into every row.
    recorded : dict | None
        Block → the measures its task recorded (:func:`recorded_measures`).

    Returns
    -------
    measures : pandas.DataFrame
        ``participant``, ``session``, ``block``, ``task``, ``measure``,
        ``value`` (numbers only), ``source``.
    """
    rows = []
    if trials.empty:
        return pd.DataFrame(
            columns=[
                "participant",
                "session",
                "block",
                "task",
                "measure",
                "value",
                "source",
            ]
        )
    for (block, task), grp in trials.groupby(["block", "task"], sort=True):
        measures = task_measures(
            task,
            grp.drop(columns=["block_file"], errors="ignore"),
            (recorded or {}).get(int(block)),
        )
        source = measures.pop("source")
        for key, value in measures.items():
            if isinstance(value, bool | int | float | np.number):
                rows.append(
                    [participant, session, int(block), task, key, float(value), source]
                )
    return pd.DataFrame(
        rows,
        columns=[
            "participant",
            "session",
            "block",
            "task",
            "measure",
            "value",
            "source",
        ],
    )


def learning_curves(
    measures: pd.DataFrame, *, measure: str | None = None
) -> pd.DataFrame:
    """Learning curves across the sessions of a course.

    Parameters
    ----------
    measures : pandas.DataFrame
        :func:`session_measures` tables of several sessions, concatenated.
    measure : str | None
        Keep only this measure.

    Returns
    -------
    curves : pandas.DataFrame
        Per ``participant``, ``task``, ``measure`` and ``session`` (in
        numeric order when sessions are numbers): ``value`` (mean over the
        session's blocks), ``session_index`` (0, 1, … per participant) and
        ``change`` (value minus the participant's first session).
    """
    df = measures if measure is None else measures[measures["measure"] == measure]
    if df.empty:
        return pd.DataFrame(
            columns=[
                "participant",
                "task",
                "measure",
                "session",
                "value",
                "session_index",
                "change",
            ]
        )
    curves = (
        df.groupby(["participant", "task", "measure", "session"], sort=False)["value"]
        .mean()
        .reset_index()
    )
    order = pd.to_numeric(curves["session"], errors="coerce")
    curves = curves.assign(_order=order.fillna(0), _name=curves["session"].astype(str))
    curves = curves.sort_values(["participant", "task", "measure", "_order", "_name"])
    grp = curves.groupby(["participant", "task", "measure"], sort=False)
    curves["session_index"] = grp.cumcount()
    curves["change"] = curves["value"] - grp["value"].transform("first")
    return curves.drop(columns=["_order", "_name"]).reset_index(drop=True)
