"""Serial driver for the MagVenture MagPro R30 / X100 (with and without MagOption).

A reader thread parses every frame the device sends, replies and the frames it
pushes by itself (front-panel amplitude, pulses delivered, coil temperature,
page), and keeps the driver's view of the device current. Commands wait for
the frames that answer them and compare every value sent with the value read
back. Values off the device's grid are refused before anything is written.

One module, longer than most, because it is one abstraction: the complete
framed command set of every MagPro model and the device-state thread that
keeps it current, behind one class.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import serial
from pylsl import local_clock

from ..errors import (
    CRCError,
    DeviceError,
    DeviceLimitError,
    DeviceTimeout,
    PortVanished,
)
from ..serial_link import log_traffic, open_port, write_now
from ..stimulator import Stimulator, StimulatorState, TrafficLog
from .capabilities import (
    AMPLITUDE_RANGE,
    MAX_COIL_TEMPERATURE_C,
    SERIAL_MAX_RATE_HZ,
    MagProModel,
    check_delays,
    check_integer,
    check_mode,
    check_train,
    get_model,
)
from .protocol import (
    AmplitudeFrame,
    Delays,
    DeviceFrame,
    FrameParser,
    LongStatus,
    ModeByte,
    ModeSettings,
    PageFrame,
    PulseFrame,
    Status,
    TemperatureFrame,
    TrainSettings,
    amplitude_command,
    decode_frame,
    enable_command,
    fire_command,
    get_mode_command,
    ipi_table,
    long_status_command,
    page_command,
    start_train_command,
    status_command,
)

logger = logging.getLogger("stimtrain.devices.magventure.driver")

#: Model code of the mode byte → registry key, for :func:`probe`.
_KEYS_BY_CODE = {
    "R30": "magpro_r30",
    "X100": "magpro_x100",
    "R30+Option": "magpro_r30_magoption",
    "X100+Option": "magpro_x100_magoption",
    "R30+Option+Mono": "magpro_r30_magoption",
}

#: ``frame_listener(frame, clock_time)``: every decoded device frame.
FrameListener = Callable[[DeviceFrame, float], None]

#: Marks "keep the current value" in :meth:`MagPro.set_mode`.
_KEEP = object()

# A collector looks at the frames received since a command was written and
# returns its result once complete, or None to keep waiting.
_Collector = Callable[[list[DeviceFrame]], object]


def _first(kind: type, frames: list[DeviceFrame]) -> DeviceFrame | None:
    return next((f for f in frames if type(f) is kind), None)


class MagPro(Stimulator):
    """Drive a MagVenture MagPro over its serial port (38400 8N1).

    Parameters
    ----------
    port : str
        Serial port path (COM2 of the stimulator, null-modem cable; or a
        simulator's pty).
    model : str | MagProModel
        A key of :data:`~stimtrain.devices.magventure.capabilities.MODELS`.
    traffic_log : callable | None
        ``traffic_log(direction, data, clock_time)`` for every write
        (``"tx"``) and read (``"rx"``).
    timeout : float
        Seconds to wait for the frames that answer a command.
    frame_listener : callable | None
        ``frame_listener(frame, clock_time)`` for every decoded frame, on the
        reader thread (keep it short).

    Notes
    -----
    The MagPro needs no keep-alive (:attr:`keep_alive_interval_s` is None);
    :meth:`keep_alive` refreshes the state with a status query.
    A CRC error or an incomplete frame gets one retry for commands that can
    be repeated safely (never for fire or start train). Any failure after a
    command was written (timeout, CRC error, read-back mismatch) is recorded
    in :meth:`state`'s errors and the device is disabled, best effort,
    before the error is raised. The protocol has no read-back for the train
    settings (0x06) and delays (0x08): after those a status query confirms
    the device is still answering.
    """

    keep_alive_interval_s: float | None = None

    def __init__(
        self,
        port: str,
        model: str | MagProModel = "magpro_x100",
        *,
        traffic_log: TrafficLog | None = None,
        timeout: float = 0.3,
        frame_listener: FrameListener | None = None,
    ) -> None:
        self.port = port
        self.model = get_model(model)
        self.capabilities = self.model.capabilities()
        self.traffic_log = traffic_log
        self.timeout = timeout
        self._listeners: list[FrameListener] = []
        if frame_listener is not None:
            self._listeners.append(frame_listener)
        self._serial: serial.Serial | None = None
        self._reader: threading.Thread | None = None
        self._stopping = threading.Event()
        self._cond = threading.Condition()
        # Stamping and logging under one lock keeps the traffic log in clock
        # order although the writer and the reader thread both log.
        self._log_lock = threading.Lock()
        self._cmd_lock = threading.RLock()
        self._parser = FrameParser()
        self._inbox: list[DeviceFrame] = []
        self._link_error: DeviceError | None = None
        self._failing = False
        self._expect_disable = False
        # The device as last reported.
        self._mode: ModeByte | None = None
        self._amplitude: tuple[int, int] | None = None
        self._temperature: int | None = None
        self._coil_type: int | None = None
        self._page: int | None = None
        self._running = False
        self._settings: ModeSettings | None = None
        self._serial_number: int | None = None
        self._didt: tuple[int, int] | None = None
        self._pulse_count = 0
        self._last_pulse: float | None = None
        self._ready_at: float | None = None
        self._last_fire: float | None = None
        self._train: TrainSettings | None = None
        self._delays: Delays | None = None
        self._errors: list[str] = []

    # ------------------------------------------------------------------ link
    def open(self) -> None:
        """Open the port, start the reader, read status and mode (no changes).

        Raises
        ------
        DeviceError
            The device answers as another model than the one configured.
        """
        with self._cmd_lock:
            if self._serial is not None:
                return
            # Short read timeout: the reader thread checks for stop often.
            self._serial = open_port(
                self.port,
                baudrate=38400,
                timeout=0.05,
                write_timeout=self.timeout,
                device="MagVenture",
            )
            self._stopping.clear()
            self._link_error = None
            self._reader = threading.Thread(
                target=self._read_loop, name=f"magpro-reader-{self.port}", daemon=True
            )
            self._reader.start()
            logger.info("opened %s (%s)", self.port, self.model.label)
        try:
            status = self.status()
            if status.mode.model != self.model.model_code:
                raise DeviceError(
                    f"MagVenture model: {self.port} answers as {status.mode.model}, "
                    f"expected {self.model.model_code} ({self.model.label})"
                )
            self.get_mode()
        except Exception:
            self._shutdown()
            raise

    def close(self) -> None:
        """Disable (best effort) and close the port (idempotent)."""
        if self._serial is None:
            return
        if self._link_error is None:
            try:
                self.disarm()
            except Exception:
                logger.exception("disable on close failed")
        self._shutdown()

    def _shutdown(self) -> None:
        with self._cmd_lock:
            ser, self._serial = self._serial, None
            if ser is None:
                return
            self._stopping.set()
            try:
                ser.cancel_read()
            except Exception:  # the port may already be gone
                pass
            if self._reader is not None:
                self._reader.join(timeout=1.0)
                self._reader = None
            try:
                ser.close()
            except Exception:
                logger.debug("closing %s failed", self.port, exc_info=True)

    @property
    def is_open(self) -> bool:
        """Whether the port is open."""
        return self._serial is not None

    def add_frame_listener(self, callback: FrameListener) -> None:
        """Call ``callback(frame, clock_time)`` for every decoded frame."""
        self._listeners.append(callback)

    # ---------------------------------------------------------- device view
    @property
    def enabled(self) -> bool:
        """Whether the device last reported itself enabled."""
        return bool(self._mode and self._mode.enabled)

    @property
    def amplitude(self) -> tuple[int, int] | None:
        """Amplitudes A and B (%) as last reported."""
        return self._amplitude

    @property
    def coil_temperature(self) -> int | None:
        """Coil temperature (°C) as last reported."""
        return self._temperature

    @property
    def coil_type(self) -> int | None:
        """Coil type code as last reported."""
        return self._coil_type

    @property
    def page(self) -> int | None:
        """UI page code as last reported."""
        return self._page

    @property
    def running(self) -> bool:
        """Whether a device train is running, as last reported."""
        return self._running

    @property
    def pulse_count(self) -> int:
        """Pulse frames received since open (serial, trigger and train pulses)."""
        return self._pulse_count

    @property
    def didt(self) -> tuple[int, int] | None:
        """di/dt (A/µs) of channels A and B of the last pulse."""
        return self._didt

    @property
    def settings(self) -> ModeSettings | None:
        """Mode settings as last read."""
        return self._settings

    @property
    def train(self) -> TrainSettings | None:
        """Train settings last sent."""
        return self._train

    @property
    def crc_errors(self) -> int:
        """Frames from the device dropped for a bad CRC since open."""
        return self._parser.crc_errors

    @property
    def errors(self) -> tuple[str, ...]:
        """Every fault seen since open."""
        return tuple(self._errors)

    # ------------------------------------------------------------- commands
    def remote_control(self, enable: bool = True) -> None:
        """No-op: the MagPro has no remote-control mode."""

    def keep_alive(self) -> None:
        """Refresh the state with a status query (no keep-alive is needed)."""
        self.status()

    def status(self) -> Status:
        """Short status (0x00 → id 0)."""
        return self._transact(
            "status", status_command(), lambda fs: _first(Status, fs)
        )[0]

    def long_status(self) -> LongStatus:
        """Long status (0x05 → id 5): status plus factors, page, running."""
        return self._transact(
            "long status", long_status_command(), lambda fs: _first(LongStatus, fs)
        )[0]

    def state(self) -> StimulatorState:
        """Query the device and return its common state."""
        status = self.status()
        return StimulatorState(
            remote_control=None,
            armed=status.mode.enabled,
            ready=status.mode.enabled and self._recharge_left() <= 0,
            intensity=float(status.amplitude_a),
            intensity_b=float(status.amplitude_b) if self.model.magoption else None,
            coil_temperature=float(status.temperature),
            errors=self.errors,
        )

    def set_intensity(self, value: float, value_b: float | None = None) -> None:
        """Set amplitude A (and B) in % and read it back.

        Raises
        ------
        DeviceError
            Off the 0–100 integer grid, B on a model without MagOption
            (nothing is sent), or a read-back mismatch.
        """
        a = check_integer("amplitude A (%)", value, AMPLITUDE_RANGE)
        b = None
        if value_b is not None:
            if not self.model.magoption:
                raise DeviceLimitError(
                    f"MagVenture amplitude B: {self.model.label} has no second "
                    f"pulse (MagOption); got {value_b!r}"
                )
            b = check_integer("amplitude B (%)", value_b, AMPLITUDE_RANGE)
        frame = self._transact(
            "amplitude", amplitude_command(a, b), lambda fs: _first(AmplitudeFrame, fs)
        )[0]
        self._compare("amplitude A (%)", a, frame.amplitude_a)
        if b is not None:
            self._compare("amplitude B (%)", b, frame.amplitude_b)

    def arm(self) -> None:
        """Enable the stimulator (0x02 1 → id 1, id 3, id 1) and read it back.

        The unit then charges; :meth:`wait_ready` waits for it.

        Raises
        ------
        DeviceError
            The coil is over temperature (nothing sent), or the device stayed
            disabled.
        """
        if self._temperature is not None and self._temperature > (
            MAX_COIL_TEMPERATURE_C
        ):
            raise DeviceError(
                f"MagVenture enable: refused, coil temperature {self._temperature} °C "
                f"is above {MAX_COIL_TEMPERATURE_C:g} °C"
            )

        def collect(frames: list[DeviceFrame]) -> object:
            amps = [f for f in frames if type(f) is AmplitudeFrame]
            if amps and not amps[0].mode.enabled:
                return amps[0]  # refused: one frame, bit clear
            temps = [i for i, f in enumerate(frames) if type(f) is TemperatureFrame]
            if amps and temps:
                after = [f for f in frames[temps[0] :] if type(f) is AmplitudeFrame]
                return after[0] if after else None
            return None

        frame = self._transact("enable", enable_command(True), collect)[0]
        if not frame.mode.enabled:
            raise self._fail(
                DeviceError(
                    "MagVenture enable: sent enable, device reports disabled "
                    f"(coil {self._temperature} °C)"
                ),
                disable=False,
            )

    def disarm(self) -> None:
        """Disable the stimulator (0x02 0 → id 1) and read it back."""
        self._expect_disable = True
        try:
            frame = self._transact(
                "disable",
                enable_command(False),
                lambda fs: next(
                    (f for f in fs if type(f) is AmplitudeFrame and not f.mode.enabled),
                    None,
                ),
            )[0]
        finally:
            self._expect_disable = False
        if frame.mode.enabled:  # pragma: no cover - the collector waits for this
            raise self._fail(DeviceError("MagVenture disable: device stays enabled"))

    def wait_ready(self, timeout: float = 3.0) -> None:
        """Block until the device is enabled and recharged after its last pulse.

        Raises
        ------
        DeviceError
            The device is not enabled.
        DeviceTimeout
            It would not be recharged within ``timeout``.
        """
        status = self.status()
        if not status.mode.enabled:
            raise DeviceError("MagVenture wait_ready: the stimulator is not enabled")
        left = self._recharge_left()
        if left > timeout:
            raise DeviceTimeout(
                f"MagVenture wait_ready: recharge needs {left:.3f} s, "
                f"more than the {timeout:g} s allowed"
            )
        if left > 0:
            time.sleep(left)

    def fire(self) -> float:
        """Fire one pulse by serial command (0x03 → id 2).

        Returns
        -------
        float
            ``pylsl.local_clock()`` right after ``write()`` returned: when the
            trigger left the host.

        Raises
        ------
        DeviceError
            Not enabled, a train running, sooner than the serial rate limit,
            the charge time after enable or the recharge time after the last
            pulse allow (nothing sent), or no pulse reported.
        """
        if not self.enabled:
            raise DeviceError(
                "MagVenture fire: refused, the stimulator is not enabled "
                "(call arm() first)"
            )
        if self._running:
            raise DeviceError("MagVenture fire: refused while a train is running")
        now = local_clock()
        if self._last_fire is not None:
            since = now - self._last_fire
            if since < 1.0 / SERIAL_MAX_RATE_HZ:
                raise DeviceError(
                    f"MagVenture fire: refused, serial single pulses are limited to "
                    f"{SERIAL_MAX_RATE_HZ:g} Hz ({since:.3f} s since the last one)"
                )
        left = self._recharge_left(now)
        if left > 0:
            raise DeviceError(
                f"MagVenture fire: refused, still charging for {left:.3f} s "
                f"at {self._amplitude[0]} %"
            )
        _, sent = self._transact(
            "fire", fire_command(), lambda fs: _first(PulseFrame, fs), repeatable=False
        )
        self._last_fire = sent
        return sent

    def set_train(
        self, rate_hz: float, pulses_in_train: int, trains: int, iti_s: float
    ) -> None:
        """Set the Timing-page train (0x06); values must be on the device grid.

        Raises
        ------
        DeviceError
            A value off the grid (nothing sent), or the device stops answering.
        """
        rate, pulses, n, iti = check_train(
            self.model, rate_hz, pulses_in_train, trains, iti_s
        )
        train = TrainSettings(rate, pulses, n, iti)
        self._send_unanswered("set train", train.to_command())
        self._train = train

    def start_train(self) -> float:
        """Start the Timing-page train (0x04 → id 8 "running").

        Returns
        -------
        float
            Clock time right after the write.

        Raises
        ------
        DeviceError
            No train set, not enabled, the rate (or burst IPI) above the
            maximum at this output (nothing sent), or the train not started.
        """
        if self._train is None:
            raise DeviceError("MagVenture start train: call set_train() first")
        if not self.enabled:
            raise DeviceError(
                "MagVenture start train: refused, the stimulator is not enabled"
            )
        power = self._amplitude[0] if self._amplitude else 100
        limit = self.model.max_frequency(power)
        if self._train.rate_hz > limit:
            raise DeviceError(
                f"MagVenture start train: rate {self._train.rate_hz:g} Hz is above "
                f"the {limit:g} Hz allowed at {power} % on {self.model.label}"
            )
        s = self._settings
        if s is not None and s.waveform == "biphasic_burst" and s.ipi_ms:
            if 1000.0 / s.ipi_ms > limit:
                raise DeviceError(
                    f"MagVenture start train: burst IPI {s.ipi_ms:g} ms "
                    f"({1000 / s.ipi_ms:g} Hz) is above the {limit:g} Hz allowed "
                    f"at {power} %"
                )
        frame, sent = self._transact(
            "start train",
            start_train_command(),
            lambda fs: _first(PageFrame, fs),
            repeatable=False,
        )
        if not frame.running:
            raise self._fail(
                DeviceError("MagVenture start train: device reports not running")
            )
        return sent

    def set_page(self, page: str | int) -> None:
        """Change the UI page (0x07 → id 8) and read it back."""
        command = page_command(page)
        wanted = command[3]
        frame = self._transact("page", command, lambda fs: _first(PageFrame, fs))[0]
        self._compare("page", wanted, frame.page)

    def set_delays(
        self,
        trigger_in_ms: float = 0.0,
        trigger_out_ms: float = 0.0,
        charge_delay_ms: int = 0,
    ) -> None:
        """Set trigger-in/out delays (0.1 ms steps) and the charge delay (0x08)."""
        delays = Delays(*check_delays(trigger_in_ms, trigger_out_ms, charge_delay_ms))
        self._send_unanswered("delays", delays.to_command())
        self._delays = delays

    def get_mode(self) -> ModeSettings:
        """Read mode, direction, waveform, burst, IPI and B/A ratio (0x09 get)."""
        return self._transact(
            "get mode", get_mode_command(), lambda fs: _first(ModeSettings, fs)
        )[0]

    def program_train(self, frequency_hz: float, pulses: int) -> None:
        """One Timing-page train of ``pulses`` at ``frequency_hz``."""
        self.set_train(frequency_hz, pulses, 1, 1.0)

    def set_paired(self, conditioning: float, test: float, isi_ms: float) -> None:
        """A MagPro with MagOption in Twin mode: amplitudes A and B, its IPI."""
        if not self.model.magoption:
            super().set_paired(conditioning, test, isi_ms)
        self.set_mode("twin", ipi_ms=isi_ms)
        self.set_intensity(conditioning, test)

    def set_mode(
        self,
        mode: str | None = None,
        *,
        direction: str | None = None,
        waveform: str | None = None,
        burst_pulses: int | None = None,
        ipi_ms: float | None | object = _KEEP,
        ba_ratio: float | None = None,
    ) -> ModeSettings:
        """Set any of mode, current direction, waveform, burst, IPI, B/A ratio.

        Fields not given keep their current value (read with a 0x09 get if not
        known). The 0x09 reply is index-coded; each field of it is compared
        with what was sent.

        Returns
        -------
        ModeSettings
            The settings the device reports.

        Raises
        ------
        DeviceError
            A combination the model does not offer or a value off its table
            (nothing sent), or a read-back mismatch.
        """
        current = self._settings or self.get_mode()
        mode = current.mode if mode is None else mode
        waveform = current.waveform if waveform is None else waveform
        if ipi_ms is _KEEP:
            ipi_ms = current.ipi_ms if ipi_table(mode, waveform) is not None else None
            if ipi_ms is None and ipi_table(mode, waveform) is not None:
                raise DeviceError(
                    f"MagVenture IPI: {mode}/{waveform} needs an IPI; pass ipi_ms"
                )
        wanted = ModeSettings(
            model=self.model.model_code,
            mode=mode,
            direction=current.direction if direction is None else direction,
            waveform=waveform,
            burst_pulses=current.burst_pulses if burst_pulses is None else burst_pulses,
            ipi_ms=ipi_ms,
            ba_ratio=current.ba_ratio if ba_ratio is None else ba_ratio,
        )
        check_mode(
            self.model,
            wanted.mode,
            wanted.direction,
            wanted.waveform,
            wanted.burst_pulses,
            wanted.ipi_ms,
            wanted.ba_ratio,
        )
        got = self._transact(
            "set mode", wanted.to_command(), lambda fs: _first(ModeSettings, fs)
        )[0]
        for name in ("mode", "direction", "waveform", "burst_pulses", "ipi_ms"):
            self._compare(
                name.replace("_", " "), getattr(wanted, name), getattr(got, name)
            )
        self._compare("B/A ratio", wanted.ba_ratio, got.ba_ratio)
        return got

    def set_waveform(self, waveform: str, **kwargs: object) -> ModeSettings:
        """Set the waveform (other fields as in :meth:`set_mode`)."""
        return self.set_mode(waveform=waveform, **kwargs)

    def set_current_direction(self, direction: str) -> ModeSettings:
        """Set the current direction (``"normal"`` or ``"reverse"``)."""
        return self.set_mode(direction=direction)

    def set_burst(self, burst_pulses: int, ipi_ms: float) -> ModeSettings:
        """Switch to Biphasic Burst with ``burst_pulses`` pulses ``ipi_ms`` apart."""
        return self.set_mode(
            waveform="biphasic_burst", burst_pulses=burst_pulses, ipi_ms=ipi_ms
        )

    def set_ba_ratio(self, ratio: float) -> ModeSettings:
        """Set the Twin-mode B/A amplitude ratio (0.2–5.0 by 0.05)."""
        return self.set_mode(ba_ratio=ratio)

    # ------------------------------------------------------------ internals
    def _recharge_left(self, now: float | None = None) -> float:
        """Seconds until charged after enable and recharged after the last pulse.

        Both are counted from when the driver *read* the frame that reported
        the event, which is later than the event itself: conservative.
        """
        if self._amplitude is None:
            return 0.0
        now = local_clock() if now is None else now
        ready = self._ready_at if self._ready_at is not None else now
        if self._last_pulse is not None:
            need = self.model.recharge_time(self._amplitude[0])
            ready = max(ready, self._last_pulse + need)
        return ready - now

    def _compare(self, name: str, sent: object, read: object) -> None:
        same = sent == read
        if isinstance(sent, float) and isinstance(read, float):
            same = abs(sent - read) < 1e-6
        if not same:
            raise self._fail(
                DeviceError(
                    f"MagVenture {name}: sent {sent!r}, device reports {read!r}"
                )
            )

    def _send_unanswered(self, name: str, frame: bytes) -> None:
        """Write a command the device does not answer, then check it still talks."""
        with self._cmd_lock:
            self._check_link()
            self._write(frame, name)
            self.status()

    def _check_link(self) -> None:
        if self._link_error is not None:
            raise type(self._link_error)(str(self._link_error))
        if self._serial is None:
            raise DeviceError(
                f"MagVenture on {self.port} is not open; call open() first"
            )

    def _write(self, frame: bytes, name: str) -> float:
        try:
            sent = write_now(self._serial, frame)
        except (serial.SerialException, OSError) as err:
            self._lost(f"writing {name} failed: {err}")
            raise self._fail(
                PortVanished(str(self._link_error)), disable=False
            ) from err
        return self._log("tx", frame, sent)

    def _transact(
        self,
        name: str,
        frame: bytes,
        collect: _Collector,
        *,
        repeatable: bool = True,
    ) -> tuple[object, float]:
        """Write ``frame``; wait until ``collect`` accepts the frames received.

        A garbled answer (CRC error, dropped bytes) is retried once when the
        command is ``repeatable``.
        """
        with self._cmd_lock:
            self._check_link()
            attempts = 2 if repeatable else 1
            for attempt in range(attempts):
                with self._cond:
                    self._inbox.clear()
                    crc0, dropped0 = self._parser.crc_errors, self._parser.dropped
                sent = self._write(frame, name)
                deadline = sent + self.timeout
                with self._cond:
                    while True:
                        result = collect(list(self._inbox))
                        if result is not None:
                            return result, sent
                        if self._link_error is not None:
                            raise self._fail(
                                PortVanished(f"MagVenture {name}: {self._link_error}"),
                                disable=False,
                            )
                        remaining = deadline - local_clock()
                        if remaining <= 0:
                            break
                        self._cond.wait(remaining)
                    crc_seen = self._parser.crc_errors > crc0
                    garbled = crc_seen or self._parser.dropped > dropped0
                    garbled = garbled or self._parser.pending > 0
                    detail = self._parser.last_error
                    self._parser.reset()
                if garbled and attempt + 1 < attempts:
                    logger.warning("%s: garbled answer (%s); retrying", name, detail)
                    continue
                if crc_seen:
                    error: DeviceError = CRCError(
                        f"MagVenture {name}: CRC error in the answer "
                        f"({detail}) after {attempt + 1} attempt(s)"
                    )
                elif garbled:
                    error = DeviceTimeout(
                        f"MagVenture {name}: incomplete answer within "
                        f"{self.timeout:g} s ({detail}) after {attempt + 1} "
                        "attempt(s)"
                    )
                else:
                    error = DeviceTimeout(
                        f"MagVenture {name}: no answer within {self.timeout:g} s "
                        f"on {self.port}"
                    )
                raise self._fail(error)
        raise AssertionError("unreachable")  # pragma: no cover

    def _fail(self, error: DeviceError, *, disable: bool = True) -> DeviceError:
        """Record ``error``, disable the device (best effort), return the error."""
        self._errors.append(str(error))
        logger.error("%s", error)
        if disable and not self._failing and self._link_error is None:
            self._cmd_lock.acquire()  # no other command between fault and disable
            self._failing = True
            self._expect_disable = True
            try:
                self._write(enable_command(False), "disable after fault")
                deadline = local_clock() + self.timeout
                with self._cond:
                    while self.enabled and local_clock() < deadline:
                        self._cond.wait(deadline - local_clock())
            except DeviceError:
                logger.exception("disable after fault failed")
            finally:
                self._failing = False
                self._expect_disable = False
                self._cmd_lock.release()
        return error

    def _lost(self, why: str) -> None:
        with self._cond:
            if self._link_error is None:
                self._link_error = PortVanished(
                    f"MagVenture: port {self.port} vanished ({why})"
                )
                self._errors.append(str(self._link_error))
                logger.error("%s", self._link_error)
            self._cond.notify_all()

    def _read_loop(self) -> None:
        ser = self._serial
        while not self._stopping.is_set():
            try:
                data = ser.read(max(1, ser.in_waiting))
                # One read per burst of bytes keeps the traffic log readable.
                if data and ser.in_waiting:
                    data += ser.read(ser.in_waiting)
            except Exception as err:  # SerialException, OSError (EIO), closed
                if not self._stopping.is_set():
                    self._lost(str(err) or type(err).__name__)
                return
            if not data:
                continue
            t = self._log("rx", data)
            decoded: list[DeviceFrame] = []
            with self._cond:
                for payload in self._parser.feed(data):
                    try:
                        frame = decode_frame(payload)
                    except DeviceError as err:
                        self._errors.append(str(err))
                        logger.warning("%s", err)
                        continue
                    self._apply(frame, t)
                    self._inbox.append(frame)
                    decoded.append(frame)
                self._cond.notify_all()
            for frame in decoded:
                for callback in list(self._listeners):
                    try:
                        callback(frame, t)
                    except Exception:
                        logger.exception("frame listener %r failed", callback)

    def _apply(self, frame: DeviceFrame, t: float) -> None:
        """Update the device view from one frame (called with ``_cond`` held)."""
        mode = getattr(frame, "mode", None)
        if isinstance(mode, ModeByte):
            was_enabled = self.enabled
            self._mode = mode
            if mode.enabled and not was_enabled and self._amplitude is not None:
                # The capacitor charges from the moment the unit enabled.
                charge = self.model.recharge_time(self._amplitude[0])
                self._ready_at = t + charge
            if was_enabled and not mode.enabled and not self._expect_disable:
                message = (
                    "MagVenture: the device disabled itself "
                    f"(coil {self._temperature} °C)"
                )
                self._errors.append(message)
                logger.warning("%s", message)
        if isinstance(frame, Status):
            self._serial_number = frame.serial_number
            self._temperature = frame.temperature
            self._coil_type = frame.coil_type
            self._amplitude = (frame.amplitude_a, frame.amplitude_b)
            if isinstance(frame, LongStatus):
                self._page, self._running = frame.page, frame.running
        elif isinstance(frame, AmplitudeFrame):
            self._amplitude = (frame.amplitude_a, frame.amplitude_b)
        elif isinstance(frame, PulseFrame):
            self._pulse_count += 1
            self._last_pulse = t
            self._didt = (frame.didt_a, frame.didt_b)
        elif isinstance(frame, TemperatureFrame):
            self._temperature = frame.temperature
            self._coil_type = frame.coil_type
        elif isinstance(frame, PageFrame):
            self._page, self._running = frame.page, frame.running
        elif isinstance(frame, ModeSettings):
            self._settings = frame

    def _log(self, direction: str, data: bytes, t: float | None = None) -> float:
        """Log ``data`` stamped ``t`` (default: the clock now); return the stamp."""
        with self._log_lock:
            if t is None:
                t = local_clock()
            log_traffic(self.traffic_log, direction, data, t)
        return t


def probe(port: str, timeout: float = 0.3) -> str | None:
    """Ask ``port`` for a MagPro short status; return the model's registry key.

    Only the status command (0x00) is written: nothing on the device changes.

    Parameters
    ----------
    port : str
        Serial port path.
    timeout : float
        Seconds to wait for the 13-byte status frame.

    Returns
    -------
    str | None
        ``"magpro_x100"`` etc., or None if no MagPro status frame came back
        (another device, nothing connected, or a model without a key).
    """
    try:
        with serial.Serial(port, 38400, timeout=0.02, write_timeout=timeout) as ser:
            ser.reset_input_buffer()
            ser.write(status_command())
            parser = FrameParser()
            deadline = local_clock() + timeout
            while local_clock() < deadline:
                for data in parser.feed(ser.read(64)):
                    try:
                        frame = decode_frame(data)
                    except DeviceError:
                        continue
                    if type(frame) is Status:
                        return _KEYS_BY_CODE.get(frame.mode.model)
    except (serial.SerialException, OSError) as err:
        logger.info("probe of %s failed: %s", port, err)
    return None
