"""The study report: every session (analysed or not, and where), group results.

Built by :func:`~.study.analyze_study` from a :class:`~.study.StudyAnalysis`;
failed sessions come first, in a section of their own, so that none is
missed by a reader.
"""

from __future__ import annotations

import contextlib
import html
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import mne

if TYPE_CHECKING:
    from .study import StudyAnalysis

__all__ = ["study_report"]


def _where_html(study: StudyAnalysis) -> str:
    # Which processes analysed the sessions, and the ones a lost worker forced
    # to run again: a reader sees the cluster was used and what went wrong.
    places: dict[str, int] = {}
    for run in study.runs:
        if run.host or run.worker:
            places[run.where] = places.get(run.where, 0) + 1
    if study.scheduler:
        head = (
            f"On the Dask cluster at <code>{html.escape(study.scheduler)}</code>, "
            f"{len(study.runs)} session(s) on {len(places)} worker(s):"
        )
    else:
        head = (
            f"On this machine, {len(study.runs)} session(s) in "
            f"{len(places)} process(es):"
        )
    items = "".join(
        f"<li>{html.escape(where)}: {n} session(s)</li>" for where, n in places.items()
    )
    text = f"<p>{head}</p><ul>{items}</ul>"
    # Failed sessions say why in their own section; these were saved.
    failed = {f.folder for f in study.failed}
    again = [r for r in study.runs if r.lost_workers and r.folder not in failed]
    if again:
        rows = "".join(
            f"<li><code>{html.escape(str(run.folder))}</code>: started "
            f"{run.attempts} times; lost with "
            f"{html.escape('; '.join(run.lost_workers))}; analysed on "
            f"{html.escape(run.where)}</li>"
            for run in again
        )
        text += (
            "<p>A worker died while analysing these sessions; the scheduler "
            f"ran them again:</p><ul>{rows}</ul>"
        )
    return text


def study_report(study: StudyAnalysis) -> mne.Report:
    """Build the study report (not saved).

    Parameters
    ----------
    study : StudyAnalysis
        With its tables (``sessions`` at least) computed.

    Returns
    -------
    report : mne.Report
        Sessions not analysed (with the reason), where the sessions ran,
        the sessions table, group TEPs, peak tables and learning curves.
    """
    rep = mne.Report(title="stimtrain study", verbose=False)
    runs = {run.folder: run for run in study.runs}
    if study.failed:
        items = "".join(
            f"<li><code>{html.escape(str(f.folder))}</code>: "
            f"{html.escape(f.reason)}"
            + (
                f" <em>(on {html.escape(runs[f.folder].where)})</em>"
                if f.folder in runs and (runs[f.folder].host or runs[f.folder].worker)
                else ""
            )
            + "</li>"
            for f in study.failed
        )
        rep.add_html(
            f"<p>{len(study.failed)} session(s) could not be analysed and are "
            f"left out of every group result:</p><ul>{items}</ul>",
            title="Sessions not analysed",
        )
    if study.runs:
        rep.add_html(_where_html(study), title="Where the sessions ran")
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
