"""Serial driver for the Magstim 200², BiStim² and Rapid² family.

One class for all models: the differences (which command reads the power back,
reply widths, keep-alive command) come from the model's protocol family and
the Rapid software version. Every reply's checksum is checked.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import serial
from pylsl import local_clock

from ..errors import DeviceError, DeviceTimeout
from .capabilities import MagstimModel, get_model
from .protocol import (
    InstrumentStatus,
    RapidStatus,
    Reply,
    digits,
    encode,
    parse_reply,
    parse_version,
    rapid_parameter_widths,
    reply_length,
)

logger = logging.getLogger("stimtrain.devices.magstim.driver")

TrafficLog = Callable[[str, bytes, float], None]


class Magstim:
    """Drive a Magstim stimulator over its serial port.

    Parameters
    ----------
    port : str
        Serial port path (a real port or a simulator's pty).
    model : str
        A key of :data:`~stimtrain.devices.magstim.capabilities.MODELS`.
    timeout : float
        Seconds to wait for each reply.
    traffic_log : callable | None
        ``traffic_log(direction, data, clock_time)`` is called for every
        write (``"tx"``) and read (``"rx"``).
    version : tuple of int | None
        Rapid software version if known; otherwise it is read with ``N``
        when remote control is enabled (``N`` needs remote control).

    Notes
    -----
    The driver never touches RTS/DTR (a pty has no modem lines). All bytes
    go through one lock, so a keep-alive thread and the caller never
    interleave commands. Leaving the context manager disarms (best effort)
    and closes the port.
    """

    def __init__(
        self,
        port: str,
        model: str | MagstimModel = "rapid2",
        *,
        timeout: float = 0.5,
        traffic_log: TrafficLog | None = None,
        version: tuple[int, ...] | None = None,
    ) -> None:
        self.port = port
        self.model = get_model(model)
        self.timeout = timeout
        self.traffic_log = traffic_log
        self._version = tuple(version) if version is not None else None
        self._serial: serial.Serial | None = None
        self._lock = threading.RLock()
        self._enhanced = False

    # ---------------------------------------------------------------- link
    def open(self) -> None:
        """Open the serial port (9600 8N1, no flow control)."""
        with self._lock:
            if self._serial is not None:
                return
            # pyserial tolerates ENOTTY when it sets DTR/RTS on open.
            self._serial = serial.Serial(
                self.port,
                baudrate=9600,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                timeout=self.timeout,
                write_timeout=self.timeout,
            )
            logger.info("opened %s (%s)", self.port, self.model.label)

    def close(self) -> None:
        """Close the serial port (idempotent)."""
        with self._lock:
            if self._serial is not None:
                self._serial.close()
                self._serial = None

    @property
    def is_open(self) -> bool:
        """Whether the port is open."""
        return self._serial is not None

    def __enter__(self) -> Magstim:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.is_open:
                self.disarm()
        except Exception:
            logger.exception("disarm on exit failed")
        finally:
            self.close()

    # ------------------------------------------------------------ commands
    def remote_control(self, enable: bool = True) -> InstrumentStatus:
        """Enable (``Q``) or disable (``R``) remote control.

        On the Rapid family, enabling also reads the software version if it
        is not known yet (reply widths depend on it).
        """
        reply = self._command("Q" if enable else "R")
        if enable and self.model.family == "rapid" and self._version is None:
            self.version()
        return reply.instrument

    def keep_alive(self) -> InstrumentStatus:
        """Send a status-returning command that keeps remote control alive.

        Rapid software v9 and later use ``x``; everything else ``Q@``. Send
        it at least every 500 ms while armed.
        """
        if self.model.family == "rapid" and self._version and self._version[0] >= 9:
            return self._command("x").instrument
        return self._command("Q").instrument

    def set_power(self, power: int) -> None:
        """Set power A (%) and read it back.

        Raises
        ------
        ValueError
            ``power`` is outside the model's range.
        DeviceError
            The unit reports a different power afterwards.
        """
        limit = self.model.max_power
        if self._enhanced and self.model.enhanced_max_power is not None:
            limit = self.model.enhanced_max_power
        if isinstance(power, bool) or int(power) != power:
            raise ValueError(f"power must be an integer percentage, got {power!r}")
        power = int(power)
        if not self.model.min_power <= power <= limit:
            raise ValueError(
                f"{self.model.label}: power {power} % outside "
                f"{self.model.min_power}–{limit} %"
            )
        self._command("@", digits(power, 3))
        actual = self.get_power()
        if actual != power:
            raise DeviceError(
                f"Magstim command '@': set power {power} %, unit reports {actual} %"
            )

    def get_power(self) -> int:
        """Read power A (%) back (``J`` on 200²/BiStim², ``\\`` on Rapid)."""
        cmd = "\\" if self.model.family == "rapid" else "J"
        if cmd == "\\":
            self._ensure_version()
        return int(self._command(cmd).data[:3])

    def arm(self) -> None:
        """Arm (``EB``); the unit becomes ready after it has charged."""
        self._command("E", "B")

    def disarm(self) -> None:
        """Disarm (``EA``; accepted even without remote control)."""
        self._command("E", "A")

    def wait_ready(self, timeout: float = 2.0, poll: float = 0.02) -> InstrumentStatus:
        """Poll the status until the unit is armed and ready.

        Raises
        ------
        DeviceError
            The unit is (or fell back) in standby.
        DeviceTimeout
            Not ready within ``timeout`` seconds.
        """
        deadline = local_clock() + timeout
        while True:
            status = self.status()
            if status.ready:
                return status
            if not status.armed:
                raise DeviceError(f"wait_ready: unit is not armed (status {status})")
            if local_clock() > deadline:
                raise DeviceTimeout(
                    f"wait_ready: expected ready within {timeout:g} s, last status "
                    f"{status}"
                )
            time.sleep(poll)

    def fire(self) -> float:
        """Fire one pulse over serial (``EH``).

        Returns
        -------
        float
            ``pylsl.local_clock()`` right after ``write()`` returned: when the
            trigger left the host.

        Raises
        ------
        CommandRejected
            The unit refused (not ready, rate limit, …); no pulse was given.
        """
        _, sent = self._transact("E", "H")
        return sent

    def status(self) -> InstrumentStatus:
        """Read the instrument status without side effects.

        Uses ``J`` on 200²/BiStim², ``\\`` on a Rapid whose version is known,
        and ``F`` otherwise: all are accepted without remote control.
        """
        if self.model.family != "rapid":
            return self._command("J").instrument
        if self._version is None:
            return self._command("F").instrument
        return self._command("\\").instrument

    def rapid_parameters(self) -> dict[str, object]:
        """Rapid parameters (``\\``): power, frequency, pulses, duration, wait."""
        self._require_rapid("\\")
        self._ensure_version()
        reply = self._command("\\")
        values, pos = [], 0
        for width in rapid_parameter_widths(self._version[0]):
            values.append(int(reply.data[pos : pos + width]))
            pos += width
        power, freq, pulses, duration, wait = values
        return {
            "power": power,
            "frequency_hz": freq / 10,
            "n_pulses": pulses,
            "duration_s": duration / 10,
            "wait_s": wait / 10,
            "rapid_status": reply.rapid,
        }

    def rapid_status(self) -> RapidStatus:
        """Rapid status byte (via ``\\``)."""
        return self.rapid_parameters()["rapid_status"]

    def set_enhanced_power(self, enable: bool = True) -> None:
        """Switch Rapid enhanced power (up to 110 %) on (``^``) or off (``_``)."""
        self._require_rapid("^")
        self._command("^" if enable else "_")
        self._enhanced = enable

    def temperature(self) -> tuple[float, float]:
        """Coil temperatures (°C) of both sensors (``F``)."""
        data = self._command("F").data
        return int(data[:3]) / 10, int(data[3:6]) / 10

    def version(self) -> tuple[int, ...]:
        """Rapid software version (``N``; needs remote control)."""
        self._require_rapid("N")
        reply = self._command("N", "D")
        self._version = parse_version(reply.data)
        return self._version

    # ------------------------------------------------------------ internals
    def _require_rapid(self, cmd: str) -> None:
        if self.model.family != "rapid":
            raise DeviceError(
                f"Magstim command {cmd!r} exists on the Rapid family only"
            )

    def _ensure_version(self) -> None:
        if self._version is None:
            self.version()

    def _command(self, cmd: str, data: bytes | str = b"@") -> Reply:
        return self._transact(cmd, data)[0]

    def _transact(self, cmd: str, data: bytes | str = b"@") -> tuple[Reply, float]:
        frame = encode(cmd, data)
        major = self._version[0] if self._version else 9
        expected = reply_length(cmd, self.model.family, major)
        with self._lock:
            ser = self._require_open()
            ser.reset_input_buffer()  # drop late bytes of an earlier failure
            ser.write(frame)
            sent = local_clock()
            self._log("tx", frame, sent)
            raw = self._read_reply(ser, cmd)
        return parse_reply(cmd, raw, expected_length=expected), sent

    def _read_reply(self, ser: serial.Serial, cmd: str) -> bytes:
        first = self._read(ser, 1, cmd)
        if first == b"?":
            return first
        second = self._read(ser, 1, cmd)
        if second in (b"?", b"S"):
            return first + second + self._read(ser, 1, cmd)
        if cmd == "N":
            text = second
            while not text.endswith(b"\x00"):
                text += self._read(ser, 1, cmd)
            return first + text + self._read(ser, 1, cmd)
        major = self._version[0] if self._version else 9
        n = reply_length(cmd, self.model.family, major)
        return first + second + self._read(ser, n - 2, cmd)

    def _read(self, ser: serial.Serial, n: int, cmd: str) -> bytes:
        data = ser.read(n)
        if data:
            self._log("rx", data, local_clock())
        if len(data) < n:
            raise DeviceTimeout(
                f"Magstim command {cmd!r}: expected {n} more reply byte(s) within "
                f"{self.timeout:g} s on {self.port}, got {data!r}"
            )
        return data

    def _require_open(self) -> serial.Serial:
        if self._serial is None:
            raise DeviceError(f"Magstim on {self.port} is not open; call open() first")
        return self._serial

    def _log(self, direction: str, data: bytes, t: float) -> None:
        if self.traffic_log is None:
            return
        try:
            self.traffic_log(direction, data, t)
        except Exception:
            logger.exception("traffic_log failed")
