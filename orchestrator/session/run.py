"""The ``stimtrain run`` entry: check a protocol file, then run its session.

The per-day cap counts every pulse the participant got today from their
journals; a resumed session skips the blocks earlier runs finished and counts
their pulses toward the session cap; nothing is created before every check
has passed.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path

from ..language.thresholds import Thresholds
from ..safety.checking import check_file
from .resume import ResumePoint
from .runner import SessionResult, SessionRunner


def run_protocol(
    protocol: str | Path,
    *,
    participant: str,
    session: str | int,
    rig: str | Path | None = None,
    data_root: str | Path = "stimtrain-data",
    thresholds: Thresholds | None = None,
    limits: str | Path | None = None,
    simulated_participant: bool | None = None,
    say: Callable[[str], None] = print,
    thresholds_source: dict | None = None,
    resume: ResumePoint | None = None,
    sim_options: dict | None = None,
    library_log: bool = False,
    view: bool = False,
) -> SessionResult:
    """Check and run a protocol file (the ``stimtrain run`` command).

    ``thresholds_source`` (file, measured, method …) is written to the
    journal with the thresholds. With ``resume`` (see
    :func:`~stimtrain.orchestrator.session.resume.read_resume_point`) the blocks
    finished in earlier runs are skipped and their pulses count towards the
    session cap.

    Raises
    ------
    ProtocolError
        When any check fails; nothing has been created or touched.
    """
    from .course import participant_pulses_on

    # The per-day cap counts every pulse this participant got today, in any
    # session or run (also runs that crashed), from their journals.
    today = participant_pulses_on(Path(data_root), participant, datetime.date.today())
    checked = check_file(
        protocol,
        rig=rig,
        thresholds=thresholds,
        limits=limits,
        require_power=True,
        participant=participant,
        delivered_today=today,
        skip_blocks=frozenset() if resume is None else resume.completed_blocks,
        delivered_session=0 if resume is None else resume.pulses_delivered,
        measured=Thresholds(**resume.measured)
        if resume is not None and resume.measured
        else None,
    )
    if resume is not None and checked.protocol.sha256 != resume.protocol_sha256:
        raise ValueError(
            f"{protocol}: the protocol (or a fragment it includes) changed since "
            f"run {resume.runs[0]} (sha256 {resume.protocol_sha256[:12]}…, now "
            f"{checked.protocol.sha256[:12]}…); resume needs the same protocol"
        )
    runner = SessionRunner(
        checked,
        participant=participant,
        session=str(session),
        data_root=Path(data_root),
        simulated_participant=simulated_participant,
        say=say,
        thresholds_source=thresholds_source,
        sim_options=sim_options,
        library_log=library_log,
        view=view,
        resumed_from=None
        if resume is None
        else {
            "runs": list(resume.runs),
            "completed_blocks": sorted(resume.completed_blocks),
            "pulses_delivered": resume.pulses_delivered,
            "measured": dict(resume.measured),
        },
    )
    return runner.run()
