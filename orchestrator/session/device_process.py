"""The process that owns the stimulator's serial port and the trigger line.

The session starts it and talks to it through :class:`DeviceProcess`: named
commands (:data:`~.device_worker.COMMANDS`) sent over a pipe, pulse reports
and faults read back by a reader thread. What runs inside the process is in
:mod:`.device_worker`.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .device_worker import COMMANDS, DeviceConfig, PulseReport, device_main

__all__ = [
    "COMMANDS",
    "DeviceConfig",
    "DeviceFault",
    "DeviceProcess",
    "Held",
    "PulseReport",
]

logger = logging.getLogger("stimtrain.orchestrator.session.device_process")


@dataclass(frozen=True)
class Held:
    """What a hold dropped: when (device process clock) and which pulses."""

    held_at: float | None
    dropped: list[tuple[int, int]]


class DeviceFault(RuntimeError):
    """The device process hit a fault; the stimulator was disarmed (or tried)."""


class DeviceProcess:
    """Handle on the device process, used from the session runner.

    Parameters
    ----------
    config : DeviceConfig
        Ports and model.
    on_pulse : callable
        Called with a :class:`PulseReport` for every pulse, from a reader thread.
    on_fault : callable
        Called with a message when the device process reports a fault.
    """

    def __init__(
        self,
        config: DeviceConfig,
        *,
        on_pulse: Callable[[PulseReport], None] | None = None,
        on_fault: Callable[[str], None] | None = None,
    ):
        self.config = config
        self.on_pulse = on_pulse or (lambda report: None)
        self.on_fault = on_fault or (lambda message: None)
        self._ctx = mp.get_context("spawn")
        self._conn, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(
            target=device_main,
            args=(config, child),
            name="stimtrain-device",
            daemon=True,
        )
        self._child = child
        self._replies: dict[int, tuple[bool, object]] = {}
        self._cond = threading.Condition()
        self._next_id = 0
        #: block -> its schedule requests when its pulses were last all given.
        self._done_blocks: dict[int, int] = {}
        #: block -> its schedule requests so far.
        self._scheduled: dict[int, int] = {}
        self.fault: str | None = None
        #: What the process did with the stimulator when it ended (its disarm).
        self.shutdown_result: str | None = None
        self.state: dict = {}
        #: Whether the process got real-time priority (known once started);
        #: without it pulse timing is looser.
        self.realtime: bool | None = None
        self._reader: threading.Thread | None = None
        self._send_lock = threading.Lock()

    def start(self, timeout: float = 10.0) -> dict:
        """Start the process and open the devices; returns the device state."""
        self._proc.start()
        self._child.close()
        if not self._conn.poll(timeout):
            self.kill()
            raise DeviceFault(
                f"device process did not open the devices in {timeout:g} s"
            )
        try:
            msg = self._conn.recv()
        except EOFError:
            self._proc.join(2)
            raise DeviceFault(
                f"device process ended before opening the devices (exit code "
                f"{self._proc.exitcode})"
            ) from None
        if msg[0] != "opened":
            self._proc.join(2)
            raise DeviceFault(f"could not open the devices: {msg[1]}")
        self.state = msg[1]
        self.realtime = msg[2]
        self._reader = threading.Thread(
            target=self._read, name="device-reader", daemon=True
        )
        self._reader.start()
        return self.state

    def _read(self) -> None:
        while True:
            try:
                msg = self._conn.recv()
            except (EOFError, OSError):
                if self.fault is None and self._proc.exitcode not in (0, None):
                    self._set_fault("device process ended unexpectedly")
                break
            kind = msg[0]
            if kind == "reply":
                with self._cond:
                    self._replies[msg[1]] = (msg[2], msg[3])
                    self._cond.notify_all()
            elif kind == "pulse":
                try:
                    self.on_pulse(msg[1])
                except Exception:  # noqa: BLE001 - this thread must keep reading
                    # A failing callback must not stop the replies (every
                    # later request, the disarm too, would time out).
                    logger.exception("pulse callback failed")
                    self._set_fault("the runner failed to record a pulse")
            elif kind == "schedule_done":
                with self._cond:
                    self._done_blocks[msg[1]] = msg[2]
                    self._cond.notify_all()
            elif kind == "fault":
                self._set_fault(msg[1])
            elif kind == "shutdown":
                self.shutdown_result = msg[1]
            elif kind == "closed":
                break
        with self._cond:
            self._cond.notify_all()

    def _set_fault(self, message: str) -> None:
        with self._cond:
            self.fault = message
            self._cond.notify_all()
        self.on_fault(message)

    # -- commands --------------------------------------------------------------
    def set_power(self, power: float) -> dict:
        """Set the power (%MSO) of single pulses; leaves train mode first.

        Returns the unit's state (see
        :meth:`~stimtrain.devices.stimulator.StimulatorState.as_dict`), as do
        the other commands that change it.
        """
        return self._call("set_power", power)

    def set_train(self, frequency_hz: float, pulses: int) -> dict:
        """Program one device-run train (started by ``device_train`` items)."""
        return self._call("set_train", frequency_hz, pulses)

    def set_paired(self, conditioning: float, test: float, isi_ms: float) -> dict:
        """Set a paired-pulse unit: conditioning and test power, their interval."""
        return self._call("set_paired", conditioning, test, isi_ms)

    def arm(self, ready_timeout: float = 3.0) -> dict:
        """Arm the unit and wait until it is ready to fire."""
        return self._call("arm", ready_timeout, timeout=ready_timeout + 3.0)

    def disarm(self, timeout: float = 5.0) -> dict:
        """Disarm at once (also just before a pulse); drops every scheduled pulse."""
        return self._call("disarm", timeout=timeout)

    def status(self) -> dict:
        """The unit's state, asked now."""
        return self._call("status")

    def wait_ready(self, timeout: float = 3.0) -> dict:
        """Wait until the armed unit is ready to fire (after a power change)."""
        return self._call("wait_ready", timeout, timeout=timeout + 3.0)

    def hold(self, after: float | None = None, timeout: float = 2.0) -> Held:
        """Drop the scheduled pulses (those due at or after clock time ``after``).

        The unit stays armed. A hold of everything is handled the moment it
        arrives, even just before a pulse; a hold from ``after`` on (a pause
        at a safe point) waits like any other command.
        """
        args = () if after is None else (after,)
        held = self._call("hold", *args, timeout=timeout)
        return Held(held["held_at"], [tuple(item) for item in held["dropped"]])

    def schedule(self, block: int, items: list[tuple[float, int, str]]) -> None:
        """Queue pulses ``(clock time, index, via)`` of one block.

        ``via`` is a delivery path
        (:class:`~stimtrain.orchestrator.safety.delivery.Delivery`): ``serial``
        (the stimulator's fire command), ``paired`` (the same, for a unit that
        fires a pair on one command), ``device_train`` (start a programmed
        train) or ``trigger`` (the configured trigger line).
        """
        count = self._call("schedule", block, items)
        with self._cond:
            self._scheduled[block] = count

    def _call(self, cmd: str, *args, timeout: float = 5.0):
        """Send a command and wait for its result (raises DeviceFault on error)."""
        if self.fault is not None:
            raise DeviceFault(self.fault)
        with self._cond:
            req_id = self._next_id
            self._next_id += 1
        with self._send_lock:
            self._conn.send(("call", req_id, (cmd, *args)))
        deadline = time.monotonic() + timeout
        with self._cond:
            while req_id not in self._replies:
                if self.fault is not None:
                    raise DeviceFault(self.fault)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DeviceFault(f"device command {cmd!r} timed out")
                self._cond.wait(left)
            ok, result = self._replies.pop(req_id)
        if not ok:
            raise DeviceFault(f"{cmd} failed: {result}")
        if isinstance(result, dict) and "armed" in result:
            self.state = result
        return result

    def wait_block(self, block: int, timeout: float) -> bool:
        """Wait until every pulse of ``block`` was fired; False on timeout/fault."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._done_blocks.get(block, -1) < self._scheduled.get(block, 0):
                if self.fault is not None:
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Disarm, release the ports and end the process."""
        if self._proc.is_alive():
            try:
                with self._send_lock:
                    self._conn.send(("stop",))
            except (OSError, BrokenPipeError):
                pass
            self._proc.join(timeout)
        if self._proc.is_alive():
            self.kill()
        if self._reader is not None:
            self._reader.join(1.0)

    def wait_ended(self, timeout: float) -> bool:
        """Wait for a process that ends by itself (after a fault); True if it did."""
        self._proc.join(timeout)
        if self._reader is not None and not self._proc.is_alive():
            self._reader.join(1.0)
        return not self._proc.is_alive()

    def kill(self) -> None:
        """Kill the process outright; the unit's keep-alive timeout disarms it."""
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(2)

    @property
    def alive(self) -> bool:
        """Whether the device process is running."""
        return self._proc.is_alive()
