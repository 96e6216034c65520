"""A Magstim 200² / BiStim² / Rapid² simulator speaking the real byte protocol.

It serves on a pseudo-terminal so that the driver under test is the same code
that talks to hardware. Behaviour follows specs/magstim.md; choices made where
the spec is silent are listed in :class:`MagstimSimulator`'s notes.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

from pylsl import local_clock

from ..pty import PtyServer
from .capabilities import (
    MagstimModel,
    energy_per_pulse,
    get_model,
    max_frequency_hz,
    recharge_time,
)
from .protocol import (
    NO_REMOTE_NEEDED,
    RAPID_STATUS_REPLIES,
    InstrumentStatus,
    RapidStatus,
    crc,
    data_length,
    digits,
    frame,
    rapid_parameter_widths,
)

logger = logging.getLogger("stimtrain.devices.magstim.simulator")


@dataclass(frozen=True)
class Pulse:
    """One delivered pulse.

    Attributes
    ----------
    time : float
        Clock time (s) when the complete fire command was read, or when the
        trigger edge arrived.
    power : int
        Power (%) at that moment.
    source : str
        ``"serial"`` or ``"trigger"``.
    """

    time: float
    power: int
    source: str


class _Refused(Exception):
    """Internal: reply ``<cmd><code><crc>`` instead of a status reply."""

    def __init__(self, code: bytes, why: str) -> None:
        super().__init__(why)
        self.code = code


def _bad(why: str) -> _Refused:
    return _Refused(b"?", why)


def _state(why: str) -> _Refused:
    return _Refused(b"S", why)


def _number(data: str) -> int:
    if not data.isdigit():
        raise _bad(f"{data!r} is not a decimal number")
    return int(data)


class MagstimSimulator(PtyServer):
    """Simulated Magstim unit on a pty.

    Parameters
    ----------
    model : str | MagstimModel
        A key of :data:`~stimtrain.devices.magstim.capabilities.MODELS`, or a
        model object (e.g. a variant made with :func:`dataclasses.replace`).
    charge_time : float
        Seconds from arming to ready.
    clock : callable
        Clock for every time stamp (default :func:`pylsl.local_clock`).
    version : tuple of int
        Rapid software version reported by ``N``; its major number selects
        the field widths (default 9).
    standby_timeout, armed_timeout : float
        Remote control is dropped (and the unit disarmed) when no valid
        status-returning command arrives for this long (spec: 10 s, 1 s).
    auto_disarm_after : float
        An armed unit that is not fired for this long disarms itself.
    rapid_recharge : float
        Seconds a Rapid-family unit reports "not ready" after a single pulse.
        Kept well below the shortest pulse interval (100 Hz → 10 ms) so that
        host-timed triggers at theta-burst rates work; the frequency table
        is what limits triggers.
    trigger_tolerance : float
        Trigger edges up to this much earlier than ``1/max_frequency`` after
        the previous pulse are still accepted (host timing jitter).
    power : int
        Power (%) at power-on.
    ambient_temperature : float
        Coil temperature (°C) at start, and what it cools towards.
    heating : float
        Coil temperature rise (°C) per joule of pulse energy.
    cooling_time_constant : float
        Seconds for the coil's excess temperature to fall by a factor e.
    max_coil_temperature : float
        Above this (°C) the unit disarms and refuses to arm.
    corrupt_crc_every : int
        Fault injection: if > 0, every n-th reply has a wrong checksum.
    silent : bool
        Fault injection: read commands but never act on or answer them (a
        dead link). May be changed while running.
    frame_timeout : float
        An incomplete command older than this is discarded.

    Notes
    -----
    Choices where the spec is silent:

    - A command with a bad checksum gets the single byte ``?`` and changes
      nothing (it does not refresh remote control either).
    - After an unknown command byte the rest of what was buffered is
      discarded, so stray data bytes are not read as commands.
    - Remote control is checked before data; ``R`` also disarms.
    - ``EH`` over serial on the Rapid family is refused with ``S`` when the
      previous pulse (any source) is less than 1 s ago (2 s with enhanced
      power), or when the unit is in train mode: train delivery is not
      simulated yet, the train parameters ``B``, ``D``, ``[`` are only
      validated and stored.
    - Trigger edges always give a single pulse, whatever the train settings.
    - ``replace_coil`` is reported while the coil is over temperature.
    - The BiStim² commands are accepted and stored, but only one stimulator's
      pulse is simulated; ``X`` reports mode ``1``.
    - The simulated unit needs no unlock code with ``Q``.
    """

    def __init__(
        self,
        model: str | MagstimModel = "rapid2",
        *,
        charge_time: float = 0.3,
        clock: Callable[[], float] = local_clock,
        version: tuple[int, ...] = (9, 0, 0),
        standby_timeout: float = 10.0,
        armed_timeout: float = 1.0,
        auto_disarm_after: float = 60.0,
        rapid_recharge: float = 0.005,
        trigger_tolerance: float = 0.0005,
        power: int = 30,
        ambient_temperature: float = 25.0,
        heating: float = 0.0002,
        cooling_time_constant: float = 300.0,
        max_coil_temperature: float = 40.0,
        corrupt_crc_every: int = 0,
        silent: bool = False,
        frame_timeout: float = 0.1,
    ) -> None:
        self.model = get_model(model)
        super().__init__(name=f"magstim-{self.model.name}-sim", clock=clock)
        self.version = tuple(version)
        self.charge_time = charge_time
        self.standby_timeout = standby_timeout
        self.armed_timeout = armed_timeout
        self.auto_disarm_after = auto_disarm_after
        self.rapid_recharge = rapid_recharge
        self.trigger_tolerance = trigger_tolerance
        self.ambient_temperature = ambient_temperature
        self.heating = heating
        self.cooling_time_constant = cooling_time_constant
        self.max_coil_temperature = max_coil_temperature
        self.corrupt_crc_every = corrupt_crc_every
        self.silent = silent
        self.frame_timeout = frame_timeout

        self._lock = threading.Lock()
        self._listeners: list[Callable[[Pulse], None]] = []
        now = clock()
        self._remote = False
        self._last_refresh = now
        self._armed = False
        self._armed_at = now
        self._charge_end = now
        self._power_end = now
        self._recharge_end = now
        self._power = power
        self._power_b = power
        self._ipi = 0
        self._high_res_ipi = False
        self._enhanced = False
        self._train_mode = False
        self._frequency = 10  # 0.1 Hz
        self._n_pulses = 1
        self._duration = 0  # 0.1 s
        self._wait = 5  # 0.1 s
        self._ignore_interlock = False
        self._temperature = ambient_temperature
        self._temperature_time = now
        self._pulses: list[Pulse] = []
        self._last_pulse: float | None = None
        self._missed = 0
        self._buffer = bytearray()
        self._last_rx = now
        self._n_replies = 0
        self._handlers: dict[str, Callable[[str, float], bytes]] = {
            "Q": self._cmd_remote_on,
            "R": self._cmd_remote_off,
            "@": self._cmd_power_a,
            "A": self._cmd_power_b,
            "C": self._cmd_ipi,
            "E": self._cmd_mode,
            "J": self._cmd_parameters,
            "F": self._cmd_temperature,
            "Y": self._cmd_high_res_on,
            "Z": self._cmd_high_res_off,
            "X": self._cmd_system_mode,
            "\\": self._cmd_rapid_parameters,
            "B": self._cmd_frequency,
            "D": self._cmd_n_pulses,
            "[": self._cmd_duration,
            "^": self._cmd_enhanced_on,
            "_": self._cmd_enhanced_off,
            "b": self._cmd_ignore_interlock,
            "I": self._cmd_error_code,
            "x": self._cmd_system_status,
        }

    # ------------------------------------------------------------------ public
    @property
    def pulses(self) -> list[Pulse]:
        """Copy of every pulse delivered so far."""
        with self._lock:
            return list(self._pulses)

    @property
    def missed(self) -> int:
        """Trigger edges that did not produce a pulse."""
        with self._lock:
            return self._missed

    @property
    def power(self) -> int:
        """Current power A (%)."""
        with self._lock:
            return self._power

    @property
    def coil_temperature(self) -> float:
        """Coil temperature (°C) now."""
        with self._lock:
            self._advance(self._clock())
            return self._temperature

    @coil_temperature.setter
    def coil_temperature(self, value: float) -> None:
        with self._lock:
            now = self._clock()
            self._advance(now)
            self._temperature = float(value)
            self._temperature_time = now
            self._advance(now)

    def status(self) -> InstrumentStatus:
        """Instrument status as the unit would report it now."""
        with self._lock:
            now = self._clock()
            self._advance(now)
            return self._instrument(now)

    def add_pulse_listener(self, callback: Callable[[Pulse], None]) -> None:
        """Call ``callback(pulse)`` for every delivered pulse.

        It runs on the thread that delivered the pulse (the serial thread for
        ``EH``, the caller of :meth:`trigger` for edges), outside any lock;
        keep it short.
        """
        with self._lock:
            self._listeners.append(callback)

    def remove_pulse_listener(self, callback: Callable[[Pulse], None]) -> None:
        """Stop calling ``callback``."""
        with self._lock:
            self._listeners.remove(callback)

    def trigger(self, t: float | None = None) -> bool:
        """A rising edge reached the trigger input.

        Parameters
        ----------
        t : float | None
            Clock time of the edge; now if None.

        Returns
        -------
        bool
            True if a pulse was delivered; otherwise the edge is counted in
            :attr:`missed` (not armed, not ready, or sooner than
            ``1/max_frequency`` after the previous pulse).
        """
        now = self._clock() if t is None else t
        with self._lock:
            self._advance(now)
            ok = self._ready(now)
            if ok and self._last_pulse is not None:
                interval = 1.0 / max_frequency_hz(self.model, self._power)
                ok = now - self._last_pulse >= interval - self.trigger_tolerance
            if not ok:
                self._missed += 1
                logger.debug("trigger at %.6f ignored (missed %d)", now, self._missed)
                return False
            pulse = self._deliver(now, "trigger")
        self._notify(pulse)
        return True

    # ----------------------------------------------------------- serial input
    def _on_data(self, data: bytes, t: float) -> None:
        if self.silent:
            return
        replies: list[bytes] = []
        pulses: list[Pulse] = []
        with self._lock:
            self._buffer += data
            self._last_rx = t
            family, major = self.model.family, self.version[0]
            while self._buffer:
                cmd = chr(self._buffer[0])
                n = data_length(cmd, family, major)
                if n is None:
                    logger.info("unknown command byte %r: replying '?'", cmd)
                    replies.append(b"?")
                    self._buffer.clear()
                    break
                if len(self._buffer) < n + 2:
                    break  # wait for the rest of the frame
                command = bytes(self._buffer[: n + 2])
                del self._buffer[: n + 2]
                reply, pulse = self._execute(command, t)
                replies.append(self._maybe_corrupt(reply))
                if pulse is not None:
                    pulses.append(pulse)
        for reply in replies:
            self._write(reply)
        for pulse in pulses:
            self._notify(pulse)

    def _on_tick(self, now: float) -> None:
        with self._lock:
            self._advance(now)
            if self._buffer and now - self._last_rx > self.frame_timeout:
                logger.info("discarding incomplete command %r", bytes(self._buffer))
                self._buffer.clear()

    def _maybe_corrupt(self, reply: bytes) -> bytes:
        self._n_replies += 1
        every = self.corrupt_crc_every
        if every and self._n_replies % every == 0:
            return reply[:-1] + bytes([reply[-1] ^ 0xFF])
        return reply

    def _execute(self, command: bytes, t: float) -> tuple[bytes, Pulse | None]:
        """Run one complete frame; return the reply and the pulse, if any."""
        body = command[:-1]
        if crc(body) != command[-1]:
            logger.info("bad checksum in %r: replying '?'", command)
            return b"?", None
        self._advance(t)
        cmd, data = chr(command[0]), body[1:].decode("latin-1")
        # The reply reports the status *before* the command takes effect.
        instrument = self._instrument(t).to_byte()
        rapid = self._rapid(t).to_byte()
        n_before = len(self._pulses)
        try:
            if not self._remote and cmd not in NO_REMOTE_NEEDED:
                if cmd + data not in NO_REMOTE_NEEDED:
                    raise _state("remote control is off")
            if cmd == "N":
                return frame(b"N" + self._version_text() + b"\x00"), None
            payload = self._handlers[cmd](data, t)
        except _Refused as refused:
            logger.info("command %r refused (%s): %s", command, refused.code, refused)
            return frame(cmd.encode("latin-1") + refused.code), None
        self._last_refresh = t  # any valid status-returning command
        status = bytes(
            [instrument, rapid] if cmd in RAPID_STATUS_REPLIES else [instrument]
        )
        pulse = self._pulses[-1] if len(self._pulses) > n_before else None
        return frame(cmd.encode("latin-1") + status + payload), pulse

    # ---------------------------------------------------------------- state
    def _advance(self, now: float) -> None:
        """Apply everything time does: cooling, timeouts, auto-disarm."""
        dt = now - self._temperature_time
        if dt > 0:
            excess = self._temperature - self.ambient_temperature
            decay = math.exp(-dt / self.cooling_time_constant)
            self._temperature = self.ambient_temperature + excess * decay
            self._temperature_time = now
        if self._remote:
            limit = self.armed_timeout if self._armed else self.standby_timeout
            if now - self._last_refresh > limit:
                logger.warning("remote control timed out after %.3g s", limit)
                self._remote = False
                self._disarm("remote control lost")
        if self._armed:
            since = max(self._armed_at, self._last_pulse or self._armed_at)
            if now - since > self.auto_disarm_after:
                self._disarm(f"not fired for {self.auto_disarm_after:g} s")
            elif self._too_hot():
                self._disarm(f"coil above {self.max_coil_temperature:g} °C")

    def _too_hot(self) -> bool:
        return self._temperature > self.max_coil_temperature

    def _disarm(self, why: str) -> None:
        if self._armed:
            logger.info("disarming: %s", why)
        self._armed = False

    def _ready(self, now: float) -> bool:
        ready_at = max(self._charge_end, self._power_end, self._recharge_end)
        return self._armed and now >= ready_at

    def _instrument(self, now: float) -> InstrumentStatus:
        return InstrumentStatus(
            standby=not self._armed,
            armed=self._armed,
            ready=self._ready(now),
            coil_present=True,
            replace_coil=self._too_hot(),
            remote_control=self._remote,
        )

    def _rapid(self, now: float) -> RapidStatus:
        return RapidStatus(
            enhanced_power=self._enhanced,
            train=self._train_mode,
            single_pulse_mode=not self._train_mode,
            hv_psu=True,
            coil_ready=not self._too_hot(),
        )

    def _set_power(self, power: int, t: float) -> None:
        # About 10 ms per % up and 100 ms per % down; not ready meanwhile.
        delta = power - self._power
        change = 0.01 * delta if delta > 0 else 0.1 * -delta
        self._power_end = max(self._power_end, t + change)
        self._power = power

    def _deliver(self, t: float, source: str) -> Pulse:
        pulse = Pulse(t, self._power, source)
        self._pulses.append(pulse)
        self._last_pulse = t
        if self.model.family == "rapid":
            self._recharge_end = t + self.rapid_recharge
        else:
            self._recharge_end = t + recharge_time(self.model, self._power)
        self._temperature += self.heating * energy_per_pulse(self._power)
        if self._too_hot():
            self._disarm(f"coil above {self.max_coil_temperature:g} °C")
        return pulse

    def _notify(self, pulse: Pulse) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for callback in listeners:
            try:
                callback(pulse)
            except Exception:
                logger.exception("pulse listener %r failed", callback)

    def _version_text(self) -> bytes:
        return ".".join(str(v) for v in self.version).encode("ascii")

    # ------------------------------------------------------------- commands
    def _cmd_remote_on(self, data: str, t: float) -> bytes:
        self._remote = True
        return b""

    def _cmd_remote_off(self, data: str, t: float) -> bytes:
        self._remote = False
        self._disarm("remote control disabled")
        return b""

    def _power_limit(self) -> int:
        if self._enhanced and self.model.enhanced_max_power is not None:
            return self.model.enhanced_max_power
        return self.model.max_power

    def _cmd_power_a(self, data: str, t: float) -> bytes:
        power = _number(data)
        if not self.model.min_power <= power <= self._power_limit():
            raise _bad(f"power {power} outside 0–{self._power_limit()}")
        self._set_power(power, t)
        return b""

    def _cmd_power_b(self, data: str, t: float) -> bytes:
        power = _number(data)
        if not self.model.min_power <= power <= self.model.max_power:
            raise _bad(f"power B {power} out of range")
        self._power_b = power
        return b""

    def _cmd_ipi(self, data: str, t: float) -> bytes:
        self._ipi = _number(data)
        return b""

    def _cmd_mode(self, data: str, t: float) -> bytes:
        if data == "A":
            self._disarm("disarm command")
        elif data == "B":
            if self._too_hot():
                raise _state("coil over temperature")
            if not self._armed:
                self._armed = True
                self._armed_at = t
                self._charge_end = t + self.charge_time
        elif data == "H":
            self._fire_serial(t)
        else:
            raise _bad(f"mode {data!r} is not A, B or H")
        return b""

    def _fire_serial(self, t: float) -> None:
        if not self._ready(t):
            raise _state("not armed and ready")
        if self.model.family == "rapid":
            if self._train_mode:
                logger.warning("train delivery is not simulated: EH refused")
                raise _state("train mode is not simulated")
            rate = (
                self.model.serial_max_rate_enhanced_hz
                if self._enhanced
                else self.model.serial_max_rate_hz
            )
            if self._last_pulse is not None and t - self._last_pulse < 1.0 / rate:
                raise _state(f"serial single pulses limited to {rate:g} Hz")
        self._deliver(t, "serial")

    def _cmd_parameters(self, data: str, t: float) -> bytes:
        return digits(self._power, 3) + digits(self._power_b, 3) + digits(self._ipi, 3)

    def _cmd_temperature(self, data: str, t: float) -> bytes:
        tenths = min(999, max(0, round(self._temperature * 10)))
        # Both sensors report the same simulated coil.
        return digits(tenths, 3) * 2

    def _cmd_high_res_on(self, data: str, t: float) -> bytes:
        if self._armed:
            raise _state("cannot change IPI resolution while armed")
        self._high_res_ipi = True
        return b""

    def _cmd_high_res_off(self, data: str, t: float) -> bytes:
        if self._armed:
            raise _state("cannot change IPI resolution while armed")
        self._high_res_ipi = False
        return b""

    def _cmd_system_mode(self, data: str, t: float) -> bytes:
        return b"1"

    def _cmd_rapid_parameters(self, data: str, t: float) -> bytes:
        widths = rapid_parameter_widths(self.version[0])
        values = (self._power, self._frequency, self._n_pulses, self._duration)
        values += (self._wait,)
        return b"".join(digits(v, w) for v, w in zip(values, widths, strict=True))

    def _cmd_frequency(self, data: str, t: float) -> bytes:
        value = _number(data)
        if not 1 <= value <= round(self.model.max_train_frequency_hz * 10):
            raise _bad(f"frequency {value / 10} Hz out of range")
        self._frequency = value
        return b""

    def _cmd_n_pulses(self, data: str, t: float) -> bytes:
        value = _number(data)
        if not 1 <= value <= self.model.max_train_pulses:
            raise _bad(f"{value} pulses out of range")
        self._n_pulses = value
        return b""

    def _cmd_duration(self, data: str, t: float) -> bytes:
        value = _number(data)
        if value and self._enhanced:
            raise _state("enhanced power allows single-pulse mode only")
        self._duration = value
        self._train_mode = value > 0
        return b""

    def _cmd_enhanced_on(self, data: str, t: float) -> bytes:
        if self._train_mode:
            raise _state("enhanced power needs single-pulse mode")
        self._enhanced = True
        return b""

    def _cmd_enhanced_off(self, data: str, t: float) -> bytes:
        self._enhanced = False
        if self._power > self.model.max_power:
            self._set_power(self.model.max_power, t)
        return b""

    def _cmd_ignore_interlock(self, data: str, t: float) -> bytes:
        logger.warning("coil safety interlock ignored on request")
        self._ignore_interlock = True
        return b""

    def _cmd_error_code(self, data: str, t: float) -> bytes:
        return b"U00"

    def _cmd_system_status(self, data: str, t: float) -> bytes:
        return b"\x00\x00"
