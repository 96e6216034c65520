"""One HTML report per recorded run: timing, pulses, TEP and behaviour.

:func:`analyze_session` reads a run's XDF once and writes, next to it, an
:class:`mne.Report` (``..._report.html``) and the pulse table
(``..._pulses.tsv``). Sections without data (no EEG, no pulses, no task
trials) are replaced by a short note, so every run gets a report.
"""

from __future__ import annotations

import html
import json
import re
from os import PathLike
from pathlib import Path

import matplotlib.pyplot as plt
import mne
import numpy as np
import pandas as pd
from mne.utils import logger, verbose

from .tep import TEP_WINDOWS, artifact_alignment, gmfp, pulse_epochs, tep
from .xdf import (
    _clock_offset_fit,
    _find_marker_stream,
    _markers_from_streams,
    _raw_from_streams,
    load_streams,
    timing_diagnostics,
)

__all__ = ["analyze_session", "find_run", "behaviour_table", "pulse_table"]

_RUN_RE = re.compile(r"_run-(\d+)_recording\.xdf$")
_SUFFIX = "recording.xdf"
# Length of raw shown in the report: enough to see the data, light to render.
_RAW_OVERVIEW_S = 20.0

SECTIONS = {
    "timing": "Timing diagnostics",
    "plan": "Session plan",
    "pulses": "Pulse timing",
    "alignment": "Artifact alignment",
    "raw": "Raw overview",
    "tep": "TMS-evoked potential",
    "gmfp": "GMFP",
    "behaviour": "Task behaviour",
}


def find_run(path: str | PathLike, run: int | None = None) -> Path:
    """Return the XDF file of one run of a session folder.

    Parameters
    ----------
    path : path-like
        A session folder (``sub-<id>/ses-<n>/``) or an ``.xdf`` file.
    run : int | None
        Run number; ``None`` takes the highest run in the folder.

    Returns
    -------
    Path
        The ``..._run-<rr>_recording.xdf`` file (or ``path`` itself if it is
        a file).
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"No session folder or XDF file at {path}")
    runs = {}
    for f in path.glob(f"*_run-*_{_SUFFIX}"):
        match = _RUN_RE.search(f.name)
        if match:
            runs[int(match.group(1))] = f
    if not runs:
        raise FileNotFoundError(f"No *_run-<rr>_{_SUFFIX} in {path}")
    if run is None:
        return runs[max(runs)]
    if run not in runs:
        raise FileNotFoundError(f"No run {run} in {path}; runs: {sorted(runs)}")
    return runs[run]


def _prefix(xdf: Path) -> str:
    """The run's file prefix (``sub-01_ses-1_run-01_``), or the stem + ``_``."""
    if xdf.name.endswith(_SUFFIX) and xdf.name != _SUFFIX:
        return xdf.name[: -len(_SUFFIX)]
    return xdf.stem + "_"


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
    pulses = pulses.drop(columns="event").rename(columns={"time": "delivered"})
    pulses = pulses.reset_index(drop=True)
    if "scheduled" in pulses:
        scheduled = pd.to_numeric(pulses["scheduled"], errors="coerce").to_numpy()
        mstream = None if streams is None else _find_marker_stream(streams, None)
        if mstream is not None:
            scheduled = _clock_offset_fit(mstream)(scheduled)
        pulses["scheduled"] = scheduled
        pulses["error_ms"] = (pulses["delivered"] - scheduled) * 1e3
    return pulses


def _bool_series(values: pd.Series) -> pd.Series:
    """Read a correctness column written as bools, 0/1 or text."""
    if values.dtype == bool:
        return values.astype(float)
    text = values.astype(str).str.strip().str.lower()
    mapping = {"true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0, "1.0": 1.0, "0.0": 0.0}
    return text.map(mapping)


def behaviour_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Summarise task trials per condition.

    Parameters
    ----------
    trials : pandas.DataFrame
        One row per trial with (case-insensitive) columns ``condition``,
        ``rt`` (s, empty when there was no response) and ``correct``.
        Missing columns give NaN measures.

    Returns
    -------
    table : pandas.DataFrame
        Indexed by condition (``"all"`` when there is no condition column):
        ``n_trials``, ``n_responses``, ``accuracy`` (proportion correct),
        ``mean_rt_ms`` and ``median_rt_ms`` (correct responses only) and
        ``sd_rt_ms``.
    """
    cols = {c.lower(): c for c in trials.columns}
    df = pd.DataFrame(index=trials.index)
    df["condition"] = (
        trials[cols["condition"]].astype(str) if "condition" in cols else "all"
    )
    rt = pd.to_numeric(trials[cols["rt"]], errors="coerce") if "rt" in cols else np.nan
    df["rt_ms"] = rt * 1e3
    df["correct"] = (
        _bool_series(trials[cols["correct"]]) if "correct" in cols else np.nan
    )
    rt_correct = df["rt_ms"].where(df["correct"] != 0)
    grouped = df.assign(rt_correct=rt_correct).groupby("condition", sort=True)
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


def _trials_from_markers(markers: pd.DataFrame) -> dict[str, pd.DataFrame]:
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


def _trials_from_tsv(folder: Path, prefix: str) -> dict[str, pd.DataFrame]:
    out = {}
    pattern = re.compile(r"block-(\d+)_task-(.+)_trials\.tsv$")
    for f in sorted(folder.glob(f"{prefix}block-*_task-*_trials.tsv")):
        match = pattern.search(f.name)
        label = f"block {match.group(1)}, task {match.group(2)}" if match else f.name
        out[label] = pd.read_csv(f, sep="\t")
    return out


def _df_html(df: pd.DataFrame, *, index: bool = True, float_format="{:.3f}") -> str:
    return df.to_html(
        index=index,
        float_format=float_format.format,
        border=0,
        classes="table table-sm table-striped",
        na_rep="",
    )


def _note(report: mne.Report, title: str, text: str, section: str | None = None):
    report.add_html(
        f"<p><em>{html.escape(text)}</em></p>", title=title, section=section
    )


def _timing_section(report: mne.Report, diagnostics: dict) -> None:
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
    report.add_html(
        _df_html(pd.DataFrame(rows), index=False, float_format="{:.4f}"),
        title=SECTIONS["timing"],
    )


def _plan_section(report: mne.Report, folder: Path, prefix: str, pulses) -> None:
    plan_file = folder / f"{prefix}plan.json"
    if not plan_file.is_file():
        return
    try:
        plan = json.loads(plan_file.read_text())
        blocks = pd.DataFrame(plan.get("blocks", []))
    except (ValueError, TypeError) as err:
        _note(report, SECTIONS["plan"], f"Could not read {plan_file.name}: {err}")
        return
    if blocks.empty:
        return
    if "index" in blocks and "block" in pulses:
        delivered = pulses.groupby("block").size()
        blocks["pulses delivered"] = (
            blocks["index"].map(delivered).fillna(0).astype(int)
        )
    html_text = _df_html(blocks, index=False)
    if "total_pulses" in plan:
        html_text += (
            f"<p>Planned pulses: {plan['total_pulses']}; "
            f"delivered (markers): {len(pulses)}.</p>"
        )
    report.add_html(html_text, title=SECTIONS["plan"])


def _pulse_section(report: mne.Report, pulses: pd.DataFrame) -> None:
    title = SECTIONS["pulses"]
    if pulses.empty:
        _note(report, title, "No pulse markers in this run.")
        return
    if "error_ms" not in pulses:
        _note(report, title, "Pulse markers carry no 'scheduled' time.")
        return
    err = pulses["error_ms"].dropna()
    stats = pd.DataFrame(
        {
            "pulses": [len(pulses)],
            "mean (ms)": [err.mean()],
            "SD (ms)": [err.std()],
            "min (ms)": [err.min()],
            "median (ms)": [err.median()],
            "max (ms)": [err.max()],
        }
    )
    text = (
        "<p>Delivered (marker timestamp: when the trigger left the host) minus "
        "scheduled time, per pulse.</p>" + _df_html(stats, index=False)
    )
    if "block" in pulses:
        per_block = pulses.groupby("block")["error_ms"].agg(
            ["count", "mean", "std", "max"]
        )
        text += "<p>Per block (ms):</p>" + _df_html(per_block)
    report.add_html(text, title=title, section=title)
    fig, ax = plt.subplots(figsize=(6, 3), layout="constrained")
    ax.hist(err, bins=min(50, max(10, len(err) // 4)), color="C0")
    ax.set(xlabel="delivered − scheduled (ms)", ylabel="pulses")
    report.add_figure(fig, title=f"{title}: histogram", section=title)
    plt.close(fig)


def _alignment_section(report: mne.Report, alignment: pd.DataFrame, sfreq) -> None:
    title = SECTIONS["alignment"]
    found = alignment[alignment["found"]]
    counts = (
        found["offset_samples"].value_counts().sort_index().rename("pulses").to_frame()
    )
    counts.index.name = "artifact − marker (samples)"
    text = (
        f"<p>First sample where the mean absolute first derivative of the EEG "
        f"exceeds the threshold within ±5 ms of each pulse marker "
        f"({sfreq:g} Hz, 1 sample = {1e3 / sfreq:.3g} ms). Found for "
        f"{len(found)} of {len(alignment)} pulses.</p>"
        + _df_html(counts)
        + (
            f"<p>Offset (ms, artifact sample − exact marker time): mean "
            f"{found['offset_ms'].mean():.3f}, min {found['offset_ms'].min():.3f}, "
            f"max {found['offset_ms'].max():.3f}.</p>"
            if len(found)
            else ""
        )
    )
    report.add_html(text, title=title)


def _raw_section(report: mne.Report, raw: mne.io.BaseRaw) -> None:
    # A short copy keeps the PSD and the HTML light for hour-long recordings.
    stop = min(raw.n_times, int(_RAW_OVERVIEW_S * raw.info["sfreq"]))
    short = mne.io.RawArray(raw.get_data(stop=stop), raw.info, verbose=False)
    short.set_annotations(raw.annotations.copy().crop(0, stop / raw.info["sfreq"]))
    report.add_raw(
        short, title=SECTIONS["raw"], psd=True, butterfly=False, replace=True
    )


def _tep_sections(report: mne.Report, raw: mne.io.BaseRaw, verbose=None):
    epochs = pulse_epochs(raw, verbose=verbose)
    if len(epochs) == 0:
        _note(report, SECTIONS["tep"], "Every pulse epoch was rejected.")
        return None
    evoked = tep(epochs)
    has_pos = any(
        not np.allclose(ch["loc"][:3], 0) and np.isfinite(ch["loc"][:3]).all()
        for ch in evoked.info["chs"]
    )
    if has_pos:
        report.add_evokeds(
            evoked, titles=[SECTIONS["tep"]], n_time_points=5, replace=True
        )
    else:
        fig = evoked.plot(show=False, spatial_colors=False)
        report.add_figure(fig, title=SECTIONS["tep"])
        plt.close(fig)
    power = gmfp(evoked) * 1e6
    fig, ax = plt.subplots(figsize=(7, 3), layout="constrained")
    ax.plot(evoked.times * 1e3, power, color="k")
    for ii, (name, (t0, t1)) in enumerate(TEP_WINDOWS.items()):
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
        xlabel="time from pulse (ms)", ylabel="GMFP (µV)", title=f"{len(epochs)} pulses"
    )
    report.add_figure(fig, title=SECTIONS["gmfp"])
    plt.close(fig)
    return epochs


def _behaviour_section(report: mne.Report, tables: dict[str, pd.DataFrame]) -> None:
    title = SECTIONS["behaviour"]
    if not tables:
        _note(report, title, "No task trials in this run.")
        return
    for label, trials in tables.items():
        summary = behaviour_table(trials)
        report.add_html(_df_html(summary), title=f"{title}: {label}", section=title)
        fig, (ax_rt, ax_acc) = plt.subplots(
            1, 2, figsize=(7, 2.8), layout="constrained"
        )
        x = np.arange(len(summary))
        sem = summary["sd_rt_ms"] / np.sqrt(summary["n_responses"].clip(lower=1))
        ax_rt.bar(x, summary["mean_rt_ms"], yerr=sem, color="C0")
        ax_rt.set(xticks=x, xticklabels=summary.index, ylabel="mean RT, correct (ms)")
        ax_acc.bar(x, summary["accuracy"] * 100, color="C1")
        ax_acc.set(
            xticks=x, xticklabels=summary.index, ylabel="accuracy (%)", ylim=(0, 100)
        )
        report.add_figure(fig, title=f"{title}: {label} (figure)", section=title)
        plt.close(fig)


@verbose
def analyze_session(
    path: str | PathLike, *, run: int | None = None, verbose=None
) -> Path:
    """Analyse one recorded run and write its HTML report and pulse table.

    Parameters
    ----------
    path : path-like
        A session folder (``<data>/sub-<id>/ses-<n>/``) or an ``.xdf`` file.
    run : int | None
        Run to analyse in a session folder; ``None`` takes the highest.
    %(verbose)s

    Returns
    -------
    report_path : Path
        ``<prefix>report.html`` next to the XDF, where ``<prefix>`` is the
        run's file prefix (``sub-<id>_ses-<n>_run-<rr>_``). Also written:
        ``<prefix>pulses.tsv`` (pulse fields, ``delivered``, ``scheduled``,
        ``error_ms``, ``onset`` in the raw, ``artifact_sample``,
        ``artifact_offset_samples``, ``artifact_offset_ms``).

    Notes
    -----
    Sections: timing diagnostics, session plan (if ``plan.json`` exists),
    pulse timing, artifact alignment, raw overview (first 20 s, PSD), TEP
    (butterfly, topomaps if channel positions are known) and GMFP, task
    behaviour (from the trials TSVs; from the task markers if there are
    none). Missing data gives a note instead of a section.
    """
    xdf = find_run(path, run)
    folder, prefix = xdf.parent, _prefix(xdf)
    streams = load_streams(xdf)
    diagnostics = timing_diagnostics(streams)
    markers = _markers_from_streams(streams)
    pulses = pulse_table(markers, streams)

    report = mne.Report(title=f"stimtrain: {prefix.rstrip('_')}", verbose=False)
    _timing_section(report, diagnostics)
    _plan_section(report, folder, prefix, pulses)
    _pulse_section(report, pulses)

    try:
        raw = _raw_from_streams(streams)
    except ValueError as err:
        raw = None
        _note(report, SECTIONS["raw"], f"No EEG: {err}")
    if raw is not None:
        has_pulses = bool((raw.annotations.description == "pulse").any())
        if has_pulses:
            alignment = artifact_alignment(raw, verbose=verbose)
            _alignment_section(report, alignment, raw.info["sfreq"])
            if len(alignment) == len(pulses):
                # Both are in time order over the same pulse markers.
                pulses["onset"] = alignment["onset"].to_numpy()
                pulses["artifact_sample"] = alignment["artifact_sample"].to_numpy()
                pulses["artifact_offset_samples"] = alignment["offset_samples"].array
                pulses["artifact_offset_ms"] = alignment["offset_ms"].to_numpy()
        _raw_section(report, raw)
        if has_pulses:
            _tep_sections(report, raw, verbose=verbose)
        else:
            _note(report, SECTIONS["tep"], "No pulses in the EEG: no TEP.")
    tables = _trials_from_tsv(folder, prefix) or _trials_from_markers(markers)
    _behaviour_section(report, tables)

    pulses.to_csv(folder / f"{prefix}pulses.tsv", sep="\t", index=False, na_rep="n/a")
    report_path = folder / f"{prefix}report.html"
    report.save(report_path, open_browser=False, overwrite=True, verbose=False)
    logger.info(f"Wrote {report_path}")
    return report_path
