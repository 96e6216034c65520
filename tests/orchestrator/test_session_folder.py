"""Session folders: safe labels, new run numbers, nothing overwritten; the journal."""

import pytest

from stimtrain.orchestrator.session.journal import Journal, read_journal
from stimtrain.orchestrator.session.session_folder import (
    new_run,
    validate_label,
    write_new,
)


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", "sub 1", "x" * 65, "é"])
def test_labels_refuse_traversal_and_junk(bad):
    with pytest.raises(ValueError, match="BIDS label"):
        validate_label(bad, "participant")


def test_runs_are_numbered_and_never_overwritten(tmp_path):
    first = new_run(tmp_path, "P01", 1)
    second = new_run(tmp_path, "P01", 1)
    assert (first.run, second.run) == (1, 2)
    assert first.path == tmp_path / "sub-P01" / "ses-1"
    assert second.file("plan.json").name == "sub-P01_ses-1_run-02_plan.json"
    write_new(first.file("plan.json"), "{}")
    with pytest.raises(FileExistsError):
        write_new(first.file("plan.json"), "{}")
    with pytest.raises(ValueError):
        new_run(tmp_path, "../P01", 1)
    assert not (tmp_path.parent / "P01").exists()


def test_journal_survives_a_torn_line(tmp_path):
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    journal.write("pulse", block=1, pulse=0)
    journal.write("pulse", block=1, pulse=1)
    journal.close()
    with open(path, "a") as f:
        f.write('{"event": "pul')  # a crash in the middle of a write
    entries = read_journal(path)
    assert [e["pulse"] for e in entries] == [0, 1]
    assert entries[0]["clock"] <= entries[1]["clock"]
    with pytest.raises(RuntimeError):
        journal.write("late")
