"""A stimulation block's timeline: its firing units, safe points and shifts.

A block's pulses are fixed offsets from its start. The device process is
given *units*: single pulses (or pairs) one by one, or, when the unit runs
its own trains, one start per train. When the block is interrupted (a stalled
stream, the operator's pause) the units not yet given keep their offsets and
move together to a new start, so intervals stay exact and nothing is given
twice.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

#: A pause waits for a gap of at least this long before the next unit: the
#: pause between trains, or between single pulses at 1 Hz or slower. A
#: continuous pattern (cTBS, a train without breaks) runs to its end.
SAFE_GAP_S = 1.0


@dataclass(frozen=True)
class BlockTimeline:
    """The pulses of one stimulation block, relative to its start.

    Parameters
    ----------
    offsets : sequence of float
        Every pulse's offset from the block start (s), in order.
    per_unit : int
        Pulses per firing unit: 1, or the pulses of a device-run train.
    duration_s : float
        The block's planned duration from its start (s).
    """

    offsets: Sequence[float]
    per_unit: int
    duration_s: float

    def __post_init__(self) -> None:
        if not self.offsets:
            raise ValueError("a stimulation block needs at least one pulse")
        if self.per_unit < 1 or len(self.offsets) % self.per_unit:
            raise ValueError(
                f"{len(self.offsets)} pulses don't split into units of {self.per_unit}"
            )

    @property
    def n_units(self) -> int:
        return len(self.offsets) // self.per_unit

    def unit_offset(self, i: int) -> float:
        """Offset of unit ``i``'s first pulse."""
        return self.offsets[i * self.per_unit]

    def unit_last_offset(self, i: int) -> float:
        """Offset of unit ``i``'s last pulse (a device-run train's end)."""
        return self.offsets[(i + 1) * self.per_unit - 1]

    def items(
        self, start: float, units: Sequence[int], via: str
    ) -> list[tuple[float, int, str]]:
        """The device process's schedule items for ``units`` from ``start``."""
        return [(start + self.unit_offset(i), i, via) for i in units]

    def left(self, given: Collection[int]) -> list[int]:
        """Units not given yet, in order."""
        return [i for i in range(self.n_units) if i not in given]

    def restart(self, given: Collection[int], at: float) -> float:
        """The block start that puts the first unit left at clock time ``at``."""
        left = self.left(given)
        if not left:
            raise ValueError("every unit of the block was given")
        return at - self.unit_offset(left[0])

    def safe_point(self, start: float, given: Collection[int], after: float):
        """The next unit a pause can stop before, at or after clock time ``after``.

        A unit is a safe point when nothing of the block was given before it
        or when the gap before it is at least :data:`SAFE_GAP_S`. Returns
        ``(unit, clock time)``, or None when the block has none left.
        """
        for i in self.left(given):
            t = start + self.unit_offset(i)
            if t < after:
                continue
            gap = self.unit_offset(i) - self.unit_last_offset(i - 1) if i else None
            if gap is None or gap >= SAFE_GAP_S or not any(j < i for j in given):
                return i, t
        return None

    def last_pulse_before(self, start: float, t: float) -> float | None:
        """Clock time of the last pulse of the units that start before ``t``."""
        ends = [
            start + self.unit_last_offset(i)
            for i in range(self.n_units)
            if start + self.unit_offset(i) < t
        ]
        return max(ends) if ends else None

    def last_pulse(self, start: float) -> float:
        return start + self.offsets[-1]

    def end(self, start: float) -> float:
        return start + self.duration_s
