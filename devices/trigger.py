"""Trigger lines: every way a host-timed pulse reaches a stimulator, one interface.

Three paths, from slowest to fastest (docs/specs/magstim.md gives measured
latencies on real units):

``serial``
    The stimulator's own fire command over its serial link (Magstim ``EH``,
    MagVenture fire frame). No extra hardware; a few milliseconds of latency
    and the serial single-pulse rate limit (1 Hz on a Rapid²).
``triggerbox``
    A serial TTL trigger box whose output line is wired to the stimulator's
    trigger input BNC. A pulse is a byte raising the line, then 0x00.
``rts``
    The RTS modem line of a serial port, wired through a diode to the trigger
    input ("quick fire"). A pulse asserts RTS, then clears it.

A line with a pulse width (trigger box, RTS) must be released ``pulse_width``
after :meth:`TriggerLine.fire`. The device process does that from its event
loop (it sleeps until the release time instead of busy-waiting);
:meth:`TriggerLine.pulse` does both in one call for everything else.
"""

from __future__ import annotations

import abc
import fcntl
import logging
import struct
import termios
import time
from typing import ClassVar

import serial
from pylsl import local_clock

from .errors import DeviceError, TriggerLineError
from .stimulator import Stimulator, TrafficLog
from .triggerbox import TriggerBox

logger = logging.getLogger("stimtrain.devices.trigger")

#: Trigger kinds accepted by :func:`make_trigger` (and in rig files).
TRIGGER_KINDS = ("serial", "triggerbox", "rts")


class TriggerLine(abc.ABC):
    """One host-timed trigger path into a stimulator.

    Attributes
    ----------
    kind : str
        One of :data:`TRIGGER_KINDS`.
    pulse_width : float
        Seconds between :meth:`fire` and :meth:`release`; 0 for a line that
        needs no release (the serial fire command).
    """

    kind: ClassVar[str]
    pulse_width: float = 0.0

    def open(self) -> None:  # noqa: B027 - a line without a port needs nothing
        """Open the line's port and put the line in its idle state."""

    def close(self) -> None:  # noqa: B027
        """Return the line to idle (best effort) and close its port."""

    @abc.abstractmethod
    def fire(self) -> float:
        """Start a pulse.

        Returns
        -------
        float
            ``pylsl.local_clock()`` right after the write that starts the
            pulse returned: when the trigger left the host.
        """

    def prepare(self, at: float) -> None:  # noqa: B027 - most lines need nothing
        """Get ready for a :meth:`fire` at clock time ``at``.

        The device process calls it just before it waits for the deadline, so
        that checks and buffer work are done beforehand and :meth:`fire` is
        little more than its write.
        """

    def release(self) -> None:  # noqa: B027 - lines without a width need none
        """End the pulse started by :meth:`fire` (no-op without a pulse width)."""

    def pulse(self) -> float:
        """Fire, hold the line for :attr:`pulse_width`, release; return the time.

        The wait sleeps: a short pulse may come out somewhat longer, never
        shorter, which is what a trigger input needs.
        """
        t = self.fire()
        if self.pulse_width > 0:
            time.sleep(max(0.0, t + self.pulse_width - local_clock()))
            self.release()
        return t

    def __enter__(self) -> TriggerLine:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SerialCommandTrigger(TriggerLine):
    """Fire by the stimulator's serial fire command.

    Parameters
    ----------
    stimulator : Stimulator
        An open driver; the trigger neither opens nor closes it.
    """

    kind = "serial"

    def __init__(self, stimulator: Stimulator) -> None:
        self.stimulator = stimulator

    def prepare(self, at: float) -> None:
        """Let the driver check its limits for ``at`` and clear its input."""
        self.stimulator.prepare_fire(at)

    def fire(self) -> float:
        """Send the fire command; return the LSL time of the write."""
        return self.stimulator.fire()


class DeviceTrainStart(SerialCommandTrigger):
    """Start the train the stimulator runs by itself (programmed beforehand).

    A Magstim Rapid² in train mode runs its train on the fire command; a
    MagPro starts its Timing-page train with its own command. The unit times
    every pulse of the train; this returns the time the start command left.
    """

    kind = "serial"

    def prepare(self, at: float) -> None:
        """Nothing: a train's start is checked when it is sent."""

    def fire(self) -> float:
        """Send the start command; return the LSL time of the write."""
        return self.stimulator.start_train()


class TriggerBoxTrigger(TriggerLine):
    """Fire through a serial TTL trigger box wired to the trigger input.

    Parameters
    ----------
    port : str
        The trigger box's serial port.
    lines : int
        Output line mask raised by a pulse (1–255; line 0 is ``0x01``).
    pulse_width : float
        Seconds the lines stay high.
    traffic_log : callable | None
        ``traffic_log(direction, data, clock_time)`` for every byte written.
    """

    kind = "triggerbox"

    def __init__(
        self,
        port: str,
        *,
        lines: int = 0x01,
        pulse_width: float = 0.001,
        traffic_log: TrafficLog | None = None,
    ) -> None:
        if isinstance(lines, bool) or not isinstance(lines, int) or not 0 < lines < 256:
            raise ValueError(
                f"trigger box on {port}: lines must be a line mask from 1 to 255, "
                f"got {lines!r}"
            )
        _check_width(port, pulse_width)
        self.port = port
        self.lines = lines
        self.pulse_width = pulse_width
        self.box = TriggerBox(port, pulse_width=pulse_width, traffic_log=traffic_log)

    def open(self) -> None:
        """Open the box and set every line low."""
        self.box.open()

    def close(self) -> None:
        """Set every line low (best effort) and close the box."""
        self.box.close()

    def fire(self) -> float:
        """Raise :attr:`lines`; return the LSL time of the write."""
        return self.box.set_lines(self.lines)

    def release(self) -> None:
        """Lower every line."""
        self.box.set_lines(0)


def _check_width(port: str, pulse_width: float) -> None:
    if not 0 < pulse_width <= 0.1:
        raise ValueError(
            f"trigger on {port}: pulse_width must be > 0 and ≤ 0.1 s, "
            f"got {pulse_width!r}"
        )


def has_modem_lines(ser: serial.Serial) -> bool:
    """Whether an open port has modem-control lines (a pty has none).

    Asks the kernel for the modem line state (``TIOCMGET``); a device
    without modem lines answers ENOTTY or EINVAL.
    """
    try:
        fcntl.ioctl(ser.fileno(), termios.TIOCMGET, struct.pack("I", 0))
    except OSError:
        return False
    return True


class RTSTrigger(TriggerLine):
    """Fire by asserting the RTS line of a serial port ("quick fire" wiring).

    Parameters
    ----------
    port : str
        The serial port whose RTS pin is wired (through a diode) to the
        stimulator's trigger input. It may be the stimulator's own port.
    pulse_width : float
        Seconds RTS stays asserted.
    active_high : bool
        True: a pulse asserts RTS (positive RS-232 voltage) and idle clears
        it. Set False for wiring that triggers on the opposite level.
    traffic_log : callable | None
        Called with ``("tx", b"\\x01", t)`` when the line goes active and
        ``("tx", b"\\x00", t)`` when it goes idle.
    baudrate : int
        Speed the port is opened at. When the wired RTS pin is on the
        stimulator's own port (opened a second time here), this must be the
        stimulator's speed, because opening a port sets its speed.

    Raises
    ------
    TriggerLineError
        From :meth:`open`, naming the port, when it has no modem lines (a
        pseudo-terminal, some USB adapters) or RTS cannot be set.
    """

    kind = "rts"

    def __init__(
        self,
        port: str,
        *,
        pulse_width: float = 0.001,
        active_high: bool = True,
        traffic_log: TrafficLog | None = None,
        baudrate: int = 9600,
    ) -> None:
        _check_width(port, pulse_width)
        self.port = port
        self.pulse_width = pulse_width
        self.active_high = active_high
        self.traffic_log = traffic_log
        self.baudrate = baudrate
        self._serial: serial.Serial | None = None

    def open(self) -> None:
        """Open the port and set RTS idle."""
        if self._serial is not None:
            return
        ser = serial.Serial()
        ser.port = self.port
        ser.baudrate = self.baudrate
        # Applied by open(), so the line never glitches active.
        ser.rts = not self.active_high
        try:
            ser.open()
        except serial.SerialException as exc:
            raise TriggerLineError(
                f"RTS trigger: cannot open {self.port}: {exc}"
            ) from exc
        self._serial = ser
        try:
            self._check()
            self._set(False)
        except TriggerLineError:
            self.close()
            raise

    def _check(self) -> None:
        if not has_modem_lines(self._serial):
            raise TriggerLineError(
                f"RTS trigger: {self.port} has no modem-control lines (RTS cannot "
                "be set: a pseudo-terminal or an adapter without RTS); use the "
                "serial or trigger box path"
            )

    def close(self) -> None:
        """Set RTS idle (best effort) and close the port."""
        if self._serial is None:
            return
        try:
            if has_modem_lines(self._serial):
                self._set(False)
        except Exception:
            logger.exception("could not set RTS idle on %s", self.port)
        finally:
            self._serial.close()
            self._serial = None

    def fire(self) -> float:
        """Assert RTS; return the LSL time right after the ioctl returned."""
        return self._set(True)

    def release(self) -> None:
        """Return RTS to idle."""
        self._set(False)

    def _set(self, active: bool) -> float:
        if self._serial is None:
            raise DeviceError(f"RTS trigger on {self.port} is not open")
        try:
            self._serial.rts = active == self.active_high
        except OSError as exc:
            raise TriggerLineError(
                f"RTS trigger: cannot set RTS on {self.port}: {exc}"
            ) from exc
        t = local_clock()
        if self.traffic_log is not None:
            try:
                self.traffic_log("tx", b"\x01" if active else b"\x00", t)
            except Exception:
                logger.exception("traffic_log failed")
        return t


def make_trigger(
    kind: str,
    *,
    port: str | None = None,
    lines: int = 0x01,
    pulse_width: float = 0.001,
    stimulator: Stimulator | None = None,
    traffic_log: TrafficLog | None = None,
    active_high: bool = True,
    baudrate: int = 9600,
) -> TriggerLine:
    """Create (not yet open) the trigger line a rig's trigger settings describe.

    Parameters
    ----------
    kind : str
        One of :data:`TRIGGER_KINDS`.
    port : str | None
        Serial port of the trigger box or of the RTS line (required for
        those two kinds).
    lines : int
        Trigger box output mask.
    pulse_width : float
        Seconds the trigger box lines or RTS stay active.
    stimulator : Stimulator | None
        The driver whose fire command the ``serial`` kind uses (required there).
    traffic_log : callable | None
        ``traffic_log(direction, data, clock_time)``.
    active_high : bool
        RTS polarity (see :class:`RTSTrigger`).
    baudrate : int
        Speed of the RTS line's port (see :class:`RTSTrigger`).

    Raises
    ------
    ValueError
        Unknown kind, or a missing port or stimulator, named in the message.
    """
    if kind not in TRIGGER_KINDS:
        raise ValueError(
            f"trigger kind must be one of {list(TRIGGER_KINDS)}, got {kind!r}"
        )
    if kind == "serial":
        if stimulator is None:
            raise ValueError("trigger kind 'serial' needs the stimulator driver")
        return SerialCommandTrigger(stimulator)
    if not port:
        raise ValueError(f"trigger kind {kind!r} needs a port, got {port!r}")
    if kind == "triggerbox":
        return TriggerBoxTrigger(
            port, lines=lines, pulse_width=pulse_width, traffic_log=traffic_log
        )
    return RTSTrigger(
        port,
        pulse_width=pulse_width,
        active_high=active_high,
        traffic_log=traffic_log,
        baudrate=baudrate,
    )
