"""The Rapid² version reply, in both forms, on real pseudo-terminals."""

from __future__ import annotations

import os
import threading

import pytest

from stimtrain.devices.magstim.driver import Magstim
from stimtrain.devices.magstim.protocol import crc, frame, reply_length


def test_simulator_sends_the_status_byte_before_the_version(raw):
    raw.write(b"Q@" + bytes([crc(b"Q@")]))  # remote control on
    raw.read(reply_length("Q", "rapid"))
    raw.write(b"ND" + bytes([crc(b"ND")]))
    reply = raw.read(16)
    assert reply[:1] == b"N" and not reply[1:2].isdigit()
    assert reply[2:8] == b"9.0.0\x00" and reply[-1] == crc(reply[:-1])


class _OneReplyUnit:
    """A unit on a real pty that answers ``N`` with a given reply body."""

    def __init__(self, body: bytes):
        self.master, slave = os.openpty()
        self.port = os.ttyname(slave)
        self.body = body
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        got = b""
        while not got.endswith(b"ND" + bytes([crc(b"ND")])):
            got += os.read(self.master, 1)
        os.write(self.master, frame(self.body))


@pytest.mark.parametrize(
    "body",
    [
        b"N\x899.2.0\x00",  # with the instrument status byte (the unit's form)
        b"N\x009.2.0\x00",  # a status byte of 0x00 is not the end of the text
        b"N9.2.0\x00",  # the older form without it
    ],
    ids=["status", "status-0x00", "no-status"],
)
def test_driver_reads_both_forms(body):
    unit = _OneReplyUnit(body)
    m = Magstim(unit.port, "rapid2", timeout=0.3)
    m.open()
    try:
        assert m.version() == (9, 2, 0)
    finally:
        # The unit answers nothing else: the disarm on close times out (logged).
        m.close()
