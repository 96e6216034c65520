"""One HTML report per recorded run: timing, pulses, TEPs, MEPs and behaviour.

:func:`analyze_session` reads a run's XDF once and writes, next to it, an
:class:`mne.Report` (``..._report.html``) and a tidy TSV of every number in
it (``..._pulses.tsv``, ``..._peaks.tsv``, ``..._meps.tsv`` …).
:func:`session_analysis` does the same and returns the tables and TEPs (the
study analysis uses it). Sections without data (no EEG, no pulses, no task
trials) are replaced by a short note, so every run gets a report.

Longer than most because it is one document: every section of the report and
the tables behind it, in the order they appear.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import matplotlib.pyplot as plt
import mne
import numpy as np
import pandas as pd
from mne.utils import logger, verbose

from .behaviour import (
    behaviour_table,
    join_pulses,
    read_trials,
    recorded_measures,
    session_measures,
    tms_comparison,
)
from .mep import mep_epochs, mep_table
from .recruitment import fit_recruitment, motor_threshold
from .session import InputError, find_run, run_prefix, session_labels
from .tep import TEP_WINDOWS, artifact_alignment, gmfp
from .tesa import run_tesa
from .xdf import (
    _clock_offset_fit,
    _find_marker_stream,
    _markers_from_streams,
    _raw_from_streams,
    load_streams,
    timing_diagnostics,
)

__all__ = [
    "analyze_session",
    "session_analysis",
    "SessionAnalysis",
    "find_run",
    "behaviour_table",
    "pulse_table",
]

# Length of raw shown in the report: enough to see the data, light to render.
_RAW_OVERVIEW_S = 20.0

SECTIONS = {
    "timing": "Timing diagnostics",
    "plan": "Session plan",
    "pulses": "Pulse timing",
    "alignment": "Artifact alignment",
    "raw": "Raw overview",
    "tesa": "TMS-EEG pipeline (TESA order)",
    "tep": "TMS-evoked potential",
    "gmfp": "GMFP",
    "peaks": "TEP peaks",
    "mep": "Motor-evoked potentials",
    "recruitment": "Recruitment curve",
    "behaviour": "Task behaviour",
    "measures": "Task measures",
    "tms_trials": "TMS vs no-TMS trials",
}


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


def _trials_by_block(trials: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Split :func:`read_trials`'s table into one labelled table per block."""
    if trials.empty:
        return {}
    return {
        f"block {int(block):02d}, task {task}": df.drop(
            columns=["block_file", "block", "task"]
        )
        for (block, task), df in trials.groupby(["block_file", "task"], sort=True)
    }


def _df_html(df: pd.DataFrame, *, index: bool = True, float_format="{:.3f}") -> str:
    if index and df.columns.nlevels == 1 and any(n is not None for n in df.index.names):
        # A named index would get a header row of its own, under the columns'
        # (it reads as a header shifted by one column): make it a column.
        df, index = df.reset_index(), False
    # A wide table scrolls in its own box instead of running off the page.
    table = df.to_html(
        index=index,
        float_format=float_format.format,
        border=0,
        classes="table table-sm table-striped",
        na_rep="",
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


def _plan_section(report: mne.Report, folder: Path, prefix: str, pulses):
    """Planned blocks with the pulses delivered in each; returns the table."""
    plan_file = folder / f"{prefix}plan.json"
    if not plan_file.is_file():
        return None
    try:
        plan = json.loads(plan_file.read_text())
        blocks = pd.DataFrame(plan.get("blocks", []))
    except (ValueError, TypeError) as err:
        _note(report, SECTIONS["plan"], f"Could not read {plan_file.name}: {err}")
        return None
    if blocks.empty:
        return None
    if "index" in blocks and "block" in pulses:
        delivered = pulses.groupby("block").size()
        blocks["pulses delivered"] = (
            blocks["index"].map(delivered).fillna(0).astype(int)
        )
    shown = [c for c in (*PLAN_COLUMNS, "pulses delivered") if c in blocks]
    table = blocks[shown].rename(columns={"index": "block"})
    for column in ("block", "pulses", "trials", "power"):
        if column in table:
            # Whole numbers print as such (not 2.0), a missing one as blank.
            table[column] = table[column].astype("Int64")
    html_text = _df_html(table, index=False, float_format="{:.1f}")
    if "total_pulses" in plan:
        html_text += (
            f"<p>Planned pulses: {plan['total_pulses']}; "
            f"delivered (markers): {len(pulses)}.</p>"
        )
    report.add_html(html_text, title=SECTIONS["plan"])
    return blocks


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
        per_block = (
            pulses.dropna(subset=["block"])
            .groupby("block")["error_ms"]
            .agg(["count", "mean", "std", "max"])
            .reset_index()
        )
        # One header row: the block is a column, not an index with its own row.
        per_block["block"] = per_block["block"].astype(int)
        text += "<p>Per block (ms):</p>" + _df_html(per_block, index=False)
    report.add_html(text, title=title, section=title)
    if not _drawing(report):
        return
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


class _NoReport:
    """Stands in for mne.Report when only the tables are wanted."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _drawing(report) -> bool:
    return isinstance(report, mne.Report)


def _has_positions(info) -> bool:
    return any(
        not np.allclose(ch["loc"][:3], 0) and np.isfinite(ch["loc"][:3]).all()
        for ch in info["chs"]
        if ch["kind"] == mne.io.constants.FIFF.FIFFV_EEG_CH
    )


def _gmfp_figure(evoked: mne.Evoked, n: int, windows: dict):
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


def _tep_sections(report: mne.Report, raw: mne.io.BaseRaw, tesa_kwargs, verbose=None):
    """TESA pipeline, TEP butterfly/topomaps per condition, GMFP, peaks."""
    try:
        result = run_tesa(raw, **tesa_kwargs, verbose=verbose)
    except (ValueError, RuntimeError) as err:
        _note(report, SECTIONS["tep"], f"No TEP: {err}")
        return None
    steps = "".join(f"<li>{html.escape(step)}</li>" for step in result.steps)
    text = f"<ol>{steps}</ol>"
    if len(result.ica):
        text += "<p>ICA components removed:</p>" + _df_html(result.ica, index=False)
    report.add_html(text, title=SECTIONS["tesa"])
    windows = tesa_kwargs.get("windows") or TEP_WINDOWS
    if not _drawing(report):
        return result
    for name, evoked in result.evokeds.items():
        title = f"{SECTIONS['tep']}: {name}"
        if _has_positions(evoked.info):
            report.add_evokeds(
                evoked.copy().crop(-0.1, 0.35),
                titles=[title],
                n_time_points=6,
                replace=True,
            )
        else:
            fig = evoked.plot(show=False, spatial_colors=False)
            report.add_figure(fig, title=title)
            plt.close(fig)
    fig = _gmfp_figure(result.evokeds["all"], len(result.epochs), windows)
    report.add_figure(fig, title=SECTIONS["gmfp"])
    plt.close(fig)
    gm = result.peaks[result.peaks["signal"] == "GMFP"]
    report.add_html(
        "<p>TESA peak rule: a peak exceeds its neighbours by ±5 samples; the "
        "largest in each window. GMFP peaks below; every channel's and "
        "ROI's in <code>peaks.tsv</code>.</p>"
        + _df_html(gm.drop(columns=["signal"]), index=False, float_format="{:.2f}"),
        title=SECTIONS["peaks"],
    )
    return result


def _mep_sections(report: mne.Report, raw: mne.io.BaseRaw, verbose=None):
    """MEP table, waveform and recruitment curve; returns the tables."""
    title = SECTIONS["mep"]
    if not len(mne.pick_types(raw.info, emg=True)):
        _note(report, title, "No EMG channels: no MEPs.")
        _note(report, SECTIONS["recruitment"], "No EMG channels: no curve.")
        return None
    epochs = mep_epochs(raw, verbose=verbose)
    meps = mep_table(epochs, verbose=verbose)
    kept = meps[~meps["rejected"]]
    summary = (
        kept.groupby(["channel", "power"])["mep_uv"]
        .agg(["count", "mean", "median", "std"])
        .reset_index()
        if "power" in kept
        else kept.groupby("channel")["mep_uv"].agg(["count", "mean", "median", "std"])
    )
    report.add_html(
        f"<p>Peak-to-peak EMG 15-50 ms after each pulse; "
        f"{int(meps['rejected'].sum())} of {len(meps)} trials rejected for "
        f"pre-activation (&gt; 50 µV peak-to-peak in -50..-5 ms).</p>"
        + _df_html(summary, index=False, float_format="{:.1f}"),
        title=title,
        section=title,
    )
    if _drawing(report):
        fig = epochs.average(picks="emg").plot(show=False, spatial_colors=False)
        report.add_figure(fig, title=f"{title}: average", section=title)
        plt.close(fig)
    tables = {"meps": meps}
    if "power" not in kept or kept["power"].nunique() < 4:
        _note(report, SECTIONS["recruitment"], "Fewer than 4 intensities: no curve.")
        return tables
    fits, thresholds = [], []
    fig, ax = (
        plt.subplots(figsize=(6, 3.5), layout="constrained")
        if _drawing(report)
        else (None, _NoReport())
    )
    for ii, (ch, grp) in enumerate(kept.groupby("channel")):
        s = grp["power"].to_numpy(float)
        y = grp["mep_uv"].to_numpy(float)
        ax.scatter(s, y, s=10, color=f"C{ii}", alpha=0.6, label=ch)
        rmt, _ = motor_threshold(s, y)
        thresholds.append({"channel": ch, "rmt_percent_mso": rmt, "method": "5/10"})
        try:
            fit = fit_recruitment(s, y, verbose=verbose)
        except (ValueError, RuntimeError) as err:
            logger.info(f"No recruitment fit for {ch}: {err}")
            continue
        grid = np.linspace(s.min(), s.max(), 200)
        ax.plot(grid, fit.predict(grid), color=f"C{ii}")
        thresholds[-1]["rmt_from_fit"] = fit.intensity_at(50.0)
        fits.append(fit.table().assign(channel=ch))
    ax.axhline(50, color="0.5", lw=0.8, ls="--")
    ax.set(xlabel="intensity (%MSO)", ylabel="MEP (µV)", yscale="symlog")
    ax.legend(fontsize=8)
    if fig is not None:
        report.add_figure(fig, title=SECTIONS["recruitment"])
        plt.close(fig)
    tables["motor_threshold"] = pd.DataFrame(thresholds)
    if fits:
        tables["recruitment"] = pd.concat(fits, ignore_index=True)
        report.add_html(
            "<p>Boltzmann fit; 95 % percentile bootstrap intervals (1000 "
            "trial-wise resamples). Resting motor threshold: lowest intensity "
            "where ≥ 50 % of trials reach 50 µV (and every higher one).</p>"
            + _df_html(tables["recruitment"], index=False, float_format="{:.2f}")
            + _df_html(tables["motor_threshold"], index=False, float_format="{:.1f}"),
            title=f"{SECTIONS['recruitment']}: fit",
        )
    return tables


def _behaviour_section(report: mne.Report, tables: dict[str, pd.DataFrame]):
    """Per-block summaries by condition and their figures; returns the table."""
    title = SECTIONS["behaviour"]
    if not tables:
        _note(report, title, "No task trials in this run.")
        return pd.DataFrame()
    summaries = []
    for label, trials in tables.items():
        summary = behaviour_table(trials)
        summaries.append(summary.reset_index().assign(block=label))
        report.add_html(_df_html(summary), title=f"{title}: {label}", section=title)
        if not _drawing(report):
            continue
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
    return pd.concat(summaries, ignore_index=True)


def _measures_section(report, measures: pd.DataFrame, comparison: pd.DataFrame):
    title = SECTIONS["measures"]
    if measures.empty:
        _note(report, title, "No trials TSV: no task measures.")
    else:
        wide = measures.pivot_table(
            index="measure", columns=["block", "task"], values="value", aggfunc="first"
        )
        report.add_html(_df_html(wide, float_format="{:.3f}"), title=title)
    title = SECTIONS["tms_trials"]
    if comparison.empty or comparison["tms"].nunique() < 2:
        _note(report, title, "No task trials with and without pulses to compare.")
        return
    report.add_html(
        "<p>A pulse belongs to a trial when it came between the trial's "
        "stimulus onset and the next trial's (or the block's end).</p>"
        + _df_html(comparison, index=False, float_format="{:.3f}"),
        title=title,
    )


@dataclass
class SessionAnalysis:
    """What :func:`session_analysis` computed for one run.

    Attributes
    ----------
    xdf : Path
        The recording.
    participant, session : str
        Labels from the folder (``""`` when it is not a session folder).
    report_path : Path | None
        The HTML report, if written.
    tables : dict of DataFrame
        Every table written next to the report, by name (``pulses``,
        ``timing``, ``plan``, ``peaks``, ``gmfp``, ``ica``, ``meps``,
        ``recruitment``, ``motor_threshold``, ``behaviour``, ``trials``,
        ``measures``, ``tms_trials``).
    evokeds : dict of Evoked
        The TEPs (``"all"`` and per condition); empty without EEG pulses.
    """

    xdf: Path
    participant: str
    session: str
    report_path: Path | None = None
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    evokeds: dict[str, mne.Evoked] = field(default_factory=dict)


#: Every table :func:`session_analysis` may write (``<prefix><name>.tsv``).
TABLE_NAMES = (
    "timing",
    "plan",
    "pulses",
    "peaks",
    "gmfp",
    "ica",
    "meps",
    "recruitment",
    "motor_threshold",
    "behaviour",
    "trials",
    "measures",
    "tms_trials",
)


def output_version(folder: Path, stem: str, names=TABLE_NAMES) -> str:
    """The suffix that makes a new analysis's files new: ``""``, ``"-2"``, …

    Parameters
    ----------
    folder : Path
        Where the outputs go.
    stem : str
        The file prefix (``sub-01_ses-1_run-01_`` or ``study_``).
    names : sequence of str
        The table names that may be written beside ``<stem>report.html``.

    Returns
    -------
    suffix : str
        The first version for which neither the report nor any table exists
        (``<stem>report<suffix>.html``, ``<stem><name><suffix>.tsv``): earlier
        analyses are never overwritten.
    """
    version = 1
    while True:
        suffix = "" if version == 1 else f"-{version}"
        taken = [folder / f"{stem}report{suffix}.html"]
        taken += [folder / f"{stem}{name}{suffix}.tsv" for name in names]
        if not any(p.exists() for p in taken):
            return suffix
        version += 1


def _timing_table(diagnostics: dict) -> pd.DataFrame:
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


@verbose
def session_analysis(
    path: str | PathLike,
    *,
    run: int | None = None,
    report: bool = True,
    tesa: dict | None = None,
    verbose=None,
) -> SessionAnalysis:
    """Analyse one run; return every table and TEP (and write the report).

    Parameters
    ----------
    path : path-like
        A session folder or an ``.xdf`` file.
    run : int | None
        Run in a session folder; ``None`` takes the highest.
    report : bool
        Write the HTML report (figures take most of the time).
    tesa : dict | None
        Keyword arguments for :func:`~stimtrain.analysis.tesa.run_tesa`.
    %(verbose)s

    Returns
    -------
    analysis : SessionAnalysis

    Raises
    ------
    InputError
        When the path, the run or a file of it cannot be used (no such
        folder or run, not an XDF file, no readable stream, an unreadable
        plan or trials table); its message is ``<path>: <what is wrong>``.
    """
    try:
        xdf = find_run(path, run)
    except OSError as err:
        raise InputError(path, err) from err
    try:
        return _session_analysis(xdf, report=report, tesa=tesa, verbose=verbose)
    except (OSError, ValueError) as err:
        raise InputError(xdf, err) from err


def _session_analysis(
    xdf: Path, *, report: bool, tesa: dict | None, verbose
) -> SessionAnalysis:
    folder, prefix = xdf.parent, run_prefix(xdf)
    try:
        participant, session = session_labels(folder)
    except ValueError:
        participant, session = "", ""
    streams = load_streams(xdf, verbose=verbose)
    diagnostics = timing_diagnostics(streams)
    markers = _markers_from_streams(streams)
    pulses = pulse_table(markers, streams)
    out = SessionAnalysis(xdf=xdf, participant=participant, session=session)
    tables = out.tables
    tables["timing"] = _timing_table(diagnostics)

    rep = (
        mne.Report(title=f"stimtrain: {prefix.rstrip('_')}", verbose=False)
        if report
        else _NoReport()
    )
    _timing_section(rep, diagnostics)
    plan = _plan_section(rep, folder, prefix, pulses)
    if plan is not None:
        tables["plan"] = plan
    _pulse_section(rep, pulses)

    try:
        raw = _raw_from_streams(streams)
    except ValueError as err:
        raw = None
        _note(rep, SECTIONS["raw"], f"No EEG: {err}")
    if raw is not None:
        has_pulses = bool((raw.annotations.description == "pulse").any())
        has_eeg = len(mne.pick_types(raw.info, eeg=True)) > 0
        if has_pulses and has_eeg:
            alignment = artifact_alignment(raw, verbose=verbose)
            _alignment_section(rep, alignment, raw.info["sfreq"])
            if len(alignment) == len(pulses):
                # Both are in time order over the same pulse markers.
                pulses["onset"] = alignment["onset"].to_numpy()
                pulses["artifact_sample"] = alignment["artifact_sample"].to_numpy()
                pulses["artifact_offset_samples"] = alignment["offset_samples"].array
                pulses["artifact_offset_ms"] = alignment["offset_ms"].to_numpy()
        if report:
            _raw_section(rep, raw)
        if has_pulses and has_eeg:
            result = _tep_sections(rep, raw, dict(tesa or {}), verbose=verbose)
            if result is not None:
                out.evokeds = result.evokeds
                tables["peaks"] = result.peaks
                tables["gmfp"] = result.gmfp
                tables["ica"] = result.ica
        else:
            _note(rep, SECTIONS["tep"], "No pulses in the EEG: no TEP.")
        if has_pulses:
            tables.update(_mep_sections(rep, raw, verbose=verbose) or {})
    tables["pulses"] = pulses
    trials = read_trials(folder, prefix)
    labelled = _trials_by_block(trials) or _trials_from_markers(markers)
    tables["behaviour"] = _behaviour_section(rep, labelled)
    if not trials.empty:
        trials = join_pulses(trials, markers)
        tables["trials"] = trials
    journal = folder / f"{prefix}journal.jsonl"
    recorded = recorded_measures(journal) if journal.is_file() else {}
    measures = session_measures(
        trials, participant=participant, session=session, recorded=recorded
    )
    comparison = tms_comparison(trials)
    tables["measures"] = measures
    tables["tms_trials"] = comparison
    _measures_section(rep, measures, comparison)

    # A new version when an earlier analysis of this run is there: nothing
    # written before is overwritten.
    suffix = output_version(folder, prefix)
    for name, table in tables.items():
        if name == "pulses" or len(table):
            table.to_csv(
                folder / f"{prefix}{name}{suffix}.tsv",
                sep="\t",
                index=False,
                na_rep="n/a",
            )
    if report:
        out.report_path = folder / f"{prefix}report{suffix}.html"
        rep.save(out.report_path, open_browser=False, overwrite=False, verbose=False)
        logger.info(f"Wrote {out.report_path}")
    return out


@verbose
def analyze_session(
    path: str | PathLike,
    *,
    run: int | None = None,
    tesa: dict | None = None,
    verbose=None,
) -> Path:
    """Analyse one recorded run and write its HTML report and tables.

    Parameters
    ----------
    path : path-like
        A session folder (``<data>/sub-<id>/ses-<n>/``) or an ``.xdf`` file.
    run : int | None
        Run to analyse in a session folder; ``None`` takes the highest.
    tesa : dict | None
        Keyword arguments for :func:`~stimtrain.analysis.tesa.run_tesa`
        (e.g. ``dict(realign=True, roi=["C3"])``).
    %(verbose)s

    Returns
    -------
    report_path : Path
        ``<prefix>report.html`` next to the XDF, where ``<prefix>`` is the
        run's file prefix (``sub-<id>_ses-<n>_run-<rr>_``); when an earlier
        analysis of the run is there, ``<prefix>report-2.html`` (then
        ``-3`` …) and its tables with the same suffix: nothing is
        overwritten. Also written,
        as tab-separated tables with the same prefix: ``pulses.tsv`` (pulse
        fields, ``delivered``, ``scheduled``, ``error_ms``, ``onset`` in the
        raw, ``artifact_sample``, ``artifact_offset_samples``,
        ``artifact_offset_ms``), ``timing.tsv``, and when there is data
        ``plan.tsv`` (planned blocks with the pulses delivered),
        ``behaviour.tsv`` (RT and accuracy by block and condition),
        ``peaks.tsv``, ``gmfp.tsv``, ``ica.tsv``, ``meps.tsv``,
        ``recruitment.tsv``, ``motor_threshold.tsv``, ``trials.tsv`` (the
        trials TSVs joined with their pulses), ``measures.tsv`` (tidy task
        measures) and ``tms_trials.tsv`` (TMS vs no-TMS trials).

    Notes
    -----
    Sections: timing diagnostics, session plan (if ``plan.json`` exists),
    pulse timing (planned vs delivered), artifact alignment, raw overview
    (first 20 s, PSD), the TESA pipeline's steps, TEP butterfly and
    topomaps per condition, GMFP, TEP peaks, MEPs and the recruitment curve
    (with EMG), task behaviour, task measures and TMS vs no-TMS trials.
    Missing data gives a note instead of a section.
    """
    return session_analysis(path, run=run, tesa=tesa, verbose=verbose).report_path
