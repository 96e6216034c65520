"""The pulse ledger: what the session's threads share about delivered pulses.

The device process reports each firing on its reader thread; the block code
(main thread) and the online-TMS forwarder read what was given. The ledger
owns that state behind one lock: the marker fields of each block and online
trial, the firings given per block, and the count of pulses delivered. It
turns a firing into its pulses (a paired-pulse firing gives two, a device-run
train many), each marked at the moment the unit was told to fire (the write
time the device process reported) and journaled, one line per pulse: the
per-day cap counts them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..safety.delivery import Delivery
from .device_process import PulseReport


@dataclass(frozen=True)
class Pulse:
    """One pulse of a firing: its number in the block, role, time and fields."""

    number: int
    role: str | None
    actual: float
    fields: dict


class PulseLedger:
    """Delivered pulses and their marker fields, shared by the session's threads.

    Parameters
    ----------
    markers : MarkerOutlet
        Where each pulse's marker goes (``push(event, timestamp, **fields)``).
    journal : Journal
        Where each pulse's journal line goes.
    on_change : callable | None
        ``on_change(delivered)`` after each firing (the console's counter).
    """

    def __init__(
        self, markers, journal, on_change: Callable[[int], None] | None = None
    ):
        self.markers = markers
        self.journal = journal
        self.on_change = on_change
        self._lock = threading.Lock()
        self._block_fields: dict[int, dict] = {}
        self._online_fields: dict[tuple[int, int], dict] = {}
        self._given: dict[int, set[int]] = {}
        self._fired_at: dict[tuple[int, int], float] = {}
        self._block_pulses: dict[int, int] = {}
        self._delivered = 0

    # -- what a block declares before its pulses ---------------------------------
    def set_block_fields(self, block: int, **fields) -> None:
        """The marker fields every pulse of ``block`` carries (pattern, power …)."""
        with self._lock:
            self._block_fields[block] = dict(fields)

    def update_block_fields(self, block: int, **fields) -> None:
        """Add fields (a pair's ISI, a device train's frequency) to ``block``'s."""
        with self._lock:
            self._block_fields.setdefault(block, {}).update(fields)

    def set_online_fields(self, block: int, index: int, **fields) -> None:
        """The trial fields of online pulse ``index`` of ``block``."""
        with self._lock:
            self._online_fields[(block, index)] = dict(fields)

    def take_online_fields(self, block: int, index: int) -> dict:
        """Remove and return an online pulse's fields (it was withdrawn)."""
        with self._lock:
            return self._online_fields.pop((block, index))

    # -- what was given -------------------------------------------------------
    @property
    def delivered(self) -> int:
        """Pulses delivered in this run."""
        with self._lock:
            return self._delivered

    def block_pulses(self, block: int) -> int:
        """Pulses delivered in ``block``."""
        with self._lock:
            return self._block_pulses.get(block, 0)

    def given(self, block: int) -> set[int]:
        """The firings (schedule indices) of ``block`` the unit gave."""
        with self._lock:
            return set(self._given.get(block, set()))

    def fired_at(self, block: int, index: int) -> float | None:
        """When firing ``index`` of ``block`` left the host (None: not given)."""
        with self._lock:
            return self._fired_at.get((block, index))

    def record(self, report: PulseReport) -> list[Pulse]:
        """Mark and journal the pulses of one firing the device process reported.

        Called on the device reader thread. Every marker is stamped with the
        time the device process took right after its write (``report.actual``),
        never the time the report arrived here.
        """
        with self._lock:
            fields = {
                **self._block_fields.get(report.block, {}),
                **self._online_fields.get((report.block, report.index), {}),
            }
            pulses = _pulses(report, fields)
            self._given.setdefault(report.block, set()).add(report.index)
            self._fired_at[(report.block, report.index)] = report.actual
            self._delivered += len(pulses)
            self._block_pulses[report.block] = self._block_pulses.get(
                report.block, 0
            ) + len(pulses)
            delivered = self._delivered
        if self.on_change is not None:
            self.on_change(delivered)
        for pulse in pulses:
            role = {} if pulse.role is None else {"role": pulse.role}
            self.markers.push(
                "pulse",
                pulse.actual,
                block=report.block,
                pulse=pulse.number,
                scheduled=report.scheduled,
                via=report.via,
                **role,
                **pulse.fields,
            )
            self.journal.write(
                "pulse",
                block=report.block,
                pulse=pulse.number,
                scheduled=report.scheduled,
                actual=pulse.actual,
                via=report.via,
                confirmed=report.confirmed,
                **role,
            )
        return pulses


def _pulses(report: PulseReport, fields: dict) -> list[Pulse]:
    """The pulses one firing gave."""
    fields = dict(fields)
    if report.via == Delivery.DEVICE_TRAIN:
        # The unit times the train's pulses itself, at its frequency.
        n, rate = fields.pop("train_pulses"), fields.pop("frequency")
        return [
            Pulse(report.index * n + k, None, report.actual + k / rate, fields)
            for k in range(n)
        ]
    if report.via == Delivery.PAIRED:
        # One firing of a paired-pulse unit gives two pulses, the test pulse
        # ``isi`` after the conditioning one (timed by the unit).
        isi = fields.pop("isi")
        cond = {**fields, "power": fields.pop("conditioning_power")}
        return [
            Pulse(2 * report.index, "conditioning", report.actual, cond),
            Pulse(2 * report.index + 1, "test", report.actual + isi, fields),
        ]
    return [Pulse(report.index, None, report.actual, fields)]
