"""A study on a real Dask cluster: where each session ran, and a worker lost.

Each test starts a local cluster of two worker processes (each under a
nanny, as ``dask worker`` runs them) and analyses tiny synthetic sessions on
it. A lost worker is a real one: the test kills that worker's process with
SIGKILL while it analyses a session.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import dask
import pandas as pd
from distributed import Client, LocalCluster
from test_study import FAST, SESSIONS, make_study

from stimtrain.analysis.study import analyze_study
from stimtrain.analysis.study_cluster import TOPIC


def _cluster() -> LocalCluster:
    return LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        dashboard_address=None,
    )


def _client(cluster: LocalCluster) -> Client:
    # The test's own client, to watch the cluster; not the default client, so
    # that the study has to work with its own (as from the command line).
    return Client(cluster, set_as_default=False)


def _worker_pids(client: Client) -> dict[str, int]:
    client.wait_for_workers(2, timeout=60)
    return client.run(os.getpid)


def _study_killing_a_worker(client: Client, address: str, study_dir):
    """Run the study; SIGKILL the worker of the first session that starts.

    Returns the study and the start event of the session whose worker was
    killed (folder, worker, pid).
    """
    done: dict = {}

    def run():
        try:
            done["study"] = analyze_study(
                study_dir,
                scheduler=address,
                session_reports=False,
                tesa=FAST,
            )
        except BaseException as err:  # handed to the test thread
            done["error"] = err

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    started = None
    while started is None and time.monotonic() < deadline:
        for event in client.get_events(TOPIC):
            if event[1]["folder"].startswith(str(study_dir)):
                started = event[1]
                break
        time.sleep(0.02)
    assert started is not None, "no session started on the cluster"
    # The session is being analysed there now (it takes about 2 s).
    os.kill(started["pid"], signal.SIGKILL)
    thread.join(timeout=120)
    assert not thread.is_alive(), "the study did not finish after a worker died"
    if "error" in done:
        raise done["error"]
    return done["study"], started


def test_every_session_runs_on_the_workers(tmp_path, rec5k):
    study_dir = make_study(tmp_path, rec5k.path)
    with _cluster() as cluster, _client(cluster) as client:
        pids = _worker_pids(client)
        study = analyze_study(
            study_dir,
            scheduler=cluster.scheduler_address,
            session_reports=False,
            tesa=FAST,
        )
    assert [(s.participant, s.session) for s in study.sessions] == [
        (p, s) for p, s, _, _ in SESSIONS
    ]
    assert study.failed == [] and study.scheduler == cluster.scheduler_address
    # Each session was analysed by a worker process, the one it names, never
    # by this process; with two idle workers and three sessions, both work.
    assert len(study.runs) == 3
    for run in study.runs:
        assert run.worker in pids and run.pid == pids[run.worker]
        assert run.pid != os.getpid() and run.attempts == 1 and run.seconds > 0
    assert {run.worker for run in study.runs} == set(pids)
    # The group step had the results: TEPs of every session, averaged.
    assert "N=3" in study.grand_averages["all"].comment
    table = pd.read_csv(study_dir / "study" / "study_sessions.tsv", sep="\t")
    assert list(table["worker"]) == [run.worker for run in study.runs]
    assert list(table["pid"]) == [run.pid for run in study.runs]
    text = study.report_path.read_text()
    assert "Where the sessions ran" in text
    assert f"On the Dask cluster at <code>{cluster.scheduler_address}</code>" in text
    assert "3 session(s) on 2 worker(s)" in text


def test_a_session_whose_worker_dies_is_run_again(tmp_path, rec5k):
    study_dir = make_study(tmp_path, rec5k.path, SESSIONS[:1])
    with _cluster() as cluster, _client(cluster) as client:
        _worker_pids(client)
        study, killed = _study_killing_a_worker(
            client, cluster.scheduler_address, study_dir
        )
    # Not missing, not failed: the scheduler ran it on a live worker.
    assert study.failed == [] and len(study.sessions) == 1
    assert study.sessions[0].evokeds
    (run,) = study.runs
    assert run.attempts == 2
    assert run.pid != killed["pid"] and run.pid != os.getpid()
    assert run.lost_workers == [
        f"{killed['worker']} ({killed['host']}, pid {killed['pid']})"
    ]
    table = pd.read_csv(study_dir / "study" / "study_sessions.tsv", sep="\t")
    assert list(table["attempts"]) == [2]
    text = study.report_path.read_text()
    assert "A worker died while analysing these sessions" in text
    assert f"pid {killed['pid']}" in text


def test_a_session_is_reported_failed_when_the_scheduler_gives_up(tmp_path, rec5k):
    study_dir = make_study(tmp_path, rec5k.path, SESSIONS[:2])
    # A scheduler that never reruns a task whose worker died.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = _cluster()
    with cluster, _client(cluster) as client:
        _worker_pids(client)
        study, killed = _study_killing_a_worker(
            client, cluster.scheduler_address, study_dir
        )
    # The other session is analysed; the killed one is listed with the reason.
    assert len(study.sessions) == 1
    (failure,) = study.failed
    assert str(failure.folder) == killed["folder"]
    assert "worker analysing it died" in failure.reason
    assert f"pid {killed['pid']}" in failure.reason
    assert "allowed-failures is 0" in failure.reason
    table = pd.read_csv(study_dir / "study" / "study_sessions.tsv", sep="\t")
    assert len(table) == 2
    failed_row = table[table["error"].notna()]
    assert list(failed_row["pid"]) == [killed["pid"]]
    text = study.report_path.read_text()
    assert "Sessions not analysed" in text and killed["folder"] in text
    assert "1 session(s) could not be analysed" in text
