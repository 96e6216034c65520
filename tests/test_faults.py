"""End-to-end fault tests: device faults, EEG loss and signals on the simulated rig.

Each test runs real sessions of a short protocol (``tests/fault_protocols/``)
as ``stimtrain run`` subprocesses on the simulated rig, then checks what a lab
needs from the files the run left: the stimulator ended disarmed, no pulse
beyond the plan (from the simulator's own pulse log), a readable journal with
the reason of the stop, a readable XDF (also without footer after SIGKILL),
and where chosen, ``stimtrain resume`` completing the session.

One session costs 12-30 s of this 2-core machine, most of it the runner's
fixed start and end, so the whole matrix of scenarios times resume would take
over 7 minutes. Resume runs where it is different: after a device fault that
killed the link mid-block (disarm failed, the unit's own timeout took over),
after Ctrl+C (SIGINT) mid-block, and after SIGKILL (no session end, XDF
without footer). The other scenarios are checked up to their stop.

The journal must record the final disarm: the runner's own, or the one the
device process reports when it ended by itself after a fault.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pylsl
import pytest

from stimtrain.analysis.xdf import read_markers
from stimtrain.devices.traffic import TrafficRecord, format_traffic, read_traffic
from stimtrain.orchestrator.session.device_process import DeviceConfig
from stimtrain.orchestrator.session.device_worker import KEEP_ALIVE_GUARD_S
from stimtrain.orchestrator.session.journal import read_journal
from stimtrain.orchestrator.session.session_folder import SessionFolder
from stimtrain.orchestrator.session.xdfcheck import check_recording

# Whole sessions run one after another on one test worker (with the device
# process tests): two at once on a 2-core machine would measure each other's
# load, not the tool.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("rig")]

CLI = [sys.executable, "-m", "stimtrain.cli"]
PROTOCOL = Path(__file__).parent / "fault_protocols" / "single_pulses.yaml"
PARTICIPANT, SESSION = "faults", "1"
#: Planned interval of the protocol's pulses (s).
INTERVAL_S = 1.1
#: The device process's bound on a late pulse (beyond it: a fault).
MAX_LATE_S = DeviceConfig("super_rapid2", "unused").max_late_s
#: A session that takes longer than this is hung.
RUN_TIMEOUT_S = 180.0


# -- running sessions ------------------------------------------------------------
@dataclass
class Finished:
    """A ``stimtrain`` command that ended: exit code and what it printed."""

    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"exit {self.returncode}\n{self.stdout}\n{self.stderr[-3000:]}"


def _start(args: list[str], logs: Path) -> subprocess.Popen:
    # Its own session: a signal reaches the runner alone, and the whole group
    # (device process, simulated rig, Xvfb) can be killed if a test fails.
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "stdout", "w") as out, open(logs / "stderr", "w") as err:
        return subprocess.Popen(
            [*CLI, *args],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _finish(proc: subprocess.Popen, logs: Path) -> Finished:
    proc.wait(RUN_TIMEOUT_S)
    return Finished(
        proc.returncode,
        (logs / "stdout").read_text(),
        (logs / "stderr").read_text(),
    )


def _kill_group(proc: subprocess.Popen) -> None:
    """Leave nothing behind: kill the runner's process group if anything is left."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


def _run(args: list[str], logs: Path) -> Finished:
    proc = _start(args, logs)
    try:
        return _finish(proc, logs)
    finally:
        _kill_group(proc)


def _run_args(data: Path, *extra: str, protocol: Path = PROTOCOL) -> list[str]:
    return [
        "run",
        str(protocol),
        "--participant",
        PARTICIPANT,
        "--session",
        SESSION,
        "--rmt",
        "50",
        "--data",
        str(data),
        *extra,
    ]


# -- reading what a run left -------------------------------------------------------
@dataclass
class RunFiles:
    """One run's files, read back."""

    folder: SessionFolder
    plan: dict
    journal: list[dict]
    sim_pulses: np.ndarray
    traffic: list[TrafficRecord]

    def events(self, name: str) -> list[dict]:
        return [e for e in self.journal if e.get("event") == name]

    @property
    def pulses(self) -> list[dict]:
        return self.events("pulse")

    @property
    def end(self) -> dict | None:
        ends = self.events("session_end")
        return ends[-1] if ends else None

    def fault_clock(self) -> float:
        """When the device process found the fault (its traffic log note)."""
        notes = [r for r in self.traffic if r.text.startswith("fault: ")]
        assert notes, "the traffic log has no fault note"
        return notes[0].clock


def _folder(data: Path, run: int) -> SessionFolder:
    return SessionFolder(data.resolve(), PARTICIPANT, SESSION, run)


def _read_run(data: Path, run: int) -> RunFiles:
    folder = _folder(data, run)
    sim_log = folder.file("simulator_pulses.jsonl")
    lines = sim_log.read_text().splitlines() if sim_log.exists() else []
    traffic_log = folder.file("devices.jsonl")
    return RunFiles(
        folder=folder,
        plan=json.loads(folder.file("plan.json").read_text()),
        journal=read_journal(folder.file("journal.jsonl")),
        # The simulator flushes per line; only a torn last line is skipped.
        sim_pulses=np.array(
            [json.loads(line)["time"] for line in lines if line.endswith("}")]
        ),
        traffic=read_traffic(traffic_log) if traffic_log.exists() else [],
    )


def _runs(data: Path) -> list[int]:
    journals = _folder(data, 1).path.glob("*_journal.jsonl")
    return sorted(int(re.search(r"_run-(\d+)_", p.name)[1]) for p in journals)


def _wait_for_event(journal: Path, event: str, proc: subprocess.Popen) -> dict:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended (exit {proc.returncode})"
        if journal.exists():
            found = [e for e in read_journal(journal) if e.get("event") == event]
            if found:
                return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no {event!r} in {journal.name} within 90 s")


# -- what must hold after every run -------------------------------------------------
def _check_pulses_within_plan(run: RunFiles, stop_clock: float | None) -> None:
    """No pulse beyond the plan, none after the stop, never faster than planned."""
    sim = run.sim_pulses
    assert len(sim) <= run.plan["total_pulses"], sim
    if stop_clock is not None:
        after = sim[sim > stop_clock] - stop_clock
        assert not len(after), f"pulses {after} s after the stop"
    # The protocol's interval holds through every fault: a pulse is never
    # given early, and one that can't be given within max_late_s of its
    # time is a fault, so no interval is shorter than planned by more than
    # that (non-slip timing: after a late pulse the next comes on time).
    assert np.all(np.diff(sim) > INTERVAL_S - MAX_LATE_S), np.diff(sim)
    indices = [(p["block"], p["pulse"]) for p in run.pulses]
    assert len(set(indices)) == len(indices), f"a pulse journaled twice: {indices}"


def _disarm_record(run: RunFiles) -> str | None:
    """The journal's record of the final disarm; None when it has none.

    After the last pulse there must be ``disarmed``, or ``disarm_failed`` when
    the link was dead (then the unit's own keep-alive timeout disarms it).
    """
    last_pulse = max((p["clock"] for p in run.pulses), default=-np.inf)
    after = [
        e["event"]
        for e in run.journal
        if e.get("event") in ("disarmed", "disarm_failed") and e["clock"] > last_pulse
    ]
    return after[-1] if after else None


def _check_device_disarmed(run: RunFiles) -> None:
    """The stimulator ended disarmed: from the journal, else from the device log.

    When the device process ends by itself on a fault it disarms at shutdown,
    notes that in the traffic log and reports it; the runner journals it.
    """
    record = _disarm_record(run)
    shutdown = [
        r.text
        for r in run.traffic
        if r.text in ("disarmed at shutdown",)
        or r.text.startswith("disarm at shutdown failed")
    ]
    # A fault while opening comes before the arm command (Magstim "EB"): the
    # unit was never armed and needs no disarm record.
    armed = any(r.direction == "tx" and r.data[:2] == b"EB" for r in run.traffic)
    if record is None and not armed:
        return
    assert record is not None, (
        f"run {run.folder.run}: the journal has no disarmed/disarm_failed after "
        f"the fault (device log: {shutdown[-1] if shutdown else 'nothing'!r})"
    )
    if record == "disarm_failed":
        # Dead link: the unit's own timeout disarms it. Nothing was fired
        # after the fault, and the device process sent nothing either.
        fault = run.fault_clock()
        assert not np.any(run.sim_pulses > fault), run.sim_pulses
        fires = [r for r in run.traffic if r.direction == "tx" and r.clock > fault]
        assert all(r.data[:2] != b"EH" for r in fires), fires


def _check_journal_end(run: RunFiles, status: str, reason: str | None) -> None:
    """``session_end`` holds the status and the reason; the summary agrees."""
    end = run.end
    assert end is not None, [e["event"] for e in run.journal]
    assert end["status"] == status, end
    if reason is None:
        assert end["reason"] is None, end
    else:
        assert re.search(reason, end["reason"]), end["reason"]
    assert end["pulses_delivered"] == len(run.pulses)
    summary = json.loads(run.folder.file("summary.json").read_text())
    assert (summary["status"], summary["reason"]) == (end["status"], end["reason"])


def _check_recording(run: RunFiles, *, killed: bool = False) -> None:
    """The XDF loads with our reader and holds a marker per journaled pulse."""
    xdf = run.folder.file("recording.xdf")
    markers = read_markers(xdf, verbose="error")
    (started,) = run.events("recording_started")
    eeg = [name for name in started["streams"] if "-eeg-" in name]
    check = check_recording(xdf, run.folder.file("journal.jsonl"))
    # The EEG is in the file with its samples up to the stop, also after a kill.
    assert {s.name for s in check.streams if s.n_samples} == {
        *eeg,
        check.marker_stream,
    }
    journaled = {(p["block"], p["pulse"]) for p in run.pulses}
    recorded = {
        (int(m.block), int(m.pulse)) for m in markers.itertuples() if m.event == "pulse"
    }
    # A fault while opening the device comes before session_start; every run
    # that gets that far has it in the file, even when killed.
    assert bool(journaled) <= ("session_start" in set(markers.event))
    if killed:
        # The recorder died with the runner: no footer, and the last
        # half-second of markers may never have reached the file.
        assert not check.footer
        assert recorded <= journaled
        assert not check.extra_in_xdf and not check.duplicate_in_xdf
        return
    assert check.ok and check.footer, check.reason
    assert recorded == journaled
    end = run.end
    if end["reason"] is not None:
        aborts = markers[markers.event == "abort"]
        assert list(aborts.reason) == [end["reason"]]


def _check_stopped_run(
    run: RunFiles,
    *,
    reason: str | None,
    stop_clock: float | None,
    killed: bool = False,
) -> None:
    _check_pulses_within_plan(run, stop_clock)
    if killed:
        assert run.end is None
    else:
        _check_journal_end(run, "aborted", reason)
        _check_device_disarmed(run)
    _check_recording(run, killed=killed)


def _check_completed_run(run: RunFiles) -> None:
    _check_journal_end(run, "completed", None)
    _check_device_disarmed(run)
    _check_recording(run)


def _resume(data: Path, tmp_path: Path) -> None:
    """``stimtrain resume`` completes the session in a new run, within the plan."""
    before = _runs(data)
    earlier = [_read_run(data, n) for n in before]
    finished = _run(["resume", str(_folder(data, 1).path)], tmp_path / "resume")
    assert finished.returncode == 0, str(finished)
    runs = _runs(data)
    assert runs == [*before, before[-1] + 1]
    new = _read_run(data, runs[-1])
    _check_completed_run(new)
    _check_pulses_within_plan(new, None)
    # The first run's plan is the whole session's.
    plan = earlier[0].plan
    blocks = {b["index"]: b for b in plan["blocks"]}
    done_before = {
        e["block"] for r in earlier for e in r.events("block_end") if e["completed"]
    }
    skipped = {e["block"] for e in new.events("block_skipped")}
    assert skipped == done_before
    done_now = {e["block"] for e in new.events("block_end") if e["completed"]}
    assert done_before | done_now == set(blocks)
    # A block interrupted mid-way is repeated from its start: the new run gives
    # all its pulses again, so the session total may exceed the plan by what
    # the unit gave in that block before the stop, never by more.
    # Counted from the unit's own log: a kill can lose the last journal line.
    given_before = sum(len(r.sim_pulses) for r in earlier)
    in_done = sum(1 for r in earlier for p in r.pulses if p["block"] in done_before)
    total = given_before + len(new.sim_pulses)
    assert total <= plan["total_pulses"] + (given_before - in_done)
    assert len(new.sim_pulses) == sum(blocks[b]["pulses"] or 0 for b in done_now)
    resumed = new.events("run_created")[0]["resumed_from"]
    assert resumed["pulses_delivered"] == sum(len(r.pulses) for r in earlier)


# -- 1. device faults ----------------------------------------------------------------
@pytest.mark.parametrize(
    "faults, reason, pulses, resume",
    [
        # The link goes dead mid-block (after ~3 pulses: ~37 commands open,
        # set and arm the unit, then a fire and ~2 keep-alives per pulse).
        pytest.param(
            "silent_after=44",
            r"^device fault: .*expected \d+ more reply byte",
            (1, 5),
            True,
            id="silent",
        ),
        pytest.param(
            "disconnect_after=44",
            r"^device fault: .*port vanished",
            (1, 5),
            False,
            id="disconnect",
        ),
        # Every reply corrupt: one re-send, then a fault while opening.
        pytest.param(
            "corrupt_crc_every=1",
            r"could not open the devices: CRCError: .*after one retry",
            (0, 0),
            False,
            id="crc-always",
        ),
        # A dropped byte is a missing reply: never retried, so a fault (the
        # 5th reply comes while opening).
        pytest.param(
            "drop_every=5",
            r"could not open the devices: DeviceTimeout: .*more reply byte",
            (0, 0),
            False,
            id="drop",
        ),
        pytest.param(
            "overheat_after_pulses=3",
            r"^device fault: the stimulator disarmed itself \(coil \d+ °C",
            (3, 3),
            False,
            id="overheat",
        ),
        pytest.param(
            "refuse_arm",
            r"^device fault: arm: .*still in standby",
            (0, 0),
            False,
            id="refuse-arm",
        ),
    ],
)
def test_device_fault_stops_safely(tmp_path, faults, reason, pulses, resume):
    data = tmp_path / "data"
    finished = _run(_run_args(data, "--sim-faults", faults), tmp_path / "run")
    assert finished.returncode == 2, str(finished)
    run = _read_run(data, 1)
    _check_stopped_run(run, reason=reason, stop_clock=run.fault_clock())
    low, high = pulses
    assert low <= len(run.sim_pulses) <= high, run.sim_pulses
    # The journal never under-counts (the caps count it); a fire command whose
    # reply was lost counts although the unit may not have fired.
    assert 0 <= len(run.pulses) - len(run.sim_pulses) <= 1
    if resume:
        _resume(data, tmp_path)


def test_link_noise_is_retried_and_the_session_completes(tmp_path):
    """Corrupt replies (re-sent once) and late replies (waited for) are not faults."""
    data = tmp_path / "data"
    faults = "corrupt_crc_every=4,late_every=5,late_s=0.05"
    finished = _run(_run_args(data, "--sim-faults", faults), tmp_path / "run")
    assert finished.returncode == 0, str(finished)
    run = _read_run(data, 1)
    _check_completed_run(run)
    _check_pulses_within_plan(run, None)
    assert len(run.sim_pulses) == len(run.pulses) == run.plan["total_pulses"]
    # The faults really happened: corrupt replies and replies 50 ms late.
    traffic = format_traffic(run.folder.file("devices.jsonl"))
    assert traffic.count("malformed reply") >= 5
    waits, sent = [], None
    for r in run.traffic:
        if r.direction == "tx" and r.device != "triggerbox":
            sent = r.clock
        elif r.direction == "rx" and sent is not None:
            waits.append(r.clock - sent)
            sent = None
    assert sum(w >= 0.045 for w in waits) >= 5, sorted(waits)[-5:]


# -- 2. EEG stream loss -----------------------------------------------------------------
def test_eeg_loss_pauses_stimulation_and_the_session_completes(tmp_path):
    data = tmp_path / "data"
    # The EEG goes silent 8 s after the simulated rig starts, for 3 s: the
    # block starts 4.5-6 s after the rig and its pulses run from 1.3 to 6.8 s
    # into it, so the stall (noticed 1 s into the silence) falls among them.
    args = _run_args(data, "--sim-eeg-dropout", "8,3")
    finished = _run(args, tmp_path / "run")
    assert finished.returncode == 0, str(finished)
    run = _read_run(data, 1)
    _check_completed_run(run)
    _check_pulses_within_plan(run, None)
    pause = ("stream_stalled", "stimulation_held", "stimulation_paused")
    resume = ("stream_recovered", "stimulation_resumed")
    order = [e["event"] for e in run.journal if e["event"] in pause + resume]
    assert order == [*pause, *resume]
    (stalled,) = run.events("stream_stalled")
    (held,) = run.events("stimulation_held")
    (resumed,) = run.events("stimulation_resumed")
    (start,) = [e for e in run.events("block_start") if e["block"] == 0]
    (end,) = [e for e in run.events("block_end") if e["block"] == 0]
    assert start["clock"] < stalled["clock"] < end["clock"]
    # The device process dropped its schedule as soon as the stall was known
    # (by its own clock), not a pulse later.
    assert stalled["clock"] <= held["held_at"] < stalled["clock"] + 0.5
    assert held["pulses_dropped"] >= 1
    # Every planned pulse exactly once, none after the hold until the resume
    # (the stream's first second, until the stall is detected, can't be known;
    # a pulse whose bytes were being written as the hold came may land 2 ms on).
    planned = run.plan["total_pulses"]
    assert sorted(p["pulse"] for p in run.pulses) == list(range(planned))
    assert len(run.sim_pulses) == planned
    sim = run.sim_pulses
    during = (sim > held["held_at"] + 0.002) & (sim < resumed["clock"])
    assert not np.any(during), (sim, held)


def test_eeg_loss_during_online_tms_withdraws_its_pulses(tmp_path):
    """Online TMS on every trial while the EEG stops for 3 s mid-task.

    Trials whose pulse would fall in the stall get a ``no_pulse`` marker with
    the reason instead, also those whose pulse was already scheduled when the
    stall became known; every other trial has its pulse 150 ms after onset.
    """
    data = tmp_path / "data"
    # The task's trials run from ~6 to ~30 s after the rig starts; the stall
    # becomes known ~1 s into the silence.
    protocol = PROTOCOL.parent / "online_pulses.yaml"
    args = _run_args(data, "--sim-eeg-dropout", "12.5,3", protocol=protocol)
    finished = _run(args, tmp_path / "run")
    assert finished.returncode == 0, str(finished)
    run = _read_run(data, 1)
    _check_completed_run(run)
    order = [
        e["event"]
        for e in run.journal
        if e["event"] in ("stream_stalled", "stimulation_held", "stream_recovered")
    ]
    assert order == ["stream_stalled", "stimulation_held", "stream_recovered"]
    (held,) = run.events("stimulation_held")
    (recovered,) = run.events("stream_recovered")
    sim = run.sim_pulses
    during = (sim > held["held_at"] + 0.002) & (sim < recovered["clock"])
    assert not np.any(during), (sim, held)
    # Every trial has its pulse or its no_pulse (with the reason), never both.
    markers = read_markers(run.folder.file("recording.xdf"))
    onsets = markers[markers.event == "stim_onset"].set_index("trial").time
    pulses = markers[markers.event == "pulse"].set_index("trial")
    missed = markers[markers.event == "no_pulse"].set_index("trial")
    assert len(onsets) == 16
    assert sorted([*pulses.index, *missed.index]) == sorted(onsets.index)
    assert len(missed) >= 1 and set(missed.reason) == {"stream_stalled"}
    assert len(sim) == len(pulses) == len(run.pulses)
    # Locked to the flip: scheduled at onset + 1 s (the marker times are
    # synchronised by the reader, `scheduled` is the runner's clock: a few µs
    # apart), given on time (generous; benchmarks/pulse_timing.py measures).
    assert np.allclose(pulses.scheduled - onsets[pulses.index], 1.0, atol=1e-4)
    assert np.allclose(missed.time - onsets[missed.index], 1.0, atol=1e-4)
    assert np.all(np.abs(sim - pulses.scheduled.to_numpy()) < 0.005), sim
    (end,) = run.events("block_end")
    assert end["pulses_delivered"] == len(pulses)
    assert end["pulses_delivered"] + end["pulses_withdrawn"] == end["pulses_scheduled"]
    # The dropout is placed so that the stall is usually known between a
    # trial's onset and its pulse (then one pulse is withdrawn).
    assert end["pulses_withdrawn"] == held["pulses_dropped"]


# -- 3. signals ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sig, reason, resume",
    [
        pytest.param(signal.SIGINT, r"^interrupted \(Ctrl\+C\)$", True, id="SIGINT"),
        pytest.param(signal.SIGTERM, r"^signal SIGTERM$", False, id="SIGTERM"),
        pytest.param(signal.SIGKILL, None, True, id="SIGKILL"),
    ],
)
def test_signal_mid_block_then_resume(tmp_path, sig, reason, resume):
    data = tmp_path / "data"
    logs = tmp_path / "run"
    proc = _start(_run_args(data), logs)
    killed = sig == signal.SIGKILL
    try:
        _wait_for_event(_folder(data, 1).file("journal.jsonl"), "pulse", proc)
        # A random moment between the first and the last pulse (seeded).
        time.sleep(random.Random(int(sig)).uniform(0.0, 3.5 * INTERVAL_S))
        family = psutil.Process(proc.pid).children(recursive=True)
        commands = {p.pid: " ".join(p.cmdline()) for p in family}
        sent = pylsl.local_clock()
        os.kill(proc.pid, sig)
        if not killed:
            # An impatient operator presses Ctrl+C again (a supervisor repeats
            # SIGTERM) while the session stops: the safe stop must still finish.
            journal = _folder(data, 1).file("journal.jsonl")
            repeats: list[int] = []
            repeating = threading.Thread(
                target=lambda: repeats.append(_repeat_signal(proc, sig, journal))
            )
            repeating.start()
        finished = _finish(proc, logs)
        if killed:
            # The simulated rig dies with the runner (PDEATHSIG), the device
            # process when its pipe closes; nothing may be left running. It
            # takes about 1.5 s (measured); a rig that once stayed up for good
            # had deadlocked in its SIGTERM handler (fixed).
            assert any(" sim rig " in c for c in commands.values()), commands
            _, alive = psutil.wait_procs(family, timeout=10)
            assert not alive, [commands[p.pid] for p in alive]
    finally:
        _kill_group(proc)
        if not killed:
            repeating.join()
    run = _read_run(data, 1)
    if killed:
        assert finished.returncode == -signal.SIGKILL
        # The pulse log stopped when the unit went (no pulse after the kill
        # beyond one already on its way: the device process sleeps through the
        # guard before a deadline and fires before it sees the closed pipe).
        stop = sent + KEEP_ALIVE_GUARD_S + 0.02
        size = run.folder.file("simulator_pulses.jsonl").stat().st_size
        time.sleep(INTERVAL_S)
        assert run.folder.file("simulator_pulses.jsonl").stat().st_size == size
    else:
        assert finished.returncode == 2, str(finished)
        disarms = run.events("disarmed")
        assert disarms and disarms[-1]["clock"] - sent < 2.0
        stop = disarms[-1]["clock"]
    _check_stopped_run(run, reason=reason, stop_clock=stop, killed=killed)
    assert 1 <= len(run.sim_pulses) < run.plan["total_pulses"]
    # Every pulse the unit gave is in the journal (a kill may lose the last).
    assert 0 <= len(run.sim_pulses) - len(run.pulses) <= (1 if killed else 0)
    if not killed:
        assert repeats[0] >= 5, repeats  # the safe stop takes seconds
    if resume:
        _resume(data, tmp_path)


def _repeat_signal(
    proc: subprocess.Popen, sig: int, journal: Path, every_s: float = 0.05
) -> int:
    """Send ``sig`` again and again until the journal's last line is written.

    Returns how many were sent. After that line the runner has given the
    signals back to their default handlers: the process is about to end.
    """
    sent = 0
    while proc.returncode is None:
        if any(e.get("event") == "session_end" for e in read_journal(journal)):
            break
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            break
        sent += 1
        time.sleep(every_s)
    return sent


# -- 4. operator keys, in a real terminal ---------------------------------------
class _Terminal:
    """``stimtrain run`` in a pseudo-terminal: its console is live, keys are on."""

    def __init__(self, args: list[str]) -> None:
        master, slave = os.openpty()
        self.proc = subprocess.Popen(
            [*CLI, *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        self.master = master
        self.output = bytearray()
        # Drained all the time: a full terminal would block the console.
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the run closed the terminal
                return
            if not data:
                return
            self.output += data

    def press(self, key: str) -> float:
        os.write(self.master, key.encode())
        return pylsl.local_clock()

    def finish(self) -> Finished:
        try:
            self.proc.wait(RUN_TIMEOUT_S)
        finally:
            _kill_group(self.proc)
            self._reader.join(5)
            os.close(self.master)
        text = self.output.decode("utf-8", "replace")
        return Finished(self.proc.returncode, text, "")


def _wait_for_pulses(journal: Path, block: int, n: int, term: _Terminal) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if term.proc.poll() is not None:
            raise AssertionError(f"the run ended early: {term.finish()}")
        if journal.exists():
            events = read_journal(journal)
            given = [e for e in events if e["event"] == "pulse" and e["block"] == block]
            if len(given) >= n:
                return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} pulses in block {block} within 90 s")


def _pause_then_resume(term: _Terminal, journal: Path, event: str, hold_s: float):
    """Press p, wait until the journal says ``event``, hold, press r."""
    term.press("p")
    _wait_for_event(journal, event, term.proc)
    time.sleep(hold_s)
    term.press("r")


def test_operator_keys_pause_skip_and_abort(tmp_path):
    """The keys in a real terminal, one session: pause, then skip, then abort."""
    data = tmp_path / "data"
    protocol = PROTOCOL.parent / "operator_keys.yaml"
    term = _Terminal(_run_args(data, protocol=protocol))
    journal = _folder(data, 1).file("journal.jsonl")
    try:
        # Block 0: pause after two pulses, resume 2.5 s after the pause.
        _wait_for_pulses(journal, 0, 2, term)
        _pause_then_resume(term, journal, "stimulation_paused", 2.5)
        # Block 1: skip it after two pulses (asked, then confirmed).
        _wait_for_pulses(journal, 1, 2, term)
        term.press("s")
        time.sleep(0.3)
        skipped = term.press("y")
        # Block 2: a task with online TMS, paused between trials for 1.5 s.
        _wait_for_pulses(journal, 2, 1, term)
        _pause_then_resume(term, journal, "paused", 1.5)
        # Block 3: abort after two pulses.
        _wait_for_pulses(journal, 3, 2, term)
        aborted = term.press("a")
        finished = term.finish()
    finally:
        _kill_group(term.proc)
    assert finished.returncode == 2, str(finished)
    run = _read_run(data, 1)
    keys = [(e["key"], e["action"], e["block"]) for e in run.events("operator_key")]
    assert keys == [
        ("p", "pause", 0),
        ("r", "resume", 0),
        ("s", "skip_requested", 1),
        ("y", "skip", 1),
        ("p", "pause", 2),
        ("r", "resume", 2),
        ("a", "abort", 3),
    ]
    # The console showed the pause and asked before skipping.
    assert "paused" in finished.stdout
    assert "press y to skip block 2 ('skipped')" in finished.stdout
    ends = {e["block"]: e for e in run.events("block_end")}
    assert [ends[b]["completed"] for b in range(4)] == [True, False, True, False]
    sim = run.sim_pulses
    pulses = {b: [p for p in run.pulses if p["block"] == b] for b in range(4)}

    # Pause: every gap of 1.1 s is a safe point; the pulse due within the
    # pause's lead was still given, the rest waited and then came, each once.
    held = run.events("stimulation_held")[0]
    (paused,) = run.events("stimulation_paused")
    (resumed,) = run.events("stimulation_resumed")
    assert held["reason"] == paused["reason"] == "operator pause"
    assert sorted(p["pulse"] for p in pulses[0]) == list(range(6))
    assert not np.any((sim > paused["clock"]) & (sim < resumed["clock"])), sim
    assert paused["pulses_left"] == 6 - np.sum(sim < paused["clock"])
    assert resumed["clock"] - paused["clock"] > 2.0

    # Skip: no pulse of block 1 after the confirmation; the unit disarmed.
    assert 2 <= len(pulses[1]) < 6
    assert all(p["clock"] < skipped + 0.05 for p in pulses[1])
    disarms = [e for e in run.events("disarmed") if e.get("block") == 1]
    assert disarms and disarms[0]["reason"] == "block skipped"

    # Task pause: between two trials, the unit disarmed meanwhile; every
    # trial has its pulse 150 ms after onset, or a no_pulse with the reason
    # if its pulse was still due when the pause began.
    (task_paused,) = run.events("paused")
    (task_resumed,) = run.events("resumed")
    assert task_paused["block"] == task_resumed["block"] == 2
    assert task_resumed["clock"] - task_paused["clock"] > 1.4
    assert not np.any((sim > task_paused["clock"]) & (sim < task_resumed["clock"]))
    markers = read_markers(run.folder.file("recording.xdf"), verbose="error")
    in_task = markers[markers.block == 2]
    onsets = in_task[in_task.event == "stim_onset"].set_index("trial").time
    assert len(onsets) == 6
    gaps = onsets.diff().dropna()
    at_pause = gaps.pop(task_paused["after_trial"])
    assert at_pause - gaps.median() > 1.0, (at_pause, gaps)
    given = in_task[in_task.event == "pulse"].set_index("trial")
    withdrawn = in_task[in_task.event == "no_pulse"].set_index("trial")
    assert sorted([*given.index, *withdrawn.index]) == list(range(6))
    assert set(withdrawn.reason) <= {"operator_pause"}
    assert len(given) == len(pulses[2])

    # Abort: disarmed within a pulse interval of the key, nothing after.
    (key,) = [e for e in run.events("operator_key") if e["action"] == "abort"]
    last_disarm = run.events("disarmed")[-1]
    assert 0 < last_disarm["clock"] - aborted < INTERVAL_S
    assert 2 <= len(pulses[3]) < 6
    _check_stopped_run(run, reason="^operator abort key$", stop_clock=key["clock"])
    assert len(sim) == len(run.pulses)
