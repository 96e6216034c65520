"""Magstim host-interface framing: CRC, command encoding, status bytes, replies.

Pure functions and plain data shared by the driver and the simulator, so both
ends of the link agree on every byte. Facts come from docs/specs/magstim.md.

Models are grouped in three *families* that share a command set: ``"200"``
(Magstim 200²), ``"bistim"`` (BiStim²) and ``"rapid"`` (Rapid² family).
"""

from __future__ import annotations

import re
from dataclasses import astuple, dataclass

from ..errors import CommandRejected, CRCError, DeviceError

#: Padding byte sent by commands that carry no data.
NO_DATA = b"@"

#: Command characters each family understands.
COMMANDS: dict[str, frozenset[str]] = {
    "200": frozenset("QR@EJF"),
    "bistim": frozenset("QR@AEJFCYZX"),
    "rapid": frozenset("QR@EF\\BD[^_bNIxno"),
}

#: Commands that exist from Rapid software version 9 on.
V9_COMMANDS = frozenset("xno")

#: Commands whose reply carries the Rapid status byte after the instrument one.
RAPID_STATUS_REPLIES = frozenset("\\BD[^_xn")

#: Commands (with data) a unit accepts without remote control.
NO_REMOTE_NEEDED = frozenset({"Q", "R", "J", "F", "\\", "EA"})


def crc(data: bytes) -> int:
    """Magstim checksum: the low byte of the sum of ``data``, inverted.

    Parameters
    ----------
    data : bytes
        Every byte of the frame before the checksum.

    Returns
    -------
    int
        The checksum byte (0–255).

    Examples
    --------
    >>> chr(crc(b"@050"))
    '*'
    """
    return ~sum(data) & 0xFF


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else bytes(value)


def encode(cmd: bytes | str, data: bytes | str = NO_DATA) -> bytes:
    """Build a host → device frame: command, data, checksum.

    Parameters
    ----------
    cmd : bytes | str
        One command character.
    data : bytes | str
        Data bytes; commands without data send ``@`` as padding.

    Returns
    -------
    bytes
        The frame to write.
    """
    c, d = _as_bytes(cmd), _as_bytes(data)
    if len(c) != 1:
        raise ValueError(f"a Magstim command is one character, got {cmd!r}")
    if not d:
        raise ValueError(f"command {cmd!r} needs data (use '@' as padding)")
    body = c + d
    return body + bytes([crc(body)])


def frame(body: bytes) -> bytes:
    """Append the checksum to a device → host reply body."""
    return body + bytes([crc(body)])


def digits(value: int, width: int) -> bytes:
    """Format a non-negative integer as zero-padded ASCII decimal."""
    if value < 0 or value >= 10**width:
        raise ValueError(f"{value} does not fit in {width} digits")
    return f"{value:0{width}d}".encode("ascii")


class _Bits:
    """Mixin: a dataclass of 8 booleans, field order = bit 0 → 7."""

    @classmethod
    def from_byte(cls, value: int):
        """Decode a status byte."""
        return cls(*(bool(value >> bit & 1) for bit in range(8)))

    def to_byte(self) -> int:
        """Encode as a status byte."""
        return sum(1 << bit for bit, on in enumerate(astuple(self)) if on)


@dataclass(frozen=True)
class InstrumentStatus(_Bits):
    """Instrument status byte (every status-returning reply).

    ``standby`` and ``armed`` are mutually exclusive on a working unit, so a
    status byte can never be ``?`` (0x3F) or ``S`` (0x53), which both have
    bits 0 and 1 set: that is what lets a reader tell an error reply apart.
    """

    standby: bool = False
    armed: bool = False
    ready: bool = False
    coil_present: bool = False
    replace_coil: bool = False
    error_present: bool = False
    error_fatal: bool = False
    remote_control: bool = False


@dataclass(frozen=True)
class RapidStatus(_Bits):
    """Rapid status byte (Rapid parameter, train and system-status replies)."""

    enhanced_power: bool = False
    train: bool = False
    wait: bool = False
    single_pulse_mode: bool = False
    hv_psu: bool = False
    coil_ready: bool = False
    theta_psu: bool = False
    modified_coil_algorithm: bool = False


@dataclass(frozen=True)
class Reply:
    """A parsed, checksum-verified device → host reply.

    Attributes
    ----------
    command : str
        The echoed command character.
    instrument : InstrumentStatus | None
        Instrument status (None for the version reply).
    rapid : RapidStatus | None
        Rapid status, for the commands that report it.
    data : bytes
        Payload after the status bytes, without checksum (and without the
        0x00 terminator of the version reply).
    raw : bytes
        The whole reply as received.
    """

    command: str
    instrument: InstrumentStatus | None
    rapid: RapidStatus | None
    data: bytes
    raw: bytes


def data_length(cmd: str, family: str, version: int = 9) -> int | None:
    """Number of data bytes a host command carries.

    Parameters
    ----------
    cmd : str
        Command character.
    family : str
        ``"200"``, ``"bistim"`` or ``"rapid"``.
    version : int
        Rapid firmware major version (some widths grew in v7 and v9).

    Returns
    -------
    int | None
        The data length, or None if this family/version does not know the
        command.
    """
    if cmd not in COMMANDS[family] or (cmd in V9_COMMANDS and version < 9):
        return None
    if cmd == "n":
        return charge_delay_width(version)
    if cmd in "@AC":
        return 3
    if cmd == "B":
        return 4
    if cmd == "D":
        return 5 if version >= 9 else 4
    if cmd == "[":
        return 4 if version >= 9 else 3
    return 1


def charge_delay_width(version: int) -> int:
    """Digits of the Rapid charge delay (``n``/``o``): 5 on v ≥ 10, else 4."""
    return 5 if version >= 10 else 4


def rapid_parameter_widths(version: int = 9) -> tuple[int, int, int, int, int]:
    """Digit widths of the ``\\`` reply: power, frequency, pulses, duration, wait."""
    return (
        3,
        4,
        5 if version >= 9 else 4,
        4 if version >= 9 else 3,
        4 if version >= 7 else 3,
    )


def reply_length(cmd: str, family: str, version: int = 9) -> int | None:
    """Length of a successful reply, checksum included.

    Returns None for the version reply ``N`` (read up to 0x00, then the
    checksum) and raises ``ValueError`` for a command the family lacks.
    """
    if data_length(cmd, family, version) is None:
        raise ValueError(f"Magstim {family} (v{version}) has no command {cmd!r}")
    if cmd == "N":
        return None
    if cmd == "J":
        return 12
    if cmd == "F":
        return 9
    if cmd == "X":
        return 4
    if cmd in "Ix":
        return 6
    if cmd == "n":
        return 6 if version >= 10 else 4
    if cmd == "o":
        return 3 + charge_delay_width(version)
    if cmd == "\\":
        return 4 + sum(rapid_parameter_widths(version))
    if cmd in RAPID_STATUS_REPLIES:
        return 4
    return 3


_REJECT_REASONS = {b"?": "bad_data", b"S": "state"}


def parse_reply(
    cmd: bytes | str, reply: bytes, *, expected_length: int | None = None
) -> Reply:
    """Check and decode a reply to ``cmd``.

    Parameters
    ----------
    cmd : bytes | str
        The command character that was sent.
    reply : bytes
        Every byte received for it.
    expected_length : int | None
        If given, a successful reply must have exactly this length.

    Returns
    -------
    Reply
        The decoded reply.

    Raises
    ------
    CommandRejected
        The unit answered ``?`` (unknown command or bad checksum),
        ``<cmd>?`` (bad data) or ``<cmd>S`` (state conflict).
    CRCError
        The reply's checksum is wrong.
    DeviceError
        The reply is too short, has the wrong length or does not echo ``cmd``.
    """
    c = _as_bytes(cmd)[:1]
    name = c.decode("latin-1")
    if reply == b"?":
        raise CommandRejected(
            f"Magstim command {name!r}: unit replied '?' (unknown command or bad "
            "checksum in what was sent)",
            command=name,
            reason="unknown",
        )
    if len(reply) < 3:
        raise DeviceError(
            f"Magstim command {name!r}: expected a reply of at least 3 bytes, "
            f"got {reply!r}"
        )
    if crc(reply[:-1]) != reply[-1]:
        raise CRCError(
            f"Magstim command {name!r}: reply {reply!r} has checksum "
            f"0x{reply[-1]:02X}, expected 0x{crc(reply[:-1]):02X}"
        )
    if reply[:1] != c:
        raise DeviceError(
            f"Magstim command {name!r}: reply should echo {name!r}, got {reply!r}"
        )
    if len(reply) == 3 and reply[1:2] in _REJECT_REASONS:
        reason = _REJECT_REASONS[reply[1:2]]
        what = "bad data" if reason == "bad_data" else "conflicts with unit state"
        raise CommandRejected(
            f"Magstim command {name!r} refused ({what}): reply {reply!r}",
            command=name,
            reason=reason,
        )
    if expected_length is not None and len(reply) != expected_length:
        raise DeviceError(
            f"Magstim command {name!r}: expected a {expected_length}-byte reply, "
            f"got {len(reply)} bytes {reply!r}"
        )
    if name == "N":
        data = reply[1:-1].rstrip(b"\x00")
        if data[:1].isdigit():
            # An older form without the instrument status byte.
            return Reply(name, None, None, data, reply)
        return Reply(name, InstrumentStatus.from_byte(data[0]), None, data[1:], reply)
    instrument = InstrumentStatus.from_byte(reply[1])
    if name in RAPID_STATUS_REPLIES:
        return Reply(
            name, instrument, RapidStatus.from_byte(reply[2]), reply[3:-1], reply
        )
    return Reply(name, instrument, None, reply[2:-1], reply)


def parse_version(data: bytes) -> tuple[int, ...]:
    """Decode the ASCII software version of an ``N`` reply, e.g. ``9.2.0``."""
    numbers = re.findall(rb"\d+", data)
    if not numbers:
        raise DeviceError(f"Magstim command 'N': no version number in {data!r}")
    return tuple(int(n) for n in numbers)
