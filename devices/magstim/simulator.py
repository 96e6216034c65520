"""A Magstim 200² / BiStim² / Rapid² simulator speaking the real byte protocol.

It serves on a pseudo-terminal so that the driver under test is the same code
that talks to hardware. Behaviour follows docs/specs/magstim.md; choices made where
the spec is silent are listed in :class:`MagstimSimulator`'s notes. Faults
(dropped bytes, bad checksums, late replies, silence, a pulled cable, an
overheating coil, a refusal to arm) come from a
:class:`~stimtrain.devices.faults.FaultPlan`.

Longer than most because it models one device completely: every command,
reply, timing and fault the driver may meet.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections import deque
from collections.abc import Callable

from pylsl import local_clock

from ..errors import DeviceLimitError
from ..faults import FaultPlan
from ..sim_common import Pulse, SimulatedStimulator
from .capabilities import (
    MagstimModel,
    energy_per_pulse,
    get_model,
    max_frequency_hz,
    min_wait_after_train,
    recharge_time,
)
from .limits import check_train, shortest_pulse_interval
from .protocol import (
    NO_REMOTE_NEEDED,
    RAPID_STATUS_REPLIES,
    InstrumentStatus,
    RapidStatus,
    charge_delay_width,
    crc,
    data_length,
    digits,
    frame,
    rapid_parameter_widths,
)

logger = logging.getLogger("stimtrain.devices.magstim.simulator")

__all__ = ["SYSTEM_MODES", "MagstimSimulator", "Pulse"]

#: BiStim² system-mode characters of the ``X`` reply (single stimulator,
#: simultaneous, BiStim with normal and with high-resolution IPI).
SYSTEM_MODES = {"single": b"0", "simultaneous": b"1", "bistim": b"2", "high_res": b"3"}


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


class MagstimSimulator(SimulatedStimulator):
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
    serial_tolerance : float
        The same for serial single pulses against the 1 Hz (0.5 Hz) limit: a
        host firing at exactly 1 Hz must not be refused for jitter.
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
    unlock_code : str | None
        Rapid software ≥ 9: ``Q`` must carry this code instead of ``@``.
    faults : FaultPlan | None
        What to get wrong (see :class:`~stimtrain.devices.faults.FaultPlan`).
    corrupt_crc_every : int
        Shorthand for ``faults.corrupt_crc_every``.
    silent : bool
        Read commands but never act on or answer them (a dead link). May be
        changed while running; ``faults.silent_after`` does it after N commands.
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
    - ``EH`` over serial on the Rapid family in single-pulse mode is refused
      with ``S`` when the previous pulse (any source) is less than 1 s ago
      (2 s with enhanced power). In train mode ``EH`` or a trigger edge
      starts a train of ``pulses`` at ``frequency`` that the unit times
      itself; it is refused (``S``, or a missed edge) when the frequency is
      above the model's limit at the current power or the train is longer
      than the energy limit allows. After a train the unit waits
      ``max(0.5 s, energy formula)``; during the train and the wait it is
      not ready and refuses train parameter and power changes (``S``).
    - The wait reported by ``\\`` is that formula for the current settings.
    - ``[`` with a non-zero duration selects train mode, 0 single-pulse mode;
      the train length is ``pulses / frequency``, whatever the duration.
    - A BiStim² fire gives pulse A at power A and, if power B is above 0,
      pulse B ``IPI`` later (``IPI`` in ms, or 0.1 ms in high-resolution mode).
    - ``replace_coil`` is reported while the coil is over temperature.
    - Trigger edges read together in one chunk (the reader was late) cannot
      be timed; they are never refused for their spacing, and neither is the
      edge after them (see :meth:`trigger`).
    - Charge delay (``n``/``o``, Rapid v ≥ 9) is stored and reported, not
      simulated.
    - ``I`` reports ``U00``, or ``C07`` while the coil is over temperature
      (the spec lists no error numbers; 07 is this simulator's choice).
    - A refused arm (fault plan) is answered like any ``EB``; the unit just
      stays in standby, as a unit with a charging fault would.
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
        trigger_tolerance: float = 0.001,
        serial_tolerance: float = 0.005,
        power: int = 30,
        ambient_temperature: float = 25.0,
        heating: float = 0.0002,
        cooling_time_constant: float = 300.0,
        max_coil_temperature: float = 40.0,
        unlock_code: str | None = None,
        faults: FaultPlan | None = None,
        corrupt_crc_every: int = 0,
        silent: bool = False,
        frame_timeout: float = 0.1,
    ) -> None:
        self.model = get_model(model)
        faults = faults or FaultPlan()
        if corrupt_crc_every:
            faults = dataclasses.replace(faults, corrupt_crc_every=corrupt_crc_every)
        super().__init__(
            name=f"magstim-{self.model.name}-sim",
            clock=clock,
            faults=faults,
            ambient_temperature=ambient_temperature,
            heating=heating,
            cooling_time_constant=cooling_time_constant,
            max_coil_temperature=max_coil_temperature,
        )
        self.version = tuple(version)
        self.charge_time = charge_time
        self.standby_timeout = standby_timeout
        self.armed_timeout = armed_timeout
        self.auto_disarm_after = auto_disarm_after
        self.rapid_recharge = rapid_recharge
        self.trigger_tolerance = trigger_tolerance
        self.serial_tolerance = serial_tolerance
        self.unlock_code = unlock_code
        self.silent = silent
        self.frame_timeout = frame_timeout

        now = clock()
        self._remote = False
        self._last_refresh = now
        self._armed = False
        self._armed_at = now
        self._charge_end = now
        self._power_end = now
        self._recharge_end = now
        self._busy_until = now  # end of a running train plus its wait
        self._train_times: deque[float] = deque()
        self._power = power
        self._power_b = power
        self._ipi = 0
        self._high_res_ipi = False
        self._enhanced = False
        self._train_mode = False
        self._frequency = 10  # 0.1 Hz
        self._n_pulses = 1
        self._duration = 0  # 0.1 s
        self._charge_delay = 0
        self._ignore_interlock = False
        self._last_pulse: float | None = None
        self._last_pulse_timed = True
        self._buffer = bytearray()
        self._last_rx = now
        self.disconnected = False
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
            "n": self._cmd_set_charge_delay,
            "o": self._cmd_get_charge_delay,
        }

    # ------------------------------------------------------------------ public
    @property
    def corrupt_crc_every(self) -> int:
        """Every n-th reply has a wrong checksum (0: never)."""
        return self.faults.corrupt_crc_every

    @corrupt_crc_every.setter
    def corrupt_crc_every(self, value: int) -> None:
        self.faults = dataclasses.replace(self.faults, corrupt_crc_every=value)

    @property
    def power(self) -> int:
        """Current power A (%)."""
        with self._lock:
            return self._power

    @property
    def armed(self) -> bool:
        """Whether the unit is armed now."""
        with self._lock:
            self._advance(self._clock())
            return self._armed

    @property
    def remote(self) -> bool:
        """Whether the unit is under remote control now."""
        with self._lock:
            self._advance(self._clock())
            return self._remote

    def status(self) -> InstrumentStatus:
        """Instrument status as the unit would report it now."""
        with self._lock:
            now = self._clock()
            self._advance(now)
            return self._instrument(now)

    def trigger(self, t: float | None = None, *, late_read: bool = False) -> bool:
        """A rising edge reached the trigger input.

        Parameters
        ----------
        t : float | None
            Clock time of the edge; now if None.
        late_read : bool
            The edge was read late, together with bytes sent after it, so
            ``t`` is only an upper bound of its real time.

        Returns
        -------
        bool
            True if a pulse (or, in train mode, a train) was started;
            otherwise the edge is counted in :attr:`missed` (not armed, not
            ready, or sooner than ``1/max_frequency`` after the previous
            pulse).

        Notes
        -----
        The rate check compares two read times. A read time is late by the
        reader's scheduling delay, which is unknown; an edge read on its own
        is late by less than the host's pulse width (its falling byte had not
        yet arrived), but an edge read together with later bytes may be late
        by any amount. Comparing with such a stamp would turn the reader's
        delay into an apparently early edge, so the check is made only when
        both edges were read on their own.
        """
        now = self._clock() if t is None else t
        with self._lock:
            self._advance(now)
            timed = not late_read and self._last_pulse_timed
            # Recharge and rate are spacings from the previous pulse: judged
            # only when both time stamps are exact.
            ok = self._ready(now, recharge=timed)
            if ok and timed and self._last_pulse is not None and not self._train_mode:
                interval = 1.0 / max_frequency_hz(self.model, self._power)
                ok = now - self._last_pulse >= interval - self.trigger_tolerance
            if ok and self._train_mode:
                ok = self._train_allowed() is None
            if not ok:
                self._missed += 1
                logger.debug("trigger at %.6f ignored (missed %d)", now, self._missed)
                return False
            pulses = self._start(now, "trigger", late_read=late_read)
        self._notify(pulses)
        return True

    # ----------------------------------------------------------- serial input
    def _frame_length(self, cmd: str) -> int | None:
        """Data bytes of command ``cmd`` on this unit, or None if unknown."""
        if cmd == "Q" and self._needs_unlock_code():
            return len(self.unlock_code)
        return data_length(cmd, self.model.family, self.version[0])

    def _needs_unlock_code(self) -> bool:
        return bool(self.unlock_code) and self.version[0] >= 9

    def _on_data(self, data: bytes, t: float) -> None:
        if self.silent or self.disconnected:
            return
        replies: list[bytes] = []
        pulses: list[Pulse] = []
        hang_up = False
        with self._lock:
            # The unit's own timer gave these before the command arrived; a
            # loaded host may not have ticked this thread since (a real unit
            # would not have waited for it).
            pulses.extend(self._run_train(t))
            self._buffer += data
            self._last_rx = t
            while self._buffer:
                cmd = chr(self._buffer[0])
                n = self._frame_length(cmd)
                if n is not None and len(self._buffer) < n + 2:
                    break  # wait for the rest of the frame
                fault = self._count_command()
                if fault == "disconnect":
                    hang_up = True
                    break
                if fault == "silent":
                    self.silent = True
                    self._buffer.clear()
                    break
                if n is None:
                    logger.info("unknown command byte %r: replying '?'", cmd)
                    replies.append(b"?")
                    self._buffer.clear()
                    break
                command = bytes(self._buffer[: n + 2])
                del self._buffer[: n + 2]
                reply, new = self._execute(command, t)
                replies.append(reply)
                pulses.extend(new)
            for reply in replies:
                # A bad checksum: the last byte (or a lone '?') flipped.
                self._queue_reply(reply, t, checksum_at=-1, flip=0xFF)
            self._flush(t)
        if hang_up:
            self._hang_up()
        self._notify(pulses)

    def _on_tick(self, now: float) -> None:
        pulses: list[Pulse] = []
        with self._lock:
            self._advance(now)
            pulses = self._run_train(now)
            if self._buffer and now - self._last_rx > self.frame_timeout:
                logger.info("discarding incomplete command %r", bytes(self._buffer))
                self._buffer.clear()
            self._flush(now)
        self._notify(pulses)

    def _hang_up(self) -> None:
        """Pull the cable: close the pty so the driver's port reads EOF/EIO."""
        logger.warning(
            "%s: disconnecting after %d commands", self._name, self._n_commands
        )
        self.disconnected = True
        # Ends the serving loop after this pass; stop() closes the rest.
        self._stopping.set()
        for name in ("_master", "_keeper"):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                os.close(fd)

    def _execute(self, command: bytes, t: float) -> tuple[bytes, list[Pulse]]:
        """Run one complete frame; return the reply and the pulses it gave."""
        body = command[:-1]
        if crc(body) != command[-1]:
            logger.info("bad checksum in %r: replying '?'", command)
            return b"?", []
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
                if data != "D":
                    raise _bad(f"version query needs 'D', got {data!r}")
                # Instrument status first, as in every other reply (magstim.md).
                reply = b"N" + bytes([instrument]) + self._version_text() + b"\x00"
                return frame(reply), []
            payload = self._handlers[cmd](data, t)
        except _Refused as refused:
            logger.info("command %r refused (%s): %s", command, refused.code, refused)
            return frame(cmd.encode("latin-1") + refused.code), []
        self._last_refresh = t  # any valid status-returning command
        status = bytes(
            [instrument, rapid] if cmd in RAPID_STATUS_REPLIES else [instrument]
        )
        return frame(cmd.encode("latin-1") + status + payload), self._pulses[n_before:]

    # ---------------------------------------------------------------- state
    def _advance(self, now: float) -> None:
        """Apply everything time does: cooling, timeouts, auto-disarm."""
        self._cool(now)
        if self._remote:
            limit = self.armed_timeout if self._armed else self.standby_timeout
            if now - self._last_refresh > limit:
                logger.warning("remote control timed out after %.3g s", limit)
                self._remote = False
                self._train_times.clear()
                self._disarm("remote control lost")
        if self._armed:
            since = max(self._armed_at, self._last_pulse or self._armed_at)
            if now - since > self.auto_disarm_after and not self._train_times:
                self._disarm(f"not fired for {self.auto_disarm_after:g} s")
            elif self._too_hot():
                self._disarm(f"coil above {self.max_coil_temperature:g} °C")

    def _disarm(self, why: str) -> None:
        if self._armed:
            logger.info("disarming: %s", why)
        self._armed = False
        if self._train_times:
            logger.warning("train stopped after disarm: %s", why)
            self._train_times.clear()

    def _ready(self, now: float, *, recharge: bool = True) -> bool:
        ready_at = max(self._charge_end, self._power_end, self._busy_until)
        if recharge:
            ready_at = max(ready_at, self._recharge_end)
        return self._armed and now >= ready_at

    def _in_train_or_wait(self, now: float) -> bool:
        return bool(self._train_times) or now < self._busy_until

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
            wait=self._in_train_or_wait(now),
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

    def _train_wait(self) -> float:
        """Seconds the unit waits after a train at the current settings."""
        return min_wait_after_train(
            self._n_pulses, self._frequency / 10, min(self._power, 100)
        )

    def _train_allowed(self) -> str | None:
        """Why a train at the current settings would be refused, or None."""
        try:
            check_train(self.model, self._frequency / 10, self._n_pulses, self._power)
        except DeviceLimitError as err:
            return str(err)
        return None

    def _start(self, t: float, source: str, *, late_read: bool = False) -> list[Pulse]:
        """Deliver what a fire command or trigger edge gives at ``t``."""
        if self._train_mode:
            period = 10.0 / self._frequency
            times = [t + k * period for k in range(self._n_pulses)]
            self._busy_until = times[-1] + self._train_wait()
            self._train_times.extend(times[1:])
            return [self._deliver(times[0], "train", late_read=late_read)]
        pulses = [self._deliver(t, source, late_read=late_read)]
        if self.model.family == "bistim" and self._power_b > 0:
            ipi = self._ipi / (10_000 if self._high_res_ipi else 1000)
            pulses.append(self._deliver(t + ipi, source, unit="B"))
        return pulses

    def _run_train(self, now: float) -> list[Pulse]:
        """Deliver the due pulses of a train the unit is running itself."""
        pulses = []
        # The unit's own timer: pulses are stamped at their scheduled times.
        while self._train_times and self._train_times[0] <= now and self._armed:
            pulses.append(self._deliver(self._train_times.popleft(), "train"))
        return pulses

    def _deliver(
        self, t: float, source: str, *, unit: str = "A", late_read: bool = False
    ) -> Pulse:
        power = self._power if unit == "A" else self._power_b
        pulse = Pulse(t, power, source, unit, late_read)
        overheated = self._record_pulse(pulse, self.heating * energy_per_pulse(power))
        if unit == "A":
            self._last_pulse = t
            self._last_pulse_timed = not late_read
        if self.model.family == "rapid":
            self._recharge_end = max(self._recharge_end, t + self.rapid_recharge)
        else:
            self._recharge_end = t + recharge_time(self.model, self._power)
        if overheated:
            self._temperature = max(self._temperature, self.max_coil_temperature + 5)
        if self._too_hot():
            self._disarm(f"coil above {self.max_coil_temperature:g} °C")
        return pulse

    def _version_text(self) -> bytes:
        return ".".join(str(v) for v in self.version).encode("ascii")

    # ------------------------------------------------------------- commands
    def _cmd_remote_on(self, data: str, t: float) -> bytes:
        if self._needs_unlock_code() and data != self.unlock_code:
            raise _bad("wrong unlock code")
        if not self._needs_unlock_code() and data != "@":
            raise _bad(f"expected '@', got {data!r}")
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

    def _no_change_during_train(self, t: float) -> None:
        if self._in_train_or_wait(t):
            raise _state("train running or waiting after a train")

    def _cmd_power_a(self, data: str, t: float) -> bytes:
        power = _number(data)
        if not self.model.min_power <= power <= self._power_limit():
            raise _bad(f"power {power} outside 0–{self._power_limit()}")
        self._no_change_during_train(t)
        self._set_power(power, t)
        return b""

    def _cmd_power_b(self, data: str, t: float) -> bytes:
        power = _number(data)
        if not self.model.min_power <= power <= self.model.max_power:
            raise _bad(f"power B {power} out of range")
        self._power_b = power
        return b""

    def _cmd_ipi(self, data: str, t: float) -> bytes:
        value = _number(data)
        if self._armed:
            raise _state("cannot change the IPI while armed")
        self._ipi = value
        return b""

    def _cmd_mode(self, data: str, t: float) -> bytes:
        if data == "A":
            self._disarm("disarm command")
        elif data == "B":
            if self._too_hot():
                raise _state("coil over temperature")
            if self.faults.refuse_arm:
                logger.warning("arming refused (fault plan)")
            elif not self._armed:
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
                why = self._train_allowed()
                if why is not None:
                    raise _state(why)
            elif self._last_pulse is not None:
                shortest, rule = shortest_pulse_interval(
                    self.model, self._power, enhanced=self._enhanced
                )
                if t - self._last_pulse < shortest - self.serial_tolerance:
                    raise _state(rule)
        self._start(t, "serial")

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
        if self._power_b == 0:
            return SYSTEM_MODES["single"]
        if self._ipi == 0:
            return SYSTEM_MODES["simultaneous"]
        return SYSTEM_MODES["high_res" if self._high_res_ipi else "bistim"]

    def _cmd_rapid_parameters(self, data: str, t: float) -> bytes:
        widths = rapid_parameter_widths(self.version[0])
        wait = math.ceil(round(self._train_wait() * 10, 6))
        values = (self._power, self._frequency, self._n_pulses, self._duration, wait)
        return b"".join(digits(v, w) for v, w in zip(values, widths, strict=True))

    def _cmd_frequency(self, data: str, t: float) -> bytes:
        value = _number(data)
        if not 1 <= value <= round(self.model.max_train_frequency_hz * 10):
            raise _bad(f"frequency {value / 10} Hz out of range")
        self._no_change_during_train(t)
        self._frequency = value
        return b""

    def _cmd_n_pulses(self, data: str, t: float) -> bytes:
        value = _number(data)
        if not 1 <= value <= self.model.max_train_pulses:
            raise _bad(f"{value} pulses out of range")
        self._no_change_during_train(t)
        self._n_pulses = value
        return b""

    def _cmd_duration(self, data: str, t: float) -> bytes:
        value = _number(data)
        if value and self._enhanced:
            raise _state("enhanced power allows single-pulse mode only")
        self._no_change_during_train(t)
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
        # Over temperature is the one fault the simulated unit has.
        return b"U00" if not self._too_hot() else b"C07"

    def _extended_status(self) -> bytes:
        # Charge delay set: bit 2 of the LSB (sources disagree on the byte).
        return bytes([0, 0b100 if self._charge_delay else 0])

    def _cmd_system_status(self, data: str, t: float) -> bytes:
        return self._extended_status()

    def _cmd_set_charge_delay(self, data: str, t: float) -> bytes:
        value = _number(data)
        if not 0 <= value <= (10_000 if self.version[0] >= 10 else 2000):
            raise _bad(f"charge delay {value} out of range")
        if self._armed:
            raise _state("cannot change the charge delay while armed")
        self._charge_delay = value
        return self._extended_status() if self.version[0] >= 10 else b""

    def _cmd_get_charge_delay(self, data: str, t: float) -> bytes:
        return digits(self._charge_delay, charge_delay_width(self.version[0]))
