"""A study's sessions on a Dask cluster: one task per session on the workers.

The calling process connects a :class:`distributed.Client` to the scheduler,
submits one task per session (:func:`~.study.analyse_one`) and only gathers
the results as they complete; reading, ICA, TEPs and the session reports all
happen on the workers. (joblib's ``dask`` backend is not used: ``Parallel()``
with its default single job runs everything in the caller, whatever the
backend.)

A worker that dies while analysing a session (killed, out of memory, its
machine gone) takes that task with it; the scheduler runs it again on another
worker, up to its ``distributed.scheduler.allowed-failures`` times (3 by
default), then gives up with :class:`distributed.KilledWorker`. Every session
ends as a result or as a :class:`~.study.SessionFailure` with the reason:
none is silently missing from the study. Each task logs its start on the
scheduler (topic :data:`TOPIC`), so the caller can say where a session was
when its worker was lost, and how many times it was started.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from mne.utils import logger

from .report import SessionAnalysis
from .study import SessionFailure, SessionRun, analyse_one, describe_process

__all__ = ["analyse_on_cluster", "TOPIC"]

#: The scheduler event topic under which each session's start is logged.
TOPIC = "stimtrain-study"


def analyse_on_cluster(
    folders: list[Path],
    scheduler: str,
    tesa: dict | None,
    report: bool,
    *,
    connect_timeout: float = 30.0,
    worker_timeout: float = 120.0,
) -> list[tuple[SessionAnalysis | SessionFailure, SessionRun]]:
    """Analyse sessions on the workers of a Dask cluster.

    Parameters
    ----------
    folders : list of Path
        Session folders; the workers must see them at the same (absolute)
        path.
    scheduler : str
        The scheduler's address (``tcp://host:8786``).
    tesa : dict | None
        Keyword arguments for :func:`~stimtrain.analysis.tesa.run_tesa`.
    report : bool
        Also write each session's HTML report (on the worker).
    connect_timeout : float
        Seconds to wait for the scheduler to answer.
    worker_timeout : float
        Seconds to wait for a first worker to connect to the scheduler.

    Returns
    -------
    results : list of (SessionAnalysis | SessionFailure, SessionRun)
        One per folder, in the order given.

    Raises
    ------
    OSError
        When the scheduler cannot be reached.
    TimeoutError
        When no worker connects within ``worker_timeout``.
    """
    from distributed import Client, KilledWorker, as_completed

    folders = [Path(f).absolute() for f in folders]
    study = uuid.uuid4().hex[:8]
    results: dict[Path, tuple] = {}
    killed: dict[Path, int] = {}  # folder -> the scheduler's allowed-failures
    with Client(scheduler, timeout=connect_timeout, set_as_default=False) as client:
        try:
            client.wait_for_workers(1, timeout=worker_timeout)
        except TimeoutError:
            raise TimeoutError(
                f"no Dask worker connected to the scheduler at {scheduler} within "
                f"{worker_timeout:g} s (start one with: dask worker {scheduler})"
            ) from None
        futures = {
            client.submit(
                analyse_one,
                folder,
                tesa,
                report,
                (TOPIC, study),
                key=f"stimtrain-session-{study}-{i:04d}",
                pure=False,
            ): folder
            for i, folder in enumerate(folders)
        }
        for future in as_completed(futures, loop=client.loop):
            folder = futures[future]
            try:
                outcome, run = future.result()
            except KilledWorker as err:
                killed[folder] = err.allowed_failures
                outcome = SessionFailure(folder, "its Dask worker died")
                run = SessionRun(folder, worker=err.last_worker.address)
            except Exception as err:  # noqa: BLE001 - reported as this session's failure
                what = (
                    f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
                )
                outcome = SessionFailure(folder, f"on the Dask cluster: {what}")
                run = SessionRun(folder)
            results[folder] = (outcome, run)
            _log_done(outcome, run, len(results), len(folders))
        starts = _starts(client, study)
    ordered = []
    for folder in folders:
        # as_completed yields every future; the default only guards the
        # promise that no session is silently missing from the study.
        outcome, run = results.get(
            folder,
            (
                SessionFailure(folder, "no result came back from the cluster"),
                SessionRun(folder),
            ),
        )
        _account_for_starts(
            outcome, run, starts.get(str(folder), []), killed.get(folder)
        )
        ordered.append((outcome, run))
    return ordered


def _starts(client, study: str) -> dict[str, list[dict]]:
    # The start of every task of this study, by folder, in order.
    starts: dict[str, list[dict]] = {}
    for _, msg in client.get_events(TOPIC):
        if isinstance(msg, dict) and msg.get("study") == study:
            starts.setdefault(msg["folder"], []).append(msg)
    return starts


def _account_for_starts(
    outcome, run: SessionRun, starts: list[dict], allowed: int | None
) -> None:
    # Every start but the last lost its worker; when the scheduler gave up
    # (allowed is not None), the last one did too.
    run.attempts = max(len(starts), 1)
    lost = starts if allowed is not None else starts[:-1]
    run.lost_workers = [
        describe_process(s["worker"], s["host"], s["pid"]) for s in lost
    ]
    if allowed is not None:
        if starts:
            last = starts[-1]
            run.worker, run.host, run.pid = last["worker"], last["host"], last["pid"]
        else:
            run.lost_workers = [run.where]
        outcome.reason = (
            f"the Dask worker analysing it died, {run.attempts} time(s): "
            f"{'; '.join(run.lost_workers)}. The scheduler gave up (its "
            f"allowed-failures is {allowed}); look in that worker's log (a "
            "worker out of memory is killed by its nanny)"
        )
    elif run.lost_workers:
        logger.warning(
            f"{run.folder}: a worker died while analysing it "
            f"({'; '.join(run.lost_workers)}); analysed again on {run.where}"
        )


def _log_done(outcome, run: SessionRun, done: int, total: int) -> None:
    if isinstance(outcome, SessionAnalysis):
        logger.info(
            f"[{done}/{total}] {run.folder} analysed on {run.where} "
            f"in {run.seconds:.1f} s"
        )
    else:
        logger.info(f"[{done}/{total}] {run.folder} failed")
