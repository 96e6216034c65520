"""Magstim framing: checksums, encoding, status bytes and reply parsing."""

import pytest

from stimtrain.devices.errors import CommandRejected, CRCError, DeviceError
from stimtrain.devices.magstim.protocol import (
    InstrumentStatus,
    RapidStatus,
    crc,
    data_length,
    encode,
    frame,
    parse_reply,
    parse_version,
    reply_length,
)


def test_crc_spec_example():
    assert crc(b"@050") == 0x2A == ord("*")
    assert encode("@", "050") == b"@050*"
    assert encode(b"E", b"H") == b"EH" + bytes([~(0x45 + 0x48) & 0xFF])
    assert encode("Q") == b"Q@" + bytes([crc(b"Q@")])


def test_encode_rejects_bad_input():
    with pytest.raises(ValueError, match="one character"):
        encode("QQ")
    with pytest.raises(ValueError, match="needs data"):
        encode("Q", b"")


@pytest.mark.parametrize("cls", [InstrumentStatus, RapidStatus])
def test_status_round_trip(cls):
    for value in range(256):
        assert cls.from_byte(value).to_byte() == value


def test_status_bit_order():
    status = InstrumentStatus.from_byte(0b1000_0110)
    assert status.armed and status.ready and status.remote_control
    assert not status.standby and not status.coil_present
    rapid = RapidStatus(single_pulse_mode=True, hv_psu=True)
    assert rapid.to_byte() == 0b0001_1000
    # A real status never looks like '?' or 'S' (standby and armed together).
    for char in b"?S":
        decoded = InstrumentStatus.from_byte(char)
        assert decoded.standby and decoded.armed


def test_parse_reply_ok():
    status = InstrumentStatus(standby=True, coil_present=True, remote_control=True)
    reply = parse_reply("Q", frame(b"Q" + bytes([status.to_byte()])))
    assert reply.command == "Q" and reply.instrument == status and reply.rapid is None
    rapid = RapidStatus(single_pulse_mode=True)
    raw = frame(b"\\" + bytes([status.to_byte(), rapid.to_byte()]) + b"0" * 20)
    reply = parse_reply("\\", raw, expected_length=24)
    assert reply.rapid == rapid and reply.data == b"0" * 20
    version = parse_reply("N", frame(b"N9.2.0\x00"))
    assert version.instrument is None and parse_version(version.data) == (9, 2, 0)


def test_parse_reply_errors():
    with pytest.raises(CommandRejected, match="unknown") as info:
        parse_reply("K", b"?")
    assert info.value.reason == "unknown"
    with pytest.raises(CommandRejected, match="bad data") as info:
        parse_reply("@", frame(b"@?"))
    assert info.value.reason == "bad_data" and info.value.command == "@"
    with pytest.raises(CommandRejected, match="state") as info:
        parse_reply("E", frame(b"ES"))
    assert info.value.reason == "state"
    good = frame(b"E\x02")
    with pytest.raises(CRCError, match="checksum"):
        parse_reply("E", good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(DeviceError, match="echo"):
        parse_reply("Q", frame(b"R\x01"))
    with pytest.raises(DeviceError, match="3-byte"):
        parse_reply("Q", frame(b"Q\x01\x01"), expected_length=3)


def test_lengths_by_family_and_version():
    assert data_length("@", "rapid") == 3
    assert data_length("D", "rapid", 9) == 5 and data_length("D", "rapid", 8) == 4
    assert data_length("[", "rapid", 9) == 4 and data_length("[", "rapid", 6) == 3
    assert data_length("x", "rapid", 8) is None
    assert data_length("\\", "200") is None and data_length("J", "rapid") is None
    assert reply_length("\\", "rapid", 9) == 24
    assert reply_length("\\", "rapid", 7) == 4 + 3 + 4 + 4 + 3 + 4
    assert reply_length("\\", "rapid", 6) == 4 + 3 + 4 + 4 + 3 + 3
    assert reply_length("J", "200") == 12 and reply_length("F", "200") == 9
    assert reply_length("x", "rapid") == 6 and reply_length("N", "rapid") is None
    with pytest.raises(ValueError, match="no command"):
        reply_length("J", "rapid")


def test_charge_delay_and_v9_commands():
    for cmd in "xno":
        assert data_length(cmd, "rapid", 8) is None
        assert data_length(cmd, "200") is None and data_length(cmd, "bistim") is None
    assert data_length("n", "rapid", 9) == 4 and data_length("n", "rapid", 10) == 5
    assert data_length("o", "rapid", 9) == 1
    assert reply_length("n", "rapid", 9) == 4  # echo, instrument, rapid, CRC
    assert reply_length("n", "rapid", 10) == 6  # … plus the extended status
    assert reply_length("o", "rapid", 9) == 7 and reply_length("o", "rapid", 10) == 8
    status = InstrumentStatus(remote_control=True, standby=True).to_byte()
    reply = parse_reply(
        "o", frame(b"o" + bytes([status]) + b"01500"), expected_length=8
    )
    assert reply.rapid is None and reply.data == b"01500"


@pytest.mark.parametrize("status", [0x00, 0x89])
def test_version_reply_with_the_instrument_status_byte(status):
    # magstim.md: the unit sends its status before the digits, as in every
    # other reply; the status may itself be 0x00.
    reply = parse_reply("N", frame(b"N" + bytes([status]) + b"9.2.0\x00"))
    assert reply.instrument == InstrumentStatus.from_byte(status)
    assert parse_version(reply.data) == (9, 2, 0)
