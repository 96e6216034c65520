"""Driver for a serial TTL trigger box (Brain Products TriggerBox style).

The box sets its output lines to each byte it receives; a pulse is the byte
with the wanted lines set, followed ``pulse_width`` later by 0x00.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import serial
from pylsl import local_clock

from .errors import DeviceError
from .serial_link import write_now

logger = logging.getLogger("stimtrain.devices.triggerbox")

#: Every output byte, made once: a pulse's write does no allocation.
_BYTES = [bytes([v]) for v in range(256)]

# Sleep (releasing the GIL) until this close to a deadline, then spin.
_SPIN_S = 0.0003


def wait_until(deadline: float, clock: Callable[[], float] = local_clock) -> None:
    """Wait precisely until ``clock() >= deadline``.

    Sleeps while far from the deadline so other threads can run, then
    busy-waits for the last fraction of a millisecond.
    """
    while True:
        remaining = deadline - clock()
        if remaining <= 0:
            return
        if remaining > _SPIN_S:
            time.sleep(remaining - _SPIN_S)


class TriggerBox:
    """Serial TTL trigger output.

    Parameters
    ----------
    port : str
        Serial port path.
    pulse_width : float
        Seconds the lines stay high in :meth:`pulse`.
    traffic_log : callable | None
        ``traffic_log(direction, data, clock_time)`` for every write.
    baudrate : int
        Serial speed (USB trigger boxes ignore it).
    """

    def __init__(
        self,
        port: str,
        *,
        pulse_width: float = 0.001,
        traffic_log: Callable[[str, bytes, float], None] | None = None,
        baudrate: int = 115200,
    ) -> None:
        self.port = port
        self.pulse_width = pulse_width
        self.traffic_log = traffic_log
        self.baudrate = baudrate
        self._serial: serial.Serial | None = None
        self._lock = threading.Lock()
        self._lines = 0

    def open(self) -> None:
        """Open the port and set every line low."""
        if self._serial is None:
            self._serial = serial.Serial(
                self.port, baudrate=self.baudrate, timeout=0.5, write_timeout=0.5
            )
            self.set_lines(0)

    def close(self) -> None:
        """Set every line low (best effort) and close the port."""
        if self._serial is None:
            return
        try:
            self.set_lines(0)
        except Exception:
            logger.exception("could not reset trigger lines on close")
        finally:
            self._serial.close()
            self._serial = None

    def __enter__(self) -> TriggerBox:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def lines(self) -> int:
        """The output byte last written."""
        return self._lines

    def set_lines(self, value: int) -> float:
        """Set the output lines to ``value``; return the clock after the write."""
        return self._write(value)

    def pulse(self, lines: int = 0x01) -> float:
        """Raise ``lines`` for ``pulse_width`` seconds, then lower every line.

        Returns
        -------
        float
            ``pylsl.local_clock()`` right after the rising byte's ``write()``
            returned: when the trigger left the host.
        """
        if not 0 < lines <= 0xFF:
            raise ValueError(f"lines must be a non-zero byte mask, got {lines!r}")
        with self._lock:
            t = self._write(lines)
            wait_until(t + self.pulse_width)
            self._write(0)
        return t

    def _write(self, value: int) -> float:
        if not 0 <= value <= 0xFF:
            raise ValueError(f"trigger byte must be 0–255, got {value!r}")
        if self._serial is None:
            raise DeviceError(f"trigger box on {self.port} is not open")
        data = _BYTES[value]
        t = write_now(self._serial, data)
        self._lines = value
        if self.traffic_log is not None:
            try:
                self.traffic_log("tx", data, t)
            except Exception:
                logger.exception("traffic_log failed")
        return t
