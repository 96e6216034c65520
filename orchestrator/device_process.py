"""The process that owns the stimulator's serial port and the trigger line.

It does nothing else: it keeps remote control alive, executes pulse schedules
given in absolute LSL-clock times (sleep until just before a deadline, spin to
it, write, read the clock), and reports what it actually did. Running it in its
own process means rendering, the GIL and garbage collection in the main process
can never delay a pulse or let remote control lapse.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import pylsl

logger = logging.getLogger("stimtrain.orchestrator.device_process")

#: Wake this long before a deadline and spin the rest: sleeping is imprecise
#: by up to a scheduler tick, spinning costs one core for that long.
SPIN_S = 0.002
#: Magstim recommends a status command every 500 ms while armed.
KEEP_ALIVE_S = 0.5
#: Don't start a keep-alive exchange this close to a pulse.
KEEP_ALIVE_GUARD_S = 0.03


@dataclass(frozen=True)
class DeviceConfig:
    """What the device process opens."""

    model: str
    stimulator_port: str
    trigger_port: str | None = None
    trigger_lines: int = 0x01
    traffic_log: str | None = None


@dataclass(frozen=True)
class PulseReport:
    """One pulse as the device process delivered it."""

    block: int
    index: int
    scheduled: float
    actual: float
    via: str


class DeviceFault(RuntimeError):
    """The device process hit a fault; the stimulator was disarmed (or tried)."""


def _tune_process() -> None:
    # Best effort: a dedicated core and real-time priority make the spin
    # precise and keep the clock read right after write() from being
    # preempted. The process never spins *after* a write: the kernel pushes
    # written bytes on to the port from a per-CPU worker that a real-time
    # spinner would hold back (measured: ~1 ms late pulses when the trigger
    # box's 1 ms pulse width was busy-waited).
    try:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) > 1:
            os.sched_setaffinity(0, {cpus[-1]})
    except (AttributeError, OSError):
        pass
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except (AttributeError, OSError):
        try:
            os.nice(-10)
        except OSError:
            pass


class _Worker:
    """Runs inside the device process."""

    def __init__(self, config: DeviceConfig, conn):
        self.config = config
        self.conn = conn
        self.schedule: list[tuple[float, int, int, str]] = []
        self.log_file = open(config.traffic_log, "a") if config.traffic_log else None  # noqa: SIM115
        self.stim = None
        self.trigger = None
        self.last_keep_alive = 0.0
        self.reset_at: float | None = None
        #: Width of a trigger-box pulse; the lines are lowered by the loop.
        self.pulse_width = 0.001

    def traffic(self, direction: str, data: bytes, t: float) -> None:
        if self.log_file is not None:
            line = {"dir": direction, "hex": data.hex(), "clock": t}
            self.log_file.write(json.dumps(line) + "\n")

    def open(self) -> dict:
        from stimtrain.devices.magstim.driver import Magstim

        self.stim = Magstim(
            self.config.stimulator_port, self.config.model, traffic_log=self.traffic
        )
        self.stim.open()
        self.stim.remote_control(True)
        if self.config.trigger_port:
            from stimtrain.devices.triggerbox import TriggerBox

            self.trigger = TriggerBox(
                self.config.trigger_port, traffic_log=self.traffic
            )
            self.trigger.open()
        self.last_keep_alive = pylsl.local_clock()
        return self.state()

    def state(self) -> dict:
        status = self.stim.status()
        return {
            "remote_control": status.remote_control,
            "armed": status.armed,
            "ready": status.ready,
            "standby": status.standby,
        }

    def fire(self, via: str) -> float:
        if via == "trigger":
            t = self.trigger.set_lines(self.config.trigger_lines)
            self.reset_at = t + self.pulse_width
            return t
        return self.stim.fire()

    def handle(self, msg: tuple) -> object:
        cmd, *args = msg
        if cmd == "set_power":
            self.stim.set_power(int(args[0]))
            return self.state()
        if cmd == "arm":
            self.stim.arm()
            self.stim.wait_ready(timeout=args[0] if args else 3.0)
            return self.state()
        if cmd == "disarm":
            self.schedule.clear()
            self.stim.disarm()
            return self.state()
        if cmd == "status":
            state = self.state()
            try:
                state["coil_temperature"] = self.stim.temperature()[0]
            except Exception:  # noqa: BLE001 - temperature is informative only
                pass
            return state
        if cmd == "schedule":
            block, items = args
            self.schedule.extend((t, block, i, via) for t, i, via in items)
            self.schedule.sort()
            return len(self.schedule)
        raise ValueError(f"unknown device command {cmd!r}")

    def keep_alive_due(self, now: float) -> bool:
        if now - self.last_keep_alive < KEEP_ALIVE_S:
            return False
        return not (self.schedule and self.schedule[0][0] - now < KEEP_ALIVE_GUARD_S)

    def run(self) -> None:
        clock = pylsl.local_clock
        while True:
            now = clock()
            if self.reset_at is not None and now >= self.reset_at:
                self.trigger.set_lines(0)
                self.reset_at = None
            waits = [self.last_keep_alive + KEEP_ALIVE_S - now]
            if self.reset_at is not None:
                waits.append(self.reset_at - now)
            if self.schedule:
                waits.append(self.schedule[0][0] - SPIN_S - now)
            timeout = max(0.0, min(waits))
            if self.conn.poll(timeout):
                msg = self.conn.recv()
                if msg[0] == "stop":
                    return
                req_id, body = msg[1], msg[2]
                try:
                    self.conn.send(("reply", req_id, True, self.handle(body)))
                except Exception as exc:  # noqa: BLE001 - reported to the caller
                    self.conn.send(
                        ("reply", req_id, False, f"{type(exc).__name__}: {exc}")
                    )
                continue
            if self.reset_at is not None:
                continue
            if self.schedule and clock() >= self.schedule[0][0] - SPIN_S:
                deadline, block, index, via = self.schedule.pop(0)
                while clock() < deadline:
                    pass
                actual = self.fire(via)
                self.conn.send(
                    ("pulse", PulseReport(block, index, deadline, actual, via))
                )
                if not self.schedule:
                    self.conn.send(("schedule_done", block))
                continue
            now = clock()
            if self.keep_alive_due(now):
                self.stim.keep_alive()
                self.last_keep_alive = clock()
                if self.log_file is not None:
                    self.log_file.flush()

    def shutdown(self) -> None:
        # Disarm first, whatever happened; then release the ports.
        if self.stim is not None:
            try:
                self.stim.disarm()
            except Exception:  # noqa: BLE001 - the unit's own timeout disarms it
                logger.exception("disarm at shutdown failed")
            try:
                self.stim.remote_control(False)
            except Exception:  # noqa: BLE001
                pass
            self.stim.close()
        if self.trigger is not None:
            self.trigger.close()
        if self.log_file is not None:
            self.log_file.flush()
            os.fsync(self.log_file.fileno())
            self.log_file.close()


def _device_main(config: DeviceConfig, conn) -> None:
    _tune_process()
    worker = _Worker(config, conn)
    try:
        conn.send(("opened", worker.open()))
        worker.run()
    except Exception as exc:  # noqa: BLE001 - every fault goes to the main process
        try:
            conn.send(("fault", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        except (OSError, BrokenPipeError):
            pass
    finally:
        worker.shutdown()
        try:
            conn.send(("closed",))
        except (OSError, BrokenPipeError):
            pass


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
            target=_device_main,
            args=(config, child),
            name="stimtrain-device",
            daemon=True,
        )
        self._child = child
        self._replies: dict[int, tuple[bool, object]] = {}
        self._cond = threading.Condition()
        self._next_id = 0
        self._done_blocks: set[int] = set()
        self.fault: str | None = None
        self.state: dict = {}
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
        msg = self._conn.recv()
        if msg[0] != "opened":
            self._proc.join(2)
            raise DeviceFault(f"could not open the stimulator: {msg[1]}")
        self.state = msg[1]
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
                self.on_pulse(msg[1])
            elif kind == "schedule_done":
                with self._cond:
                    self._done_blocks.add(msg[1])
                    self._cond.notify_all()
            elif kind == "fault":
                self._set_fault(msg[1])
            elif kind == "closed":
                break
        with self._cond:
            self._cond.notify_all()

    def _set_fault(self, message: str) -> None:
        with self._cond:
            self.fault = message
            self._cond.notify_all()
        self.on_fault(message)

    def request(self, *body, timeout: float = 5.0):
        """Send a command and wait for its result (raises DeviceFault on error)."""
        if self.fault is not None:
            raise DeviceFault(self.fault)
        with self._cond:
            req_id = self._next_id
            self._next_id += 1
        with self._send_lock:
            self._conn.send(("call", req_id, body))
        deadline = time.monotonic() + timeout
        with self._cond:
            while req_id not in self._replies:
                if self.fault is not None:
                    raise DeviceFault(self.fault)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DeviceFault(f"device command {body[0]!r} timed out")
                self._cond.wait(left)
            ok, result = self._replies.pop(req_id)
        if not ok:
            raise DeviceFault(f"{body[0]} failed: {result}")
        if isinstance(result, dict):
            self.state = result
        return result

    def schedule(self, block: int, items: list[tuple[float, int, str]]) -> None:
        """Queue pulses ``(clock time, index, via)`` of one block."""
        self.request("schedule", block, items)

    def wait_block(self, block: int, timeout: float) -> bool:
        """Wait until every pulse of ``block`` was fired; False on timeout/fault."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while block not in self._done_blocks:
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

    def kill(self) -> None:
        """Kill the process outright; the unit's keep-alive timeout disarms it."""
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(2)

    @property
    def alive(self) -> bool:
        """Whether the device process is running."""
        return self._proc.is_alive()
