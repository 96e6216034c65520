"""Every pulse a plan can deliver, at its worst-case time, power and path.

The safety check judges this table, never the protocol's patterns: however a
protocol wrote its pulses, they end up here as times and powers. Where the run
decides the timing (jitter, task trials), each interval is at its shortest:
jitter at its lower bound, online pulses on consecutive shortest trials.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class PulseTable:
    """Pulses of a plan as parallel arrays, sorted by worst-case time.

    Attributes
    ----------
    t_s : ndarray
        Worst-case session time (s) of each pulse.
    block : ndarray of int
        The block that delivers it.
    power : ndarray
        Device power in %MSO (NaN when no threshold converts it).
    pct_rmt, pct_amt : ndarray
        The power in % of each threshold (NaN when unknown).
    stimulus : ndarray of int
        Pulses with the same number count as one stimulus for the
        physiological rules (a paired-pulse pair, docs/specs/safety.md).
    firing : ndarray of int
        Pulses with the same number are one firing of the unit (a pair on a
        paired-pulse stimulator).
    """

    t_s: np.ndarray
    block: np.ndarray
    power: np.ndarray
    pct_rmt: np.ndarray
    pct_amt: np.ndarray
    stimulus: np.ndarray
    firing: np.ndarray

    def __len__(self) -> int:
        return len(self.t_s)

    @classmethod
    def empty(cls) -> PulseTable:
        """A table without pulses."""
        f, i = np.zeros(0), np.zeros(0, dtype=int)
        return cls(f, i, f, f, f, i, i)

    @classmethod
    def concat(cls, parts: list[PulseTable]) -> PulseTable:
        """One table of several blocks' pulses, renumbered and sorted by time."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        stim, fire, s0, f0 = [], [], 0, 0
        for p in parts:
            stim.append(p.stimulus + s0)
            fire.append(p.firing + f0)
            s0 += int(p.stimulus.max()) + 1
            f0 += int(p.firing.max()) + 1
        cat = {
            name: np.concatenate([getattr(p, name) for p in parts])
            for name in ("t_s", "block", "power", "pct_rmt", "pct_amt")
        }
        table = cls(**cat, stimulus=np.concatenate(stim), firing=np.concatenate(fire))
        return table.take(np.argsort(table.t_s, kind="stable"))

    def take(self, index: np.ndarray) -> PulseTable:
        """The pulses at ``index`` (a mask or positions)."""
        return PulseTable(
            **{
                name: getattr(self, name)[index]
                for name in (
                    "t_s",
                    "block",
                    "power",
                    "pct_rmt",
                    "pct_amt",
                    "stimulus",
                    "firing",
                )
            }
        )

    def grouped(self, by: str) -> PulseTable:
        """One row per stimulus (``by="stimulus"``) or firing (``"firing"``).

        A group is at its first pulse's time, with its strongest pulse's
        power and intensity.
        """
        if not len(self):
            return self
        ids = getattr(self, by)
        order = np.lexsort((self.t_s, ids))
        ids_sorted = ids[order]
        starts = np.flatnonzero(np.r_[True, ids_sorted[1:] != ids_sorted[:-1]])

        def strongest(values: np.ndarray) -> np.ndarray:
            v = np.where(np.isnan(values), -np.inf, values)[order]
            out = np.maximum.reduceat(v, starts) if len(v) else v
            return np.where(np.isinf(out), np.nan, out)

        first = order[starts]
        table = PulseTable(
            t_s=self.t_s[first],
            block=self.block[first],
            power=strongest(self.power),
            pct_rmt=strongest(self.pct_rmt),
            pct_amt=strongest(self.pct_amt),
            stimulus=self.stimulus[first],
            firing=self.firing[first],
        )
        return table.take(np.argsort(table.t_s, kind="stable"))


def block_pulse_table(
    offsets: np.ndarray,
    start_s: float,
    block: int,
    doses: list,
    *,
    pair_isi_s: float | None = None,
    collapse_pairs: bool = False,
    paired_firing: bool = False,
) -> PulseTable:
    """The pulses of one block at worst-case times.

    Parameters
    ----------
    offsets : ndarray
        Worst-case seconds from the block's start of each stimulus onset.
    start_s : float
        The block's earliest session start.
    block : int
        The block's index.
    doses : list of Dose
        One dose (a single pulse), or two (conditioning, then test) per pair.
    pair_isi_s : float | None
        For pairs, the test pulse follows the conditioning by this much.
    collapse_pairs : bool
        Count each pair as one stimulus (a subthreshold-conditioned pair).
    paired_firing : bool
        Each pair is one firing of a paired-pulse unit.
    """
    n = len(offsets)
    onsets = start_s + np.asarray(offsets, dtype=float)
    if pair_isi_s is None:
        times = onsets
        stim = fire = np.arange(n)
    else:
        times = np.stack([onsets, onsets + pair_isi_s], axis=1).ravel()
        pair = np.repeat(np.arange(n), 2)
        single = np.arange(2 * n)
        stim = pair if collapse_pairs else single
        fire = pair if paired_firing else single

    def values(attr: str) -> np.ndarray:
        # One dose per stimulus (single pulses) or two (a pair), repeated.
        per = doses[:1] if pair_isi_s is None else doses[:2]
        row = [np.nan if getattr(d, attr) is None else getattr(d, attr) for d in per]
        return np.tile(np.array(row, dtype=float), n)

    return PulseTable(
        t_s=times,
        block=np.full(len(times), block),
        power=values("power"),
        pct_rmt=values("pct_rmt"),
        pct_amt=values("pct_amt"),
        stimulus=stim,
        firing=fire,
    )
