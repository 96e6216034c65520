"""A full disk during a session: stimulation stops while the recording still has
room, the stop survives the I/O errors, and nothing recorded is lost.

Each test mounts a small tmpfs as the data root (root only; skipped with the
reason where mounting is not permitted), runs ``stimtrain run`` on the
simulated rig into it, and fills the filesystem from the test once pulses
are being given, as another program on the machine would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pylsl
import pytest

from stimtrain.analysis.xdf import read_markers
from stimtrain.orchestrator.session.diskwatch import MIN_FREE_BYTES
from stimtrain.orchestrator.session.journal import read_journal
from stimtrain.orchestrator.session.session_folder import SessionFolder

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("rig")]

CLI = [sys.executable, "-m", "stimtrain.cli"]
PARTICIPANT, SESSION = "disk", "1"
PROTOCOL = """\
stimtrain: 1
name: disk full
seed: 5
blocks:
  - type: stimulate
    label: single pulses
    pattern: single
    intensity: 110 %RMT
    pulses: 20
    interval: 1.1 s
"""


@pytest.fixture
def small_disk(mount_tmpfs):
    """A 64 MB tmpfs as the data root."""
    return mount_tmpfs("64m")


def _fill(mount: Path, leave: int) -> float:
    """Take the filesystem's free space down to ``leave`` bytes; return when."""
    filler = mount / "filler.bin"
    # Unbuffered: a write the full disk refuses fails here, and nothing is
    # left for close() to flush (a buffered file raised ENOSPC on closing
    # when the session took the last bytes between the check and the write).
    with open(filler, "wb", buffering=0) as f:
        chunk = b"\1" * (1 << 20)
        while True:
            free = shutil.disk_usage(mount).free
            if free <= leave:
                break
            try:
                f.write(chunk[: max(1, min(len(chunk), free - leave))])
            except OSError:
                break
    return pylsl.local_clock()


def _wait_pulses(journal: Path, n: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended early (exit {proc.returncode})"
        if journal.exists():
            pulses = [e for e in read_journal(journal) if e.get("event") == "pulse"]
            if len(pulses) >= n:
                return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} pulses within 120 s")


def _session(tmp_path: Path, mount: Path, leave: int):
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(PROTOCOL)
    args = ["run", str(protocol), "--participant", PARTICIPANT, "--session"]
    args += [SESSION, "--rmt", "50", "--data", str(mount)]
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen(
            [*CLI, *args], stdout=o, stderr=e, start_new_session=True
        )
    folder = SessionFolder(mount.resolve(), PARTICIPANT, SESSION, 1)
    try:
        _wait_pulses(folder.file("journal.jsonl"), 3, proc)
        filled_at = _fill(mount, leave)
        proc.wait(120)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)
    return proc.returncode, out.read_text(), err.read_text(), folder, filled_at


def _check_stop(code, stdout, stderr, folder):
    """What holds however the disk filled up."""
    assert code == 2, f"exit {code}\n{stdout}\n{stderr[-3000:]}"
    assert "Traceback" not in stderr, stderr[-3000:]
    text = folder.file("journal.jsonl").read_text()
    # A complete journal: every line whole, the stop recorded in order.
    assert text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]
    events = [e["event"] for e in lines]
    assert "recording_failed" in events, events
    failed = events.index("recording_failed")
    assert "disarmed" in events[failed:], events[failed:]
    assert events[-1] == "session_end", events[-3:]
    assert lines[-1]["status"] == "aborted"
    return lines


def _sim_pulses(folder: SessionFolder) -> np.ndarray:
    log = folder.file("simulator_pulses.jsonl")
    rows = [ln for ln in log.read_text().splitlines() if ln.endswith("}")]
    return np.array([json.loads(ln)["time"] for ln in rows])


def test_stimulation_stops_while_the_recording_still_has_room(tmp_path, small_disk):
    # Leave less than the watch's headroom: it must stop at once, with every
    # pulse given still in the recording.
    code, stdout, stderr, folder, filled_at = _session(
        tmp_path, small_disk, leave=MIN_FREE_BYTES // 2
    )
    lines = _check_stop(code, stdout, stderr, folder)
    failed = next(e for e in lines if e["event"] == "recording_failed")
    assert "nearly full" in failed["reason"]
    assert "recording:" in stderr and "nearly full" in stderr
    pulses = _sim_pulses(folder)
    assert 3 <= len(pulses) < 20
    # No pulse once the disk had filled (the watch checks every 0.2 s; a pulse
    # already leaving the host when it looked may still land).
    assert pulses.max() <= filled_at + 0.3, pulses.max() - filled_at
    # Every pulse the unit gave has its marker in the recording.
    markers = read_markers(folder.file("recording.xdf"))
    assert int((markers["event"] == "pulse").sum()) == len(pulses)


def test_a_disk_filled_to_the_last_byte_keeps_the_journal_whole(tmp_path, small_disk):
    code, stdout, stderr, folder, filled_at = _session(tmp_path, small_disk, leave=0)
    lines = _check_stop(code, stdout, stderr, folder)
    pulses = _sim_pulses(folder)
    assert pulses.max() <= filled_at + 0.3, pulses.max() - filled_at
    # The journal still counted every pulse the unit gave.
    assert sum(e["event"] == "pulse" for e in lines) == len(pulses)
    # The recording is readable up to where the disk filled.
    markers = read_markers(folder.file("recording.xdf"))
    assert "session_start" in set(markers["event"])


def test_a_disk_too_small_for_the_plan_is_refused_before_any_pulse(
    tmp_path, mount_tmpfs
):
    mount = mount_tmpfs("16m")
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(PROTOCOL)
    args = ["run", str(protocol), "--participant", PARTICIPANT, "--session"]
    args += [SESSION, "--rmt", "50", "--data", str(mount)]
    run = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)
    folder = SessionFolder(mount.resolve(), PARTICIPANT, SESSION, 1)
    assert run.returncode == 2, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert "not enough free space for the recording" in run.stderr
    assert "MB free" in run.stderr
    events = [e["event"] for e in read_journal(folder.file("journal.jsonl"))]
    assert "refused" in events and "pulse" not in events
    assert "device_opened" not in events
    assert _sim_pulses(folder).size == 0
