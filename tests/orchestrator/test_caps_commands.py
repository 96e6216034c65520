"""The per-day and per-session pulse caps, through the real commands.

``stimtrain run`` counts every pulse the participant got today from the
journals of all their sessions and runs; ``stimtrain resume`` adds the pulses
of the session's earlier runs to the session cap. Both refuse before anything
starts: the check comes before the session runner, so no run folder, journal,
device or LSL stream is created. The earlier runs here are real journals
written with the runner's own pieces (:func:`new_run`, :class:`Journal`, one
``pulse`` line per delivered pulse) and the caps are tightened by a lab limits
file, as a lab would.

The protocol of the refused commands ends with a one-pulse block at
``80 %AMT`` while no AMT is known: check_file refuses that block too, so no
session can start here even if a cap count were broken (the test then fails
on the missing cap line instead of running a session).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from stimtrain.cli import main
from stimtrain.orchestrator.language.protocol import load_protocol
from stimtrain.orchestrator.language.thresholds import Thresholds
from stimtrain.orchestrator.safety.checking import check_file
from stimtrain.orchestrator.session.course import participant_pulses_on
from stimtrain.orchestrator.session.journal import Journal
from stimtrain.orchestrator.session.resume import read_resume_point
from stimtrain.orchestrator.session.session_folder import SessionFolder, new_run

SINGLE_PULSES = """\
stimtrain: 1
name: caps test
blocks:
  - type: stimulate
    label: single pulses
    pattern: single
    intensity: 110 %RMT
    pulses: 20
    interval: 2 s
"""
GUARD = """\
  - type: stimulate
    label: needs the AMT
    pattern: single
    intensity: 80 %AMT
    pulses: 1
    interval: 2 s
"""
#: Where check_file locates the caps (the blocks list) and the guard block.
CAP_AT = "4:3: error: blocks"
GUARD_LINE = (
    "13:16: error: blocks[1].intensity: needs the participant's threshold "
    "(--amt) to set device power (got 80 %AMT)"
)
THRESHOLDS = {"rmt": 50.0, "amt": None}


def _protocol(folder: Path, *, guard: bool = True) -> Path:
    """Write the test protocol: 20 single pulses (+ the one-pulse guard block)."""
    path = folder / ("caps.yaml" if guard else "caps_only.yaml")
    path.write_text(SINGLE_PULSES + (GUARD if guard else ""))
    return path


def _lab(folder: Path, **caps: int) -> Path:
    """A lab limits file that tightens only the given caps."""
    path = folder / "lab.yaml"
    path.write_text("".join(f"{key}: {value}\n" for key, value in caps.items()))
    return path


def _earlier_run(
    root: Path,
    participant: str,
    session: str,
    protocol: Path,
    pulses: int,
    *,
    completed: bool = False,
    crashed: bool = False,
    wall: float | None = None,
) -> SessionFolder:
    """Write one earlier run of a session the way the runner journals it.

    Parameters
    ----------
    root : Path
        Data root.
    participant, session : str
        BIDS labels.
    protocol : Path
        The protocol the run ran (path and hash go into ``run_created``).
    pulses : int
        Pulses delivered, in block 0 (and block 1 beyond 20), one journal
        line each.
    completed : bool
        The run finished every block (``session_end`` completed).
    crashed : bool
        The run died mid-line: no ``session_end``, a torn last line.
    wall : float | None
        Wall-clock time of every entry (default: now).

    Returns
    -------
    SessionFolder
        The run's folder.
    """
    folder = new_run(root, participant, session)
    journal = Journal(folder.file("journal.jsonl"))
    when = {} if wall is None else {"wall": wall}
    journal.write(
        "run_created",
        participant=participant,
        session=session,
        run=folder.run,
        protocol=str(protocol.resolve()),
        protocol_sha256=load_protocol(protocol).sha256,
        thresholds=THRESHOLDS,
        rig="sim",
        **when,
    )
    for n in range(pulses):
        block, index = (0, n) if n < 20 else (1, n - 20)
        if index == 0:
            journal.write("block_start", block=block, type="stimulate", **when)
        journal.write(
            "pulse",
            block=block,
            pulse=index,
            scheduled=float(n),
            actual=float(n),
            via="serial",
            confirmed=True,
            **when,
        )
        if index == 19 and block == 0:
            journal.write("block_end", block=0, completed=True, **when)
    if completed:
        journal.write(
            "session_end", status="completed", pulses_delivered=pulses, **when
        )
    elif not crashed:
        journal.write("session_end", status="aborted", pulses_delivered=pulses, **when)
    journal.close()
    if crashed:
        with open(folder.file("journal.jsonl"), "a", encoding="utf-8") as f:
            f.write('{"event": "pulse", "blo')
    return folder


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (folders as empty entries)."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"")
        for p in sorted(root.rglob("*"))
    }


def _main(argv: list[str], capsys) -> tuple[int, list[str]]:
    status = main(argv)
    return status, capsys.readouterr().out.strip().splitlines()


def test_run_refuses_when_todays_earlier_sessions_fill_the_day_cap(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    protocol = _protocol(tmp_path)
    lab = _lab(tmp_path, max_pulses_per_day=100)
    root = tmp_path / "data"
    # Today: a completed session (60) and a crashed one (30, torn last line).
    _earlier_run(root, "P01", "1", protocol, 60, completed=True)
    _earlier_run(root, "P01", "3", protocol, 30, crashed=True)
    # Not today's, or not this participant's: not counted.
    yesterday = (dt.datetime.now() - dt.timedelta(days=1)).timestamp()
    _earlier_run(root, "P01", "0", protocol, 200, completed=True, wall=yesterday)
    _earlier_run(root, "P02", "1", protocol, 500, completed=True)
    before = _tree(root)

    status, out = _main(
        ["run", "caps.yaml", "--participant", "P01", "--session", "2"]
        + ["--rmt", "50", "--limits", str(lab), "--data", str(root)],
        capsys,
    )

    assert status == 1
    assert out == [
        f"caps.yaml:{CAP_AT}: pulses per day (90 already delivered today): "
        "must be at most 100 pulses (got 111 pulses)",
        f"caps.yaml:{GUARD_LINE}",
    ]
    assert _tree(root) == before  # no ses-2, no new run, nothing rewritten


def test_resume_counts_the_pulses_of_every_earlier_run_for_the_session_cap(
    tmp_path, capsys
):
    protocol = _protocol(tmp_path)
    lab = _lab(tmp_path, max_pulses_per_session=30)
    root = tmp_path / "data"
    # Run 1 crashed after 10 pulses of block 0, run 2 was aborted after 5 more:
    # block 0 is run again in full (20) on top of the 15 already delivered.
    first = _earlier_run(root, "P01", "1", protocol, 10, crashed=True)
    _earlier_run(root, "P01", "1", protocol, 5)
    before = _tree(root)

    status, out = _main(["resume", str(first.path), "--limits", str(lab)], capsys)

    assert status == 1
    assert out == [
        f"{protocol.resolve()}:{CAP_AT}: pulses per session "
        "(15 delivered in earlier runs): must be at most 30 pulses (got 36 pulses)",
        f"{protocol.resolve()}:{GUARD_LINE}",
    ]
    assert _tree(root) == before  # no run 3, nothing rewritten


def test_resume_counts_pulses_of_finished_blocks_it_skips(tmp_path, capsys):
    protocol = _protocol(tmp_path)
    lab = _lab(tmp_path, max_pulses_per_session=20)
    root = tmp_path / "data"
    # Block 0 finished (20 pulses) before the crash; only block 1 is left.
    first = _earlier_run(root, "P01", "1", protocol, 20, crashed=True)
    before = _tree(root)

    status, out = _main(["resume", str(first.path), "--limits", str(lab)], capsys)

    assert status == 1
    assert out == [
        f"{protocol.resolve()}:{CAP_AT}: pulses per session "
        "(20 delivered in earlier runs): must be at most 20 pulses (got 21 pulses)",
        f"{protocol.resolve()}:{GUARD_LINE}",
    ]
    assert _tree(root) == before


def _cap_check(checked, rule_start: str):
    (check,) = [c for c in checked.report.checks if c.rule.startswith(rule_start)]
    return check


def test_earlier_pulses_under_the_day_cap_pass(tmp_path):
    protocol = _protocol(tmp_path, guard=False)
    lab = _lab(tmp_path, max_pulses_per_day=100)
    root = tmp_path / "data"
    _earlier_run(root, "P01", "1", protocol, 50, completed=True)
    _earlier_run(root, "P01", "3", protocol, 30, crashed=True)
    # What run_protocol passes to check_file, computed the same way.
    today = participant_pulses_on(root, "P01", dt.date.today())
    assert today == 80

    checked = check_file(
        protocol,
        rig="sim",
        thresholds=Thresholds(**THRESHOLDS),
        limits=lab,
        require_power=True,
        participant="P01",
        delivered_today=today,
    )

    check = _cap_check(checked, "pulses per day")
    assert check.rule == "pulses per day (80 already delivered today)"
    assert (check.limit, check.value, check.ok) == (100, 100, True)  # at the cap


def test_earlier_runs_under_the_session_cap_pass(tmp_path):
    protocol = _protocol(tmp_path, guard=False)
    lab = _lab(tmp_path, max_pulses_per_session=30)
    root = tmp_path / "data"
    first = _earlier_run(root, "P01", "1", protocol, 6, crashed=True)
    _earlier_run(root, "P01", "1", protocol, 4)
    point = read_resume_point(first.path)
    assert point.pulses_delivered == 10

    checked = check_file(
        protocol,
        rig=point.rig,
        thresholds=Thresholds(**point.thresholds),
        limits=lab,
        require_power=True,
        participant=point.participant,
        delivered_today=participant_pulses_on(root, "P01", dt.date.today()),
        skip_blocks=point.completed_blocks,
        delivered_session=point.pulses_delivered,
    )

    check = _cap_check(checked, "pulses per session")
    assert check.rule == "pulses per session (10 delivered in earlier runs)"
    assert (check.limit, check.value, check.ok) == (30, 30, True)
