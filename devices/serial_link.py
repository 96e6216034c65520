"""Opening a stimulator's serial port and passing its bytes to the traffic log.

The Magstim and MagVenture drivers differ in protocol and speed, not in how
they open the port (8N1, no flow control) or hand every byte to a
:data:`~stimtrain.devices.stimulator.TrafficLog`; both live here.
"""

from __future__ import annotations

import logging
import os

import serial
from pylsl import local_clock

from .errors import PortVanished
from .stimulator import TrafficLog

logger = logging.getLogger("stimtrain.devices.serial_link")

__all__ = ["log_traffic", "open_port", "write_now"]


def open_port(
    port: str,
    *,
    baudrate: int,
    timeout: float,
    write_timeout: float,
    device: str,
) -> serial.Serial:
    """Open ``port`` at ``baudrate``, 8 data bits, no parity, 1 stop bit.

    Parameters
    ----------
    port : str
        Serial port path (a pty's slave path works too).
    baudrate : int
        Bits per second.
    timeout, write_timeout : float
        pyserial's read and write timeouts (s).
    device : str
        Name of the device, for the error message.

    Returns
    -------
    serial.Serial
        The open port.

    Raises
    ------
    PortVanished
        The port cannot be opened (naming the device, the port and why).
    """
    try:
        # pyserial tolerates ENOTTY when it sets DTR/RTS on open (a pty).
        return serial.Serial(
            port,
            baudrate=baudrate,
            bytesize=serial.EIGHTBITS,
            parity=serial.PARITY_NONE,
            stopbits=serial.STOPBITS_ONE,
            timeout=timeout,
            write_timeout=write_timeout,
        )
    except serial.SerialException as err:
        raise PortVanished(f"{device}: cannot open {port}: {err}") from err


def log_traffic(
    traffic_log: TrafficLog | None, direction: str, data: bytes, t: float
) -> None:
    """Pass ``data`` to ``traffic_log`` if there is one; never raise.

    A failing log must not fail the command whose bytes it records, so its
    exception is logged and dropped.

    Parameters
    ----------
    traffic_log : callable | None
        ``traffic_log(direction, data, clock_time)``, or None for no log.
    direction : str
        ``"tx"`` (host → device) or ``"rx"`` (device → host).
    data : bytes
        The bytes.
    t : float
        Clock time of the write or read.
    """
    if traffic_log is None:
        return
    try:
        traffic_log(direction, data, t)
    except Exception:
        logger.exception("traffic_log failed")


def write_now(ser: serial.Serial, data: bytes) -> float:
    """Write ``data`` and return ``pylsl.local_clock()`` right after.

    The host-timed path of a pulse: one ``os.write`` on the port's
    non-blocking descriptor, so that nothing but the system call lies between
    the call and the bytes reaching the kernel (pyserial's own ``write`` adds
    a timeout object and a ``select`` before returning: 15 µs on a quiet
    machine, several times that under load). Bytes the kernel does not take
    at once (a full output buffer) go through pyserial's ``write`` with its
    write timeout; the time returned is then after the last of them.

    Parameters
    ----------
    ser : serial.Serial
        An open port.
    data : bytes
        The bytes to send.

    Returns
    -------
    float
        LSL clock time right after the write returned.
    """
    fd = getattr(ser, "fd", None)
    written = 0
    if fd is not None:
        try:
            written = os.write(fd, data)
        except BlockingIOError:
            written = 0
    if written < len(data):
        ser.write(data[written:])
    return local_clock()
