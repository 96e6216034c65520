"""Exceptions raised by device drivers.

Every message names the command, what was expected and what came back, so an
operator reading a journal can tell a cable fault from a refused command.
"""

from __future__ import annotations


class DeviceError(RuntimeError):
    """A device did not do what it was asked to do."""


class CRCError(DeviceError):
    """A reply arrived whose checksum does not match its bytes."""


class DeviceTimeout(DeviceError):
    """A device did not answer (completely) within the allowed time."""


class CommandRejected(DeviceError):
    """A device understood the link but refused the command.

    Parameters
    ----------
    message : str
        Human-readable explanation.
    command : str | None
        The command character that was refused.
    reason : str | None
        ``"unknown"`` (the unit replied ``?``: unknown command or bad
        checksum), ``"bad_data"`` (``<cmd>?``) or ``"state"`` (``<cmd>S``:
        the command conflicts with the unit's current state).
    """

    def __init__(
        self, message: str, *, command: str | None = None, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.command = command
        self.reason = reason


class TriggerLineError(DeviceError):
    """A trigger line cannot be used (e.g. the port has no RTS modem line)."""


class PortVanished(DeviceError):
    """The serial port went away (cable pulled, adapter removed: EOF or EIO)."""


class RemoteControlLost(DeviceError):
    """The unit dropped remote control (keep-alive lapsed) and disarmed itself."""


class DeviceLimitError(DeviceError, ValueError):
    """A command was refused before it was sent: it would break a device limit.

    Also a ValueError, since the value asked for is what is wrong.
    """
