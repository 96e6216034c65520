"""A whole study: every session in parallel, then group TEPs, peaks and curves.

Sessions are analysed with :func:`~stimtrain.analysis.report.session_analysis`
in local worker processes (joblib) by default, or on the workers of a Dask
cluster when a scheduler address is given (:mod:`.study_cluster`). Each worker
reads its own XDF and writes that session's tables (and report); only the
small results (tables and averaged TEPs) and where the session ran travel
back. The group step then writes one study report and its tables, listing
every session: analysed, or failed with the reason.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import mne
import pandas as pd
from joblib import Parallel, delayed
from mne.utils import logger, verbose

from .behaviour import learning_curves
from .peaks import peak_table
from .report import SessionAnalysis, output_version, session_analysis
from .session import find_runs
from .study_report import study_report
from .tep import TEP_WINDOWS

__all__ = [
    "find_sessions",
    "analyze_study",
    "StudyAnalysis",
    "SessionFailure",
    "SessionRun",
]


@dataclass
class SessionFailure:
    """A session of a study that could not be analysed, and why."""

    folder: Path
    reason: str


@dataclass
class SessionRun:
    """Where one session of a study was analysed (failed or not).

    Attributes
    ----------
    folder : Path
        The session folder.
    worker : str
        Address of the Dask worker that analysed it; ``""`` when it ran on
        this machine (joblib).
    host : str
        Host name of the machine it ran on.
    pid : int
        Process id there (``0`` when not known: the worker died before
        saying).
    seconds : float
        Wall time of the analysis (NaN when it did not finish).
    attempts : int
        How many times it was started: more than 1 when a worker died while
        analysing it and the scheduler ran it again.
    lost_workers : list of str
        The workers that died while analysing it, as
        ``"<address> (<host>, pid <pid>)"``.
    """

    folder: Path
    worker: str = ""
    host: str = ""
    pid: int = 0
    seconds: float = float("nan")
    attempts: int = 1
    lost_workers: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        """Where it ran, in words: ``"<worker> (<host>, pid <pid>)"``."""
        return describe_process(self.worker, self.host, self.pid)


def describe_process(worker: str, host: str, pid: int) -> str:
    """Name a process for a reader: ``"<worker> (<host>, pid <pid>)"``."""
    place = f"{host}, pid {pid}" if pid else host or "unknown host"
    return f"{worker} ({place})" if worker else f"this machine ({place})"


@dataclass
class StudyAnalysis:
    """The group results of :func:`analyze_study`.

    Attributes
    ----------
    sessions : list of SessionAnalysis
        One per session analysed, in folder order.
    failed : list of SessionFailure
        Sessions that could not be analysed, with the reason (they are
        listed in the study report; the others are analysed all the same).
    tables : dict of DataFrame
        ``sessions``, ``peaks`` (every session's), ``group_peaks`` (peaks of
        the grand average), ``peak_summary`` (mean and SD over sessions),
        ``measures``, ``learning_curves``, ``meps``.
    grand_averages : dict of Evoked
        Grand-average TEP per condition present in every session.
    report_path : Path | None
        The study report.
    runs : list of SessionRun
        Where each session (analysed or failed) ran, in folder order.
    scheduler : str | None
        The Dask scheduler the sessions ran on (``None``: this machine).
    """

    sessions: list[SessionAnalysis]
    failed: list[SessionFailure] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    grand_averages: dict[str, mne.Evoked] = field(default_factory=dict)
    report_path: Path | None = None
    runs: list[SessionRun] = field(default_factory=list)
    scheduler: str | None = None


def find_sessions(study_dir: str | PathLike) -> list[Path]:
    """List the session folders (``sub-*/ses-*`` holding a recording).

    Parameters
    ----------
    study_dir : path-like
        The data root of a study.

    Returns
    -------
    folders : list of Path
        Sorted.
    """
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise FileNotFoundError(f"study folder does not exist: {study_dir}")
    return sorted(
        p for p in study_dir.glob("sub-*/ses-*") if p.is_dir() and find_runs(p)
    )


def analyse_one(
    folder: Path, tesa: dict | None, report: bool, events: tuple[str, str] | None = None
) -> tuple[SessionAnalysis | SessionFailure, SessionRun]:
    """Analyse one session of a study, in whichever process runs this.

    Parameters
    ----------
    folder : Path
        The session folder.
    tesa : dict | None
        Keyword arguments for :func:`~stimtrain.analysis.tesa.run_tesa`.
    report : bool
        Also write the session's HTML report.
    events : tuple of str | None
        ``(topic, study id)``: on a Dask worker, log the start under this
        topic on the scheduler, so that the caller knows where a session was
        when a worker died.

    Returns
    -------
    outcome : SessionAnalysis | SessionFailure
        A session that cannot be analysed is a failure with the reason, not
        an exception: one broken session must not stop the study.
    run : SessionRun
        Where it ran and for how long.
    """
    # Non-interactive plotting in a worker process.
    import matplotlib

    matplotlib.use("Agg")
    run = SessionRun(folder, _worker_address(), socket.gethostname(), os.getpid())
    if events is not None and run.worker:
        from distributed import get_worker

        topic, study = events
        get_worker().log_event(
            topic,
            dict(
                action="start",
                study=study,
                folder=str(folder),
                worker=run.worker,
                host=run.host,
                pid=run.pid,
            ),
        )
    start = time.perf_counter()
    try:
        outcome = session_analysis(folder, tesa=tesa, report=report, verbose="error")
    except Exception as err:  # noqa: BLE001 - one broken session must not stop the study
        outcome = SessionFailure(folder, str(err) or type(err).__name__)
    run.seconds = time.perf_counter() - start
    return outcome, run


def _worker_address() -> str:
    # Only a process that runs a Dask worker has distributed imported.
    if "distributed" not in sys.modules:
        return ""
    from distributed import get_worker

    try:
        return get_worker().address
    except ValueError:  # not inside a worker
        return ""


def _concat(sessions, name) -> pd.DataFrame:
    frames = [
        s.tables[name].assign(participant=s.participant, session=s.session)
        for s in sessions
        if name in s.tables and len(s.tables[name])
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


@verbose
def analyze_study(
    study_dir: str | PathLike,
    n_jobs: int = 1,
    scheduler: str | None = None,
    *,
    out_dir: str | PathLike | None = None,
    session_reports: bool = True,
    tesa: dict | None = None,
    verbose=None,
) -> StudyAnalysis:
    """Analyse every session of a study in parallel and write a study report.

    Parameters
    ----------
    study_dir : path-like
        The data root (``sub-<id>/ses-<n>/`` folders).
    n_jobs : int
        Parallel sessions with joblib (``-1``: one per core). Ignored when
        ``scheduler`` is given (the cluster's workers decide).
    scheduler : str | None
        Address of a Dask scheduler (``tcp://host:8786``): every session is
        analysed on the cluster's workers (:mod:`.study_cluster`), this
        process only gathers the results and writes the study report. The
        workers need stimtrain and the study folder at the same path.
    out_dir : path-like | None
        Where the study report and tables go; ``<study_dir>/study`` by
        default.
    session_reports : bool
        Also write each session's HTML report (tables are always written).
    tesa : dict | None
        Keyword arguments for :func:`~stimtrain.analysis.tesa.run_tesa`.
    %(verbose)s

    Returns
    -------
    study : StudyAnalysis
        With ``report_path`` = ``<out_dir>/study_report.html``; tables are
        written beside it as ``study_<name>.tsv``. When an earlier study
        analysis is there, ``study_report-2.html`` and ``study_<name>-2.tsv``
        (then ``-3`` …): nothing is overwritten. A session that cannot be
        analysed is listed in ``study.failed`` and in the report (section
        "Sessions not analysed", and the ``error`` column of the sessions
        table); the others are analysed all the same. A session whose Dask
        worker died is run again by the scheduler (up to its
        ``allowed-failures``), then reported failed with the reason.
    """
    folders = find_sessions(study_dir)
    if not folders:
        raise FileNotFoundError(
            f"study folder must hold sub-<id>/ses-<n>/ folders with recordings "
            f"(found none in {study_dir})"
        )
    if scheduler is not None:
        from .study_cluster import analyse_on_cluster

        logger.info(f"Analysing {len(folders)} sessions on Dask at {scheduler}")
        results = analyse_on_cluster(folders, scheduler, tesa, session_reports)
    else:
        logger.info(f"Analysing {len(folders)} sessions with {n_jobs} job(s)")
        jobs = (delayed(analyse_one)(f, tesa, session_reports) for f in folders)
        results = Parallel(n_jobs=n_jobs)(jobs)
    outcomes = [outcome for outcome, _ in results]
    study = StudyAnalysis(
        sessions=[s for s in outcomes if isinstance(s, SessionAnalysis)],
        failed=[s for s in outcomes if isinstance(s, SessionFailure)],
        runs=[run for _, run in results],
        scheduler=scheduler,
    )
    for failure in study.failed:
        logger.warning(f"Session {failure.folder} not analysed: {failure.reason}")
    _group(study, tesa or {})
    out_dir = Path(out_dir) if out_dir is not None else Path(study_dir) / "study"
    out_dir.mkdir(parents=True, exist_ok=True)
    # An earlier study analysis stays: this one gets the next version.
    suffix = output_version(out_dir, "study_", STUDY_TABLES)
    for name, table in study.tables.items():
        if len(table):
            table.to_csv(
                out_dir / f"study_{name}{suffix}.tsv",
                sep="\t",
                index=False,
                na_rep="n/a",
            )
    study.report_path = out_dir / f"study_report{suffix}.html"
    study_report(study).save(
        study.report_path, open_browser=False, overwrite=False, verbose=False
    )
    logger.info(f"Wrote {study.report_path}")
    return study


#: The tables a study writes (``study_<name>.tsv``).
STUDY_TABLES = (
    "sessions",
    "peaks",
    "meps",
    "measures",
    "learning_curves",
    "peak_summary",
    "group_peaks",
)


def _group(study: StudyAnalysis, tesa: dict) -> None:
    sessions = study.sessions
    study.tables["sessions"] = pd.DataFrame(_session_rows(study))
    study.tables["peaks"] = _concat(sessions, "peaks")
    study.tables["meps"] = _concat(sessions, "meps")
    measures = _concat(sessions, "measures")
    study.tables["measures"] = measures
    if len(measures):
        study.tables["learning_curves"] = learning_curves(measures)
    peaks = study.tables["peaks"]
    if len(peaks):
        study.tables["peak_summary"] = (
            peaks.groupby(["evoked", "signal", "component"], sort=False)[
                ["latency_ms", "amplitude_uv"]
            ]
            .agg(["mean", "std", "count"])
            .reset_index()
        )
        study.tables["peak_summary"].columns = [
            "_".join(c).rstrip("_") for c in study.tables["peak_summary"].columns
        ]
    with_tep = [s for s in sessions if s.evokeds]
    if with_tep:
        names = set.intersection(*(set(s.evokeds) for s in with_tep))
        for name in sorted(names):
            evs = [s.evokeds[name] for s in with_tep]
            common = [
                ch for ch in evs[0].ch_names if all(ch in e.ch_names for e in evs)
            ]
            with mne.utils.use_log_level("error"):
                ga = mne.grand_average([e.copy().pick(common) for e in evs])
            ga.comment = f"grand average {name} (N={len(evs)})"
            study.grand_averages[name] = ga
        study.tables["group_peaks"] = peak_table(
            study.grand_averages,
            tesa.get("windows") or TEP_WINDOWS,
            roi=tesa.get("roi"),
            neighbours=tesa.get("neighbours", 5),
            verbose="error",
        )


def _session_rows(study: StudyAnalysis) -> list[dict]:
    # One row per session in folder order, analysed or not, with where it ran.
    failed = {f.folder: f for f in study.failed}
    analysed = iter(study.sessions)
    runs = study.runs or [
        *(SessionRun(s.xdf.parent) for s in study.sessions),
        *(SessionRun(f.folder) for f in study.failed),
    ]
    rows = []
    for run in runs:
        where = dict(
            worker=run.worker,
            host=run.host,
            pid=run.pid,
            seconds=round(run.seconds, 2),
            attempts=run.attempts,
        )
        failure = failed.get(run.folder)
        if failure is not None:
            rows.append(
                dict(
                    participant=run.folder.parent.name.removeprefix("sub-"),
                    session=run.folder.name.removeprefix("ses-"),
                    xdf="",
                    report="",
                    n_pulses=0,
                    has_tep=False,
                    error=failure.reason,
                    **where,
                )
            )
            continue
        s = next(analysed)
        rows.append(
            dict(
                participant=s.participant,
                session=s.session,
                xdf=str(s.xdf),
                report=str(s.report_path or ""),
                n_pulses=len(s.tables.get("pulses", [])),
                has_tep=bool(s.evokeds),
                error="",
                **where,
            )
        )
    return rows
