"""Find serial ports and which stimulator answers on each, without arming anything.

:func:`list_ports` lists the ports pyserial finds (plus paths given
explicitly: pseudo-terminals are not listed by the system). :func:`probe`
sends each manufacturer's read-only status query and reports who answered:

Magstim (9600 8N1)
    ``F@`` (coil temperature: every model, no remote control needed). Then
    ``J@`` (200² and BiStim² answer, a Rapid replies ``?``), ``X@`` (system
    mode: BiStim² only) or ``\\@`` (Rapid parameters; the reply length gives
    the software generation). The software version needs remote control
    (``N``): it is read only when remote control is off and the unit is
    disarmed, and remote control is released again right after (``R@``).
MagVenture (38400 8N1)
    The short status frame ``FE 01 00 00 FF``; the id-0 reply carries the
    model, enabled bit, serial number, coil and amplitudes.

Nothing is ever armed or fired. Every byte exchanged is kept in the result.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import serial
from pylsl import local_clock
from serial.tools import list_ports as _list_ports

from .errors import CommandRejected, DeviceError
from .magstim.protocol import Reply, encode, parse_reply, parse_version
from .magventure.capabilities import MODELS as MAGPRO_MODELS
from .magventure.protocol import FrameParser, Status, decode_frame, status_command
from .traffic import describe_magstim, describe_magventure

logger = logging.getLogger("stimtrain.devices.probe")

#: Rapid-family models; the serial protocol does not tell them apart.
RAPID_MODELS = ("rapid2", "super_rapid2", "super_rapid2_plus")
#: Length of the Rapid ``\\`` reply → software generation (docs/specs/magstim.md).
_RAPID_GENERATION = {24: "software v9 or later", 22: "software v7–8", 21: "before v7"}


@dataclass(frozen=True)
class PortInfo:
    """A serial port as the system (or the caller) names it."""

    device: str
    description: str = ""
    hwid: str = ""


@dataclass
class ProbeResult:
    """Who answered on one port.

    Attributes
    ----------
    port : str
        The port probed.
    manufacturer : str | None
        ``"magstim"``, ``"magventure"``, or None when nothing answered.
    models : tuple of str
        Model keys that fit the replies (several when the protocol cannot
        tell them apart, e.g. the Rapid² family).
    label : str
        What answered, in words.
    version : str | None
        Software version, when readable without side effects.
    details : dict
        Further facts read (status flags, coil temperature, serial number …).
    exchanged : list of tuple
        ``(direction, bytes, clock_time, meaning)`` of every write and read.
    error : str | None
        Why the port could not be probed (cannot open, …).
    """

    port: str
    manufacturer: str | None = None
    models: tuple[str, ...] = ()
    label: str = "no stimulator answered"
    version: str | None = None
    details: dict = field(default_factory=dict)
    exchanged: list[tuple[str, bytes, float, str]] = field(default_factory=list)
    error: str | None = None

    @property
    def answered(self) -> bool:
        """Whether a stimulator answered."""
        return self.manufacturer is not None

    def summary(self) -> str:
        """One line: port, what answered, version and models."""
        if self.error:
            return f"{self.port}: {self.error}"
        text = f"{self.port}: {self.label}"
        if self.version:
            text += f", version {self.version}"
        if self.models:
            text += f" (model: {' or '.join(self.models)})"
        return text


def list_ports(extra: Iterable[str] = ()) -> list[PortInfo]:
    """List serial ports: the system's, then ``extra`` paths not already listed.

    Parameters
    ----------
    extra : iterable of str
        Paths to include even though the system does not list them
        (pseudo-terminals of the simulators, symlinks).
    """
    found = [
        PortInfo(p.device, p.description or "", p.hwid or "")
        for p in sorted(_list_ports.comports(), key=lambda p: p.device)
    ]
    known = {p.device for p in found}
    for path in extra:
        if path not in known:
            exists = Path(path).exists()
            found.append(
                PortInfo(path, "given path" if exists else "given path (not found)")
            )
            known.add(path)
    return found


class _Link:
    """One open port that records every byte in a :class:`ProbeResult`."""

    def __init__(self, ser: serial.Serial, result: ProbeResult, maker: str) -> None:
        self.ser = ser
        self.result = result
        self.maker = maker
        self.last_command: str | None = None

    def _record(self, direction: str, data: bytes) -> None:
        if self.maker == "magstim":
            meaning = describe_magstim(direction, data, self.last_command)
        else:
            meaning = describe_magventure(direction, data)
        self.result.exchanged.append((direction, data, local_clock(), meaning))

    def send(self, data: bytes) -> None:
        self.ser.reset_input_buffer()
        self.ser.write(data)
        self.ser.flush()
        self.last_command = chr(data[0]) if self.maker == "magstim" else None
        self._record("tx", data)

    def receive(
        self,
        first_timeout: float,
        complete: Callable[[bytes], bool] = lambda data: False,
        quiet: float = 0.03,
    ) -> bytes:
        """Read a reply: until ``complete(data)``, or ``quiet`` s without a byte."""
        self.ser.timeout = first_timeout
        data = self.ser.read(1)
        if data:
            # USB adapters deliver in bursts (FTDI: every 16 ms), hence the
            # quiet time rather than a per-byte time at 9600 baud.
            self.ser.timeout = quiet
            while not complete(data):
                chunk = self.ser.read(max(1, self.ser.in_waiting))
                if not chunk:
                    break
                data += chunk
            self._record("rx", data)
        return data


#: Reply lengths of the probe's Magstim commands (the Rapid ``\`` reply is
#: 21–24 bytes by software version: read to the quiet time).
_MAGSTIM_LENGTHS = {"F": 9, "J": 12, "X": 4, "Q": 3, "R": 3}


def _magstim_complete(cmd: str) -> Callable[[bytes], bool]:
    expected = _MAGSTIM_LENGTHS.get(cmd)

    def complete(data: bytes) -> bool:
        if data == b"?" or (len(data) == 3 and data[1:2] in (b"?", b"S")):
            return True
        if cmd == "N":
            # To the 0x00 after the version's digits, then the checksum (the
            # status byte before the digits may itself be 0x00).
            body = data[1:-1]
            return body.endswith(b"\x00") and any(48 <= b <= 57 for b in body)
        return expected is not None and len(data) >= expected

    return complete


def _magstim_command(
    link: _Link, cmd: str, arg: str, timeout: float
) -> tuple[Reply | None, str | None]:
    """Send one Magstim command.

    Returns
    -------
    reply : Reply | None
        The verified reply, or None.
    refused : str | None
        ``"none"`` (no reply), ``"invalid"`` (malformed or bad checksum), or
        the :class:`CommandRejected` reason (``"unknown"``, ``"bad_data"``,
        ``"state"``) when the unit refused.
    """
    link.send(encode(cmd, arg))
    raw = link.receive(timeout, _magstim_complete(cmd))
    if not raw:
        return None, "none"
    try:
        return parse_reply(cmd, raw), None
    except CommandRejected as exc:
        return None, exc.reason
    except DeviceError:
        return None, "invalid"


def _probe_magstim(link: _Link, result: ProbeResult, timeout: float, version: bool):
    temp, _ = _magstim_command(link, "F", "@", timeout)
    if temp is None or temp.instrument is None:
        return False
    status = temp.instrument
    result.manufacturer = "magstim"
    result.details.update(
        remote_control=status.remote_control,
        armed=status.armed,
        ready=status.ready,
        coil_present=status.coil_present,
    )
    if temp.data[:3].isdigit():
        result.details["coil_temperature"] = int(temp.data[:3]) / 10
    params, _ = _magstim_command(link, "J", "@", timeout)
    if params is not None:
        # X exists on the BiStim² only; it needs remote control, so a BiStim²
        # without it refuses with 'XS' while a 200² does not know it ('?').
        mode, refused = _magstim_command(link, "X", "@", timeout)
        bistim = mode is not None or refused in ("state", "bad_data")
        result.models = ("bistim",) if bistim else ("200",)
        result.label = "Magstim BiStim²" if bistim else "Magstim 200²"
        return True
    rapid, _ = _magstim_command(link, "\\", "@", timeout)
    if rapid is None:
        result.label = "Magstim (model not recognised)"
        return True
    result.models = RAPID_MODELS
    result.label = "Magstim Rapid² family"
    generation = _RAPID_GENERATION.get(len(rapid.raw))
    if generation:
        result.details["software"] = generation
    if not version:
        return True
    if status.remote_control or status.armed:
        # Someone else is in control: leave the unit exactly as it is.
        result.details["version"] = "not read: remote control already active"
        return True
    if _magstim_command(link, "Q", "@", timeout)[0] is None:
        result.details["version"] = "not read: remote control refused"
        return True
    try:
        reply, _ = _magstim_command(link, "N", "D", timeout)
        if reply is not None:
            result.version = ".".join(map(str, parse_version(reply.data)))
    finally:
        if _magstim_command(link, "R", "@", timeout)[0] is None:
            logger.warning("%s: releasing remote control got no valid reply", link.ser)
    return True


def _probe_magventure(link: _Link, result: ProbeResult, timeout: float) -> bool:
    link.send(status_command())
    parser = FrameParser()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = link.receive(max(0.01, deadline - time.monotonic()))
        for payload in parser.feed(raw):
            try:
                status = decode_frame(payload)
            except DeviceError:
                continue
            if type(status) is not Status:
                continue  # a frame the unit pushed by itself
            code = status.mode.model
            result.manufacturer = "magventure"
            result.models = tuple(
                k for k, m in MAGPRO_MODELS.items() if m.model_code == code
            )
            result.label = f"MagVenture MagPro {code}"
            result.details.update(
                enabled=status.mode.enabled,
                mode=status.mode.mode,
                waveform=status.mode.waveform,
                serial_number=status.serial_number,
                coil=status.coil_name,
                coil_temperature=status.temperature,
                amplitude_a=status.amplitude_a,
            )
            return True
    return False


def probe(port: str, *, timeout: float = 0.3, read_version: bool = True) -> ProbeResult:
    """Find out which stimulator answers on ``port``, without arming anything.

    Parameters
    ----------
    port : str
        Serial port path.
    timeout : float
        Seconds to wait for the first byte of each reply.
    read_version : bool
        Read a Rapid's software version; this enables remote control for
        two commands and releases it again, and is skipped when remote
        control is already on or the unit is armed.

    Returns
    -------
    ProbeResult
        What answered (``answered`` is False when nothing did), with every
        byte exchanged.
    """
    result = ProbeResult(port)
    attempts = (
        (
            "magstim",
            9600,
            lambda link: _probe_magstim(link, result, timeout, read_version),
        ),
        ("magventure", 38400, lambda link: _probe_magventure(link, result, timeout)),
    )
    for maker, baudrate, attempt in attempts:
        try:
            with serial.Serial(port, baudrate=baudrate, timeout=timeout) as ser:
                if attempt(_Link(ser, result, maker)):
                    return result
        except (serial.SerialException, OSError) as exc:
            result.error = f"cannot open or use {port}: {exc}"
            return result
    return result


def format_exchange(result: ProbeResult) -> str:
    """The bytes of a probe, one line each, time relative to the first."""
    if not result.exchanged:
        return ""
    t0 = result.exchanged[0][2]
    return "\n".join(
        f"  {t - t0:8.4f}  {d}  {data.hex(' '):<30} {meaning}".rstrip()
        for d, data, t, meaning in result.exchanged
    )


def main(argv: list[str] | None = None) -> int:
    """``stimtrain devices [--probe] [--verbose] [PORT ...]``.

    Lists the serial ports (the system's and those given); with ``--probe``
    asks each one which stimulator it is (only the given ports, if any).
    Returns 0, or 1 if a given port could not be opened.
    """
    parser = argparse.ArgumentParser(
        prog="stimtrain devices", description="List serial ports and probe them."
    )
    parser.add_argument("ports", nargs="*", help="ports to include (ptys too)")
    parser.add_argument(
        "--probe", action="store_true", help="ask which stimulator answers"
    )
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="show the bytes exchanged"
    )
    args = parser.parse_args(argv)
    # Probing writes bytes: with ports given, only those are probed.
    if args.probe and args.ports:
        ports = [PortInfo(p) for p in dict.fromkeys(args.ports)]
    else:
        ports = list_ports(args.ports)
    if not ports:
        print("no serial ports found")
        return 0
    status = 0
    for info in ports:
        if not args.probe:
            print(f"{info.device}: {info.description} {info.hwid}".rstrip())
            continue
        result = probe(info.device)
        print(result.summary())
        if result.error and info.device in args.ports:
            status = 1
        if args.verbose and result.exchanged:
            print(format_exchange(result))
    sys.stdout.flush()
    return status
