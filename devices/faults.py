"""Fault injection for the device simulators, shared by every model.

One :class:`FaultPlan` says what a simulator should get wrong; the same plan is
built from keyword arguments in tests and from a ``--faults`` string on the
command line (``stimtrain sim … --faults drop_every=5,late_s=0.3``).
Counting is per simulator: "the n-th reply" means replies sent since start.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(kw_only=True)
class FaultPlan:
    """What a simulator gets wrong, and when.

    Attributes
    ----------
    drop_every : int
        Every n-th reply loses its last byte (a dropped byte). 0: never.
    corrupt_crc_every : int
        Every n-th reply has a wrong checksum. 0: never.
    late_every : int
        Every n-th reply is sent ``late_s`` seconds late. 0: never.
    late_s : float
        Delay of a late reply.
    silent_after : int
        After this many commands, read but never answer or act (a dead link).
        -1: never.
    disconnect_after : int
        After this many commands, close the port (the cable is pulled; the
        driver sees EOF/EIO). -1: never.
    overheat_after_pulses : int
        After this many pulses the coil reports over temperature (disarms and
        refuses to arm). -1: never.
    refuse_arm : bool
        Arming is refused (Magstim: the unit stays disarmed; MagVenture: the
        enable bit never comes on).
    """

    drop_every: int = 0
    corrupt_crc_every: int = 0
    late_every: int = 0
    late_s: float = 0.5
    silent_after: int = -1
    disconnect_after: int = -1
    overheat_after_pulses: int = -1
    refuse_arm: bool = False

    @property
    def active(self) -> bool:
        """Whether any fault is planned."""
        return self != FaultPlan()

    @classmethod
    def parse(cls, text: str) -> FaultPlan:
        """Build a plan from ``"name=value,name=value"``.

        Raises
        ------
        ValueError
            Naming the unknown field or the value that does not parse.
        """
        kwargs: dict[str, object] = {}
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for item in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = item.partition("=")
            name = name.strip()
            if name not in fields:
                raise ValueError(
                    f"unknown fault {name!r}; expected one of {sorted(fields)}"
                )
            kind = fields[name].type
            if kind == "bool":
                if sep and value.strip().lower() not in (
                    "1",
                    "true",
                    "yes",
                    "0",
                    "false",
                    "no",
                ):
                    raise ValueError(
                        f"fault {name}: expected true/false (got {value!r})"
                    )
                kwargs[name] = not sep or value.strip().lower() in ("1", "true", "yes")
                continue
            try:
                kwargs[name] = float(value) if kind == "float" else int(value)
            except ValueError:
                raise ValueError(
                    f"fault {name}: expected a number (got {value!r})"
                ) from None
        return cls(**kwargs)

    @staticmethod
    def _every(n: int, count: int) -> bool:
        return n > 0 and count % n == 0

    def drop(self, reply_count: int) -> bool:
        """Whether reply number ``reply_count`` (1-based) loses a byte."""
        return self._every(self.drop_every, reply_count)

    def corrupt(self, reply_count: int) -> bool:
        """Whether reply number ``reply_count`` (1-based) gets a bad checksum."""
        return self._every(self.corrupt_crc_every, reply_count)

    def delay(self, reply_count: int) -> float:
        """Seconds to hold back reply number ``reply_count`` (1-based)."""
        return self.late_s if self._every(self.late_every, reply_count) else 0.0

    def silent(self, command_count: int) -> bool:
        """Whether the link is dead once ``command_count`` commands arrived."""
        return 0 <= self.silent_after < command_count

    def disconnected(self, command_count: int) -> bool:
        """Whether the port is gone once ``command_count`` commands arrived."""
        return 0 <= self.disconnect_after < command_count

    def overheated(self, pulse_count: int) -> bool:
        """Whether the coil is over temperature after ``pulse_count`` pulses."""
        return 0 <= self.overheat_after_pulses <= pulse_count
