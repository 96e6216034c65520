"""A whole study: every session in parallel, then group TEPs, peaks and curves.

Sessions are analysed with :func:`~stimtrain.analysis.report.session_analysis`
through joblib: local worker processes by default, or the workers of a Dask
cluster when a scheduler address is given (joblib's ``dask`` backend, the
convention of the MNE-BIDS pipeline). Each worker reads its own XDF and writes
that session's report; only the small results (tables and averaged TEPs)
travel back. The group step then writes one study report and its tables.
"""

from __future__ import annotations

import contextlib
import html
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import matplotlib.pyplot as plt
import mne
import pandas as pd
from joblib import Parallel, delayed, parallel_config
from mne.utils import logger, verbose

from .behaviour import learning_curves
from .peaks import peak_table
from .report import SessionAnalysis, output_version, session_analysis
from .session import find_runs
from .tep import TEP_WINDOWS

__all__ = ["find_sessions", "analyze_study", "StudyAnalysis", "SessionFailure"]


@dataclass
class SessionFailure:
    """A session of a study that could not be analysed, and why."""

    folder: Path
    reason: str


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
    """

    sessions: list[SessionAnalysis]
    failed: list[SessionFailure] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    grand_averages: dict[str, mne.Evoked] = field(default_factory=dict)
    report_path: Path | None = None


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


def _one(folder: Path, tesa: dict | None, report: bool) -> SessionAnalysis:
    # Runs in a worker: non-interactive plotting, quiet MNE.
    import matplotlib

    matplotlib.use("Agg")
    try:
        return session_analysis(folder, tesa=tesa, report=report, verbose="error")
    except Exception as err:  # noqa: BLE001 - one broken session must not stop the study
        return SessionFailure(folder, str(err) or type(err).__name__)


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
        Address of a Dask scheduler (``tcp://host:8786``) to run the sessions
        on through joblib's ``dask`` backend. Needs ``dask.distributed``.
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
        table); the others are analysed all the same.
    """
    folders = find_sessions(study_dir)
    if not folders:
        raise FileNotFoundError(
            f"study folder must hold sub-<id>/ses-<n>/ folders with recordings "
            f"(found none in {study_dir})"
        )
    jobs = (delayed(_one)(f, tesa, session_reports) for f in folders)
    if scheduler is not None:
        from dask.distributed import Client

        logger.info(f"Analysing {len(folders)} sessions on Dask at {scheduler}")
        with Client(scheduler), parallel_config(backend="dask"):
            sessions = Parallel()(jobs)
    else:
        logger.info(f"Analysing {len(folders)} sessions with {n_jobs} job(s)")
        sessions = Parallel(n_jobs=n_jobs)(jobs)
    study = StudyAnalysis(
        sessions=[s for s in sessions if isinstance(s, SessionAnalysis)],
        failed=[s for s in sessions if isinstance(s, SessionFailure)],
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
    _study_report(study).save(
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
    rows = [
        dict(
            participant=s.participant,
            session=s.session,
            xdf=str(s.xdf),
            report=str(s.report_path or ""),
            n_pulses=len(s.tables.get("pulses", [])),
            has_tep=bool(s.evokeds),
            error="",
        )
        for s in sessions
    ]
    rows += [
        dict(
            participant=f.folder.parent.name.removeprefix("sub-"),
            session=f.folder.name.removeprefix("ses-"),
            xdf="",
            report="",
            n_pulses=0,
            has_tep=False,
            error=f.reason,
        )
        for f in study.failed
    ]
    study.tables["sessions"] = pd.DataFrame(rows)
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


def _study_report(study: StudyAnalysis) -> mne.Report:
    rep = mne.Report(title="stimtrain study", verbose=False)
    if study.failed:
        items = "".join(
            f"<li><code>{html.escape(str(f.folder))}</code>: "
            f"{html.escape(f.reason)}</li>"
            for f in study.failed
        )
        rep.add_html(
            f"<p>{len(study.failed)} session(s) could not be analysed and are "
            f"left out of every group result:</p><ul>{items}</ul>",
            title="Sessions not analysed",
        )
    sessions = study.tables["sessions"].copy()
    sessions["report"] = [
        f'<a href="{html.escape(r)}">report</a>' if r else ""
        for r in sessions["report"]
    ]
    rep.add_html(
        sessions.to_html(index=False, escape=False, border=0), title="Sessions"
    )
    for name, ga in study.grand_averages.items():
        with contextlib.suppress(RuntimeError, ValueError):
            rep.add_evokeds(
                ga.copy().crop(-0.1, 0.35),
                titles=[f"Group TEP: {name}"],
                n_time_points=6,
            )
    for key, title in (
        ("group_peaks", "Peaks of the grand average"),
        ("peak_summary", "Peaks across sessions"),
    ):
        table = study.tables.get(key)
        if table is not None and len(table):
            rep.add_html(
                table.to_html(index=False, border=0, float_format="{:.2f}".format),
                title=title,
            )
    curves = study.tables.get("learning_curves")
    if curves is not None and len(curves):
        for (task, measure), grp in curves.groupby(["task", "measure"]):
            fig, ax = plt.subplots(figsize=(5, 3), layout="constrained")
            for participant, g in grp.groupby("participant"):
                ax.plot(
                    g["session_index"], g["value"], "o-", label=f"sub-{participant}"
                )
            ax.set(xlabel="session (index)", ylabel=measure, title=task)
            ax.legend(fontsize=7)
            rep.add_figure(
                fig,
                title=f"Learning curve: {task} {measure}",
                section="Learning curves",
            )
            plt.close(fig)
    else:
        rep.add_html("<p><em>No task measures.</em></p>", title="Learning curves")
    return rep
