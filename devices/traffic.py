"""The raw device traffic log: every byte to and from each device, on the LSL clock.

One JSON object per line::

    {"dir": "tx", "device": "super_rapid2", "hex": "45488c", "clock": 1234.5678}

``dir`` is ``"tx"`` (host → device), ``"rx"`` (device → host) or ``"note"``
(an event in words, in ``"text"``: a port opened, a fault). ``device`` is the
stimulator's model key, ``"triggerbox"`` or ``"rts"``. The writer flushes
regularly and fsyncs on close, so a crash loses at most the last fraction of a
second; the reader skips a torn last line. :func:`format_traffic` turns a log
into a table with the meaning of each Magstim or MagVenture frame.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import stat
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from pylsl import local_clock

from .errors import CommandRejected, DeviceError
from .magstim.protocol import crc, parse_reply
from .magventure.protocol import FrameParser
from .stimulator import REGISTRY, TrafficLog, models

logger = logging.getLogger("stimtrain.devices.traffic")


@dataclass(frozen=True)
class TrafficRecord:
    """One line of a traffic log.

    Attributes
    ----------
    direction : str
        ``"tx"``, ``"rx"`` or ``"note"``.
    device : str
        Model key, ``"triggerbox"`` or ``"rts"``.
    data : bytes
        The bytes (empty for a note).
    clock : float
        LSL clock time of the write or read.
    text : str
        A note's text (empty otherwise).
    """

    direction: str
    device: str
    data: bytes
    clock: float
    text: str = ""


class TrafficWriter:
    """Append traffic records to a JSON-lines file.

    Parameters
    ----------
    path : str | Path
        The log file; appended to, never truncated.
    flush_interval : float
        Seconds between two flushes to the operating system.
    clock : callable
        Clock for flush timing and notes (default :func:`pylsl.local_clock`).

    Notes
    -----
    Writing happens in the process that owns the ports, right after a byte
    went out, so it only formats a short line into a buffer; the flush (a
    system call) happens at most every ``flush_interval`` and the fsync only
    on :meth:`close`. A log that can't be written (a full disk) never fails
    the command whose bytes it records: lines are written whole or not at
    all, and from the first failure on the log counts what it lost
    (:attr:`lost`, :attr:`error`) instead of writing.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        flush_interval: float = 0.5,
        clock: Callable[[], float] = local_clock,
    ) -> None:
        self.path = Path(path)
        self.flush_interval = flush_interval
        self._clock = clock
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        self._fd: int | None = os.open(self.path, flags, 0o644)
        self._pending: list[str] = []
        self._last_flush = clock()
        #: The first write error (the log stopped writing there), and the
        #: records lost from then on.
        self.error: OSError | None = None
        self.lost = 0

    def callback(self, device: str) -> TrafficLog:
        """Return a ``traffic_log(direction, data, clock_time)`` for ``device``."""

        def log(direction: str, data: bytes, t: float) -> None:
            self.write(device, direction, data, t)

        return log

    def write(self, device: str, direction: str, data: bytes, t: float) -> None:
        """Append one record of bytes sent (``"tx"``) or received (``"rx"``)."""
        if direction not in ("tx", "rx"):
            raise ValueError(
                f"traffic direction must be 'tx' or 'rx', got {direction!r}"
            )
        self._line({"dir": direction, "device": device, "hex": data.hex(), "clock": t})

    def note(self, device: str, text: str, t: float | None = None) -> None:
        """Append an event in words (port opened, fault, …)."""
        t = self._clock() if t is None else t
        self._line({"dir": "note", "device": device, "text": text, "clock": t})

    def _line(self, record: dict) -> None:
        if self._fd is None:
            raise ValueError(f"traffic log {self.path} is closed")
        if self.error is not None:
            self.lost += 1
            return
        self._pending.append(json.dumps(record) + "\n")
        if self._clock() - self._last_flush >= self.flush_interval:
            self.flush()

    def flush(self) -> None:
        """Hand buffered lines to the operating system (whole lines only)."""
        self._last_flush = self._clock()
        if self._fd is None or not self._pending:
            return
        data = "".join(self._pending).encode("utf-8")
        count = len(self._pending)
        self._pending.clear()
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            done = 0
            while done < len(data):
                done += os.write(self._fd, data[done:])
        except OSError as exc:
            try:
                os.ftruncate(self._fd, start)
            except OSError:
                pass
            self.error, self.lost = exc, self.lost + count
            logger.warning("traffic log %s stopped: %s", self.path, exc)

    def close(self) -> None:
        """Flush, fsync and close (idempotent; never raises for I/O errors)."""
        if self._fd is None:
            return
        try:
            self.flush()
            os.fsync(self._fd)
        except OSError as exc:
            logger.warning("traffic log %s: %s", self.path, exc)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> TrafficWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _require_regular_file(path: Path) -> None:
    """Refuse, without blocking, what is not a regular file (a FIFO would hang)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        raise ValueError(f"{path}: must be a regular file (got {kind})")


def read_traffic(path: str | Path) -> list[TrafficRecord]:
    """Read a traffic log.

    A torn last line (the writer was killed mid-line) is skipped with a
    warning; a malformed line anywhere else is an error.

    Raises
    ------
    ValueError
        Naming the file, the line number and what is wrong with it.
    """
    path = Path(path)
    _require_regular_file(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path}: not a traffic log (not UTF-8 text: {exc.reason})"
        ) from None
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            direction = item["dir"]
            records.append(
                TrafficRecord(
                    direction=direction,
                    device=item.get("device", "stimulator"),
                    data=bytes.fromhex(item.get("hex", "")),
                    clock=float(item["clock"]),
                    text=item.get("text", ""),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            if number == len(lines):
                logger.warning("%s: skipping torn last line %d", path, number)
                break
            raise ValueError(
                f"{path}, line {number}: not a traffic record "
                f"({type(exc).__name__}: {exc}): {line[:80]!r}"
            ) from None
    return records


@dataclass(frozen=True)
class _Row:
    clock: float
    device: str
    direction: str
    data: bytes
    text: str = ""


def _merge(records: Iterable[TrafficRecord], gap: float) -> list[_Row]:
    # Drivers read a reply in pieces (first byte, then the rest); one row per
    # message reads better and lets the decoder see the whole frame.
    rows: list[_Row] = []
    for rec in records:
        last = rows[-1] if rows else None
        if (
            last is not None
            and rec.direction == "rx"
            and last.direction == "rx"
            and rec.device == last.device
            and rec.clock - last.clock <= gap
        ):
            rows[-1] = _Row(last.clock, last.device, "rx", last.data + rec.data)
            continue
        rows.append(_Row(rec.clock, rec.device, rec.direction, rec.data, rec.text))
    return rows


def _manufacturer(device: str, data: bytes) -> str | None:
    models()
    if device in REGISTRY:
        return REGISTRY[device].capabilities.manufacturer
    if data[:1] == b"\xfe":
        return "magventure"
    return None


#: What each Magstim command does; data decoders are in :func:`describe_magstim`.
_MAGSTIM_COMMANDS = {
    "Q": "remote control on",
    "R": "remote control off",
    "@": "set power A",
    "A": "set power B",
    "C": "set IPI",
    "J": "get parameters",
    "F": "get coil temperature",
    "Y": "high-resolution IPI on",
    "Z": "high-resolution IPI off",
    "X": "get system mode",
    "\\": "get Rapid parameters",
    "B": "set train frequency",
    "D": "set pulses per train",
    "[": "set train duration",
    "^": "enhanced power on",
    "_": "enhanced power off",
    "b": "ignore coil interlock",
    "N": "get software version",
    "I": "get error code",
    "x": "get system status",
}
_MAGSTIM_MODES = {"A": "disarm", "B": "arm", "H": "fire"}
_MAGSTIM_UNITS = {"@": " %", "A": " %", "C": " (IPI units)"}


def _flags(status: object) -> str:
    on = [name.replace("_", " ") for name, value in asdict(status).items() if value]
    return ", ".join(on) or "no flags"


def describe_magstim(direction: str, data: bytes, last_command: str | None) -> str:
    """Say what a Magstim frame means (``"Q@ remote control on"``).

    Parameters
    ----------
    direction : str
        ``"tx"`` (a command) or ``"rx"`` (a reply).
    data : bytes
        The whole frame, checksum included.
    last_command : str | None
        The command character a reply answers.

    Returns
    -------
    str
        The meaning, or a note that the frame is malformed.
    """
    if not data:
        return ""
    text = data[:-1].decode("latin-1")
    if direction == "tx":
        if len(data) < 3:
            return "incomplete command"
        cmd, arg = text[0], text[1:]
        bad = "" if crc(data[:-1]) == data[-1] else " (bad checksum)"
        if cmd == "E":
            what = _MAGSTIM_MODES.get(arg, f"mode {arg!r}")
        elif cmd == "B" and arg.isdigit():
            what = f"set train frequency {int(arg) / 10:g} Hz"
        elif cmd == "[" and arg.isdigit():
            what = f"set train duration {int(arg) / 10:g} s"
        elif cmd in "@ACD" and arg.isdigit():
            what = f"{_MAGSTIM_COMMANDS[cmd]} {int(arg)}{_MAGSTIM_UNITS.get(cmd, '')}"
        else:
            what = _MAGSTIM_COMMANDS.get(cmd, "unknown command")
        return f"{text} {what}{bad}"
    try:
        reply = parse_reply(last_command or text[:1], data)
    except CommandRejected as exc:
        reason = {"unknown": "unknown command or bad checksum", "bad_data": "bad data"}
        return f"refused: {reason.get(exc.reason, 'conflicts with unit state')}"
    except DeviceError as exc:
        return f"malformed reply ({exc})"
    if reply.instrument is None:
        return f"version {reply.data.decode('latin-1')}"
    meaning = _flags(reply.instrument)
    if reply.command == "F" and reply.data[:6].isdigit():
        meaning += f"; coil {int(reply.data[:3]) / 10:g} °C"
    elif reply.command == "J" and reply.data[:3].isdigit():
        meaning += f"; power A {int(reply.data[:3])} %"
    elif reply.command == "\\" and reply.data[:3].isdigit():
        meaning += f"; power {int(reply.data[:3])} %"
    return meaning


_MAGVENTURE_TX = {
    0: "get status",
    1: "set amplitude",
    2: "enable/disable",
    3: "fire",
    4: "start train",
    5: "get long status",
    6: "set train",
    7: "change page",
    8: "set trigger/charge delays",
    9: "get/set mode",
}
_MAGVENTURE_RX = {
    0: "status",
    1: "amplitude changed",
    2: "pulse delivered",
    3: "temperature/coil changed",
    5: "long status",
    8: "page changed",
    9: "mode settings",
}


def describe_magventure(direction: str, data: bytes) -> str:
    """Say what the MagVenture frames in ``data`` mean (``"enable"``, …)."""
    payloads = FrameParser().feed(bytes(data))
    if not payloads:
        return "no complete frame"
    names = []
    for payload in payloads:
        ident, body = payload[0], payload[1:]
        if direction == "tx":
            what = _MAGVENTURE_TX.get(ident, f"command {ident}")
            if ident == 1 and body:
                what = f"set amplitude {body[0]} %"
            elif ident == 2 and body:
                what = "enable" if body[0] else "disable"
        else:
            what = _MAGVENTURE_RX.get(ident, f"frame {ident}")
            if ident == 1 and body:
                what = f"amplitude {body[0]} %"
            if ident in (0, 1, 5) and body:
                mode = body[-1] if ident == 1 else body[0]
                what += ", enabled" if mode & 0x10 else ", disabled"
        names.append(what)
    return "; ".join(names)


def describe(device: str, direction: str, data: bytes, last_command: str | None) -> str:
    """Say in words what one message means, or ``""`` if it cannot be decoded.

    Parameters
    ----------
    device : str
        The log's device name (model key, ``"triggerbox"``, ``"rts"``).
    direction : str
        ``"tx"`` or ``"rx"``.
    data : bytes
        The whole message.
    last_command : str | None
        For a Magstim reply, the command character sent before it.
    """
    if device == "triggerbox":
        return f"lines {data[-1]:#04x}" if data else ""
    if device == "rts":
        return ("RTS high" if data[-1] else "RTS low") if data else ""
    maker = _manufacturer(device, data)
    if maker == "magstim":
        return describe_magstim(direction, data, last_command)
    if maker == "magventure":
        return describe_magventure(direction, data)
    return ""


def format_traffic(path: str | Path, *, merge_gap: float = 0.05) -> str:
    """Format a traffic log as a readable table.

    Columns: time in seconds since the first line, device, direction, the
    bytes in hex, and what they mean where the protocol can be decoded
    (e.g. ``Q@ remote control on``).

    Parameters
    ----------
    path : str | Path
        The traffic log (``devices.jsonl`` in a session folder).
    merge_gap : float
        Received pieces of one device less than this many seconds apart are
        shown as one reply.

    Returns
    -------
    str
        The table, one line per message.
    """
    rows = _merge(read_traffic(path), merge_gap)
    if not rows:
        return f"{path}: no traffic"
    t0 = rows[0].clock
    width = max(len(r.device) for r in rows)
    out = [f"{'time (s)':>11}  {'device':<{width}}  dir   {'bytes':<24}  meaning"]
    last_command: dict[str, str] = {}
    for row in rows:
        if row.direction == "note":
            meaning, shown = row.text, ""
        else:
            meaning = describe(
                row.device, row.direction, row.data, last_command.get(row.device)
            )
            shown = row.data.hex(" ")
            if row.direction == "tx" and row.data:
                last_command[row.device] = chr(row.data[0])
        out.append(
            f"{row.clock - t0:11.6f}  {row.device:<{width}}  {row.direction:<4}  "
            f"{shown:<24}  {meaning}".rstrip()
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """``stimtrain devices traffic FILE``: print a traffic log as a table."""
    parser = argparse.ArgumentParser(
        prog="stimtrain devices traffic", description=format_traffic.__doc__
    )
    parser.add_argument("file", help="traffic log (devices.jsonl)")
    args = parser.parse_args(argv)
    try:
        print(format_traffic(args.file))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
