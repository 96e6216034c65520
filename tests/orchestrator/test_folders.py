"""Session folders are what they say: whose, which session, untouched.

Every refusal here happens before a device, a stream or a window starts:
the folders are built with the project's own journal and session naming.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import pytest

from stimtrain.cli import main
from stimtrain.orchestrator.session.course import participant_pulses_on
from stimtrain.orchestrator.session.journal import Journal, read_journal
from stimtrain.orchestrator.session.resume import read_resume_point
from stimtrain.orchestrator.session.session_folder import new_run, validate_label

PROTOCOL = (
    Path(__file__).parents[2] / "tests" / "fault_protocols" / "single_pulses.yaml"
)
TEXT = PROTOCOL.read_text()


def _run(root, participant="P01", session="1", events=(), blocks=2, **created):
    folder = new_run(root, participant, session)
    journal = Journal(folder.file("journal.jsonl"), reserve=False)
    journal.write(
        "run_created",
        participant=participant,
        session=session,
        protocol=str(PROTOCOL),
        protocol_sha256="abc",
        protocol_copy_sha256=hashlib.sha256(TEXT.encode()).hexdigest(),
        thresholds={"rmt": 50, "amt": None},
        rig="sim",
        **created,
    )
    for event, fields in events:
        journal.write(event, **fields)
    journal.close()
    folder.file("protocol.yaml").write_text(TEXT)
    plan = {"blocks": [{"index": i} for i in range(blocks)]}
    folder.file("plan.json").write_text(json.dumps(plan))
    return folder


def test_ids_are_matched_in_full():
    with pytest.raises(ValueError, match="BIDS label"):
        validate_label("nl\n", "participant")
    assert validate_label("P01", "participant") == "P01"


def test_run_refuses_an_id_with_a_newline(tmp_path, capsys):
    data = tmp_path / "data"
    code = main(["run", str(PROTOCOL), "--participant", "nl\n", "--session", "1"]
                + ["--rmt", "50", "--data", str(data)])  # fmt: skip
    assert code == 1
    assert "participant: must be 1-64 letters or digits" in capsys.readouterr().out
    assert not data.exists()


def test_resume_refuses_a_folder_holding_another_participants_files(tmp_path):
    other = _run(tmp_path, participant="P02")
    mine = tmp_path / "sub-P01" / "ses-1"
    mine.mkdir(parents=True)
    for f in other.path.iterdir():
        os.link(f, mine / f.name)
    with pytest.raises(
        ValueError, match="belongs to sub-P02 ses-1, not to this folder"
    ):
        read_resume_point(mine)


def test_resume_refuses_a_journal_renamed_into_another_folder(tmp_path):
    theirs = _run(tmp_path, participant="P02")
    mine = new_run(tmp_path, "P01", "1")
    os.replace(theirs.file("journal.jsonl"), mine.file("journal.jsonl"))
    with pytest.raises(ValueError, match="its journal is of sub-P02 ses-1"):
        read_resume_point(mine.path)
    # Nor does it count toward this participant's day.
    assert participant_pulses_on(tmp_path, "P01", dt.date.today()) == 0


def test_another_participants_journal_is_not_counted_toward_the_caps(tmp_path):
    pulses = [("pulse", {"block": 0, "pulse": i}) for i in range(7)]
    _run(tmp_path, participant="P01", events=pulses)
    assert participant_pulses_on(tmp_path, "P01", dt.date.today()) == 7
    theirs = _run(tmp_path, participant="P02", events=pulses)
    planted = tmp_path / "sub-P01" / "ses-1" / "sub-P01_ses-1_run-05_journal.jsonl"
    planted.write_bytes(theirs.file("journal.jsonl").read_bytes())
    assert participant_pulses_on(tmp_path, "P01", dt.date.today()) == 7


def test_a_participant_folder_that_is_a_link_is_refused(tmp_path, capsys):
    data = tmp_path / "data"
    victim = _run(data, participant="P02")
    (data / "sub-P01").symlink_to(data / "sub-P02")
    before = sorted(p.name for p in victim.path.iterdir())
    with pytest.raises(ValueError, match="is a symbolic link"):
        new_run(data, "P01", "1")
    code = main(["run", str(PROTOCOL), "--participant", "P01", "--session", "1"]
                + ["--rmt", "50", "--data", str(data)])  # fmt: skip
    assert code == 1 and "is a symbolic link" in capsys.readouterr().out
    assert sorted(p.name for p in victim.path.iterdir()) == before
    with pytest.raises(ValueError, match="is a symbolic link"):
        read_resume_point(data / "sub-P01" / "ses-1")


def test_resume_refuses_an_edited_protocol_copy(tmp_path):
    folder = _run(tmp_path)
    folder.file("protocol.yaml").write_text(TEXT.replace("110 %RMT", "150 %RMT"))
    with pytest.raises(ValueError, match="the protocol copy changed since run 1"):
        read_resume_point(folder.path)


def test_every_block_done_is_finished_even_with_a_torn_last_line(tmp_path):
    done = [("block_end", {"block": b, "completed": True}) for b in range(2)]
    folder = _run(tmp_path, events=done)
    with open(folder.file("journal.jsonl"), "a") as f:
        f.write('{"event": "session_end", "stat')
    assert read_resume_point(folder.path).finished


def test_journal_lines_that_are_not_events_are_skipped(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"event": "pulse"}\n[1, 2]\n"text"\n\xff\xfe\n{"event": "x"}\n')
    assert [e["event"] for e in read_journal(path)] == ["pulse", "x"]


def test_data_that_is_a_file_or_full_of_runs_is_refused(tmp_path, capsys):
    data = tmp_path / "data"
    data.write_text("not a folder")
    with pytest.raises(ValueError, match="the data root must be a folder"):
        new_run(data, "P01", "1")
    root = tmp_path / "root"
    folder = new_run(root, "P01", "1")
    for run in range(2, 100):
        (folder.path / f"sub-P01_ses-1_run-{run:02d}_journal.jsonl").touch()
    with pytest.raises(ValueError, match="99 runs already exist"):
        new_run(root, "P01", "1")


def test_fifos_are_refused_without_blocking(tmp_path, capsys):
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    assert main(["devices", "traffic", str(fifo)]) == 1
    assert "must be a regular file (got a FIFO)" in capsys.readouterr().err
