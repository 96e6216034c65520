"""Serial driver for the Magstim 200², BiStim² and Rapid² family.

One class for all models: the differences (which command reads a value back,
reply widths, keep-alive command) come from the model's protocol family and
the Rapid software version. Every reply's checksum is checked, every value
set is read back, and device limits are checked before anything is written.

One module, longer than most, because it is one abstraction in the manner of
pyserial's: the complete command set of every Magstim model behind one class,
which callers never need to ask about.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

import serial
from pylsl import local_clock

from ..errors import (
    CommandRejected,
    CRCError,
    DeviceError,
    DeviceLimitError,
    DeviceTimeout,
    PortVanished,
    RemoteControlLost,
)
from ..serial_link import log_traffic, open_port, write_now
from ..stimulator import Capabilities, Stimulator, StimulatorState, TrafficLog
from . import limits
from .capabilities import (
    MagstimModel,
    get_model,
    min_wait_after_train,
    stimulator_capabilities,
)
from .protocol import (
    InstrumentStatus,
    RapidStatus,
    Reply,
    charge_delay_width,
    digits,
    encode,
    parse_reply,
    parse_version,
    rapid_parameter_widths,
    reply_length,
)

logger = logging.getLogger("stimtrain.devices.magstim.driver")

#: Host-side slack on the serial single-pulse and recharge limits (s): the
#: unit sees the same spacing as the host, give or take the link's jitter.
_RATE_SLACK_S = 0.001


@dataclass(frozen=True)
class RapidParameters:
    """Rapid parameters as the ``\\`` reply reports them.

    Attributes
    ----------
    power : int
        Power A (%).
    frequency_hz : float
        Train frequency.
    n_pulses : int
        Pulses per train.
    duration_s : float
        Train duration; 0 means single-pulse mode.
    wait_s : float
        Wait after a train, as the unit computes it.
    rapid_status : RapidStatus
        The Rapid status byte of the reply.
    instrument : InstrumentStatus
        The instrument status byte of the reply.
    """

    power: int
    frequency_hz: float
    n_pulses: int
    duration_s: float
    wait_s: float
    rapid_status: RapidStatus
    instrument: InstrumentStatus


@dataclass(frozen=True)
class SystemStatus:
    """Rapid system status (``x``, software v ≥ 9).

    ``plus1_module``, ``special_trigger_mode`` and ``charge_delay_set`` are
    bits 0–2 of the extended status LSB (the spec notes that sources
    disagree on the byte).
    """

    instrument: InstrumentStatus
    rapid: RapidStatus
    extended: int
    plus1_module: bool
    special_trigger_mode: bool
    charge_delay_set: bool


class Magstim(Stimulator):
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
    unlock_code : str | None
        Rapid software ≥ 9 units that need it: sent with ``Q`` instead of
        the ``@`` padding byte.
    crc_retries : int
        How often a command whose reply had a bad checksum is sent again
        (default once; 0 when the caller retries itself).

    Notes
    -----
    The driver never touches RTS/DTR (a pty has no modem lines). All bytes
    go through one lock, so a keep-alive thread and the caller never
    interleave commands.

    Link supervision: a reply with a bad checksum is asked for once more
    (the command is re-sent; never a fire command, which could give a second
    pulse), then :class:`~stimtrain.devices.errors.CRCError`; a missing or
    short reply raises :class:`~stimtrain.devices.errors.DeviceTimeout`; a
    port that vanished (EOF/EIO) raises
    :class:`~stimtrain.devices.errors.PortVanished` now and for every later
    command; :meth:`keep_alive` raises
    :class:`~stimtrain.devices.errors.RemoteControlLost` when the unit
    reports that it dropped remote control.
    """

    keep_alive_interval_s = 0.5

    def __init__(
        self,
        port: str,
        model: str | MagstimModel = "rapid2",
        *,
        timeout: float = 0.5,
        traffic_log: TrafficLog | None = None,
        version: tuple[int, ...] | None = None,
        unlock_code: str | None = None,
        crc_retries: int = 1,
    ) -> None:
        self.port = port
        self.crc_retries = crc_retries
        self.model = get_model(model)
        self.capabilities: Capabilities = stimulator_capabilities(self.model)
        self.timeout = timeout
        self.traffic_log = traffic_log
        if unlock_code is not None and (
            not unlock_code or not unlock_code.isascii() or "\x00" in unlock_code
        ):
            raise ValueError(
                f"unlock_code must be non-empty ASCII, got {unlock_code!r}"
            )
        self.unlock_code = unlock_code
        self._version = tuple(version) if version is not None else None
        self._serial: serial.Serial | None = None
        self._lock = threading.RLock()
        self._gone: str | None = None
        self._remote = False
        self._enhanced = False
        self._high_res = False
        self._power: int | None = None
        # Rapid train settings as last read back: (Hz, pulses, train mode).
        self._train: tuple[float, int, bool] | None = None
        self._last_fire: float | None = None
        self._busy_until = 0.0  # end of a device-run train plus its wait
        #: Clock time a pulse was prepared for (see prepare_fire).
        self._ready_at: float | None = None

    # ---------------------------------------------------------------- link
    def open(self) -> None:
        """Open the serial port (9600 8N1, no flow control)."""
        with self._lock:
            if self._serial is not None:
                return
            self._serial = open_port(
                self.port,
                baudrate=9600,
                timeout=self.timeout,
                write_timeout=self.timeout,
                device=self.model.label,
            )
            self._gone = None
            logger.info("opened %s (%s)", self.port, self.model.label)

    def close(self) -> None:
        """Disarm (best effort) and close the serial port (idempotent)."""
        with self._lock:
            if self._serial is None:
                return
            if self._gone is None:
                try:
                    self.disarm()
                except Exception:
                    logger.exception("disarm on close failed")
            self._serial.close()
            self._serial = None
            self._remote = False

    @property
    def is_open(self) -> bool:
        """Whether the port is open."""
        return self._serial is not None

    @property
    def software_version(self) -> tuple[int, ...] | None:
        """Rapid software version, once known."""
        return self._version

    # ------------------------------------------------------ remote control
    def remote_control(self, enable: bool = True) -> InstrumentStatus:
        """Enable (``Q``) or disable (``R``) remote control, and check it.

        On the Rapid family, enabling also reads the software version (reply
        widths depend on it) and the train settings.

        Returns
        -------
        InstrumentStatus
            The status read back after the change.

        Raises
        ------
        DeviceError
            The status read back does not show the change.
        """
        if enable:
            code = self.unlock_code if self.unlock_code is not None else "@"
            self._command("Q", code)
        else:
            self._command("R")
        self._remote = enable
        if enable and self.model.family == "rapid":
            if self._version is None:
                self.version()
            self.rapid_parameters()
        status = self.status()
        if status.remote_control != enable:
            self._remote = False
            raise DeviceError(
                f"{self.model.label}: remote control {'on' if enable else 'off'} "
                f"was sent, but the unit reports remote control "
                f"{'on' if status.remote_control else 'off'}"
            )
        return status

    def keep_alive(self) -> InstrumentStatus:
        """Keep remote control alive; detect that it was lost.

        Rapid software v9 and later use ``x``; everything else ``Q``. Send it
        at least every 500 ms while armed (:attr:`keep_alive_interval_s`).

        Raises
        ------
        RemoteControlLost
            The unit reports remote control off although it was enabled: it
            timed out (and disarmed itself). The driver disarms once more
            and gives up remote control.
        """
        try:
            if self._uses_system_status():
                status = self._command("x").instrument
            else:
                code = self.unlock_code if self.unlock_code is not None else "@"
                status = self._command("Q", code).instrument
        except CommandRejected as err:
            # ``x`` needs remote control: refused for state means it is gone.
            if not (self._remote and err.reason == "state"):
                raise
            status = None
        if self._remote and (status is None or not status.remote_control):
            self._remote = False
            try:
                self.disarm()
            except DeviceError:
                logger.exception("disarm after loss of remote control failed")
            seen = "refused" if status is None else f"reply status {status}"
            raise RemoteControlLost(
                f"{self.model.label} on {self.port}: remote control was lost "
                f"(keep-alive {seen}); the unit disarmed"
            )
        return status

    def _uses_system_status(self) -> bool:
        return (
            self.model.family == "rapid"
            and self._version is not None
            and self._version[0] >= 9
        )

    # ----------------------------------------------------------- intensity
    def set_power(self, power: int) -> None:
        """Set power A (%) and read it back.

        Raises
        ------
        DeviceLimitError
            ``power`` is outside the model's range, or (Rapid in train mode)
            the train settings would break the frequency or energy limits at
            that power, or a train or its wait is running. Nothing is sent.
        DeviceError
            The unit reports a different power afterwards.
        """
        value = limits.check_power(self.model, power, enhanced=self._enhanced)
        if self.model.family == "rapid":
            self._check_not_busy("power")
            if self._train is not None and self._train[2]:
                limits.check_train(self.model, self._train[0], self._train[1], value)
        self._command("@", digits(value, 3))
        actual = self.get_power()
        self._compare("power", value, actual, "%")

    def get_power(self) -> int:
        """Read power A (%) back (``J`` on 200²/BiStim², ``\\`` on Rapid)."""
        if self.model.family == "rapid":
            return self.rapid_parameters().power
        return self._parameters()[0]

    def set_power_b(self, power: int) -> None:
        """Set power B (%) of a BiStim² and read it back."""
        self._require("bistim", "A")
        value = limits.check_power(self.model, power, name="power B")
        self._command("A", digits(value, 3))
        self._compare("power B", value, self._parameters()[1], "%")

    def get_power_b(self) -> int:
        """Read power B (%) of a BiStim² back (``J``)."""
        self._require("bistim", "J")
        return self._parameters()[1]

    def set_intensity(self, value: float, value_b: float | None = None) -> None:
        """Set the output in %MSO and read it back.

        ``value_b`` sets power B of a BiStim²; any other model refuses it.
        """
        if value_b is not None and self.model.family != "bistim":
            raise DeviceLimitError(
                f"{self.model.label} has one channel; got a second intensity "
                f"{value_b!r}"
            )
        self.set_power(value)
        if value_b is not None:
            self.set_power_b(value_b)

    # ---------------------------------------------- delivery-path hooks
    def program_train(self, frequency_hz: float, pulses: int) -> None:
        """Program a Rapid device-run train (see :meth:`set_train`)."""
        if self.model.family != "rapid":
            super().program_train(frequency_hz, pulses)
        self.set_train(frequency_hz, pulses)

    def start_train(self) -> float:
        """A Rapid in train mode runs its train on the fire command."""
        if self.model.family != "rapid":
            return super().start_train()
        return self.fire()

    def single_pulse_mode(self) -> None:
        """A Rapid left in train mode (by this program or another) would answer
        a fire with a whole train: set its duration to 0."""
        if self.model.family == "rapid":
            self.set_duration(0)

    def set_paired(self, conditioning: float, test: float, isi_ms: float) -> None:
        """A BiStim² fires stimulator A, then B after its IPI."""
        if self.model.family != "bistim":
            super().set_paired(conditioning, test, isi_ms)
        self.set_intensity(conditioning, test)
        self.set_ipi(isi_ms)

    # -------------------------------------------------------------- BiStim
    def _parameters(self) -> tuple[int, int, int]:
        data = self._command("J").data
        self._power = int(data[0:3])
        return self._power, int(data[3:6]), int(data[6:9])

    def set_ipi(self, ipi_ms: float) -> None:
        """Set the BiStim² inter-pulse interval in ms (0: simultaneous).

        In normal mode the IPI is whole ms (0–999); in high-resolution mode
        0.1 ms steps up to 99.9 ms. Not while armed.
        """
        self._require("bistim", "C")
        value = limits.check_ipi(ipi_ms, high_resolution=self._high_res)
        self._check_disarmed("IPI")
        self._command("C", digits(value, 3))
        self._compare("IPI", value, self._parameters()[2], "(units)")

    def get_ipi(self) -> float:
        """Read the BiStim² inter-pulse interval back, in ms."""
        self._require("bistim", "J")
        raw = self._parameters()[2]
        return raw / 10 if self._high_res else float(raw)

    def set_high_resolution(self, enable: bool = True) -> None:
        """Switch BiStim² high-resolution IPI (0.1 ms steps) on (``Y``) or off.

        Not while armed. The unit keeps the IPI digits, so the interval they
        mean changes by a factor 10: set the IPI again afterwards. Read back
        through the system mode when the unit is in BiStim mode.
        """
        self._require("bistim", "Y")
        self._check_disarmed("IPI resolution")
        self._command("Y" if enable else "Z")
        self._high_res = enable
        mode = self.system_mode()
        if mode in ("2", "3") and (mode == "3") != enable:
            raise DeviceError(
                f"{self.model.label}: high-resolution IPI "
                f"{'on' if enable else 'off'} was sent, unit reports system mode "
                f"{mode!r}"
            )

    def system_mode(self) -> str:
        """BiStim² system mode character (``X``): ``"0"`` single stimulator,
        ``"1"`` simultaneous, ``"2"`` BiStim, ``"3"`` BiStim high resolution."""
        self._require("bistim", "X")
        return self._command("X").data.decode("latin-1")

    # ---------------------------------------------------------------- Rapid
    def version(self) -> tuple[int, ...]:
        """Rapid software version (``N``; needs remote control)."""
        self._require("rapid", "N")
        reply = self._command("N", "D")
        self._version = parse_version(reply.data)
        return self._version

    def _ensure_version(self) -> int:
        if self._version is None:
            self.version()
        return self._version[0]

    def rapid_parameters(self) -> RapidParameters:
        """Rapid parameters (``\\``): power, frequency, pulses, duration, wait."""
        self._require("rapid", "\\")
        major = self._ensure_version()
        reply = self._command("\\")
        values, pos = [], 0
        for width in rapid_parameter_widths(major):
            values.append(int(reply.data[pos : pos + width]))
            pos += width
        power, freq, pulses, duration, wait = values
        params = RapidParameters(
            power=power,
            frequency_hz=freq / 10,
            n_pulses=pulses,
            duration_s=duration / 10,
            wait_s=wait / 10,
            rapid_status=reply.rapid,
            instrument=reply.instrument,
        )
        self._power = power
        self._enhanced = reply.rapid.enhanced_power
        self._train = (params.frequency_hz, pulses, duration > 0)
        return params

    def rapid_status(self) -> RapidStatus:
        """Rapid status byte (via ``\\``)."""
        return self.rapid_parameters().rapid_status

    def set_enhanced_power(self, enable: bool = True) -> None:
        """Switch Rapid enhanced power (up to 110 %) on (``^``) or off (``_``).

        Only in single-pulse mode; serial single pulses are then limited to
        0.5 Hz. Read back from the Rapid status.
        """
        self._require("rapid", "^")
        if enable and self._train is not None and self._train[2]:
            raise DeviceLimitError(
                f"{self.model.label}: enhanced power needs single-pulse mode "
                "(train duration 0)"
            )
        self._command("^" if enable else "_")
        actual = self.rapid_status().enhanced_power
        self._compare("enhanced power", enable, actual, "")

    def _check_busy(self) -> float:
        return self._busy_until - local_clock()

    def _check_not_busy(self, what: str) -> None:
        left = self._check_busy()
        if left > 0:
            raise DeviceLimitError(
                f"{self.model.label}: {what} cannot change during a train or the "
                f"wait after it ({left:.2f} s left)"
            )

    def _current_train(self) -> tuple[float, int, bool]:
        if self._train is None:
            self.rapid_parameters()
        return self._train

    def _current_power(self) -> int:
        if self._power is None:
            self._power = self.get_power()
        return self._power

    def set_frequency(self, frequency_hz: float) -> None:
        """Set the Rapid train frequency (0.1 Hz steps) and read it back."""
        self._require("rapid", "B")
        value = limits.check_frequency(self.model, frequency_hz)
        self._check_not_busy("train frequency")
        _, n_pulses, train_mode = self._current_train()
        # In single-pulse mode only the frequency table applies (one pulse).
        limits.check_train(
            self.model, value / 10, n_pulses if train_mode else 1, self._current_power()
        )
        self._command("B", digits(value, 4))
        actual = self.rapid_parameters().frequency_hz
        self._compare("train frequency", value / 10, actual, "Hz")

    def set_pulses(self, n_pulses: int) -> None:
        """Set the pulses per Rapid train and read it back."""
        self._require("rapid", "D")
        value = limits.check_pulses(self.model, n_pulses)
        self._check_not_busy("pulses per train")
        frequency, _, train_mode = self._current_train()
        if train_mode:
            limits.check_train(self.model, frequency, value, self._current_power())
        width = 5 if self._ensure_version() >= 9 else 4
        self._command("D", digits(value, width))
        actual = self.rapid_parameters().n_pulses
        self._compare("pulses per train", value, actual, "")

    def set_duration(self, duration_s: float) -> None:
        """Set the Rapid train duration (0.1 s steps); 0 is single-pulse mode."""
        self._require("rapid", "[")
        major = self._ensure_version()
        value = limits.check_duration(self.model, duration_s, major)
        width = 4 if major >= 9 else 3
        self._check_not_busy("train duration")
        if value:
            if self._enhanced:
                raise DeviceLimitError(
                    f"{self.model.label}: train mode (duration {duration_s!r} s) "
                    "needs enhanced power off"
                )
            frequency, n_pulses, _ = self._current_train()
            limits.check_train(self.model, frequency, n_pulses, self._current_power())
        self._command("[", digits(value, width))
        actual = self.rapid_parameters().duration_s
        self._compare("train duration", value / 10, actual, "s")

    def set_train(self, frequency_hz: float, n_pulses: int) -> RapidParameters:
        """Program a device-run train: ``n_pulses`` at ``frequency_hz``.

        Sets single-pulse mode first (so intermediate settings are never
        armed as a train), then frequency, pulses, and the duration
        ``n_pulses / frequency`` rounded up to 0.1 s, which selects train
        mode. Every limit is checked before the first byte is sent.

        Returns
        -------
        RapidParameters
            The parameters read back.
        """
        self._require("rapid", "B")
        freq = limits.check_frequency(self.model, frequency_hz) / 10
        n = limits.check_pulses(self.model, n_pulses)
        if self._enhanced:
            raise DeviceLimitError(
                f"{self.model.label}: trains need enhanced power off"
            )
        self._check_not_busy("train")
        limits.check_train(self.model, freq, n, self._current_power())
        self.set_duration(0)
        self.set_frequency(freq)
        self.set_pulses(n)
        self.set_duration(max(1, math.ceil(round(n / freq * 10, 6))) / 10)
        return self.rapid_parameters()

    def min_wait_after_train(self) -> float:
        """Seconds the unit must rest after the programmed train (energy limit)."""
        frequency, n_pulses, _ = self._current_train()
        return min_wait_after_train(
            n_pulses, frequency, min(self._current_power(), 100)
        )

    def ignore_coil_safety_interlock(self, *, confirm: bool = False) -> None:
        """Make the Rapid ignore its coil safety interlock switch (``b``).

        Never sent by default: only for coils without the switch, and only
        with ``confirm=True``.
        """
        self._require("rapid", "b")
        if confirm is not True:
            raise DeviceLimitError(
                f"{self.model.label}: ignoring the coil safety interlock needs "
                f"confirm=True, got confirm={confirm!r}"
            )
        logger.warning("%s: coil safety interlock ignored", self.model.label)
        self._command("b")

    def error_code(self) -> tuple[str, int]:
        """Rapid error code (``I``): source (``U``/``C``/``E``) and number."""
        self._require("rapid", "I")
        data = self._command("I").data
        return data[:1].decode("latin-1"), int(data[1:3])

    def system_status(self) -> SystemStatus:
        """Rapid system status (``x``, software v ≥ 9)."""
        self._require("rapid", "x")
        if self._ensure_version() < 9:
            raise DeviceError(
                f"{self.model.label}: system status needs software v9 or later, "
                f"unit has {self._version_text()}"
            )
        reply = self._command("x")
        ext = reply.data[0] << 8 | reply.data[1]
        return SystemStatus(
            instrument=reply.instrument,
            rapid=reply.rapid,
            extended=ext,
            plus1_module=bool(ext & 1),
            special_trigger_mode=bool(ext & 2),
            charge_delay_set=bool(ext & 4),
        )

    def set_charge_delay(self, delay_ms: int) -> None:
        """Set the Rapid charge delay (``n``, v ≥ 9; ms) and read it back."""
        self._require("rapid", "n")
        major = self._ensure_version()
        if major < 9:
            raise DeviceError(
                f"{self.model.label}: charge delay needs software v9 or later, "
                f"unit has {self._version_text()}"
            )
        value = limits.check_charge_delay(delay_ms, major)
        self._check_disarmed("charge delay")
        self._command("n", digits(value, charge_delay_width(major)))
        self._compare("charge delay", value, self.get_charge_delay(), "ms")

    def get_charge_delay(self) -> int:
        """Read the Rapid charge delay (``o``, v ≥ 9) in ms."""
        self._require("rapid", "o")
        if self._ensure_version() < 9:
            raise DeviceError(
                f"{self.model.label}: charge delay needs software v9 or later, "
                f"unit has {self._version_text()}"
            )
        return int(self._command("o").data)

    def _version_text(self) -> str:
        return ".".join(map(str, self._version or ()))

    # --------------------------------------------------------- arm and fire
    def arm(self) -> None:
        """Arm (``EB``) and check that the unit left standby.

        The unit becomes ready after it has charged (:meth:`wait_ready`).

        Raises
        ------
        DeviceError
            The unit is still in standby after the command (refused to arm).
        """
        self._command("E", "B")
        status = self.status()
        if not status.armed:
            raise DeviceError(
                f"{self.model.label}: arm was sent but the unit is still in standby "
                f"(status {status})"
            )

    def disarm(self) -> None:
        """Disarm (``EA``; accepted even without remote control) and check it."""
        self._command("E", "A")
        status = self.status()
        if status.armed:
            raise DeviceError(
                f"{self.model.label}: disarm was sent but the unit is still armed "
                f"(status {status})"
            )

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

    def _check_fire(self, now: float) -> None:
        """Refuse a fire command that would break a device limit."""
        power = self._current_power()
        if self.model.family == "rapid" and self._train is not None and self._train[2]:
            left = self._busy_until - now
            if left > 0:
                raise DeviceLimitError(
                    f"{self.model.label}: fire refused: the previous train's wait "
                    f"has {left:.2f} s left"
                )
            limits.check_train(self.model, self._train[0], self._train[1], power)
            return
        shortest, rule = limits.shortest_pulse_interval(
            self.model, power, enhanced=self._enhanced
        )
        if self._last_fire is not None:
            since = now - self._last_fire
            if since < shortest - _RATE_SLACK_S:
                raise DeviceLimitError(
                    f"{self.model.label}: fire refused: {rule}; the previous pulse "
                    f"was {since:.3f} s ago"
                )

    def prepare_fire(self, at: float) -> None:
        """Do now what a pulse at clock time ``at`` needs before its write.

        Checks the device limits for a pulse at ``at`` and drops stale input,
        so that :meth:`fire`, called at or after ``at``, goes straight to the
        write: a host-timed pulse then leaves within the write's own system
        call of its deadline.

        Raises
        ------
        DeviceLimitError
            A pulse at ``at`` would break a device limit (see :meth:`fire`).
        """
        with self._lock:
            self._check_fire(at)
            self._require_open().reset_input_buffer()
            self._ready_at = at

    def fire(self) -> float:
        """Fire one pulse (in Rapid train mode: start the train) by ``EH``.

        Returns
        -------
        float
            ``pylsl.local_clock()`` right after ``write()`` returned: when the
            trigger left the host.

        Raises
        ------
        DeviceLimitError
            Too soon after the previous pulse (1 Hz serial single pulses,
            0.5 Hz with enhanced power; recharge time on 200²/BiStim²), or
            during a train's wait, or the train breaks an energy limit.
            Nothing was sent.
        CommandRejected
            The unit refused (not ready, …); no pulse was given.
        CRCError
            The reply was corrupted; the command is not re-sent because the
            pulse may have been given.
        """
        with self._lock:
            now = local_clock()
            ready, self._ready_at = self._ready_at, None
            # Limits only loosen with time: checked for `ready`, they hold now.
            if ready is None or now < ready:
                self._check_fire(now)
            _, sent = self._transact("E", "H", resend=False, flush=ready is None)
            self._last_fire = sent
            train = self._train
            if self.model.family == "rapid" and train is not None and train[2]:
                self._busy_until = sent + limits.train_busy_time(
                    train[0], train[1], self._current_power()
                )
        return sent

    # --------------------------------------------------------------- status
    def status(self) -> InstrumentStatus:
        """Read the instrument status without side effects.

        Uses ``J`` on 200²/BiStim², ``\\`` on a Rapid whose version is known,
        and ``F`` otherwise: all are accepted without remote control.
        """
        if self.model.family != "rapid":
            return self._command("J").instrument
        if self._version is None:
            return self._command("F").instrument
        return self.rapid_parameters().instrument

    def temperature(self) -> tuple[float, float]:
        """Coil temperatures (°C) of both sensors (``F``)."""
        data = self._command("F").data
        return int(data[:3]) / 10, int(data[3:6]) / 10

    def state(self) -> StimulatorState:
        """Query status, intensity and coil temperature; return the common state."""
        errors: list[str] = []
        if self.model.family == "rapid" and self._version is not None:
            params = self.rapid_parameters()
            status, power, power_b = params.instrument, params.power, None
        elif self.model.family == "rapid":
            status, power, power_b = self.status(), None, None
        else:
            reply = self._command("J")
            status = reply.instrument
            power, power_b = int(reply.data[0:3]), int(reply.data[3:6])
            if self.model.family != "bistim":
                power_b = None
        if status.replace_coil:
            errors.append("replace coil (over temperature)")
        if status.error_present:
            kind = "fatal error" if status.error_fatal else "error"
            if self.model.family == "rapid" and self._remote:
                source, code = self.error_code()
                kind += f" {source}{code:02d}"
            errors.append(kind)
        return StimulatorState(
            remote_control=status.remote_control,
            armed=status.armed,
            ready=status.ready,
            intensity=power,
            intensity_b=power_b,
            coil_temperature=self.temperature()[0],
            errors=tuple(errors),
        )

    # ------------------------------------------------------------ internals
    def _require(self, family: str, cmd: str) -> None:
        if self.model.family != family:
            names = {"rapid": "Rapid family", "bistim": "BiStim²", "200": "200²"}
            raise DeviceError(
                f"Magstim command {cmd!r} exists on the {names[family]} only, "
                f"not on the {self.model.label}"
            )

    def _check_disarmed(self, what: str) -> None:
        if self.status().armed:
            raise DeviceLimitError(
                f"{self.model.label}: {what} cannot change while armed; disarm first"
            )

    def _compare(self, name: str, sent: object, read: object, unit: str) -> None:
        if sent != read:
            raise DeviceError(
                f"{self.model.label}: {name} read back does not match: sent "
                f"{sent} {unit}, unit reports {read} {unit}".replace("  ", " ")
            )

    def _command(self, cmd: str, data: bytes | str = b"@") -> Reply:
        return self._transact(cmd, data)[0]

    def _transact(
        self,
        cmd: str,
        data: bytes | str = b"@",
        *,
        resend: bool = True,
        flush: bool = True,
    ) -> tuple[Reply, float]:
        frame = encode(cmd, data)
        major = self._version[0] if self._version else 9
        expected = reply_length(cmd, self.model.family, major)
        retries = self.crc_retries if resend else 0
        with self._lock:
            for attempt in range(retries + 1):
                raw, sent = self._exchange(frame, cmd, flush=flush or attempt > 0)
                try:
                    return parse_reply(cmd, raw, expected_length=expected), sent
                except CRCError as err:
                    if not resend:
                        raise CRCError(
                            f"{err}; not re-sent (the command may have acted)"
                        ) from err
                    if attempt == retries:
                        times = "one retry" if retries == 1 else f"{retries} retries"
                        raise CRCError(
                            f"{err} (also after {times})" if retries else str(err)
                        ) from err
                    logger.warning("%s; retrying", err)
        raise AssertionError("unreachable")

    def _exchange(
        self, frame: bytes, cmd: str, *, flush: bool = True
    ) -> tuple[bytes, float]:
        """Write one frame and read its reply; map link failures to errors."""
        ser = self._require_open()
        try:
            if flush:
                ser.reset_input_buffer()  # drop late bytes of an earlier failure
            sent = write_now(ser, frame)
            self._log("tx", frame, sent)
            return self._read_reply(ser, cmd), sent
        except serial.SerialTimeoutException as err:
            raise DeviceTimeout(
                f"Magstim command {cmd!r}: write to {self.port} did not finish "
                f"within {self.timeout:g} s"
            ) from err
        except (serial.SerialException, OSError) as err:
            self._gone = f"{type(err).__name__}: {err}"
            self._remote = False
            raise PortVanished(
                f"{self.model.label} on {self.port}: the port vanished during "
                f"command {cmd!r} ({err})"
            ) from err

    def _read_reply(self, ser: serial.Serial, cmd: str) -> bytes:
        first = self._read(ser, 1, cmd)
        if first == b"?":
            return first
        second = self._read(ser, 1, cmd)
        if second in (b"?", b"S"):
            return first + second + self._read(ser, 1, cmd)
        if cmd == "N":
            # The instrument status byte (which may itself be 0x00) comes
            # first; an older form starts with the version's digits at once.
            text = b"" if not second.isdigit() else second
            while not text.endswith(b"\x00"):
                text += self._read(ser, 1, cmd)
            head = first if second.isdigit() else first + second
            return head + text + self._read(ser, 1, cmd)
        major = self._version[0] if self._version else 9
        n = reply_length(cmd, self.model.family, major)
        return first + second + self._read(ser, n - 2, cmd)

    def _read(self, ser: serial.Serial, n: int, cmd: str) -> bytes:
        data = ser.read(n)
        if data:
            self._log("rx", data, local_clock())
        if len(data) < n:
            hint = ""
            if cmd == "Q" and self.unlock_code is None:
                hint = " (a Rapid with software v9+ may need an unlock code)"
            raise DeviceTimeout(
                f"Magstim command {cmd!r}: expected {n} more reply byte(s) within "
                f"{self.timeout:g} s on {self.port}, got {data!r}{hint}"
            )
        return data

    def _require_open(self) -> serial.Serial:
        if self._gone is not None:
            raise PortVanished(
                f"{self.model.label} on {self.port}: the port vanished earlier "
                f"({self._gone}); reopen it"
            )
        if self._serial is None:
            raise DeviceError(f"Magstim on {self.port} is not open; call open() first")
        return self._serial

    def _log(self, direction: str, data: bytes, t: float) -> None:
        log_traffic(self.traffic_log, direction, data, t)
