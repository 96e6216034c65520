"""The session's stop path disarms first: a real SIGTERM, a real device process.

A simulated Super Rapid² on a pseudo-terminal is armed by a real device
process with pulses scheduled ahead; the session's signal handling
(:class:`SessionControl`) and safe stop (:class:`SafeStop`) are then driven
by a signal or an exception. The unit must be disarmed before any part the
session opened closes (window, console, watches: here a callback on the
same exit stack records the unit's state when it runs), no pulse may follow,
and the journal's first line after the stop must be the disarm.
"""

from __future__ import annotations

import os
import signal
import time

import pylsl
import pytest

from stimtrain.devices.magstim.simulator import MagstimSimulator
from stimtrain.journalfile import read_journal
from stimtrain.orchestrator.session.control import SessionAborted, SessionControl
from stimtrain.orchestrator.session.device_process import DeviceConfig, DeviceProcess
from stimtrain.orchestrator.session.journal import Journal
from stimtrain.orchestrator.session.safe_stop import SafeStop

pytestmark = pytest.mark.xdist_group("rig")


@pytest.fixture
def armed(tmp_path):
    """A device process arming a simulated unit, pulses due from 2 s on."""
    sim = MagstimSimulator("super_rapid2", charge_time=0.05)
    sim.start()
    device = DeviceProcess(
        DeviceConfig(
            model="super_rapid2",
            stimulator_port=sim.port,
            traffic_log=str(tmp_path / "traffic.jsonl"),
        ),
        on_pulse=lambda report: None,
        on_fault=lambda message: None,
    )
    device.start()
    device.set_power(30)
    device.arm(2.0)
    t0 = pylsl.local_clock() + 2.0
    device.schedule(0, [(t0 + 0.5 * i, i, "serial") for i in range(4)])
    journal = Journal(tmp_path / "journal.jsonl")
    control = SessionControl(journal)
    control.device = device
    assert sim.status().armed
    yield sim, device, journal, control, t0
    device.stop()
    sim.stop()
    journal.close()


def _stop(control, journal, device, body):
    """Drive the session's stop path as the runner does around its blocks."""
    seen = []
    restore = control.install_signal_handlers()
    stopper = SafeStop(journal, say=seen.append)
    try:
        with stopper.guard(lambda: device) as stack:
            try:
                # A part the session opened (its window, its console): it
                # closes when the stack unwinds, and records the unit then.
                stack.callback(lambda: seen.append(("closed", device.status())))
                body()
            finally:
                control.closing = True
    except SessionAborted as exc:
        control.stop.set(str(exc))
    except RuntimeError as exc:
        control.stop.set(f"{type(exc).__name__}: {exc}")
    finally:
        restore()
    return seen


def test_sigterm_disarms_before_anything_closes(armed):
    sim, device, journal, control, t0 = armed

    def body():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this
        pytest.fail("SIGTERM did not interrupt the session")

    seen = _stop(control, journal, device, body)
    assert control.stop.reason == "signal SIGTERM"
    (closed,) = [s for s in seen if isinstance(s, tuple)]
    assert closed[1]["armed"] is False  # disarmed before the part closed
    assert not sim.status().armed
    entries = [e["event"] for e in read_journal(journal.path)]
    assert entries[0] == "disarmed"
    # The schedule went with the disarm: nothing fires when the pulses fall due.
    while pylsl.local_clock() < t0 + 0.2:
        time.sleep(0.05)
    assert sim.pulses == []
    # The handlers are back as they were.
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_an_exception_disarms_first_too(armed):
    sim, device, journal, control, _ = armed

    def body():
        raise RuntimeError("a bug in a block")

    seen = _stop(control, journal, device, body)
    assert control.stop.reason == "RuntimeError: a bug in a block"
    (closed,) = [s for s in seen if isinstance(s, tuple)]
    assert closed[1]["armed"] is False
    assert [e["event"] for e in read_journal(journal.path)] == ["disarmed"]


def test_a_second_signal_during_the_stop_is_ignored(armed):
    sim, device, journal, control, _ = armed
    signals = []

    def body():
        raise RuntimeError("first fault")

    restore = control.install_signal_handlers()
    try:
        control.closing = True
        # The stop is under way: a second Ctrl+C must not cut it short.
        os.kill(os.getpid(), signal.SIGINT)
        signals.append("survived")
    finally:
        restore()
    assert signals == ["survived"] and control.stop.reason is None
    seen = _stop(control, journal, device, body)
    assert not sim.status().armed and seen


def test_each_stop_step_runs_whatever_failed_before(armed, tmp_path):
    sim, device, journal, control, _ = armed
    said: list[str] = []
    stopper = SafeStop(journal, say=said.append)
    order = []

    def fails():
        order.append("fails")
        raise OSError(28, "No space left on device")

    stopper.disarm(device)
    stopper.step("summary", fails)
    stopper.step("journal", order.append, "journal")
    assert order == ["fails", "journal"]
    assert stopper.failures == ["summary: OSError: [Errno 28] No space left on device"]
    assert said == ["safe stop: summary: OSError: [Errno 28] No space left on device"]
    # The disarm runs once, however many paths ask for it.
    stopper.disarm(device)
    assert [e["event"] for e in read_journal(journal.path)] == ["disarmed"]
    assert not sim.status().armed
