"""MagVenture MagPro serial framing, CRC-8, commands and typed device frames.

Pure functions and plain data shared by the driver and the simulator, so both
ends of the link agree on every byte. Facts come from docs/specs/magventure.md.

A frame is ``0xFE | LEN | DATA[LEN] | CRC8(DATA) | 0xFF``; ``DATA[0]`` is the
command id (host → device) or the frame id (device → host). Multi-byte values
are big-endian, except the IPI index of the 0x09 reply (little-endian).

The 0x09 command always carries 11 data bytes, as the public drivers send it:
a "get" pads the settings with zeros.

Longer than most because it is one table-like idea: every frame and field of
the MagPro byte protocol, encoded and decoded in one place.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from enum import IntEnum

from ..errors import DeviceError

logger = logging.getLogger("stimtrain.devices.magventure.protocol")

START = 0xFE
END = 0xFF

#: Longest DATA of any frame either side sends (the 0x05 reply has 15 bytes);
#: a larger LEN can only be junk, so the parser skips it instead of waiting.
MAX_DATA_LENGTH = 32


class Command(IntEnum):
    """Host → device command ids."""

    STATUS = 0x00
    AMPLITUDE = 0x01
    ENABLE = 0x02
    FIRE = 0x03
    START_TRAIN = 0x04
    LONG_STATUS = 0x05
    SET_TRAIN = 0x06
    PAGE = 0x07
    DELAYS = 0x08
    MODE = 0x09


class FrameId(IntEnum):
    """Device → host frame ids (replies and frames pushed by the device)."""

    STATUS = 0
    AMPLITUDE = 1
    PULSE = 2
    TEMPERATURE = 3
    LONG_STATUS = 5
    PAGE = 8
    MODE = 9


#: Mode-byte bits 0–1 and the 0x09 "mode" field.
MODES: tuple[str, ...] = ("standard", "power", "twin", "dual")
#: Mode-byte bits 2–3 and the 0x09 "waveform" field.
WAVEFORMS: tuple[str, ...] = ("monophasic", "biphasic", "halfsine", "biphasic_burst")
#: Mode-byte bits 5–7 and the 0x09 "model" field.
MODELS: tuple[str, ...] = (
    "R30",
    "X100",
    "R30+Option",
    "X100+Option",
    "R30+Option+Mono",
    "MST",
)
#: The 0x09 "direction" field.
DIRECTIONS: tuple[str, ...] = ("normal", "reverse")
#: Page codes of the 0x07 command and the id-8 frame.
PAGES: dict[str, int] = {"main": 1, "timing": 2, "trig": 3, "config": 4, "protocol": 7}
#: Coil type codes seen in status frames.
COIL_TYPES: dict[int, str] = {
    0: "unknown",
    56: "Cool-B35 HO",
    60: "Cool-B65",
    64: "Cool-B65 A/P",
    72: "C-B60",
    81: "MC-125",
    82: "MC-B70",
    86: "D-B80",
}


def crc8(data: bytes) -> int:
    """CRC-8 Dallas/Maxim: reflected polynomial 0x8C, initial 0, no final XOR.

    Parameters
    ----------
    data : bytes
        The DATA bytes of a frame (command id included).

    Returns
    -------
    int
        The checksum byte; running it over ``data + bytes([crc])`` gives 0.

    Examples
    --------
    >>> hex(crc8(bytes([0x01, 0x32])))
    '0xc6'
    """
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8C if crc & 1 else crc >> 1
    return crc


def encode_frame(data: bytes) -> bytes:
    """Wrap DATA (id first) as ``FE LEN DATA CRC FF``.

    Raises
    ------
    ValueError
        If ``data`` is empty or longer than :data:`MAX_DATA_LENGTH`.
    """
    data = bytes(data)
    if not 1 <= len(data) <= MAX_DATA_LENGTH:
        raise ValueError(
            f"frame DATA must hold 1–{MAX_DATA_LENGTH} bytes (id included), "
            f"got {len(data)}"
        )
    return bytes([START, len(data)]) + data + bytes([crc8(data), END])


class FrameParser:
    """Split a byte stream into verified frames, by length.

    Resynchronises on 0xFE, waits for ``LEN + 4`` bytes, checks the 0xFF end
    byte and the CRC, and drops bytes that don't fit. It never splits on 0xFF,
    which may occur inside DATA (a serial number byte, a CRC).

    Attributes
    ----------
    crc_errors : int
        Frames whose end byte was right but whose CRC was wrong.
    dropped : int
        Bytes discarded while resynchronising.
    last_error : str | None
        What the last discarded frame looked like, for error messages.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.crc_errors = 0
        self.dropped = 0
        self.last_error: str | None = None

    @property
    def pending(self) -> int:
        """Bytes held back as the start of an incomplete frame."""
        return len(self._buffer)

    def reset(self) -> None:
        """Forget any partial frame (e.g. after a timeout)."""
        if self._buffer:
            self.dropped += len(self._buffer)
            self.last_error = f"incomplete frame {bytes(self._buffer).hex(' ')}"
        self._buffer.clear()

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the DATA of every complete, valid frame."""
        self._buffer += data
        frames: list[bytes] = []
        buf = self._buffer
        while buf:
            start = buf.find(START)
            if start < 0:
                self._drop(len(buf), "no start byte")
                break
            if start:
                self._drop(start, "bytes before start byte")
            if len(buf) < 2:
                break
            length = buf[1]
            if not 1 <= length <= MAX_DATA_LENGTH:
                self._drop(1, f"impossible length {length}")
                continue
            if len(buf) < length + 4:
                break
            data = bytes(buf[2 : 2 + length])
            crc, end = buf[2 + length], buf[3 + length]
            if end != END:
                self._drop(1, f"no end byte after {length} data bytes")
                continue
            if crc8(data) != crc:
                self.crc_errors += 1
                self._drop(1, f"CRC 0x{crc:02X} != 0x{crc8(data):02X}")
                continue
            del buf[: length + 4]
            frames.append(data)
        return frames

    def _drop(self, n: int, why: str) -> None:
        self.last_error = f"{why}: {bytes(self._buffer[:n]).hex(' ')}"
        logger.debug("dropping %d byte(s): %s", n, self.last_error)
        self.dropped += n
        del self._buffer[:n]


# ----------------------------------------------------------------- value tables
def _descending(*segments: tuple[float, float, float]) -> tuple[float, ...]:
    """Concatenate ``(start, stop, step)`` runs, start inclusive, stop exclusive."""
    values: list[float] = []
    for start, stop, step in segments:
        n = round((start - stop) / step)
        values.extend(round(start - i * step, 2) for i in range(n))
    return tuple(values)


#: Twin/Dual IPI values (ms) by index: 3000 → 1 ms.
TWIN_IPI_MS: tuple[float, ...] = _descending(
    (3000, 1000, 100), (1000, 500, 50), (500, 100, 10), (100, 20, 1),
    (20, 10, 0.5), (10, 1, 0.1), (1, 0, 1),
)  # fmt: skip
#: Biphasic Burst IPI values (ms) by index: 100 → 0.5 ms.
BURST_IPI_MS: tuple[float, ...] = _descending(
    (100, 20, 1), (20, 10, 0.5), (10, 0.4, 0.1)
)
#: B/A amplitude ratios by index: 5.00 → 0.20 in 0.05 steps.
BA_RATIOS: tuple[float, ...] = _descending((5.0, 0.15, 0.05))


def ipi_table(mode: str, waveform: str) -> tuple[float, ...] | None:
    """The IPI table that applies in ``mode``/``waveform`` (None: no IPI)."""
    if mode in ("twin", "dual"):
        return TWIN_IPI_MS
    if waveform == "biphasic_burst":
        return BURST_IPI_MS
    return None


def table_index(table: tuple[float, ...], value: float, name: str) -> int:
    """Index of ``value`` in a value table.

    Raises
    ------
    DeviceError
        Naming ``name`` and the value, if it is not on the table's grid.
    """
    for i, entry in enumerate(table):
        if abs(entry - value) < 1e-6:
            return i
    raise DeviceError(
        f"MagVenture {name}: {value!r} is not on the device grid "
        f"({table[-1]:g}–{table[0]:g})"
    )


def nearest_index(table: tuple[float, ...], value: float) -> int:
    """Index of the table entry closest to ``value`` (how the device rounds)."""
    return min(range(len(table)), key=lambda i: abs(table[i] - value))


def _code(names: tuple[str, ...], value: str, field: str) -> int:
    try:
        return names.index(value)
    except ValueError:
        raise DeviceError(
            f"MagVenture {field}: {value!r} is not one of {list(names)}"
        ) from None


def _name(names: tuple[str, ...], code: int, field: str) -> str:
    if not 0 <= code < len(names):
        raise DeviceError(f"MagVenture {field}: unknown code {code}")
    return names[code]


# ------------------------------------------------------------------- mode byte
@dataclass(frozen=True)
class ModeByte:
    """The mode byte carried by most device frames.

    Attributes
    ----------
    mode : str
        One of :data:`MODES` (bits 0–1).
    waveform : str
        One of :data:`WAVEFORMS` (bits 2–3).
    enabled : bool
        Whether the unit is enabled (armed) (bit 4).
    model : str
        One of :data:`MODELS` (bits 5–7).
    """

    mode: str = "standard"
    waveform: str = "biphasic"
    enabled: bool = False
    model: str = "X100"

    @classmethod
    def from_byte(cls, value: int) -> ModeByte:
        """Decode a mode byte."""
        return cls(
            mode=MODES[value & 0x03],
            waveform=WAVEFORMS[value >> 2 & 0x03],
            enabled=bool(value & 0x10),
            model=_name(MODELS, value >> 5, "model bits"),
        )

    def to_byte(self) -> int:
        """Encode as a mode byte."""
        return (
            _code(MODES, self.mode, "mode")
            | _code(WAVEFORMS, self.waveform, "waveform") << 2
            | int(self.enabled) << 4
            | _code(MODELS, self.model, "model") << 5
        )


# ---------------------------------------------------------------- device frames
@dataclass(frozen=True)
class Status:
    """Reply 0 to the short status command 0x00."""

    mode: ModeByte
    serial_number: int
    temperature: int
    coil_type: int
    amplitude_a: int
    amplitude_b: int

    frame_id = FrameId.STATUS

    @property
    def coil_name(self) -> str:
        """Coil model name, or ``"code N"`` when the code is not known."""
        return COIL_TYPES.get(self.coil_type, f"code {self.coil_type}")

    def _head(self) -> bytes:
        return (
            bytes([self.frame_id, self.mode.to_byte()])
            + self.serial_number.to_bytes(3, "big")
            + bytes([self.temperature, self.coil_type])
            + bytes([self.amplitude_a, self.amplitude_b])
        )

    def to_data(self) -> bytes:
        """DATA bytes of this frame (id first)."""
        return self._head()

    @classmethod
    def _head_fields(cls, data: bytes) -> dict:
        return {
            "mode": ModeByte.from_byte(data[1]),
            "serial_number": int.from_bytes(data[2:5], "big"),
            "temperature": data[5],
            "coil_type": data[6],
            "amplitude_a": data[7],
            "amplitude_b": data[8],
        }

    @classmethod
    def from_data(cls, data: bytes) -> Status:
        """Decode DATA (id first)."""
        return cls(**cls._head_fields(data))


@dataclass(frozen=True)
class LongStatus(Status):
    """Reply 5 to the long status command 0x05."""

    original_amplitude_a: int = 0
    original_amplitude_b: int = 0
    factor_a: int = 100
    factor_b: int = 100
    page: int = 1
    running: bool = False

    frame_id = FrameId.LONG_STATUS

    def to_data(self) -> bytes:
        """DATA bytes of this frame (id first)."""
        return self._head() + bytes(
            [
                self.original_amplitude_a,
                self.original_amplitude_b,
                self.factor_a,
                self.factor_b,
                self.page,
                int(self.running),
            ]
        )

    @classmethod
    def from_data(cls, data: bytes) -> LongStatus:
        """Decode DATA (id first)."""
        return cls(
            **cls._head_fields(data),
            original_amplitude_a=data[9],
            original_amplitude_b=data[10],
            factor_a=data[11],
            factor_b=data[12],
            page=data[13],
            running=bool(data[14]),
        )


@dataclass(frozen=True)
class AmplitudeFrame:
    """Frame 1: the amplitude changed (reply to 0x01 and 0x02, or front panel)."""

    amplitude_a: int
    amplitude_b: int
    mode: ModeByte

    frame_id = FrameId.AMPLITUDE

    def to_data(self) -> bytes:
        """DATA bytes of this frame (id first)."""
        return bytes(
            [self.frame_id, self.amplitude_a, self.amplitude_b, self.mode.to_byte()]
        )

    @classmethod
    def from_data(cls, data: bytes) -> AmplitudeFrame:
        """Decode DATA (id first)."""
        return cls(data[1], data[2], ModeByte.from_byte(data[3]))


@dataclass(frozen=True)
class PulseFrame:
    """Frame 2: a pulse was delivered; realised di/dt in A/µs per channel."""

    didt_a: int
    didt_b: int
    mode: ModeByte

    frame_id = FrameId.PULSE

    def to_data(self) -> bytes:
        """DATA bytes of this frame (id first)."""
        return bytes([self.frame_id, self.didt_a, self.didt_b, self.mode.to_byte()])

    @classmethod
    def from_data(cls, data: bytes) -> PulseFrame:
        """Decode DATA (id first)."""
        return cls(data[1], data[2], ModeByte.from_byte(data[3]))


@dataclass(frozen=True)
class TemperatureFrame:
    """Frame 3: coil temperature (°C) or coil type changed."""

    temperature: int
    coil_type: int
    mode: ModeByte

    frame_id = FrameId.TEMPERATURE

    def to_data(self) -> bytes:
        """DATA bytes of this frame (id first)."""
        return bytes(
            [self.frame_id, self.temperature, self.coil_type, self.mode.to_byte()]
        )

    @classmethod
    def from_data(cls, data: bytes) -> TemperatureFrame:
        """Decode DATA (id first)."""
        return cls(data[1], data[2], ModeByte.from_byte(data[3]))


@dataclass(frozen=True)
class PageFrame:
    """Frame 8: the UI page changed, and whether a train/protocol is running."""

    page: int
    running: bool

    frame_id = FrameId.PAGE

    def to_data(self) -> bytes:
        """DATA bytes of this frame (id first)."""
        return bytes([self.frame_id, self.page, int(self.running)])

    @classmethod
    def from_data(cls, data: bytes) -> PageFrame:
        """Decode DATA (id first)."""
        return cls(data[1], bool(data[2]))


@dataclass(frozen=True)
class ModeSettings:
    """Mode, current direction, waveform, burst, IPI and B/A ratio (command 0x09).

    Attributes
    ----------
    model : str
        One of :data:`MODELS`.
    mode : str
        One of :data:`MODES`.
    direction : str
        One of :data:`DIRECTIONS`.
    waveform : str
        One of :data:`WAVEFORMS`.
    burst_pulses : int
        Pulses per burst, 2–5.
    ipi_ms : float | None
        Inter-pulse interval (ms) where one applies (Twin/Dual mode or
        Biphasic Burst), else None.
    ba_ratio : float
        Pulse B / pulse A amplitude ratio (Twin mode), 0.2–5.0.
    """

    model: str = "X100"
    mode: str = "standard"
    direction: str = "normal"
    waveform: str = "biphasic"
    burst_pulses: int = 2
    ipi_ms: float | None = None
    ba_ratio: float = 1.0

    frame_id = FrameId.MODE

    def _fields(self) -> bytes:
        if not 2 <= self.burst_pulses <= 5:
            raise DeviceError(
                f"MagVenture burst pulses: must be 2–5, got {self.burst_pulses!r}"
            )
        return bytes(
            [
                _code(MODELS, self.model, "model"),
                _code(MODES, self.mode, "mode"),
                _code(DIRECTIONS, self.direction, "current direction"),
                _code(WAVEFORMS, self.waveform, "waveform"),
                5 - self.burst_pulses,
            ]
        )

    @property
    def ipi_index(self) -> int:
        """Index of :attr:`ipi_ms` in the table that applies (0 if none)."""
        table = ipi_table(self.mode, self.waveform)
        if table is None or self.ipi_ms is None:
            return 0
        return table_index(table, self.ipi_ms, "IPI (ms)")

    @property
    def ba_index(self) -> int:
        """Index of :attr:`ba_ratio` in :data:`BA_RATIOS`."""
        return table_index(BA_RATIOS, self.ba_ratio, "B/A ratio")

    def to_command(self) -> bytes:
        """The 0x09 "set" command frame (values, not indexes)."""
        self.ba_index  # noqa: B018 - refuse an off-grid ratio before encoding
        ipi = 0 if self.ipi_ms is None else round(self.ipi_ms * 10)
        return encode_frame(
            bytes([Command.MODE, 1])
            + self._fields()
            + struct.pack(">HH", ipi, round(self.ba_ratio * 100))
        )

    @classmethod
    def from_command(cls, data: bytes) -> ModeSettings:
        """Decode the DATA of a 0x09 "set" command (values are rounded later)."""
        _expect_length(data, 11, "command 0x09")
        ipi, ba = struct.unpack(">HH", data[7:11])
        return cls(**cls._decode_fields(data[2:7]), ipi_ms=ipi / 10, ba_ratio=ba / 100)

    def to_data(self) -> bytes:
        """DATA of the id-9 reply: IPI and B/A as table indexes."""
        return (
            bytes([self.frame_id, 0])
            + self._fields()
            + struct.pack("<H", self.ipi_index)
            + bytes([self.ba_index])
        )

    @classmethod
    def from_data(cls, data: bytes) -> ModeSettings:
        """Decode the DATA of an id-9 reply (index-coded IPI and B/A)."""
        fields = cls._decode_fields(data[2:7])
        (ipi_index,) = struct.unpack("<H", data[7:9])
        ba_index = data[9]
        if ba_index >= len(BA_RATIOS):
            raise DeviceError(f"MagVenture B/A ratio: index {ba_index} off the table")
        table = ipi_table(fields["mode"], fields["waveform"])
        ipi = None
        if table is not None:
            if ipi_index >= len(table):
                raise DeviceError(f"MagVenture IPI: index {ipi_index} off the table")
            ipi = table[ipi_index]
        return cls(**fields, ipi_ms=ipi, ba_ratio=BA_RATIOS[ba_index])

    @staticmethod
    def _decode_fields(raw: bytes) -> dict:
        if not 0 <= raw[4] <= 3:
            raise DeviceError(f"MagVenture burst index: {raw[4]} is not 0–3")
        return {
            "model": _name(MODELS, raw[0], "model"),
            "mode": _name(MODES, raw[1], "mode"),
            "direction": _name(DIRECTIONS, raw[2], "current direction"),
            "waveform": _name(WAVEFORMS, raw[3], "waveform"),
            "burst_pulses": 5 - raw[4],
        }


DeviceFrame = (
    Status
    | LongStatus
    | AmplitudeFrame
    | PulseFrame
    | TemperatureFrame
    | PageFrame
    | ModeSettings
)

_FRAMES: dict[int, tuple[type, int]] = {
    FrameId.STATUS: (Status, 9),
    FrameId.LONG_STATUS: (LongStatus, 15),
    FrameId.AMPLITUDE: (AmplitudeFrame, 4),
    FrameId.PULSE: (PulseFrame, 4),
    FrameId.TEMPERATURE: (TemperatureFrame, 4),
    FrameId.PAGE: (PageFrame, 3),
    FrameId.MODE: (ModeSettings, 10),
}


def _expect_length(data: bytes, n: int, what: str) -> None:
    if len(data) != n:
        raise DeviceError(
            f"MagVenture {what}: expected {n} data bytes, got {len(data)} "
            f"({data.hex(' ')})"
        )


def decode_frame(data: bytes) -> DeviceFrame:
    """Decode the DATA of a device → host frame into its typed form.

    Raises
    ------
    DeviceError
        Unknown frame id, wrong length for its id, or a field out of range.
    """
    if not data:
        raise DeviceError("MagVenture frame: empty DATA")
    try:
        cls, n = _FRAMES[data[0]]
    except KeyError:
        raise DeviceError(
            f"MagVenture frame: unknown id {data[0]} ({data.hex(' ')})"
        ) from None
    _expect_length(data, n, f"frame id {data[0]}")
    return cls.from_data(data)


# ------------------------------------------------------------- host commands
def _u16(value: int, name: str) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise DeviceError(f"MagVenture {name}: {value} does not fit in 16 bits")
    return struct.pack(">H", value)


def status_command() -> bytes:
    """0x00: short status (reply id 0)."""
    return encode_frame(bytes([Command.STATUS]))


def long_status_command() -> bytes:
    """0x05: long status (reply id 5)."""
    return encode_frame(bytes([Command.LONG_STATUS]))


def amplitude_command(amplitude_a: int, amplitude_b: int | None = None) -> bytes:
    """0x01: amplitude A (and B) in % (0–100)."""
    values = [amplitude_a] if amplitude_b is None else [amplitude_a, amplitude_b]
    for name, value in zip("AB", values, strict=False):
        if isinstance(value, bool) or int(value) != value or not 0 <= value <= 100:
            raise DeviceError(
                f"MagVenture amplitude {name}: must be an integer 0–100 %, "
                f"got {value!r}"
            )
    return encode_frame(bytes([Command.AMPLITUDE, *(int(v) for v in values)]))


def enable_command(enable: bool) -> bytes:
    """0x02: enable (1) or disable (0) the stimulator."""
    return encode_frame(bytes([Command.ENABLE, int(bool(enable))]))


def fire_command() -> bytes:
    """0x03: fire one pulse (only acted on when enabled)."""
    return encode_frame(bytes([Command.FIRE, 1]))


def start_train_command() -> bytes:
    """0x04: start the train of the Timing page (or the protocol)."""
    return encode_frame(bytes([Command.START_TRAIN]))


def page_command(page: str | int) -> bytes:
    """0x07: change the UI page (a name of :data:`PAGES` or its code)."""
    code = PAGES.get(page, page) if isinstance(page, str) else page
    if code not in PAGES.values():
        raise DeviceError(f"MagVenture page: {page!r} is not one of {PAGES}")
    return encode_frame(bytes([Command.PAGE, code, 0]))


@dataclass(frozen=True)
class TrainSettings:
    """Timing-page train: rate (Hz), pulses per train, trains, ITI (s)."""

    rate_hz: float
    pulses_in_train: int
    trains: int
    iti_s: float

    def to_command(self) -> bytes:
        """0x06: set train (rate×10, pulses, trains, ITI×10; u16 each)."""
        return encode_frame(
            bytes([Command.SET_TRAIN])
            + _u16(round(self.rate_hz * 10), "rate ×10")
            + _u16(self.pulses_in_train, "pulses in train")
            + _u16(self.trains, "trains")
            + _u16(round(self.iti_s * 10), "ITI ×10")
        )

    @classmethod
    def from_command(cls, data: bytes) -> TrainSettings:
        """Decode the DATA of a 0x06 command."""
        _expect_length(data, 9, "command 0x06")
        rate, pulses, trains, iti = struct.unpack(">HHHH", data[1:9])
        return cls(rate / 10, pulses, trains, iti / 10)


@dataclass(frozen=True)
class Delays:
    """Trigger-in delay, trigger-out delay (ms, 0.1 ms steps), charge delay (ms)."""

    trigger_in_ms: float = 0.0
    trigger_out_ms: float = 0.0
    charge_delay_ms: int = 0

    def to_command(self) -> bytes:
        """0x08: in-delay×10 u16, out-delay×10 s16, charge delay u16, 0, 0."""
        out = round(self.trigger_out_ms * 10)
        if not -0x8000 <= out <= 0x7FFF:
            raise DeviceError(
                f"MagVenture trigger-out delay: {self.trigger_out_ms} ms does not "
                "fit in a signed 16-bit count of 0.1 ms"
            )
        return encode_frame(
            bytes([Command.DELAYS])
            + _u16(round(self.trigger_in_ms * 10), "trigger-in delay ×10")
            + struct.pack(">h", out)
            + _u16(self.charge_delay_ms, "charge delay")
            + b"\x00\x00"
        )

    @classmethod
    def from_command(cls, data: bytes) -> Delays:
        """Decode the DATA of a 0x08 command."""
        _expect_length(data, 9, "command 0x08")
        in_delay, out_delay, charge = struct.unpack(">HhH", data[1:7])
        return cls(in_delay / 10, out_delay / 10, charge)


def get_mode_command() -> bytes:
    """0x09 "get": ask for mode, direction, waveform, burst, IPI, B/A (reply id 9)."""
    return encode_frame(bytes([Command.MODE]) + bytes(10))
