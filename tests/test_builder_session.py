"""Builder task blocks in whole sessions on the simulated rig (``stimtrain run``).

PsychoPy's own Stroop demo, unchanged, as a task block: its markers and trials
in the recording and the session folder, online TMS at its word's onset +
150 ms, the operator's pause and abort between loop iterations, and a crash
inside an experiment ending the session disarmed.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import pyxdf

from stimtrain.devices.traffic import read_traffic
from stimtrain.journalfile import read_journal
from stimtrain.orchestrator.session.device_worker import DeviceConfig

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("rig")]

psychopy = pytest.importorskip("psychopy")
STROOP = (
    Path(psychopy.__file__).parent / "demos/builder/Experiments/stroop/stroop.psyexp"
)
CLI = [sys.executable, "-m", "stimtrain.cli"]
PREFIX = "sub-b1_ses-1_run-01_"
MAX_LATE_S = DeviceConfig("super_rapid2", "unused").max_late_s


def _protocol(tmp_path: Path, experiment: Path, trials: int) -> Path:
    path = tmp_path / "protocol.yaml"
    # Named relative to the protocol, as a lab would keep it beside it.
    builder = os.path.relpath(experiment, tmp_path)
    path.write_text(
        "stimtrain: 1\nname: builder\nrig: sim\nblocks:\n"
        "  - type: task\n"
        "    label: stroop\n"
        f"    builder: {builder}\n"
        f"    trials: {trials}\n"
        "    tms:\n"
        "      at: word.started + 150 ms\n"
        "      intensity: 110 %RMT\n"
    )
    return path


def _run_args(protocol: Path, data: Path) -> list[str]:
    return [
        *CLI, "run", str(protocol), "--participant", "b1", "--session", "1",
        "--rmt", "50", "--data", str(data),
    ]  # fmt: skip


def _markers(folder: Path) -> list[tuple[float, dict]]:
    streams, _ = pyxdf.load_xdf(
        str(folder / f"{PREFIX}recording.xdf"),
        synchronize_clocks=False,
        dejitter_timestamps=False,
    )
    m = next(s for s in streams if s["info"]["type"][0] == "Markers")
    return [
        (float(t), json.loads(v[0]))
        for t, v in zip(m["time_stamps"], m["time_series"], strict=True)
    ]


def _sim_pulses(folder: Path) -> list[float]:
    lines = (folder / f"{PREFIX}simulator_pulses.jsonl").read_text().splitlines()
    return [json.loads(line)["time"] for line in lines if line.endswith("}")]


def test_stroop_demo_with_online_tms(tmp_path):
    """The demo runs as a block: a marker for every component start, TSV rows
    matching them, its CSV in the session folder, and each pulse at the word's
    onset flip + 150 ms."""
    data = tmp_path / "data"
    proc = subprocess.run(
        _run_args(_protocol(tmp_path, STROOP, 3), data),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    folder = data / "sub-b1" / "ses-1"
    assert "completed: 3 of 3 pulses delivered" in proc.stderr
    assert "WARNING" not in proc.stdout + proc.stderr
    markers = _markers(folder)
    words = [
        (t, m)
        for t, m in markers
        if m["event"] == "component_onset" and m["component"] == "word"
    ]
    pulses = [(t, m) for t, m in markers if m["event"] == "pulse"]
    assert [m["trial"] for _, m in words] == [0, 1, 2]
    assert [m["trial"] for _, m in pulses] == [0, 1, 2]
    hops = []
    for (t_word, _), (t_pulse, pulse) in zip(words, pulses, strict=True):
        assert pulse["locked_to"] == "word.started" and pulse["delay"] == 0.15
        # Scheduled from the flip's own stamp, to the microsecond.
        assert pulse["scheduled"] == pytest.approx(t_word + 0.15, abs=1e-9)
        hops.append(t_pulse - pulse["scheduled"])
    # Given with the device process's usual timing: the end-to-end test's
    # 5 ms for the typical pulse; on a loaded shared machine one came 13 ms
    # late, so each is held to the device's own lateness limit (a fault
    # beyond it).
    assert all(0 <= h < MAX_LATE_S for h in hops), hops
    assert sorted(hops)[1] < 0.005, hops
    # The simulated unit fired each one (its own stamp, just after the marker's:
    # the marker is when the trigger left the host).
    sim = _sim_pulses(folder)
    assert len(sim) == 3
    for s, (t_pulse, _) in zip(sim, pulses, strict=True):
        assert 0 <= s - t_pulse < 0.005
    # The trials TSV, row by row with the markers.
    with open(folder / f"{PREFIX}block-01_task-stroop_trials.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert len(rows) == 3
    for i, row in enumerate(rows):
        (response,) = [
            m for _, m in markers if m["event"] == "response" and m["trial"] == i
        ]
        assert row["key"] == response["key"] and float(row["rt"]) == response["rt"]
        assert float(row["onset"]) in {t for t, m in markers if m.get("trial") == i}
    # PsychoPy's own files under the run's name; the participant's ID filled in.
    (csv_file,) = (folder / f"{PREFIX}block-01_builder-stroop" / "data").glob("*.csv")
    assert csv_file.name.startswith("b1_")
    journal = read_journal(folder / f"{PREFIX}journal.jsonl")
    (end,) = [e for e in journal if e["event"] == "block_end"]
    assert end["trials_done"] == 3 and end["pulses_delivered"] == 3
    assert end["data_dir"].endswith("block-01_builder-stroop")


class _Terminal:
    """``stimtrain run`` in a pseudo-terminal, so its console reads keys."""

    def __init__(self, args: list[str]) -> None:
        master, slave = os.openpty()
        self.proc = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
        )
        os.close(slave)
        self.master = master
        self.output = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.output += data

    def press(self, key: str) -> None:
        os.write(self.master, key.encode())

    def finish(self) -> int:
        try:
            self.proc.wait(180)
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.reader.join(5)
            os.close(self.master)
        return self.proc.returncode


def _wait_for(journal: Path, proc, predicate, what: str) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before {what}"
        if journal.exists():
            found = [e for e in read_journal(journal) if predicate(e)]
            if found:
                return found[-1]
        time.sleep(0.05)
    raise AssertionError(f"no {what} within 120 s")


def test_pause_then_abort_between_iterations(tmp_path):
    """p holds the block at the end of an iteration (the unit disarmed, nothing
    shown, no pulse), r goes on, a ends the session disarmed."""
    data = tmp_path / "data"
    term = _Terminal(_run_args(_protocol(tmp_path, STROOP, 12), data))
    journal = data / "sub-b1" / "ses-1" / f"{PREFIX}journal.jsonl"
    try:
        _wait_for(journal, term.proc, lambda e: e["event"] == "pulse", "a pulse")
        term.press("p")
        paused = _wait_for(
            journal, term.proc, lambda e: e["event"] == "paused", "pause"
        )
        time.sleep(1.5)
        term.press("r")
        resumed = _wait_for(
            journal, term.proc, lambda e: e["event"] == "resumed", "resume"
        )
        _wait_for(
            journal,
            term.proc,
            lambda e: e["event"] == "pulse" and e["clock"] > resumed["clock"],
            "a pulse after the pause",
        )
        term.press("a")
        status = term.finish()
    finally:
        if term.proc.poll() is None:
            os.killpg(term.proc.pid, signal.SIGKILL)
    assert status == 2, term.output.decode(errors="replace")[-3000:]
    folder = data / "sub-b1" / "ses-1"
    events = read_journal(folder / f"{PREFIX}journal.jsonl")
    end = events[-1]
    assert end["event"] == "session_end" and end["status"] == "aborted"
    # Disarmed for the pause (Magstim's disarm command, EA, on the wire) and
    # armed again (EB) before going on; disarmed after the last pulse.
    sent = [
        (r.clock, bytes(r.data[:2]))
        for r in read_traffic(folder / f"{PREFIX}devices.jsonl")
        if r.direction == "tx"
    ]
    assert paused["disarmed"] is True and resumed["armed"] is True
    held = [c for c, d in sent if paused["clock"] - 1 < c < resumed["clock"]]
    assert any(
        d == b"EA" and paused["clock"] - 1 < c < resumed["clock"] for c, d in sent
    ), held
    last_pulse = max(e["clock"] for e in events if e["event"] == "pulse")
    assert any(e["event"] == "disarmed" and e["clock"] > last_pulse for e in events)
    markers = _markers(folder)
    during = [
        m
        for t, m in markers
        if paused["clock"] < t < resumed["clock"]
        and m["event"] in ("component_onset", "pulse", "response")
    ]
    assert not during, during
    sim = _sim_pulses(folder)
    abort = next(t for t, m in markers if m["event"] == "abort")
    assert all(s < abort for s in sim)
    rows = (
        (folder / f"{PREFIX}block-01_task-stroop_trials.tsv").read_text().splitlines()
    )
    # The iteration the abort cut short is not a row.
    assert 1 <= len(rows) - 1 < 12


def test_crash_inside_the_experiment_disarms_first(tmp_path):
    """An exception in the experiment's own code ends the session like any
    other: the unit disarmed before the session ends, the reason recorded."""
    from psychopy import experiment
    from psychopy.experiment.components.code import CodeComponent

    folder = tmp_path / "exp"
    folder.mkdir()
    for name in ("stroop.psyexp", "trialTypes.csv"):
        shutil.copy(STROOP.parent / name, folder / name)
    exp = experiment.Experiment()
    exp.loadFromXML(str(folder / "stroop.psyexp"))
    exp.routines["trial"].addComponent(
        CodeComponent(
            exp,
            parentName="trial",
            name="extra",
            beginRoutine='if trials.thisN == 2:\n    raise RuntimeError("boom")',
        )
    )
    exp.saveToXML(str(folder / "stroop.psyexp"))
    data = tmp_path / "data"
    proc = subprocess.run(
        _run_args(_protocol(tmp_path, folder / "stroop.psyexp", 5), data),
        capture_output=True,
        text=True,
        timeout=300,
    )
    printed = proc.stdout + proc.stderr
    assert "aborted: 2 of 5 pulses delivered; stopped: RuntimeError: boom" in printed
    session = data / "sub-b1" / "ses-1"
    events = read_journal(session / f"{PREFIX}journal.jsonl")
    names = [e["event"] for e in events]
    assert names[-1] == "session_end" and events[-1]["status"] == "aborted"
    assert events[-1]["reason"] == "RuntimeError: boom"
    last_pulse = max(i for i, n in enumerate(names) if n == "pulse")
    assert "disarmed" in names[last_pulse:]
    assert len(_sim_pulses(session)) == 2
    # The rows run before the crash, and PsychoPy's data, are kept.
    rows = (session / f"{PREFIX}block-01_task-stroop_trials.tsv").read_text()
    assert len(rows.splitlines()) == 3
    assert list((session / f"{PREFIX}block-01_builder-stroop" / "data").glob("*.csv"))
