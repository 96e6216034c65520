"""One HTML report per recorded run: timing, pulses, TEPs, MEPs and behaviour.

:func:`analyze_session` reads a run's XDF once and writes, next to it, an
:class:`mne.Report` (``..._report.html``) and a tidy TSV of every number in
it (``..._pulses.tsv``, ``..._peaks.tsv``, ``..._meps.tsv`` …).
:func:`session_analysis` does the same and returns the tables and TEPs (the
study analysis uses it). Sections without data (no EEG, no pulses, no task
trials) are replaced by a short note, so every run gets a report.

The report opens with a summary (:mod:`.report_summary`), then the session
as a timeline figure; the sections are in :mod:`.report_sections` and
:mod:`.report_tep`, their tables in :mod:`.report_tables`, the figures of
their own in :mod:`.report_figures`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

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
from .pulse_windows import read_raw_windows
from .report_phase import phase_section
from .report_sections import (
    SECTIONS,
    _alignment_section,
    _behaviour_section,
    _measures_section,
    _mep_sections,
    _NoReport,
    _plan_section,
    _pulse_section,
    _raw_section,
    _timing_section,
    note,
    read_plan,
)
from .report_summary import Summary, block_labels, summarise, summary_html
from .report_tables import (
    pulse_table,
    timing_table,
    trials_by_block,
    trials_from_markers,
)
from .report_tep import _tep_sections
from .session import InputError, find_run, run_prefix, session_labels
from .tep import artifact_alignment
from .xdf import (
    _markers_from_streams,
    load_streams,
    timing_diagnostics,
)

__all__ = [
    "analyze_session",
    "session_analysis",
    "SessionAnalysis",
    "SECTIONS",
    "find_run",
    "behaviour_table",
    "pulse_table",
]


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
        ``timing``, ``plan``, ``peaks``, ``gmfp``, ``ica``, ``tep_pulses``,
        ``meps``, ``recruitment``, ``motor_threshold``, ``behaviour``,
        ``trials``, ``measures``, ``tms_trials``).
    evokeds : dict of Evoked
        The TEPs (``"all"`` and per condition) of the pulses that do not
        overlap others (``tables["tep_pulses"]``); empty without EEG pulses.
    summary : Summary | None
        The report's first section: what was delivered, what was recorded,
        what needs a look.
    """

    xdf: Path
    participant: str
    session: str
    report_path: Path | None = None
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    evokeds: dict[str, mne.Evoked] = field(default_factory=dict)
    summary: Summary | None = None


#: Every table :func:`session_analysis` may write (``<prefix><name>.tsv``).
TABLE_NAMES = (
    "timing",
    "plan",
    "pulses",
    "peaks",
    "gmfp",
    "ica",
    "tep_pulses",
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
    # Timestamps only (where the file is intact): the diagnostics need every
    # sample's time, the analysis below reads the EEG around the pulses.
    streams = load_streams(xdf, samples=False, verbose=verbose)
    diagnostics = timing_diagnostics(streams)
    markers = _markers_from_streams(streams)
    pulses = pulse_table(markers, streams)
    out = SessionAnalysis(xdf=xdf, participant=participant, session=session)
    tables = out.tables
    tables["timing"] = timing_table(diagnostics)
    plan, plan_problem = read_plan(folder, prefix)
    labels = block_labels(plan, markers)

    rep = (
        mne.Report(title=f"stimtrain: {prefix.rstrip('_')}", verbose=False)
        if report
        else _NoReport()
    )
    rep.add_html("<p>(summary)</p>", title=SECTIONS["summary"])
    blocks = _plan_section(rep, plan, plan_problem, markers, pulses)
    if blocks is not None:
        tables["plan"] = blocks
    _timing_section(rep, diagnostics)
    _pulse_section(rep, pulses)

    result = overlap = None
    n_eeg = 0
    # The EEG around the pulses (and the first seconds) is read as the
    # file's float32 and converted to float64 only where asked
    # (analysis/pulse_windows.py): never the whole recording as float64.
    # A damaged file was read whole above; its samples go first.
    for stream in streams:
        if isinstance(stream.get("time_series"), np.ndarray):
            stream["time_series"] = stream["time_series"][:0]
    try:
        raw = read_raw_windows(xdf, verbose=verbose)
    except ValueError as err:
        raw = None
        note(rep, SECTIONS["raw"], f"No EEG: {err}")
    if raw is not None:
        has_pulses = bool((raw.annotations.description == "pulse").any())
        n_eeg = len(mne.pick_types(raw.info, eeg=True))
        if has_pulses and n_eeg:
            alignment = artifact_alignment(raw, verbose=verbose)
            _alignment_section(rep, alignment, raw.info["sfreq"])
            if len(alignment) == len(pulses):
                # Both are in time order over the same pulse markers.
                pulses["onset"] = alignment["onset"].to_numpy()
                pulses["artifact_sample"] = alignment["artifact_sample"].to_numpy()
                pulses["artifact_offset_samples"] = alignment["offset_samples"].array
                pulses["artifact_offset_ms"] = alignment["offset_ms"].to_numpy()
        # Triggered (phase-locked) blocks only: nothing for other runs.
        phase = phase_section(rep, raw, pulses, drawing=report, plan=plan)
        if phase is not None:
            tables["phase"] = phase
        if report:
            _raw_section(rep, raw)
        if has_pulses and n_eeg:
            result, overlap = _tep_sections(
                rep, raw, dict(tesa or {}), labels, verbose=verbose
            )
            tables["tep_pulses"] = overlap
            if result is not None:
                out.evokeds = result.evokeds
                tables["peaks"] = result.peaks
                tables["gmfp"] = result.gmfp
                tables["ica"] = result.ica
        else:
            note(rep, SECTIONS["tep"], "No pulses in the EEG: no TEP.")
        if has_pulses:
            tables.update(_mep_sections(rep, raw, verbose=verbose) or {})
    tables["pulses"] = pulses
    trials = read_trials(folder, prefix)
    labelled = trials_by_block(trials) or trials_from_markers(markers)
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
    summary = summarise(
        plan=plan,
        markers=markers,
        pulses=pulses,
        diagnostics=diagnostics,
        labels=labels,
        tep_result=result,
        overlap=overlap,
        n_eeg=n_eeg,
        tesa=tesa,
    )
    out.summary = summary
    if report:
        # Computed last (it needs every section's numbers), shown first: it
        # replaces the placeholder added before every other section.
        rep.add_html(summary_html(summary), title=SECTIONS["summary"], replace=True)

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
        ``peaks.tsv``, ``gmfp.tsv``, ``ica.tsv``, ``tep_pulses.tsv`` (which
        pulses went into the TEPs and why not), ``meps.tsv``,
        ``recruitment.tsv``, ``motor_threshold.tsv``, ``trials.tsv`` (the
        trials TSVs joined with their pulses), ``measures.tsv`` (tidy task
        measures) and ``tms_trials.tsv`` (TMS vs no-TMS trials).

    Notes
    -----
    Sections: a summary first (what was delivered against the plan, what
    was recorded, what needs a look), the session timeline (a figure of
    blocks, pulses, trains and trials over time), the session plan (if
    ``plan.json`` exists), timing diagnostics, pulse timing (planned vs
    delivered), artifact alignment, the phase at the pulses of triggered
    (phase-locked) blocks (offline polar histograms per target beside the
    online estimate; ``phase.tsv``, and ``offline_phase`` in
    ``pulses.tsv``), raw overview (first 20 s, PSD), the
    pulses used for TEPs (a block whose pulses are closer together than the
    TEP's span, -100..350 ms, is left out, with the reason), the TESA
    pipeline's steps, TEP butterfly and topomaps per condition, GMFP, TEP
    peaks, MEPs and the recruitment curve (with EMG), task behaviour, task
    measures and TMS vs no-TMS trials. Missing data gives a note instead of
    a section.
    """
    return session_analysis(path, run=run, tesa=tesa, verbose=verbose).report_path
