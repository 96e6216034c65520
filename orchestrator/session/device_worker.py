"""Inside the device process: the worker that owns the port and fires on time.

The process owns the stimulator's serial port and the trigger line and does
nothing else: it keeps remote control alive and watches the link,
executes pulse schedules given in absolute LSL-clock times (sleep until just
before a deadline, spin to it, write, read the clock), and reports what it
actually did. Running it in its own process means rendering, the GIL and
garbage collection in the main process can never delay a pulse or let remote
control lapse; messages to the main process go out from a sender thread, so
even a main process that stops reading cannot block this one.

Link supervision: the driver's keep-alive (or a status query, for models
whose keep-alive reports nothing) runs every ``keep_alive_interval_s`` of the
driver. The drivers re-send a command once when its reply has a bad checksum
(never a fire command); what still fails is a fault here: checksum errors
beyond that retry, a missing reply, a vanished port, lost remote control, a
unit that disarmed itself, a refused command. The schedule is dropped, the
fault is reported with its reason, the unit is disarmed (attempted; on a dead
link a Magstim's own keep-alive timeout disarms it) and the process ends.

The module is longer than most because the worker's loop, its commands, its
supervision and its firing share one schedule and one link under one clock,
and are read together when timing is in question.
"""

from __future__ import annotations

import collections
import logging
import queue
import termios
import threading
import time
import traceback
from dataclasses import dataclass

import pylsl
import serial

from stimtrain.devices.errors import (
    CommandRejected,
    CRCError,
    DeviceError,
    DeviceTimeout,
    RemoteControlLost,
)
from stimtrain.devices.realtime import tune_device_process
from stimtrain.devices.stimulator import open_stimulator
from stimtrain.devices.traffic import TrafficWriter
from stimtrain.devices.trigger import (
    DeviceTrainStart,
    SerialCommandTrigger,
    make_trigger,
)

from ..safety.delivery import Delivery

logger = logging.getLogger("stimtrain.orchestrator.session.device_worker")

#: Wake this long before a deadline and spin the rest: sleeping is imprecise
#: by up to a scheduler tick, spinning costs one core for that long.
SPIN_S = 0.002
#: After a pulse's write the process sleeps this long before anything else.
#: A pseudo-terminal (the simulated rig) passes written bytes on from a kernel
#: worker that is woken on the writer's core; with this core free for a moment
#: the worker runs at once instead of queuing behind the renderer for up to a
#: scheduler slice. Measured with a task rendering (online pulses, n=100, at
#: the simulated unit): p99 1.3 ms without, 0.6 ms with. A real serial driver
#: hands the bytes on within write(); there it only delays the report.
SETTLE_S = 0.0001
#: Supervision interval for drivers that do not say (Magstim recommends a
#: status command every 500 ms while armed).
KEEP_ALIVE_S = 0.5
#: Don't start a keep-alive exchange this close to a pulse (at least; the
#: device process widens it to 1.5 times the last exchange's duration).
KEEP_ALIVE_GUARD_S = 0.03
#: A keep-alive postponed for pulses this many intervals is sent anyway (the
#: next pulse may then be late): losing remote control would disarm the unit.
KEEP_ALIVE_OVERDUE = 1.6


#: What the session may ask of the device process: each is a method of
#: :class:`DeviceProcess` and a ``do_<name>`` method of the process's worker.
COMMANDS = frozenset(
    {
        "set_power",
        "set_train",
        "set_paired",
        "arm",
        "disarm",
        "hold",
        "status",
        "wait_ready",
        "schedule",
    }
)


@dataclass(frozen=True)
class DeviceConfig:
    """What the device process opens.

    Attributes
    ----------
    model : str
        Stimulator model key (see :func:`stimtrain.devices.stimulator.models`).
    stimulator_port : str
        The stimulator's serial port.
    trigger_port : str | None
        Port of the host-timed trigger line (``via="trigger"``); None: serial
        fire command only.
    trigger_lines : int
        Trigger box output mask.
    traffic_log : str | None
        Path of the raw traffic log (JSON lines), appended to.
    trigger_kind : str
        ``"triggerbox"`` or ``"rts"`` (for ``trigger_port``).
    trigger_pulse_width : float
        Seconds the trigger line stays active.
    trigger_baudrate : int
        Speed the RTS line's port is opened at; when it is the stimulator's own
        port, the stimulator's speed (Magstim 9600, MagPro 38400).
    reply_timeout : float | None
        Seconds the driver waits for a reply; None: the driver's default.
    max_late_s : float
        A pulse that can't be given within this many seconds of its deadline
        is a fault (the schedule is dropped); it is never fired late.
    """

    model: str
    stimulator_port: str
    trigger_port: str | None = None
    trigger_lines: int = 0x01
    traffic_log: str | None = None
    trigger_kind: str = "triggerbox"
    trigger_pulse_width: float = 0.001
    trigger_baudrate: int = 9600
    reply_timeout: float | None = None
    max_late_s: float = 0.02


@dataclass(frozen=True)
class PulseReport:
    """One pulse as the device process delivered it.

    ``confirmed`` is False when the fire command was written but its reply
    was lost or corrupt: the pulse was probably given (it counts towards
    caps) but the unit did not say so.
    """

    block: int
    index: int
    scheduled: float
    actual: float
    via: str
    confirmed: bool = True


class _Outbox:
    """Send messages to the main process from a thread of their own.

    A main process that is blocked or slow to read lets the pipe fill up;
    ``Connection.send`` would then block the device loop and its keep-alive.
    """

    def __init__(self, conn) -> None:
        self._conn = conn
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._run, name="device-outbox", daemon=True
        )
        self._thread.start()

    def send(self, msg: tuple) -> None:
        self._queue.put(msg)

    def _run(self) -> None:
        while True:
            msg = self._queue.get()
            if msg is None:
                return
            try:
                self._conn.send(msg)
            except (OSError, BrokenPipeError, ValueError):
                return  # the main process is gone; nothing left to tell

    def close(self, timeout: float = 2.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)


class Worker:
    """Runs inside the device process."""

    def __init__(self, config: DeviceConfig, outbox: _Outbox) -> None:
        self.config = config
        self.outbox = outbox
        self.schedule: list[tuple[float, int, int, str]] = []
        self.traffic = TrafficWriter(config.traffic_log) if config.traffic_log else None
        self.stim = None
        self.lines: dict[str, object] = {}
        #: A device-run train is programmed (the unit is in train mode).
        self.train_programmed = False
        self.release_line = None
        self.release_at: float | None = None
        self.interval = KEEP_ALIVE_S
        #: Don't start a supervision exchange this close to the next pulse.
        self.guard = KEEP_ALIVE_GUARD_S
        self.last_keep_alive = 0.0
        self.expect_armed = False
        #: Clock time of the last byte written to the stimulator.
        self.last_tx = 0.0
        #: Schedule requests per block (tags its "schedule_done").
        self.scheduled: dict[int, int] = {}
        #: Messages that arrived too close to a pulse, handled after it.
        self.deferred: collections.deque = collections.deque()
        #: Pulses dropped by a hold or disarm (reported by the hold) and when.
        self.dropped: list[tuple[float, int, int, str]] = []
        self.dropped_at: float | None = None

    # ------------------------------------------------------------- traffic
    def _stim_traffic(self, direction: str, data: bytes, t: float) -> None:
        if direction == "tx":
            self.last_tx = t
        if self.traffic is not None:
            self.traffic.write(self.config.model, direction, data, t)

    def note(self, text: str) -> None:
        if self.traffic is not None:
            self.traffic.note(self.config.model, text)

    # -------------------------------------------------------------- opening
    def open(self) -> dict:
        cfg = self.config
        options = {} if cfg.reply_timeout is None else {"timeout": cfg.reply_timeout}
        self.stim = open_stimulator(
            cfg.model, cfg.stimulator_port, traffic_log=self._stim_traffic, **options
        )
        self.stim.open()
        self.note(f"opened {cfg.model} on {cfg.stimulator_port}")
        self.stim.remote_control(True)
        # The unit may have been left in train mode by another program.
        self.train_programmed = True
        self._single_pulse_mode()
        self.interval = self.stim.keep_alive_interval_s or KEEP_ALIVE_S
        self.lines[Delivery.SERIAL] = SerialCommandTrigger(self.stim)
        # A paired-pulse unit (BiStim², MagOption) fires its pair on one command.
        self.lines[Delivery.PAIRED] = self.lines[Delivery.SERIAL]
        self.lines[Delivery.DEVICE_TRAIN] = DeviceTrainStart(self.stim)
        if cfg.trigger_port:
            device = "rts" if cfg.trigger_kind == "rts" else "triggerbox"
            line = make_trigger(
                cfg.trigger_kind,
                port=cfg.trigger_port,
                lines=cfg.trigger_lines,
                pulse_width=cfg.trigger_pulse_width,
                baudrate=cfg.trigger_baudrate,
                traffic_log=self.traffic.callback(device) if self.traffic else None,
            )
            line.open()
            self.lines[Delivery.TRIGGER] = line
            if self.traffic is not None:
                self.traffic.note(device, f"opened {cfg.trigger_kind} on {line.port}")
        self.last_keep_alive = pylsl.local_clock()
        return self.stim.state().as_dict()

    # ------------------------------------------------------------ requests
    def handle(self, cmd: str, args: list) -> object:
        """Run one command from the main process (a name in :data:`COMMANDS`)."""
        if cmd not in COMMANDS:
            raise ValueError(f"unknown device command {cmd!r}")
        return getattr(self, f"do_{cmd}")(*args)

    def do_set_power(self, power: float) -> dict:
        self._single_pulse_mode()
        self.stim.set_intensity(power)
        return self.stim.state().as_dict()

    def do_set_train(self, frequency_hz: float, pulses: int) -> dict:
        self._set_train(frequency_hz, pulses)
        return self.stim.state().as_dict()

    def do_set_paired(self, conditioning: float, test: float, isi_ms: float) -> dict:
        self._single_pulse_mode()
        self._set_paired(conditioning, test, isi_ms)
        return self.stim.state().as_dict()

    def do_arm(self, ready_timeout: float = 3.0) -> dict:
        self.stim.arm()
        self.expect_armed = True
        self.stim.wait_ready(timeout=ready_timeout)
        return self.stim.state().as_dict()

    def do_disarm(self) -> dict:
        self._drop_schedule()
        self.dropped, self.dropped_at = [], None
        self.expect_armed = False
        self.stim.disarm()
        return self.stim.state().as_dict()

    def do_hold(self, after: float | None = None) -> dict:
        # A hold of everything dropped the schedule as it arrived (see run); a
        # hold from a clock time on (a pause at a safe point) drops the pulses
        # due from then. Say when, by this process's clock, and which pulses
        # will not be given.
        self._drop_schedule(after)
        dropped = [(block, index) for _, block, index, _ in self.dropped]
        held = {"held_at": self.dropped_at, "dropped": dropped}
        self.dropped, self.dropped_at = [], None
        return held

    def do_wait_ready(self, timeout: float = 3.0) -> dict:
        # A power change takes the unit time (a Magstim: about 100 ms per %
        # down); a pulse before it is ready would be refused.
        self.stim.wait_ready(timeout=timeout)
        return self.stim.state().as_dict()

    def do_status(self) -> dict:
        return self.stim.state().as_dict()

    def do_schedule(self, block: int, items: list) -> int:
        for _, i, via in items:
            if via not in self.lines:
                raise ValueError(
                    f"pulse {i} of block {block}: via must be one of "
                    f"{sorted(str(name) for name in self.lines)}, got {str(via)!r}"
                )
        self.schedule.extend((t, block, i, via) for t, i, via in items)
        self.schedule.sort()
        self.scheduled[block] = self.scheduled.get(block, 0) + 1
        return self.scheduled[block]

    def _set_train(self, frequency_hz: float, pulses: int) -> None:
        """Program one device-run train (its start is a ``device_train`` item)."""
        self.stim.program_train(frequency_hz, pulses)
        self.train_programmed = True

    def _single_pulse_mode(self) -> None:
        """Leave train mode before any block that fires single pulses (a unit
        left in it could answer the next fire command with a whole train)."""
        if self.train_programmed:
            self.stim.single_pulse_mode()
        self.train_programmed = False

    def _set_paired(self, conditioning: float, test: float, isi_ms: float) -> None:
        """Set a paired-pulse unit: conditioning pulse, then test after ``isi_ms``."""
        self.stim.set_paired(conditioning, test, isi_ms)

    # --------------------------------------------------------- supervision
    def supervise(self) -> None:
        """Keep remote control alive and check the unit is as it should be.

        The drivers retry what is safe to retry (a reply with a bad checksum);
        whatever still fails here is a fault.
        """
        started = pylsl.local_clock()
        try:
            # Models that need no keep-alive are only asked for their state.
            status = None
            if self.stim.keep_alive_interval_s is not None:
                status = self.stim.keep_alive()
            if status is None:
                status = self.stim.state()
        except RemoteControlLost as exc:
            raise _LinkFault(f"remote control was lost: {exc}") from exc
        except CommandRejected as exc:
            if exc.reason != "state":
                raise _LinkFault(f"link check failed: {exc}") from exc
            # Only a unit without remote control refuses a keep-alive.
            raise _LinkFault(
                f"remote control was lost (keep-alive refused: {exc})"
            ) from exc
        except DeviceError as exc:
            raise _LinkFault(f"link check failed: {exc}") from exc
        self.last_keep_alive = pylsl.local_clock()
        if self.traffic is not None:
            self.traffic.flush()
        # Keep the next exchange clear of pulses by what this one took (a
        # MagPro answers in 20-80 ms, a Magstim at 9600 baud in ~10 ms).
        took = self.last_keep_alive - started
        self.guard = min(self.interval / 2, max(KEEP_ALIVE_GUARD_S, 1.5 * took))
        if getattr(status, "remote_control", None) is False:
            raise _LinkFault("remote control was lost (the unit disarms without it)")
        if self.expect_armed and not status.armed:
            raise _LinkFault(f"the stimulator disarmed itself ({self._why_disarmed()})")

    def _why_disarmed(self) -> str:
        try:
            state = self.stim.state()
        except Exception as exc:  # noqa: BLE001 - the reason is informative only
            return f"state unreadable: {exc}"
        parts = []
        if state.coil_temperature is not None:
            parts.append(f"coil {state.coil_temperature:g} °C")
        parts.extend(state.errors)
        return ", ".join(parts) or "no reason reported"

    def keep_alive_due(self, now: float) -> bool:
        since = now - self.last_keep_alive
        if since < self.interval:
            return False
        if self.stim.keep_alive_interval_s is None:
            # Only a link check, which can wait for a gap in the pulses: a
            # MagPro's answer may take 80 ms, longer when it is re-read.
            guard = max(self.guard, self.interval)
        elif since >= KEEP_ALIVE_OVERDUE * self.interval:
            return True
        else:
            guard = self.guard
        return not (self.schedule and self.schedule[0][0] - now < guard)

    # ---------------------------------------------------------------- fire
    def fire(self, deadline: float, block: int, index: int, via: str) -> None:
        """Give one pulse at ``deadline`` on line ``via`` and report it."""

        line = self.lines[via]
        clock = pylsl.local_clock
        started = deadline
        try:
            # Checks and buffer work first, so that at the deadline only the
            # write is left between the clock and the pulse.
            line.prepare(deadline)
            while clock() < deadline:
                pass
            started = clock()
            actual = line.fire()
            confirmed = True
        except (CRCError, DeviceTimeout) as exc:
            if via == Delivery.TRIGGER or self.last_tx < started:
                raise
            # The fire command went out; only its reply was lost. It is never
            # re-sent (that could give a second pulse): count the pulse, then
            # make sure the link still works.
            actual, confirmed = self.last_tx, False
            self.note(f"pulse {index} of block {block}: {exc}")
            self._report_pulse(block, index, deadline, actual, via, confirmed)
            self.supervise()
            return
        except DeviceError as exc:  # refused, by the unit or by a device limit
            raise _LinkFault(f"pulse {index} of block {block} ({via}): {exc}") from exc
        except (OSError, serial.SerialException) as exc:
            if via != Delivery.TRIGGER:
                raise
            raise _LinkFault(
                f"trigger line ({line.kind}) on {line.port} lost "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        time.sleep(SETTLE_S)
        if line.pulse_width > 0:
            self.release_line = line
            self.release_at = actual + line.pulse_width
        self._report_pulse(block, index, deadline, actual, via, confirmed)

    def _report_pulse(self, block, index, deadline, actual, via, confirmed) -> None:
        self.outbox.send(
            ("pulse", PulseReport(block, index, deadline, actual, via, confirmed))
        )
        if not any(item[1] == block for item in self.schedule):
            # Tagged with the block's schedule requests so far: a block
            # rescheduled after a pause is done only once its new pulses are.
            self.outbox.send(("schedule_done", block, self.scheduled[block]))

    # ---------------------------------------------------------------- loop
    def run(self, conn) -> None:
        clock = pylsl.local_clock
        while True:
            now = clock()
            if self.release_at is not None and now >= self.release_at:
                self.release_line.release()
                self.release_at = None
            waits = [self.last_keep_alive + self.interval - now]
            if self.release_at is not None:
                waits.append(self.release_at - now)
            if self.schedule:
                waits.append(self.schedule[0][0] - SPIN_S - now)
            timeout = max(0.0, min(waits))
            near = self.schedule and self.schedule[0][0] - now < self.guard
            if self.deferred and not near:
                if self._message(self.deferred.popleft()):
                    return
                continue
            if conn.poll(timeout):
                msg = conn.recv()
                # The wait may have run into the guard before the next pulse.
                near = self.schedule and self.schedule[0][0] - clock() < self.guard
                drops = _drops_schedule(msg)
                if near and not drops:
                    # A request now could hold the port past the next
                    # deadline: it waits until that pulse is out.
                    self.deferred.append(msg)
                else:
                    if drops:
                        # A stop, disarm or hold drops the schedule at once,
                        # even a pulse due in the next milliseconds; what was
                        # deferred before it is then handled first, in order.
                        self._drop_schedule()
                    self.deferred.append(msg)
                    while self.deferred:
                        if self._message(self.deferred.popleft()):
                            return
                continue
            if self.release_at is not None:
                continue
            if self.schedule and clock() >= self.schedule[0][0] - SPIN_S:
                deadline, block, index, via = self.schedule.pop(0)
                late = clock() - deadline
                if late > self.config.max_late_s:
                    # Never fire late pulses back to back: that would break
                    # the protocol's intervals and the unit's rate limits.
                    raise _LinkFault(
                        f"pulse {index} of block {block} could not be given on "
                        f"time ({late * 1e3:.0f} ms late, the link was busy); "
                        "the rest of the schedule was dropped"
                    )
                self.fire(deadline, block, index, via)
                continue
            if self.keep_alive_due(clock()):
                self.supervise()

    def _drop_schedule(self, after: float | None = None) -> None:
        """Drop the scheduled pulses (those due at or after ``after``)."""
        keep = [] if after is None else [p for p in self.schedule if p[0] < after]
        self.dropped.extend(p for p in self.schedule if p not in keep)
        self.schedule[:] = keep
        if self.dropped_at is None:
            self.dropped_at = pylsl.local_clock()

    def _message(self, msg: tuple) -> bool:
        """Handle one message from the main process; True when told to stop."""
        if msg[0] == "stop":
            return True
        self._request(msg[1], msg[2])
        return False

    def _request(self, req_id: int, body: tuple) -> None:
        cmd, *args = body
        try:
            result = self.handle(cmd, args)
        except (ValueError, TypeError) as exc:
            # Bad arguments or a device limit, checked before anything was
            # sent: harmless.
            self.outbox.send(("reply", req_id, False, f"{type(exc).__name__}: {exc}"))
            return
        except Exception as exc:
            # The device did not do what it was asked: a fault.
            reason = self.reason(exc)
            self.outbox.send(("reply", req_id, False, reason))
            raise _LinkFault(f"{cmd}: {reason}") from exc
        self.outbox.send(("reply", req_id, True, result))

    def reason(self, exc: BaseException) -> str:
        """Say what went wrong, naming the port when the link itself failed."""
        if isinstance(exc, _LinkFault):
            return str(exc)
        if isinstance(exc, serial.SerialException | OSError | termios.error):
            return (
                f"serial link to the {self.config.model} on "
                f"{self.config.stimulator_port} lost ({type(exc).__name__}: {exc})"
            )
        return f"{type(exc).__name__}: {exc}"

    def shutdown(self) -> str:
        """Disarm first, whatever happened; then release the lines and ports.

        Returns what became of the disarm, for the session's journal.
        """
        result = "no stimulator was open"
        self.schedule.clear()
        if self.release_at is not None:
            try:
                self.release_line.release()
            except Exception:  # noqa: BLE001 - close() tries again
                logger.exception("trigger release at shutdown failed")
        if self.stim is not None:
            try:
                self.stim.disarm()
                result = "disarmed at shutdown"
                self.note(result)
            except Exception as exc:  # noqa: BLE001 - the unit's own timeout disarms it
                result = f"disarm at shutdown failed: {exc}"
                self.note(result)
                logger.warning("disarm at shutdown failed: %s", exc)
            try:
                self.stim.remote_control(False)
            except Exception:  # noqa: BLE001
                pass
            try:
                self.stim.close()
            except Exception:  # noqa: BLE001
                logger.exception("closing the stimulator failed")
        for name, line in self.lines.items():
            if name == Delivery.TRIGGER:
                try:
                    line.close()
                except Exception:  # noqa: BLE001
                    logger.exception("closing the trigger line failed")
        if self.traffic is not None:
            try:
                self.traffic.close()
            except OSError as exc:
                # A full disk: the unit is disarmed already; say what was lost.
                logger.warning("traffic log not closed cleanly: %s", exc)
                result = f"{result}; traffic log not closed cleanly: {exc}"
        return result


def _drops_schedule(msg: tuple) -> bool:
    """Whether a message stops all pulses (handled at once, never deferred).

    A hold from a later time on (a pause) is an ordinary request: the caller
    picks a time beyond the next pulse's guard.
    """
    if msg[0] == "stop":
        return True
    body = msg[2] if msg[0] == "call" else ()
    return body[:1] == ("disarm",) or body == ("hold",)


class _LinkFault(Exception):
    """Internal: supervision found the link or the unit not as it must be."""


def device_main(config: DeviceConfig, conn) -> None:
    # A core of its own and real-time priority make the wait for a deadline
    # precise and keep the clock read right after write() from being preempted.
    realtime = tune_device_process()
    outbox = _Outbox(conn)
    worker = Worker(config, outbox)
    try:
        outbox.send(("opened", worker.open(), realtime))
        worker.run(conn)
    except Exception as exc:  # noqa: BLE001 - every fault goes to the main process
        reason = worker.reason(exc)
        worker.schedule.clear()
        worker.note(f"fault: {reason}")
        outbox.send(("fault", reason, traceback.format_exc()))
    finally:
        outbox.send(("shutdown", worker.shutdown()))
        outbox.send(("closed",))
        outbox.close()
