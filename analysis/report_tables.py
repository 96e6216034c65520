"""The tables of the report: how each is built from the session's files and shown.

:func:`pulse_table` pairs each pulse marker with its schedule; the plan,
timing and trial tables are built here too, and :func:`df_html` is how every
table goes into the report (one header row, whole numbers as integers, a
scrolling box of its own when it is wider than the page).
"""

from __future__ import annotations

import json

import pandas as pd

from .xdf import _clock_offset_fit, _find_marker_stream


def pulse_table(
    markers: pd.DataFrame, streams: list[dict] | None = None
) -> pd.DataFrame:
    """Tabulate delivered versus scheduled pulse times.

    Parameters
    ----------
    markers : pandas.DataFrame
        Markers as from :func:`read_markers`.
    streams : list of dict | None
        The loaded streams. If given, ``scheduled`` (a time on the sender's
        clock) is mapped to the recorder's clock with the marker stream's
        recorded clock offsets, as pyxdf does for the marker timestamps.

    Returns
    -------
    pulses : pandas.DataFrame
        One row per pulse marker with its fields, ``delivered`` (marker time,
        s), ``scheduled`` (s, recorder clock) and ``error_ms`` (delivered −
        scheduled, ms).
    """
    if markers.empty or "event" not in markers:
        return pd.DataFrame(columns=["delivered", "scheduled", "error_ms"])
    pulses = markers[markers["event"] == "pulse"].dropna(axis=1, how="all")
    # A run stopped before its first pulse has no pulse rows (and so, after
    # dropna, no columns at all).
    pulses = pulses.drop(columns="event", errors="ignore")
    pulses = pulses.rename(columns={"time": "delivered"})
    if "delivered" not in pulses:
        pulses["delivered"] = pd.Series(dtype=float)
    pulses = pulses.reset_index(drop=True)
    if "scheduled" in pulses:
        scheduled = pd.to_numeric(pulses["scheduled"], errors="coerce").to_numpy()
        mstream = None if streams is None else _find_marker_stream(streams, None)
        if mstream is not None:
            scheduled = _clock_offset_fit(mstream)(scheduled)
        pulses["scheduled"] = scheduled
        pulses["error_ms"] = (pulses["delivered"] - scheduled) * 1e3
    return pulses


def trials_from_markers(markers: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Rebuild trial tables from stim_onset/response markers, per block/task."""
    if markers.empty or "stim_onset" not in set(markers["event"]):
        return {}
    keys = ["block", "task", "trial"]
    onsets = markers[markers["event"] == "stim_onset"]
    onsets = onsets[[k for k in keys + ["condition"] if k in onsets]]
    responses = markers[markers["event"] == "response"]
    responses = responses[[k for k in keys + ["rt", "correct"] if k in responses]]
    on = [k for k in keys if k in onsets and k in responses]
    trials = onsets.merge(responses, on=on, how="left") if on else onsets
    out = {}
    for (block, task), df in trials.groupby(["block", "task"], sort=True):
        out[f"block {int(block):02d}, task {task} (from markers)"] = df
    return out


def trials_by_block(trials: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Split :func:`read_trials`'s table into one labelled table per block."""
    if trials.empty:
        return {}
    return {
        f"block {int(block):02d}, task {task}": df.drop(
            columns=["block_file", "block", "task"]
        )
        for (block, task), df in trials.groupby(["block_file", "task"], sort=True)
    }


def df_html(df: pd.DataFrame, *, index: bool = True, float_format="{:.3f}") -> str:
    """Render a table for the report.

    Parameters
    ----------
    df : pandas.DataFrame
        The table.
    index : bool
        Show the index (a named one becomes a column, so that the header is
        one row whose cells line up with the values).
    float_format : str
        Format of non-integer numbers.

    Returns
    -------
    html : str
        The table in a ``div`` that scrolls sideways when the table is wider
        than the page.
    """
    if index and df.columns.nlevels == 1 and any(n is not None for n in df.index.names):
        # A named index would get a header row of its own, under the columns'
        # (it reads as a header shifted by one column): make it a column.
        df, index = df.reset_index(), False
    ints = [c for c in df.columns if pd.api.types.is_extension_array_dtype(df[c])]
    if ints:
        # pandas prints a missing nullable integer as <NA> whatever na_rep says.
        df = df.copy()
        for c in ints:
            df[c] = df[c].astype(object).where(df[c].notna(), "")
    # A wide table scrolls in its own box instead of running off the page.
    # Headers are left-aligned like the values under them (pandas would
    # right-align them over the report's left-aligned cells).
    table = df.to_html(
        index=index,
        float_format=float_format.format,
        border=0,
        classes="table table-sm table-striped",
        na_rep="",
        justify="left",
    )
    return f'<div style="overflow-x: auto; max-width: 100%">{table}</div>'


#: The plan's columns a reader needs, in order (the rest, such as every
#: pulse's offset, is in the plan file).
PLAN_COLUMNS = (
    "index",
    "type",
    "label",
    "start_s",
    "duration_s",
    "pulses",
    "pattern",
    "intensity",
    "power",
    "delivery",
    "task",
    "trials",
)


def timing_table(diagnostics: dict) -> pd.DataFrame:
    """Every timing diagnostic of every stream, one row per stream (for TSV).

    Parameters
    ----------
    diagnostics : dict
        From :func:`~stimtrain.analysis.xdf.timing_diagnostics`.

    Returns
    -------
    table : pandas.DataFrame
        ``stream`` and one column per diagnostic (lists and dicts as JSON).
    """
    rows = []
    for key, d in diagnostics.items():
        row = {"stream": key}
        row.update(
            {
                k: (json.dumps(v) if isinstance(v, list | dict) else v)
                for k, v in d.items()
            }
        )
        rows.append(row)
    return pd.DataFrame(rows)


def timing_summary_table(diagnostics: dict) -> pd.DataFrame:
    """The timing diagnostics a reader needs, one row per stream (for HTML).

    Parameters
    ----------
    diagnostics : dict
        From :func:`~stimtrain.analysis.xdf.timing_diagnostics`.

    Returns
    -------
    table : pandas.DataFrame
    """
    rows = []
    for key, d in diagnostics.items():
        rows.append(
            {
                "stream": key,
                "type": d["type"],
                "channels": d["channel_count"],
                "samples": d["n_samples"],
                "nominal rate (Hz)": d["nominal_srate"],
                "effective rate (Hz)": d["effective_srate"],
                "rate error (ppm)": d["srate_error_ppm"],
                "duration (s)": d["duration_s"],
                "segments": d["n_segments"],
                "gaps (s)": ", ".join(f"{g:.3f}" for g in d["gaps_s"]),
                "dropped samples": d["dropped_samples"],
                "clock offsets": d["n_clock_offsets"],
                "offset mean (ms)": d["clock_offset_mean_ms"],
                "offset SD (ms)": d["clock_offset_std_ms"],
                "offset range (ms)": d["clock_offset_range_ms"],
                "footer": d["has_footer"],
            }
        )
    return pd.DataFrame(rows)


def plan_blocks(plan: dict, pulses: pd.DataFrame) -> pd.DataFrame:
    """The plan's blocks with the pulses delivered in each.

    Parameters
    ----------
    plan : dict
        The session's ``plan.json``.
    pulses : pandas.DataFrame
        From :func:`pulse_table`.

    Returns
    -------
    blocks : pandas.DataFrame
        Every field of every planned block, plus ``pulses delivered`` (from
        the pulse markers; 0 for a block without any).
    """
    blocks = pd.DataFrame(plan.get("blocks", []))
    if "index" in blocks and "block" in pulses:
        delivered = pulses.groupby("block").size()
        blocks["pulses delivered"] = (
            blocks["index"].map(delivered).fillna(0).astype(int)
        )
    return blocks


def plan_shown(blocks: pd.DataFrame) -> pd.DataFrame:
    """The columns of :func:`plan_blocks` a reader needs, whole numbers as such.

    Parameters
    ----------
    blocks : pandas.DataFrame
        From :func:`plan_blocks`.

    Returns
    -------
    table : pandas.DataFrame
        :data:`PLAN_COLUMNS` that exist (``index`` named ``block``) and
        ``pulses delivered``; no list of every pulse offset.
    """
    shown = [c for c in (*PLAN_COLUMNS, "pulses delivered") if c in blocks]
    table = blocks[shown].rename(columns={"index": "block"})
    for column in ("block", "pulses", "trials", "power"):
        if column in table:
            # Whole numbers print as such (not 2.0), a missing one as blank.
            table[column] = pd.to_numeric(table[column], errors="coerce").astype(
                "Int64"
            )
    return table
