"""The journal on a full disk: whole lines or none, a reserve, a second copy."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

from stimtrain.orchestrator.session.journal import RESERVE_BYTES, Journal, read_journal


@pytest.fixture
def tiny_disk(mount_tmpfs):
    """A 1 MB tmpfs."""
    return mount_tmpfs("1m", "disk")


def _fill(folder) -> None:
    with open(folder / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"x" * 4096)
        except OSError:
            pass


def _lines(path) -> list[dict]:
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "a torn last line"
    return [json.loads(line) for line in text.splitlines()]


def test_every_line_is_durable_and_the_file_is_not_executable(tmp_path):
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    journal.write("pulse", block=0, index=1)
    # Durable before write() returns: another reader sees the whole line.
    assert read_journal(path)[0]["index"] == 1
    journal.close()
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert not mode & 0o111 and mode & 0o600 == 0o600
    # The reserve is given back when the journal closes.
    assert not (tmp_path / "j.jsonl.reserve").exists()


def test_a_full_disk_uses_the_reserve_for_the_last_lines(tiny_disk):
    failures = []
    journal = Journal(tiny_disk / "j.jsonl", on_failure=failures.append)
    assert (tiny_disk / "j.jsonl.reserve").stat().st_size == RESERVE_BYTES
    journal.write("pulse", index=1)
    _fill(tiny_disk)
    assert shutil.disk_usage(tiny_disk).free < 4096
    journal.write("disarmed", reason="disk full")
    journal.write("session_end", status="aborted")
    journal.close()
    events = [e["event"] for e in _lines(tiny_disk / "j.jsonl")]
    assert events == ["pulse", "disarmed", "session_end"]
    assert failures == [] and journal.unwritten == []


def test_beyond_the_reserve_lines_go_whole_to_a_second_copy(tiny_disk):
    failures = []
    journal = Journal(tiny_disk / "j.jsonl", on_failure=failures.append)
    journal.write("pulse", index=1)
    _fill(tiny_disk)
    big = "x" * 20_000
    written = 0
    # Fill the reserve too: the first line that does not fit is kept whole
    # elsewhere, and the owner is told once.
    for i in range(40):
        journal.write("note", i=i, text=big)
        if journal.error is None:
            written += 1
    assert journal.error is not None and len(failures) == 1
    assert isinstance(failures[0], OSError)
    on_disk = _lines(tiny_disk / "j.jsonl")
    assert len(on_disk) == 1 + written
    kept = [json.loads(line) for line in journal.unwritten]
    assert [e["i"] for e in kept] == list(range(written, 40))
    copy = _lines(journal.fallback)
    assert [e["i"] for e in copy] == list(range(written, 40))
    journal.fallback.unlink()
    journal.close()


def test_each_line_is_fsynced_before_write_returns(tmp_path):
    """Durable per event: every line's write is followed by an fsync of the
    journal, before the next line (seen by strace, the system calls made)."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    path = tmp_path / "j.jsonl"
    trace = tmp_path / "trace.txt"
    script = (
        "import sys\n"
        "from stimtrain.orchestrator.session.journal import Journal\n"
        "j = Journal(sys.argv[1], reserve=False)\n"
        "for i in range(3):\n"
        "    j.write('pulse', i=i)\n"
        "j.close()\n"
    )
    done = subprocess.run(
        ["strace", "-f", "-e", "trace=openat,write,fsync,fdatasync", "-o", str(trace)]
        + [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 and "ptrace" in done.stderr:
        pytest.skip(f"tracing is not permitted here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    lines = trace.read_text().splitlines()
    fd = next(
        line.rsplit("=", 1)[1].strip()
        for line in lines
        if "openat(" in line and str(path) in line
    )
    calls = [
        "write" if f"write({fd}," in line else "fsync"
        for line in lines
        if f"write({fd}," in line
        or f"fsync({fd})" in line
        or f"fdatasync({fd})" in line
    ]
    assert calls == ["write", "fsync"] * 3
