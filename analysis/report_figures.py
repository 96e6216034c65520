"""The report's own figures: the session timeline and the GMFP with its windows.

MNE draws the raw, evoked and topomap figures; these two are the ones a
stimtrain session needs that MNE has no figure for. Each returns a matplotlib
figure that :meth:`mne.Report.add_figure` takes (the caller closes it).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import mne
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .tep import gmfp

__all__ = ["timeline_figure", "gmfp_figure"]

#: Colour of a block's recorded span, by block type (others: "other").
_TYPE_COLOURS = {
    "stimulate": "#d62728",
    "threshold": "#d62728",
    "hotspot": "#d62728",
    "task": "#2ca02c",
    "rest": "#1f77b4",
    "instructions": "#7f7f7f",
    "other": "#9467bd",
}
_PLANNED = "0.86"
_PULSE = "#7a0000"


def _session_zero(markers: pd.DataFrame) -> float:
    """The session's time zero: its start marker, else its first marker."""
    start = markers.loc[markers["event"] == "session_start", "time"]
    return float(start.iloc[0] if len(start) else markers["time"].min())


def _blocks(markers: pd.DataFrame, plan: dict | None) -> pd.DataFrame:
    """One row per block (index, type, label) from the plan and the markers."""
    rows: dict[int, dict] = {}
    for b in (plan or {}).get("blocks", []):
        if isinstance(b, dict) and b.get("index") is not None:
            rows[int(b["index"])] = dict(type=b.get("type"), label=b.get("label"))
    if "block" in markers:
        starts = markers[markers["event"] == "block_start"].dropna(subset=["block"])
        for _, m in starts.iterrows():
            row = rows.setdefault(int(m["block"]), {})
            for key in ("type", "label"):
                if not row.get(key) and isinstance(m.get(key), str):
                    row[key] = m[key]
        for block in markers["block"].dropna().unique():
            rows.setdefault(int(block), {})
    table = pd.DataFrame.from_dict(rows, orient="index").sort_index()
    for key in ("type", "label"):
        if key not in table:
            table[key] = None
    return table


def _recorded_span(markers, block: int, zero: float) -> tuple[float, float] | None:
    in_block = markers[markers["block"] == block]
    start = in_block.loc[in_block["event"] == "block_start", "time"]
    end = in_block.loc[in_block["event"] == "block_end", "time"]
    if not len(start) and not len(in_block):
        return None
    t0 = float(start.iloc[0] if len(start) else in_block["time"].min())
    t1 = float(end.iloc[-1] if len(end) else in_block["time"].max())
    return t0 - zero, max(t1 - t0, 0.0)


def _trains(plan: dict | None, block: int, times: np.ndarray) -> list[np.ndarray]:
    """The block's delivered pulse times split into its planned trains.

    The plan gives each train's pulse count (in the order delivered); its
    times are the worst case the safety check judged, so only the counts
    are used.
    """
    counts = [
        int(t.get("pulses") or 0)
        for t in (plan or {}).get("trains", [])
        if isinstance(t, dict) and t.get("block") == block
    ]
    if len(counts) == 0 or len(times) == 0:
        return []
    edges = np.cumsum(counts)[:-1]
    return [t for t in np.split(times, edges[edges < len(times)]) if len(t) > 1]


def _trial_outcomes(markers: pd.DataFrame, block: int) -> pd.DataFrame:
    """Each task trial's onset and whether its response was correct."""
    in_block = markers[markers["block"] == block]
    onsets = in_block[in_block["event"] == "stim_onset"]
    if onsets.empty:
        return pd.DataFrame(columns=["time", "correct"])
    onsets = onsets[["time", "trial"]] if "trial" in onsets else onsets[["time"]]
    responses = in_block[in_block["event"] == "response"]
    if "trial" in onsets and "correct" in responses and len(responses):
        correct = responses.dropna(subset=["trial"]).groupby("trial")["correct"].last()
        ok = onsets["trial"].map(correct)
    else:
        ok = pd.Series(False, index=onsets.index)
    return pd.DataFrame(
        {"time": onsets["time"].to_numpy(), "correct": ok.fillna(0).astype(bool)}
    )


def timeline_figure(markers: pd.DataFrame, plan: dict | None = None):
    """Draw the session over time: blocks, pulses, trains and task trials.

    Parameters
    ----------
    markers : pandas.DataFrame
        The run's markers (:func:`~stimtrain.analysis.xdf.read_markers`).
    plan : dict | None
        The run's ``plan.json``: each block's planned span and its trains.

    Returns
    -------
    fig : matplotlib.figure.Figure | None
        One row per block over session time (s from the ``session_start``
        marker): the planned span (grey), the recorded span (from the
        block's start to its end marker, coloured by block type), a tick per
        pulse delivered, a bracket per train, a dot per task trial (filled
        when correct). Aborts and stalled streams are vertical lines.
        ``None`` when there is nothing to draw (no markers and no plan).
    """
    if markers.empty or "time" not in markers:
        return None
    blocks = _blocks(markers, plan)
    if blocks.empty:
        return None
    zero = _session_zero(markers)
    planned = {
        int(b["index"]): b
        for b in (plan or {}).get("blocks", [])
        if isinstance(b, dict) and b.get("index") is not None
    }
    pulses = markers[markers["event"] == "pulse"]
    n_rows = len(blocks)
    fig, ax = plt.subplots(figsize=(10, 0.55 * n_rows + 1.6), layout="constrained")
    ends = [0.0]
    for y, (block, row) in enumerate(blocks.iterrows()):
        colour = _TYPE_COLOURS.get(row["type"], _TYPE_COLOURS["other"])
        plan_block = planned.get(block)
        if plan_block is not None and plan_block.get("duration_s") is not None:
            start, dur = float(plan_block["start_s"]), float(plan_block["duration_s"])
            ax.broken_barh([(start, dur)], (y - 0.42, 0.84), facecolors=_PLANNED)
            ends.append(start + dur)
        span = _recorded_span(markers, block, zero)
        if span is not None:
            ax.broken_barh([span], (y - 0.24, 0.48), facecolors=colour, alpha=0.35)
            ends.append(span[0] + span[1])
        times = pulses.loc[pulses["block"] == block, "time"].to_numpy(float) - zero
        if len(times):
            ax.vlines(times, y - 0.3, y + 0.3, color=_PULSE, lw=0.7)
        for train in _trains(plan, block, times):
            ax.plot(
                [train[0], train[0], train[-1], train[-1]],
                [y + 0.34, y + 0.4, y + 0.4, y + 0.34],
                color="k",
                lw=1.0,
            )
        trials = _trial_outcomes(markers, block)
        if len(trials):
            t = trials["time"].to_numpy(float) - zero
            ok = trials["correct"].to_numpy(bool)
            ax.scatter(t[ok], np.full(ok.sum(), y), s=14, color="#1a7a1a", zorder=3)
            ax.scatter(
                t[~ok],
                np.full((~ok).sum(), y),
                s=14,
                facecolors="none",
                edgecolors="#b00000",
                zorder=3,
            )
        ax.text(
            1.005,
            y,
            _row_note(plan_block, len(times), len(trials)),
            transform=ax.get_yaxis_transform(),
            va="center",
            fontsize=8,
        )
    for event, style in (("abort", "-"), ("stream_stalled", ":")):
        for t in markers.loc[markers["event"] == event, "time"]:
            ax.axvline(t - zero, color="#b00000", ls=style, lw=1.2)
    ax.set_yticks(
        range(n_rows),
        [
            f"{block} · {row['label'] or row['type'] or ''}"
            for block, row in blocks.iterrows()
        ],
    )
    ax.set_ylim(n_rows - 0.4, -0.6)
    ax.set_xlim(0, max(ends + [float(markers["time"].max() - zero)]) * 1.01 + 0.5)
    ax.set_xlabel("session time (s)")
    ax.grid(axis="x", color="0.9", lw=0.6)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    handles = [
        Patch(facecolor=_PLANNED, label="planned"),
        Patch(facecolor=_TYPE_COLOURS["stimulate"], alpha=0.35, label="recorded"),
        Line2D([], [], color=_PULSE, marker="|", ls="none", ms=10, label="pulse"),
        Line2D([], [], color="k", lw=1.0, label="train"),
        Line2D([], [], color="#1a7a1a", marker="o", ls="none", ms=4, label="trial"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=5, fontsize=8)
    return fig


def _row_note(plan_block: dict | None, n_pulses: int, n_trials: int) -> str:
    """Delivered against planned, printed at the row's right end."""
    parts = []
    planned = int((plan_block or {}).get("pulses") or 0)
    if planned or n_pulses:
        parts.append(f"{n_pulses}/{planned} pulses" if planned else f"{n_pulses} p.")
    planned_trials = int((plan_block or {}).get("trials") or 0)
    if planned_trials or n_trials:
        parts.append(
            f"{n_trials}/{planned_trials} trials"
            if planned_trials
            else f"{n_trials} trials"
        )
    return ", ".join(parts)


def gmfp_figure(evoked: mne.Evoked, n: int, windows: dict):
    """Draw the GMFP of a TEP with the peak windows shaded.

    Parameters
    ----------
    evoked : mne.Evoked
        The TEP.
    n : int
        The number of pulses averaged (in the title).
    windows : dict
        Component name to ``(start, end)`` in s.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    power = gmfp(evoked) * 1e6
    fig, ax = plt.subplots(figsize=(7, 3), layout="constrained")
    ax.plot(evoked.times * 1e3, power, color="k")
    for ii, (name, (t0, t1)) in enumerate(windows.items()):
        ax.axvspan(t0 * 1e3, t1 * 1e3, color=f"C{ii}", alpha=0.12)
        ax.text(
            (t0 + t1) / 2 * 1e3,
            1.0,
            name,
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="top",
            fontsize=8,
        )
    ax.axvline(0, color="r", lw=0.8)
    ax.set(
        xlabel="time from pulse (ms)",
        ylabel="GMFP (µV)",
        title=f"{n} pulses",
        xlim=(max(evoked.times[0] * 1e3, -100), min(evoked.times[-1] * 1e3, 350)),
    )
    return fig
