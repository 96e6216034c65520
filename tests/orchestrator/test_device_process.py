"""The device process: schedules, keep-alive and link supervision, over real ptys.

The first test runs the whole simulated rig in its own process (as a session
does); the fault tests run the simulators in this process so they can inject
faults while the device process, spawned as in a session, drives them.
Every fault test checks the three things a lab needs: the fault is reported
with its reason, the simulated unit ends disarmed, and no pulse was given
beyond the schedule.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pylsl
import pytest
import serial

from stimtrain.devices.faults import FaultPlan
from stimtrain.devices.magstim.protocol import encode
from stimtrain.devices.magstim.simulator import MagstimSimulator
from stimtrain.devices.magventure.simulator import MagVentureSimulator
from stimtrain.devices.sim_triggerbox import TriggerBoxSimulator
from stimtrain.devices.traffic import read_traffic
from stimtrain.orchestrator.session.device_process import (
    DeviceConfig,
    DeviceFault,
    DeviceProcess,
)
from stimtrain.orchestrator.session.simrig import start_simulated_rig

# Timing-sensitive: on the worker that runs whole sessions, one at a time.
pytestmark = pytest.mark.xdist_group("rig")


@pytest.fixture
def rig(tmp_path):
    log = tmp_path / "pulses.jsonl"
    sim = start_simulated_rig(pulse_log=log, eeg_stream=f"test-dev-eeg-{os.getpid()}")
    yield sim, log
    sim.stop()


def _device(sim, reports, faults, tmp_path):
    return DeviceProcess(
        DeviceConfig(
            model="super_rapid2",
            stimulator_port=sim.stimulator_port,
            trigger_port=sim.trigger_port,
            traffic_log=str(tmp_path / "traffic.jsonl"),
        ),
        on_pulse=reports.append,
        on_fault=faults.append,
    )


def test_device_run_trains(rig, tmp_path):
    """The unit runs each programmed train; the host only starts it."""
    sim, log = rig
    before = len(log.read_text().splitlines()) if log.exists() else 0
    reports, faults = [], []
    device = _device(sim, reports, faults, tmp_path)
    try:
        device.start()
        device.set_power(30)
        device.set_train(10.0, 5)
        device.arm(3.0)
        t0 = pylsl.local_clock() + 1.0
        device.schedule(0, [(t0, 0, "device_train"), (t0 + 3.0, 1, "device_train")])
        assert device.wait_block(0, timeout=8), (faults, device.fault)
        time.sleep(0.8)  # the second train runs 0.4 s after its start
        device.disarm()
    finally:
        device.stop()
    assert faults == []
    assert [(r.index, r.via) for r in reports] == [
        (0, "device_train"),
        (1, "device_train"),
    ]
    pulses = [json.loads(x)["time"] for x in log.read_text().splitlines()[before:]]
    assert len(pulses) == 10
    steps = np.diff(pulses)
    assert np.allclose(steps[[0, 1, 2, 3, 5, 6, 7, 8]], 0.1, atol=0.002)
    assert abs(pulses[0] - reports[0].actual) < 0.01


def _wait_for_lines(path, n: int, timeout: float) -> None:
    """Wait until ``path`` holds at least ``n`` lines (or the timeout passed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        time.sleep(0.01)


def test_schedule_serial_and_trigger_pulses(rig, tmp_path):
    sim, log = rig
    reports, faults = [], []
    device = _device(sim, reports, faults, tmp_path)
    try:
        state = device.start()
        assert state["remote_control"] and not state["armed"]
        device.set_power(30)
        state = device.arm(3.0)
        assert state["armed"] and state["ready"] and state["intensity"] == 30
        # A generous lead: the simulated rig may still be starting its EEG.
        t0 = pylsl.local_clock() + 1.0
        device.schedule(0, [(t0, 0, "serial"), (t0 + 1.1, 1, "serial")])
        assert device.wait_block(0, timeout=6), (faults, device.fault)
        t1 = pylsl.local_clock() + 0.3
        triplet = [t1, t1 + 0.02, t1 + 0.04]
        device.schedule(1, [(t, i, "trigger") for i, t in enumerate(triplet)])
        assert device.wait_block(1, timeout=5), (faults, device.fault)
        # The simulated unit hears its trigger input through a reader thread
        # that a loaded machine can delay by milliseconds (a real BNC input
        # has no such delay): a disarm sent at once on the serial port once
        # overtook the last edge. Disarm once the unit has logged every pulse.
        _wait_for_lines(log, 5, timeout=2.0)
        assert not device.disarm()["armed"]
    finally:
        device.stop()
    assert faults == []
    assert [(r.block, r.index, r.via) for r in reports] == [
        (0, 0, "serial"),
        (0, 1, "serial"),
        (1, 0, "trigger"),
        (1, 1, "trigger"),
        (1, 2, "trigger"),
    ]
    assert all(r.confirmed for r in reports)
    time.sleep(0.2)
    delivered = [json.loads(line) for line in log.read_text().splitlines()]
    assert [d["source"] for d in delivered] == ["serial"] * 2 + ["trigger"] * 3
    for report, pulse in zip(reports, delivered, strict=True):
        # Generous sanity bounds; benchmarks/pulse_timing.py measures the real numbers.
        assert abs(report.actual - report.scheduled) < 0.005
        # The stamp follows the write; the unit may read the bytes before it.
        assert -0.001 < pulse["time"] - report.actual < 0.01
        assert pulse["power"] == 30
    traffic = read_traffic(tmp_path / "traffic.jsonl")
    assert {t.direction for t in traffic} == {"tx", "rx", "note"}
    assert {t.device for t in traffic} == {"super_rapid2", "triggerbox"}
    # The fire command 'EH' + CRC went out on the wire twice, and the trigger
    # box raised line 0 three times.
    assert [t.data for t in traffic if t.device == "super_rapid2"].count(
        encode("E", "H")
    ) == 2
    box = [t.data for t in traffic if t.device == "triggerbox" and t.direction == "tx"]
    assert box.count(b"\x01") == 3 and box[-1] == b"\x00"


# ------------------------------------------------------------------ faults
def _start_sims(model):
    """A stimulator simulator with a trigger box wired to its trigger input.

    Their threads run at real-time priority when allowed (threads inherit the
    policy of the thread that starts them), as ``stimtrain sim`` runs them:
    real devices have their own processors, and on a busy 2-core machine a
    starved simulator would answer late and fail the tests for the wrong reason.
    """
    if model.startswith("magpro"):
        sim = MagVentureSimulator(model)
    else:
        sim = MagstimSimulator(model, charge_time=0.05, armed_timeout=1.0)
    box = TriggerBoxSimulator(lambda mask, t: mask & 1 and sim.trigger(t))
    try:
        policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(20))
    except (AttributeError, OSError):
        policy = None
    try:
        sim.start()
        box.start()
    finally:
        if policy is not None:
            os.sched_setscheduler(0, policy, param)
    return sim, box


def _armed(sim):
    return sim.enabled if isinstance(sim, MagVentureSimulator) else sim.status().armed


class _Session:
    """A device process on simulators in this process (so tests can inject
    faults while it runs), armed at 30 %, recording what it reports."""

    def __init__(
        self, model, sim, box, tmp_path, *, arm=True, trigger=True, max_late_s=0.25
    ):
        self.model, self.sim = model, sim
        self.reports, self.faults = [], []
        self.traffic = tmp_path / "traffic.jsonl"
        self.device = DeviceProcess(
            DeviceConfig(
                model=model,
                stimulator_port=sim.port,
                trigger_port=box.port if trigger else None,
                traffic_log=str(self.traffic),
                reply_timeout=0.2,
                # Timing is measured by benchmarks; these tests check fault
                # handling, so load from other jobs must not make pulses "late".
                max_late_s=max_late_s,
            ),
            on_pulse=self.reports.append,
            on_fault=self.faults.append,
        )
        self.device.start()
        if arm:
            self.device.set_power(30)
            self.device.arm(2.0)
            assert self.faults == []

    def inject(self, faults):
        """Apply a fault plan, counting "after N commands" from now."""
        n = self.sim.commands_received
        shift = {
            name: getattr(faults, name) + n
            for name in ("silent_after", "disconnect_after")
            if getattr(faults, name) >= 0
        }
        self.sim.faults = dataclasses.replace(faults, **shift)

    def trigger_train(self, n=None, interval=None, lead=0.1):
        """Schedule trigger pulses; by default a train with room for link checks.

        A Magstim's keep-alive fits between pulses 0.1 s apart. A MagPro needs
        no keep-alive, so its link check waits for a 0.5 s gap: 0.6 s apart.
        """
        slow = self.model.startswith("magpro")
        n = n if n is not None else (10 if slow else 40)
        interval = interval if interval is not None else (0.6 if slow else 0.1)
        t0 = pylsl.local_clock() + lead
        times = [t0 + i * interval for i in range(n)]
        self.device.schedule(0, [(t, i, "trigger") for i, t in enumerate(times)])
        return times

    def wait_fault(self, timeout=10.0):
        # Generous: a MagPro's link check waits for a gap between pulses, and
        # on a loaded machine the first one may only come after the train.
        deadline = time.monotonic() + timeout
        while not self.faults and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.faults, "expected a fault to be reported"
        return self.faults[0]

    def wait_disarmed(self, timeout=3.0):
        deadline = time.monotonic() + timeout
        while _armed(self.sim) and time.monotonic() < deadline:
            time.sleep(0.02)
        return not _armed(self.sim)

    def no_pulse_beyond(self, n_scheduled, settle=0.3):
        """Pulses stop with the fault and never exceed the schedule."""
        count = len(self.sim.pulses)
        time.sleep(settle)
        assert len(self.sim.pulses) == count <= n_scheduled
        assert len(self.reports) <= n_scheduled

    def stop(self):
        self.device.stop()


@pytest.fixture(params=["super_rapid2", "magpro_x100"])
def session(request, tmp_path):
    """``session(**kwargs)`` starts a :class:`_Session` on fresh simulators."""
    sims, started = [], []

    def make(**kwargs):
        sim, box = _start_sims(request.param)
        sims.extend((box, sim))
        s = _Session(request.param, sim, box, tmp_path, **kwargs)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()
    for sim in sims:
        sim.stop()


@pytest.fixture
def magstim_session(tmp_path):
    """Like ``session``, on a Magstim Super Rapid² only."""
    sims, started = [], []

    def make(**kwargs):
        sim, box = _start_sims("super_rapid2")
        sims.extend((box, sim))
        s = _Session("super_rapid2", sim, box, tmp_path, **kwargs)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()
    for sim in sims:
        sim.stop()


def test_silence_is_a_fault(session):
    s = session()
    # A MagPro's link check needs a gap between pulses; 1 s apart leaves one
    # after every pulse even on a loaded machine, long before the train ends.
    slow = s.model.startswith("magpro")
    times = s.trigger_train(n=12, interval=1.0) if slow else s.trigger_train()
    s.inject(FaultPlan(silent_after=2))
    reason = s.wait_fault()
    assert reason.startswith("link check failed: ") and s.sim.port in reason
    s.no_pulse_beyond(len(times))
    assert len(s.reports) < len(times)
    if s.model == "super_rapid2":
        # The disarm goes unanswered; the unit's own 1 s timeout disarms it.
        assert s.wait_disarmed()
        assert not s.sim.status().remote_control
    else:
        # A MagPro has no such timeout: it stays enabled on a dead link
        # (documented), but nothing triggers it any more.
        assert _armed(s.sim)


def test_disconnect_is_a_fault(session):
    s = session()
    times = s.trigger_train()
    s.inject(FaultPlan(disconnect_after=1))
    reason = s.wait_fault()
    assert "vanished" in reason and s.sim.port in reason
    with pytest.raises(DeviceFault, match="vanished"):
        s.device.status()
    s.no_pulse_beyond(len(times))
    if s.model == "super_rapid2":
        assert s.wait_disarmed()  # by its own keep-alive timeout


def test_corrupt_checksum_on_every_reply_is_a_fault(session):
    s = session()
    times = s.trigger_train()
    time.sleep(0.3)
    s.inject(FaultPlan(corrupt_crc_every=1))
    reason = s.wait_fault()
    assert reason.startswith("link check failed: ")
    assert "CRC" in reason or "checksum" in reason
    # The disarm command arrives intact (only replies are corrupt): it works,
    # well before a Magstim's own 1 s timeout.
    assert s.wait_disarmed(timeout=0.5)
    s.no_pulse_beyond(len(times))


def test_one_corrupt_reply_is_retried(session):
    s = session()
    s.inject(FaultPlan(corrupt_crc_every=2))
    time.sleep(1.2)  # two link checks: each has one corrupt reply, re-read
    s.inject(FaultPlan())
    # A link check may still be under way (a MagPro driver waits 0.2 s before
    # re-reading a garbled answer): start with a lead that covers it.
    times = s.trigger_train(5, interval=0.1, lead=0.5)
    assert s.device.wait_block(0, timeout=3), s.faults
    assert s.faults == []
    time.sleep(0.05)
    assert len(s.sim.pulses) == len(times)


def test_late_pulses_are_a_fault_not_a_burst(magstim_session):
    s = magstim_session(max_late_s=0.04)
    # Every reply 0.1 s late (within the 0.2 s timeout): a link check then
    # holds the port across the next pulse's deadline.
    s.inject(FaultPlan(late_every=1, late_s=0.1))
    times = s.trigger_train(40, interval=0.05)
    reason = s.wait_fault()
    assert "could not be given on time" in reason and "ms late" in reason
    s.no_pulse_beyond(len(times))
    pulses = s.sim.pulses
    gaps = [b.time - a.time for a, b in zip(pulses, pulses[1:], strict=False)]
    assert all(g > 0.045 for g in gaps)  # no pulses fired back to back
    assert s.wait_disarmed(timeout=1.5)


def test_overheating_disarms_and_is_reported(session):
    s = session()
    times = s.trigger_train()
    s.inject(FaultPlan(overheat_after_pulses=5))
    reason = s.wait_fault()
    assert "disarmed itself" in reason and "coil" in reason
    assert s.wait_disarmed(timeout=0.1)
    s.no_pulse_beyond(len(times))
    assert len(s.sim.pulses) <= 6


def test_refused_arm_is_a_fault(session):
    s = session(arm=False)
    s.inject(FaultPlan(refuse_arm=True))
    s.device.set_power(30)
    with pytest.raises(DeviceFault, match="arm failed"):
        s.device.arm(1.0)
    assert s.wait_fault().startswith("arm: ")
    assert not _armed(s.sim) and s.sim.pulses == []


def test_keep_alive_while_main_process_is_busy(tmp_path):
    # The unit is simulated in a process of its own, as hardware would be:
    # simulators in this process would wait for the lock this test holds.
    unit = subprocess.Popen(
        [sys.executable, "-m", "stimtrain.cli", "sim"] + ["magstim-super-rapid2"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    traffic = tmp_path / "traffic.jsonl"
    try:
        port = unit.stdout.readline().strip().removeprefix("port: ")
        device = DeviceProcess(
            DeviceConfig(
                model="super_rapid2", stimulator_port=port, traffic_log=str(traffic)
            )
        )
        device.start()
        device.set_power(30)
        device.arm(3.0)
        t_start = pylsl.local_clock()
        # Hold the GIL and allocate for 2.5 s: longer than the 1 s armed timeout.
        end = time.monotonic() + 2.5
        junk = []
        while time.monotonic() < end:
            junk.append([object() for _ in range(100)])
            if len(junk) > 1000:
                junk.clear()
        state = device.status()
        assert state["armed"] and state["remote_control"]
        assert device.fault is None
        device.stop()
    finally:
        unit.terminate()
        unit.wait(10)
    sent = [
        r.clock
        for r in read_traffic(traffic)
        if r.direction == "tx" and r.data == encode("x", "@") and r.clock > t_start
    ]
    assert len(sent) >= 4
    gaps = [b - a for a, b in zip(sent, sent[1:], strict=False)]
    assert max(gaps) < 0.75  # sanity bound; benchmarks/device_latency.py measures


_OWNER = """
import sys
import threading
from stimtrain.orchestrator.session.device_process import DeviceConfig, DeviceProcess

if __name__ == "__main__":
    config = DeviceConfig(model="super_rapid2", stimulator_port=sys.argv[1])
    device = DeviceProcess(config)
    device.start()
    device.set_power(30)
    device.arm(2.0)
    print("armed", flush=True)
    sys.stdin.read()
    device.stop()
"""


def test_keep_alive_while_main_process_is_stopped(tmp_path):
    # The process owning the DeviceProcess is frozen (SIGSTOP) for 2.5 s,
    # longer than the unit's 1 s armed timeout: the device process, a
    # separate process, keeps remote control alive.
    sim, box = _start_sims("super_rapid2")
    script = tmp_path / "owner.py"
    script.write_text(_OWNER)
    owner = subprocess.Popen(
        [sys.executable, str(script), sim.port],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout.readline().strip() == "armed"
        os.kill(owner.pid, signal.SIGSTOP)
        time.sleep(2.5)
        status = sim.status()
        os.kill(owner.pid, signal.SIGCONT)
        assert status.armed and status.remote_control
        owner.stdin.close()
        assert owner.wait(10) == 0
        assert not sim.status().armed  # stop() disarmed it
    finally:
        if owner.poll() is None:
            os.kill(owner.pid, signal.SIGCONT)
            owner.kill()
        box.stop()
        sim.stop()


def test_lost_remote_control_is_a_fault(magstim_session):
    s = magstim_session()
    times = s.trigger_train()
    time.sleep(0.2)
    # Another program on the same port releases remote control (which also
    # disarms the unit).
    with serial.Serial(s.sim.port, 9600, timeout=0.2) as other:
        other.write(encode("R", "@"))
        time.sleep(0.05)
    reason = s.wait_fault()
    assert reason.startswith("remote control was lost")
    assert not _armed(s.sim)
    s.no_pulse_beyond(len(times))


def test_refused_serial_fire_ends_the_schedule(magstim_session):
    s = magstim_session(trigger=False)
    t0 = pylsl.local_clock() + 0.1
    # The second pulse breaks the 1 Hz serial single-pulse limit: refused.
    s.device.schedule(0, [(t0, 0, "serial"), (t0 + 0.3, 1, "serial")])
    reason = s.wait_fault()
    assert "pulse 1 of block 0 (serial)" in reason and "1 Hz" in reason
    assert [r.index for r in s.reports] == [0]
    assert len(s.sim.pulses) == 1
    assert s.wait_disarmed(timeout=0.5)


def test_rts_line_on_a_pty_refuses_to_start(tmp_path):
    sim, box = _start_sims("super_rapid2")
    try:
        device = DeviceProcess(
            DeviceConfig(
                model="super_rapid2",
                stimulator_port=sim.port,
                trigger_port=box.port,
                trigger_kind="rts",
            )
        )
        with pytest.raises(DeviceFault, match=rf"{box.port} has no modem-control"):
            device.start()
        device.stop()
        # The stimulator was opened first; it is left disarmed and released.
        status = sim.status()
        assert not status.armed and not status.remote_control
    finally:
        box.stop()
        sim.stop()


def test_paired_delivery_uses_the_fire_command(magstim_session):
    s = magstim_session(trigger=False)
    s.device.schedule(0, [(pylsl.local_clock() + 0.1, 0, "paired")])
    assert s.device.wait_block(0, timeout=2)
    assert [(r.via, r.confirmed) for r in s.reports] == [("paired", True)]
    time.sleep(0.05)
    assert [p.source for p in s.sim.pulses] == ["serial"]


def test_bad_requests_are_refused_without_a_fault(magstim_session):
    s = magstim_session(arm=False, trigger=False)
    with pytest.raises(DeviceFault, match="set_power failed"):
        s.device.set_power(150)
    with pytest.raises(
        DeviceFault,
        match=r"via must be one of \[.device_train., .paired., .serial.\], got .trigger.",
    ):
        s.device.schedule(0, [(pylsl.local_clock() + 1, 0, "trigger")])
    # The process survives a refused command and still answers.
    assert s.device.status()["remote_control"]
    assert s.faults == []


# ------------------------------------------------------------ holding pulses
def _sleep_until(t):
    while (left := t - pylsl.local_clock()) > 0:
        time.sleep(min(left, 0.002))


def test_hold_drops_a_pulse_due_in_the_next_milliseconds(magstim_session):
    """A hold (a stream stalled) is never deferred behind the next pulse."""
    s = magstim_session()
    t0 = pylsl.local_clock() + 0.3
    times = [t0, t0 + 0.1, t0 + 0.2]
    s.device.schedule(0, [(t, i, "trigger") for i, t in enumerate(times)])
    # Inside the device's guard (>= 30 ms), where other requests wait.
    _sleep_until(t0 - 0.012)
    held = s.device.hold()
    s.no_pulse_beyond(3)
    fired = {r.index for r in s.reports}
    dropped = {index for block, index in held.dropped}
    assert fired | dropped == {0, 1, 2} and not fired & dropped, (fired, dropped)
    assert all(p.time < held.held_at + 0.002 for p in s.sim.pulses)
    if held.held_at < t0:  # the hold got there in time, as it nearly always does
        assert fired == set() and s.sim.pulses == []
    assert _armed(s.sim)  # a hold leaves the unit armed: the runner disarms
    assert s.faults == []


def test_a_request_near_a_pulse_waits_for_it(magstim_session):
    """A status request due just before a pulse is answered after it."""
    s = magstim_session()
    t0 = pylsl.local_clock() + 0.3
    s.device.schedule(0, [(t0, 0, "trigger")])
    _sleep_until(t0 - 0.012)
    s.device.status()
    answered = pylsl.local_clock()
    assert s.device.wait_block(0, timeout=2)
    (report,) = s.reports
    assert abs(report.actual - t0) < 0.005  # generous: the pulse was not moved
    assert answered > report.actual
    assert s.faults == []


def test_disarm_near_a_pulse_also_drops_a_deferred_schedule(magstim_session):
    """Messages keep their order: a schedule deferred before a disarm is dropped."""
    s = magstim_session()
    t0 = pylsl.local_clock() + 0.3
    s.device.schedule(0, [(t0, 0, "trigger")])
    _sleep_until(t0 - 0.02)
    late = threading.Thread(
        target=s.device.schedule, args=(1, [(t0 + 0.05, 0, "trigger")])
    )
    late.start()
    time.sleep(0.004)
    state = s.device.disarm()
    late.join(2.0)
    assert not state["armed"]
    s.no_pulse_beyond(0, settle=0.2)
    assert s.sim.pulses == [] and s.reports == []
    assert s.faults == []


def test_every_command_is_a_named_method_on_both_sides():
    # The session calls methods, never command strings; the process runs the
    # worker's method of the same name.
    from stimtrain.orchestrator.session.device_process import COMMANDS, DeviceProcess
    from stimtrain.orchestrator.session.device_worker import Worker

    for name in COMMANDS:
        assert callable(getattr(DeviceProcess, name)), name
        assert callable(getattr(Worker, f"do_{name}")), name
    assert not hasattr(DeviceProcess, "request")
