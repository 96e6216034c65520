"""The report's sections, one function each, in the order they appear.

Each takes the report and what its section shows, adds its HTML and figures,
and returns the tables behind them. A section without data gets a short note
instead (:func:`note`), so every run gets every section's title. The first
section (what was delivered, what was recorded, what needs a look) is in
:mod:`.report_summary`, the TEPs in :mod:`.report_tep`.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib.pyplot as plt
import mne
import numpy as np
import pandas as pd
from mne.utils import logger

from .behaviour import behaviour_table
from .mep import mep_epochs, mep_table
from .recruitment import fit_recruitment, motor_threshold
from .report_figures import timeline_figure
from .report_tables import df_html, plan_blocks, plan_shown, timing_summary_table

# Length of raw shown in the report: enough to see the data, light to render.
_RAW_OVERVIEW_S = 20.0

SECTIONS = {
    "summary": "Summary",
    "timeline": "Session timeline",
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


def note(report: mne.Report, title: str, text: str, section: str | None = None):
    """Add a one-line note (in italics) where a section has no data."""
    report.add_html(
        f"<p><em>{html.escape(text)}</em></p>", title=title, section=section
    )


def _timing_section(report: mne.Report, diagnostics: dict) -> None:
    report.add_html(
        df_html(timing_summary_table(diagnostics), index=False, float_format="{:.4f}"),
        title=SECTIONS["timing"],
    )


def read_plan(folder: Path, prefix: str) -> tuple[dict | None, str | None]:
    """The run's ``plan.json``, or why it could not be read.

    Parameters
    ----------
    folder : Path
        The session folder.
    prefix : str
        The run's file prefix.

    Returns
    -------
    plan : dict | None
        The plan (``None`` when there is no plan file or it is unreadable).
    problem : str | None
        ``"<file>: <what is wrong>"`` for an unreadable plan file.
    """
    plan_file = folder / f"{prefix}plan.json"
    if not plan_file.is_file():
        return None, None
    try:
        plan = json.loads(plan_file.read_text())
    except (OSError, ValueError) as err:
        return None, f"{plan_file.name}: {err}"
    if not isinstance(plan, dict) or not isinstance(plan.get("blocks", []), list):
        return None, f"{plan_file.name}: not a stimtrain plan (no list of blocks)"
    return plan, None


def _plan_section(report, plan: dict | None, problem, markers, pulses):
    """The session as a timeline figure and the planned blocks with the pulses
    delivered in each; returns the plan's blocks (``None`` without a plan)."""
    if _drawing(report):
        fig = timeline_figure(markers, plan)
        if fig is not None:
            report.add_figure(
                fig,
                title=SECTIONS["timeline"],
                caption=(
                    "One row per block, over session time (s from the session's "
                    "start marker). Grey: the block as planned; coloured: as "
                    "recorded (its start and end markers). Ticks: pulses "
                    "delivered; brackets: trains; dots: task trials (filled: "
                    "correct, open: error or no response)."
                ),
            )
            plt.close(fig)
    if problem:
        note(report, SECTIONS["plan"], f"Could not read {problem}")
        return None
    if plan is None:
        return None
    blocks = plan_blocks(plan, pulses)
    if blocks.empty:
        return None
    html_text = df_html(plan_shown(blocks), index=False, float_format="{:.1f}")
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
        note(report, title, "No pulse markers in this run.")
        return
    if "error_ms" not in pulses:
        note(report, title, "Pulse markers carry no 'scheduled' time.")
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
        "scheduled time, per pulse.</p>" + df_html(stats, index=False)
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
        text += "<p>Per block (ms):</p>" + df_html(per_block, index=False)
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
        + df_html(counts)
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


def _mep_sections(report: mne.Report, raw: mne.io.BaseRaw, verbose=None):
    """MEP table, waveform and recruitment curve; returns the tables."""
    title = SECTIONS["mep"]
    if not len(mne.pick_types(raw.info, emg=True)):
        note(report, title, "No EMG channels: no MEPs.")
        note(report, SECTIONS["recruitment"], "No EMG channels: no curve.")
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
        + df_html(summary, index=False, float_format="{:.1f}"),
        title=title,
        section=title,
    )
    if _drawing(report):
        fig = epochs.average(picks="emg").plot(show=False, spatial_colors=False)
        report.add_figure(fig, title=f"{title}: average", section=title)
        plt.close(fig)
    tables = {"meps": meps}
    if "power" not in kept or kept["power"].nunique() < 4:
        note(report, SECTIONS["recruitment"], "Fewer than 4 intensities: no curve.")
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
            + df_html(tables["recruitment"], index=False, float_format="{:.2f}")
            + df_html(tables["motor_threshold"], index=False, float_format="{:.1f}"),
            title=f"{SECTIONS['recruitment']}: fit",
        )
    return tables


def _behaviour_section(report: mne.Report, tables: dict[str, pd.DataFrame]):
    """Per-block summaries by condition and their figures; returns the table."""
    title = SECTIONS["behaviour"]
    if not tables:
        note(report, title, "No task trials in this run.")
        return pd.DataFrame()
    summaries = []
    for label, trials in tables.items():
        summary = behaviour_table(trials)
        summaries.append(summary.reset_index().assign(block=label))
        report.add_html(df_html(summary), title=f"{title}: {label}", section=title)
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
        note(report, title, "No trials TSV: no task measures.")
    else:
        wide = measures.pivot_table(
            index="measure", columns=["block", "task"], values="value", aggfunc="first"
        )
        report.add_html(df_html(wide, float_format="{:.3f}"), title=title)
    title = SECTIONS["tms_trials"]
    if comparison.empty or comparison["tms"].nunique() < 2:
        note(report, title, "No task trials with and without pulses to compare.")
        return
    report.add_html(
        "<p>A pulse belongs to a trial when it came between the trial's "
        "stimulus onset and the next trial's (or the block's end).</p>"
        + df_html(comparison, index=False, float_format="{:.3f}"),
        title=title,
    )
