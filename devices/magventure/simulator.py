"""A MagVenture MagPro simulator speaking the real framed byte protocol.

It serves on a pseudo-terminal so that the driver under test is the same code
that talks to hardware. Behaviour follows docs/specs/magventure.md; choices made
where the spec is silent are listed in :class:`MagVentureSimulator`'s notes.

Slightly longer than most because it models one device completely.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from dataclasses import replace

from pylsl import local_clock

from ..faults import FaultPlan
from ..sim_common import Pulse, SimulatedStimulator
from .capabilities import (
    MAX_COIL_TEMPERATURE_C,
    MagProModel,
    get_model,
)
from .protocol import (
    BA_RATIOS,
    PAGES,
    AmplitudeFrame,
    Command,
    Delays,
    FrameParser,
    LongStatus,
    ModeByte,
    ModeSettings,
    PageFrame,
    PulseFrame,
    Status,
    TemperatureFrame,
    TrainSettings,
    encode_frame,
    ipi_table,
    nearest_index,
)

logger = logging.getLogger("stimtrain.devices.magventure.simulator")

__all__ = ["MagVentureSimulator", "Pulse"]


class MagVentureSimulator(SimulatedStimulator):
    """Simulated MagPro R30 / X100 on a pty.

    Parameters
    ----------
    model : str | MagProModel
        A key of :data:`~stimtrain.devices.magventure.capabilities.MODELS`.
    faults : FaultPlan
        What to get wrong (see :class:`~stimtrain.devices.faults.FaultPlan`).
        Every frame sent counts as a reply, pushed frames included.
    clock : callable
        Clock for every time stamp (default :func:`pylsl.local_clock`).
    amplitude : int
        Amplitude A (%) at power-on.
    serial_number : int
        Reported in the status frames (3 bytes).
    coil_type : int
        Coil type code reported (default 60, Cool-B65).
    ambient_temperature : float
        Coil temperature (°C) at start and what it cools towards.
    heating : float
        Coil temperature rise (°C) per pulse at 100 % (scales with output²).
    cooling_time_constant : float
        Seconds for the coil's excess temperature to fall by a factor e.
    max_coil_temperature : float
        Above this (°C) the unit disables itself and refuses to enable.
    charge_time : float | None
        Seconds from enable until the unit can fire; None: the recharge time
        at the current amplitude (charging the capacitor is a recharge).
    reply_delay : float
        Seconds before each reply (the real unit answers in 20–80 ms).
    frame_timeout : float
        An incomplete command older than this is discarded.

    Notes
    -----
    Choices where the spec is silent:

    - Fire (0x03) when not enabled, before the charge time after enable has
      passed, or sooner than the recharge time after the previous pulse, is
      ignored: no pulse, no reply. The same holds for
      trigger edges, which are counted in :attr:`missed`.
    - Enable refused (coil too hot, or ``faults.refuse_arm``) answers one id-1
      frame with the enabled bit clear.
    - Set train (0x06) and trigger/charge delays (0x08) are not answered (the
      public drivers expect no reply); values are rounded to the grid and kept.
    - Page (0x07) pushes an id-8 frame. Start train (0x04) pushes id 8 with
      "running" set, one id-2 frame per pulse, and id 8 with "running" clear at
      the end; it is ignored with id 8 "not running" when not enabled or when
      the rate exceeds what the output allows. Disable stops a running train.
    - In the Biphasic Burst waveform every trigger (fire, edge, train pulse)
      gives ``burst_pulses`` pulses ``ipi_ms`` apart; a train's rate counts
      bursts. Pulses of a train are stamped at their scheduled device times.
    - Set mode (0x09) answers the id-9 readback; a mode or waveform the model
      does not offer is not applied (the readback shows the old one). IPI and
      B/A ratio are rounded to the nearest table entry.
    - In Twin mode an amplitude command without B sets B to A × B/A ratio.
    - The trigger-in delay shifts pulses from trigger edges.
    - Changing the amplitude while enabled takes no extra time (the power
      change time of a real unit is not modelled).
    - ``faults.disconnect_after`` closes the pty master as a pulled cable
      would; the driver then reads EIO.
    """

    def __init__(
        self,
        model: str | MagProModel = "magpro_x100",
        *,
        faults: FaultPlan | None = None,
        clock: Callable[[], float] = local_clock,
        amplitude: int = 30,
        serial_number: int = 0x01F2A3,
        coil_type: int = 60,
        ambient_temperature: float = 25.0,
        heating: float = 0.02,
        cooling_time_constant: float = 300.0,
        max_coil_temperature: float = MAX_COIL_TEMPERATURE_C,
        charge_time: float | None = None,
        reply_delay: float = 0.0,
        frame_timeout: float = 0.1,
    ) -> None:
        self.model = get_model(model)
        super().__init__(
            name=f"{self.model.key}-sim",
            clock=clock,
            tick=0.005,
            faults=faults,
            ambient_temperature=ambient_temperature,
            heating=heating,
            cooling_time_constant=cooling_time_constant,
            max_coil_temperature=max_coil_temperature,
        )
        self.serial_number = serial_number
        self.charge_time = charge_time
        self.reply_delay = reply_delay
        self.frame_timeout = frame_timeout

        self._parser = FrameParser()
        now = clock()
        self._last_rx = now
        self._enabled = False
        self._amp_a = amplitude
        self._amp_b = amplitude
        self._coil_type = coil_type
        self._settings = ModeSettings(model=self.model.model_code)
        self._train = TrainSettings(1.0, 10, 1, 1.0)
        self._delays = Delays()
        self._page = PAGES["main"]
        self._reported_temperature = round(ambient_temperature)
        self._last_pulse: float | None = None
        self._ready_at = now
        self._overheated = False
        self._gone = False
        self._dummy_w: int | None = None
        # Pulse times a running train still has to deliver.
        self._train_times: list[float] = []

    # ------------------------------------------------------------------ public
    @property
    def enabled(self) -> bool:
        """Whether the unit is enabled (armed)."""
        with self._lock:
            return self._enabled

    @property
    def amplitude(self) -> tuple[int, int]:
        """Amplitudes A and B (%)."""
        with self._lock:
            return self._amp_a, self._amp_b

    @property
    def settings(self) -> ModeSettings:
        """Mode, direction, waveform, burst, IPI and B/A ratio in force."""
        with self._lock:
            return self._settings

    @property
    def train(self) -> TrainSettings:
        """Train settings of the Timing page (rounded to the grid)."""
        with self._lock:
            return self._train

    @property
    def delays(self) -> Delays:
        """Trigger and charge delays (rounded to the grid)."""
        with self._lock:
            return self._delays

    @property
    def page(self) -> int:
        """Current UI page code."""
        with self._lock:
            return self._page

    @property
    def running(self) -> bool:
        """Whether a device train is running."""
        with self._lock:
            return bool(self._train_times)

    def trigger(self, t: float | None = None) -> bool:
        """A rising edge reached the trigger input.

        Parameters
        ----------
        t : float | None
            Clock time of the edge; now if None.

        Returns
        -------
        bool
            True if a pulse (or burst) was delivered; otherwise the edge is
            counted in :attr:`missed` (not enabled, or still recharging).
        """
        now = self._clock() if t is None else t
        with self._lock:
            pulses = self._fire(now + self._delays.trigger_in_ms / 1000, "trigger")
        self._notify(pulses)
        return bool(pulses)

    def turn_knob(self, amplitude: int) -> None:
        """Change amplitude A on the front panel (pushes an id-1 frame)."""
        with self._lock:
            self._amp_a = max(0, min(100, int(amplitude)))
            self._send(self._amplitude_frame())

    def stop(self) -> None:
        """Stop serving and close the pty (idempotent)."""
        super().stop()
        if self._dummy_w is not None:
            os.close(self._dummy_w)
            self._dummy_w = None

    # ----------------------------------------------------------- serial input
    def _on_data(self, data: bytes, t: float) -> None:
        pulses: list[Pulse] = []
        with self._lock:
            if self._gone:
                return
            self._last_rx = t
            # The unit's own timer gave these before the command arrived; a
            # loaded host may not have ticked this thread since (a real unit
            # would not have waited for it).
            pulses += self._run_train(t)
            for command in self._parser.feed(data):
                fault = self._count_command()
                if fault == "disconnect":
                    self._disconnect()
                    return
                if fault == "silent":
                    logger.info("silent: ignoring command %s", command.hex(" "))
                    continue
                pulses += self._execute(command, t)
        self._notify(pulses)

    def _on_tick(self, now: float) -> None:
        pulses: list[Pulse] = []
        with self._lock:
            if self._gone:
                return
            self._cool(now)
            self._check_temperature(now)
            if self._parser.pending and now - self._last_rx > self.frame_timeout:
                logger.info("discarding incomplete command")
                self._parser.reset()
            pulses += self._run_train(now)
            self._flush(now)
        self._notify(pulses)

    def _run_train(self, now: float) -> list[Pulse]:
        """Deliver the due pulses of a train the unit is running itself."""
        pulses: list[Pulse] = []
        while self._train_times and self._train_times[0] <= now:
            due = self._train_times.pop(0)
            pulses += self._deliver(due, "train")
            if not self._train_times:
                self._send(PageFrame(self._page, False).to_data(), due)
        return pulses

    def _disconnect(self) -> None:
        """Close the pty master as a pulled cable would (the driver sees EIO)."""
        logger.warning("fault: disconnecting after %d commands", self._n_commands)
        self._gone = True
        self._train_times.clear()
        # dup2 closes the master and puts a never-readable pipe at its number,
        # so the serving thread's poller neither spins nor sees a reused fd.
        r, w = os.pipe()
        os.dup2(r, self._master)
        os.close(r)
        self._dummy_w = w

    def _write(self, data: bytes) -> None:
        if self._gone:
            return
        try:
            super()._write(data)
        except OSError as err:  # pragma: no cover - the driver closed its end
            if err.errno != errno.EIO:
                raise

    # ----------------------------------------------------------------- replies
    def _send(self, data: bytes, t: float | None = None) -> None:
        """Queue one device frame, applying the planned faults."""
        now = self._clock() if t is None else max(t, self._clock())
        # The CRC is the byte before the end mark.
        frame = encode_frame(data)
        due = self._queue_reply(
            frame, now, checksum_at=-2, flip=0x5A, delay=self.reply_delay
        )
        if due <= now and len(self._outbox) == 1:
            self._flush(now)  # nothing waiting before it: send at once

    def _mode_byte(self) -> ModeByte:
        s = self._settings
        return ModeByte(s.mode, s.waveform, self._enabled, self.model.model_code)

    def _amplitude_frame(self) -> bytes:
        return AmplitudeFrame(self._amp_a, self._amp_b, self._mode_byte()).to_data()

    def _temperature_frame(self) -> bytes:
        self._reported_temperature = self._temperature_byte()
        return TemperatureFrame(
            self._reported_temperature, self._coil_type, self._mode_byte()
        ).to_data()

    def _temperature_byte(self) -> int:
        return max(0, min(255, round(self._temperature)))

    def _status(self) -> Status:
        return Status(
            mode=self._mode_byte(),
            serial_number=self.serial_number,
            temperature=self._temperature_byte(),
            coil_type=self._coil_type,
            amplitude_a=self._amp_a,
            amplitude_b=self._amp_b,
        )

    # ---------------------------------------------------------------- commands
    def _execute(self, data: bytes, t: float) -> list[Pulse]:
        cmd, body = data[0], data[1:]
        handlers = {
            Command.STATUS: self._cmd_status,
            Command.LONG_STATUS: self._cmd_long_status,
            Command.AMPLITUDE: self._cmd_amplitude,
            Command.ENABLE: self._cmd_enable,
            Command.FIRE: self._cmd_fire,
            Command.START_TRAIN: self._cmd_start_train,
            Command.SET_TRAIN: self._cmd_set_train,
            Command.PAGE: self._cmd_page,
            Command.DELAYS: self._cmd_delays,
            Command.MODE: self._cmd_mode,
        }
        handler = handlers.get(cmd)
        if handler is None:
            logger.info("unknown command id %d ignored", cmd)
            return []
        self._cool(t)
        try:
            return handler(data, body, t) or []
        except Exception as err:  # malformed data: the unit ignores the frame
            logger.info("command %s ignored: %s", data.hex(" "), err)
            return []

    def _cmd_status(self, data: bytes, body: bytes, t: float) -> None:
        self._send(self._status().to_data())

    def _cmd_long_status(self, data: bytes, body: bytes, t: float) -> None:
        s = self._status()
        long = LongStatus(
            **{f: getattr(s, f) for f in s.__dataclass_fields__},
            original_amplitude_a=self._amp_a,
            original_amplitude_b=self._amp_b,
            page=self._page,
            running=bool(self._train_times),
        )
        self._send(long.to_data())

    def _cmd_amplitude(self, data: bytes, body: bytes, t: float) -> None:
        if len(body) not in (1, 2):
            raise ValueError(f"amplitude needs 1 or 2 bytes, got {len(body)}")
        self._amp_a = min(100, body[0])
        if len(body) == 2:
            self._amp_b = min(100, body[1])
        elif self._settings.mode == "twin":
            self._amp_b = min(100, round(self._amp_a * self._settings.ba_ratio))
        self._send(self._amplitude_frame())

    def _cmd_enable(self, data: bytes, body: bytes, t: float) -> None:
        if body[:1] == b"\x01":
            if self._too_hot() or self.faults.refuse_arm:
                logger.info("enable refused (too hot or refuse_arm fault)")
                self._send(self._amplitude_frame())
                return
            if not self._enabled:
                charge = self.charge_time
                if charge is None:
                    charge = self.model.recharge_time(self._amp_a)
                self._ready_at = t + charge
            self._enabled = True
            self._send(self._amplitude_frame())
            self._send(self._temperature_frame())
            self._send(self._amplitude_frame())
        else:
            self._disable("disable command")
            self._send(self._amplitude_frame())

    def _cmd_fire(self, data: bytes, body: bytes, t: float) -> list[Pulse]:
        return self._fire(t, "serial")

    def _cmd_start_train(self, data: bytes, body: bytes, t: float) -> None:
        train, s = self._train, self._settings
        limit = self.model.max_frequency(self._amp_a)
        rate_ok = train.rate_hz <= limit
        if s.waveform == "biphasic_burst" and s.ipi_ms:
            rate_ok = rate_ok and 1000.0 / s.ipi_ms <= limit
        if not self._enabled or self._train_times or not rate_ok:
            logger.info("start train ignored (enabled=%s)", self._enabled)
            self._send(PageFrame(self._page, bool(self._train_times)).to_data())
            return
        self._page = PAGES["timing"]
        times, start = [], max(t, self._ready_at)
        for _ in range(train.trains):
            times += [start + k / train.rate_hz for k in range(train.pulses_in_train)]
            start = times[-1] + train.iti_s
        self._train_times = times
        self._send(PageFrame(self._page, True).to_data())

    def _cmd_set_train(self, data: bytes, body: bytes, t: float) -> None:
        train = TrainSettings.from_command(data)
        grid = self.model.rate_grid
        self._train = TrainSettings(
            rate_hz=grid[nearest_index(grid, train.rate_hz)],
            pulses_in_train=max(1, min(1000, train.pulses_in_train)),
            trains=max(1, min(500, train.trains)),
            iti_s=max(0.1, min(120.0, train.iti_s)),
        )

    def _cmd_page(self, data: bytes, body: bytes, t: float) -> None:
        if body[0] in PAGES.values():
            self._page = body[0]
        self._send(PageFrame(self._page, bool(self._train_times)).to_data())

    def _cmd_delays(self, data: bytes, body: bytes, t: float) -> None:
        d = Delays.from_command(data)
        self._delays = Delays(
            max(0.0, min(100.0, d.trigger_in_ms)),
            max(-100.0, min(100.0, d.trigger_out_ms)),
            max(0, min(12000, d.charge_delay_ms)),
        )

    def _cmd_mode(self, data: bytes, body: bytes, t: float) -> None:
        if len(data) != 11:
            raise ValueError(f"0x09 needs 11 data bytes, got {len(data)}")
        if body[0] == 1:
            wanted = ModeSettings.from_command(data)
            current = self._settings
            mode = wanted.mode if wanted.mode in self.model.modes else current.mode
            wave = wanted.waveform
            if wave not in self.model.waveforms:
                wave = current.waveform
            table = ipi_table(mode, wave)
            ipi = None
            if table is not None:
                ipi = table[nearest_index(table, wanted.ipi_ms or table[0])]
            self._settings = replace(
                current,
                mode=mode,
                waveform=wave,
                direction=wanted.direction,
                burst_pulses=wanted.burst_pulses,
                ipi_ms=ipi,
                ba_ratio=BA_RATIOS[nearest_index(BA_RATIOS, wanted.ba_ratio)],
            )
        self._send(self._settings.to_data())

    # ------------------------------------------------------------------ pulses
    def _fire(self, t: float, source: str) -> list[Pulse]:
        """Deliver a pulse (or burst) at ``t`` if enabled and recharged."""
        recharge = self.model.recharge_time(self._amp_a)
        if (
            not self._enabled
            or t < self._ready_at - 5e-4
            or (self._last_pulse is not None and t - self._last_pulse < recharge - 5e-4)
        ):
            self._missed += 1
            logger.debug("%s fire at %.6f ignored", source, t)
            return []
        return self._deliver(t, source)

    def _deliver(self, t: float, source: str) -> list[Pulse]:
        s = self._settings
        n = s.burst_pulses if s.waveform == "biphasic_burst" else 1
        step = (s.ipi_ms or 0.0) / 1000
        pulses = []
        for i in range(n):
            if not self._enabled:
                break
            pulse = Pulse(t + i * step, self._amp_a, source)
            pulses.append(pulse)
            overheated = self._record_pulse(
                pulse, self.heating * (self._amp_a / 100) ** 2
            )
            self._last_pulse = pulse.time
            # di/dt grows with the output; about 1.5 A/µs per % on a figure-8
            # coil at 100 % is ~150 A/µs.
            didt = min(255, round(1.5 * self._amp_a))
            didt_b = min(255, round(1.5 * self._amp_b)) if s.mode != "standard" else 0
            self._send(PulseFrame(didt, didt_b, self._mode_byte()).to_data(), t)
            if overheated and not self._overheated:
                self._overheated = True
                self._temperature = max(
                    self._temperature, self.max_coil_temperature + 1
                )
            self._check_temperature(t)
        return pulses

    # ------------------------------------------------------------- temperature
    def _too_hot(self) -> bool:
        # The fault plan's overheat latches: cooling does not clear it.
        return self._overheated or super()._too_hot()

    def _temperature_changed(self, now: float) -> None:
        self._check_temperature(now)

    def _check_temperature(self, t: float) -> None:
        """Push id 3 when the reported °C changes; disable when too hot."""
        if self._temperature_byte() != self._reported_temperature:
            self._send(self._temperature_frame(), t)
        if self._enabled and self._too_hot():
            self._disable(f"coil above {self.max_coil_temperature:g} °C")
            self._send(self._amplitude_frame(), t)

    def _disable(self, why: str) -> None:
        if self._enabled:
            logger.info("disabling: %s", why)
        self._enabled = False
        if self._train_times:
            self._train_times.clear()
            self._send(PageFrame(self._page, False).to_data())
