"""The safe stop: disarm first, then close every part, whatever failed before.

However a session ends (its last block, the abort key, a signal, a device or
stream fault, an exception), the unit is disarmed before anything else is
done: before the participant's window and the operator console close, before
any marker, file or recording is touched. Each step after that runs whatever
the one before did (a full disk, a dead process) and a failure is reported
once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass

from .device_process import DeviceFault

logger = logging.getLogger("stimtrain.orchestrator.session.safe_stop")


@dataclass
class SessionParts:
    """What a session has opened that its stop closes (None: not opened yet).

    Attributes
    ----------
    markers : MarkerOutlet | None
    ledger : PulseLedger | None
    device : DeviceProcess | None
    recorder : Recorder | None
    sim : SimulatedRig | None
        The simulated rig's processes.
    state : ConsoleState | None
    """

    markers: object | None = None
    ledger: object | None = None
    device: object | None = None
    recorder: object | None = None
    sim: object | None = None
    state: object | None = None


class SafeStop:
    """Runs the steps of a session's stop, each once, whatever the others did.

    Parameters
    ----------
    journal : Journal
        Where the disarm is recorded.
    say : callable
        Where a failed step is reported to the operator.
    """

    def __init__(self, journal, say: Callable[[str], None]) -> None:
        self.journal = journal
        self.say = say
        #: What failed, each reported once (``"<step>: <error>"``).
        self.failures: list[str] = []
        self.disarmed = False

    def step(self, name: str, fn: Callable, *args, **kwargs):
        """Run one step; report a failure once and go on. Returns its result."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the next steps must still run
            failure = f"{name}: {type(exc).__name__}: {exc}"
            logger.error("safe stop: %s", failure)
            self.failures.append(failure)
            try:
                self.say(f"safe stop: {failure}")
            except Exception:  # noqa: BLE001 - the console itself may be gone
                pass
            return None

    def disarm(self, device) -> None:
        """The first step: disarm, or kill the device process so the unit times out.

        After a device fault the device process disarms and ends by itself:
        wait for it (killing it would interrupt that disarm) and journal what
        it reported. Runs once; later calls do nothing.
        """
        if self.disarmed:
            return
        self.disarmed = True
        self.step("disarm", _disarm, device, self.journal)

    @contextlib.contextmanager
    def guard(self, device: Callable[[], object]) -> Iterator[ExitStack]:
        """An exit stack whose parts close only after the unit is disarmed.

        Parameters
        ----------
        device : callable
            Returns the device process, or None while it is not open.

        Yields
        ------
        ExitStack
            For the parts the session opens (window, console, watches). On
            any way out of the ``with`` block, an exception or a signal
            included, :meth:`disarm` runs before the stack unwinds.
        """
        with ExitStack() as stack:
            try:
                yield stack
            finally:
                self.disarm(device())

    def close_parts(
        self, parts: SessionParts, *, status: str, reason: str | None, delivered: int
    ) -> None:
        """After the disarm: the last markers, then every part closed.

        The markers go out before the device process and the recording stop,
        so that the recording holds them.
        """
        self.disarm(parts.device)
        step = self.step
        if parts.markers is not None:
            if reason:
                step("abort marker", parts.markers.push, "abort", reason=reason)
            step(
                "session_end marker",
                parts.markers.push,
                "session_end",
                status=status,
                pulses_delivered=delivered,
            )
        if parts.device is not None:
            step("device process", parts.device.stop)
        if parts.recorder is not None:
            step("recording", parts.recorder.stop)
        if parts.markers is not None:
            step("marker stream", parts.markers.close)
        if parts.sim is not None:
            step("simulated rig", parts.sim.stop)


def _disarm(device, journal) -> None:
    if device is None:
        return
    if device.fault is not None or not device.alive:
        if device.wait_ended(5.0):
            result = device.shutdown_result or "ended without a report"
            event = "disarmed" if result.startswith("disarmed") else "disarm_failed"
            journal.write(event, by="device process", result=result)
            return
    try:
        device.disarm(timeout=2.0)
        journal.write("disarmed", state=device.state)
    except DeviceFault as exc:
        journal.write("disarm_failed", error=str(exc))
        device.kill()
