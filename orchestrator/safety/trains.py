"""Finding trains in compiled pulses, whatever pattern wrote them.

docs/specs/safety.md: a train is a run of stimuli whose intervals are at most 1 s;
its frequency is the rate of its shortest interval; its duration runs from the
first stimulus to one interval after the last (the longest interval of the
train, so an irregular train is never judged shorter than it is). Groups of 3
to 5 pulses at 30 Hz or faster, two or more of them repeated at 25 Hz or
slower, are theta bursts; anything else faster than 25 Hz is conventional rTMS
beyond the table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Stimuli at most this far apart belong to one train (1 Hz and faster).
TRAIN_GAP_S = 1.0
#: Pulses this close together (30 Hz and faster) can form a burst.
BURST_MIN_RATE_HZ = 30.0
#: A burst has at least this many pulses (docs/specs/safety.md) ...
BURST_MIN_PULSES = 3
#: ... and at most this many: published theta-burst and quadripulse designs
#: use 3 to 5; a longer group is a fast train, not a burst (stimtrain's
#: reading, so that 50 Hz rTMS cannot pass as "one long burst").
BURST_MAX_PULSES = 5
#: Bursts come in groups: one isolated burst is a fast train.
BURST_MIN_BURSTS = 2
#: Bursts follow each other at this rate or slower.
BURST_REPEAT_MAX_HZ = 25.0
#: Float slack on interval comparisons (pulse times are sums of floats).
EPS = 1e-6


@dataclass(frozen=True)
class Train:
    """One train found in the compiled stimuli.

    ``first`` and ``stop`` index the stimuli (``stop`` exclusive); times are
    worst-case session seconds. ``pct_rmt``, ``pct_amt`` and ``power`` are
    the strongest stimulus of the train (None when unknown).
    """

    number: int
    block: int
    first: int
    stop: int
    start_s: float
    end_s: float
    frequency_hz: float
    duration_s: float
    kind: str
    pct_rmt: float | None
    pct_amt: float | None
    power: float | None
    bursts: int = 0
    pulses_per_burst: int = 0
    burst_frequency_hz: float = 0.0

    @property
    def pulses(self) -> int:
        """Stimuli in the train."""
        return self.stop - self.first

    @property
    def mean_rate_hz(self) -> float:
        """Stimuli per second over the train's duration (the energy rate)."""
        return self.pulses / self.duration_s

    def describe(self) -> str:
        """Words for people: ``a 20 Hz train of 40 pulses (2 s)``."""
        if self.kind == "theta_burst":
            return (
                f"a theta-burst train of {self.bursts} bursts of "
                f"{self.pulses_per_burst} at {self.burst_frequency_hz:.3g} Hz "
                f"({self.duration_s:.4g} s)"
            )
        return (
            f"a {self.frequency_hz:.4g} Hz train of {self.pulses} pulses "
            f"({self.duration_s:.4g} s)"
        )

    def as_dict(self) -> dict:
        """JSON-ready form (the plan file and ``plan --json``)."""
        return {
            "train": self.number,
            "block": self.block,
            "kind": self.kind,
            "pulses": self.pulses,
            "start_s": self.start_s,
            "frequency_hz": self.frequency_hz,
            "duration_s": self.duration_s,
            "mean_rate_hz": self.mean_rate_hz,
            "pct_rmt": self.pct_rmt,
            "pct_amt": self.pct_amt,
            "power": self.power,
            "bursts": self.bursts,
            "pulses_per_burst": self.pulses_per_burst,
            "burst_frequency_hz": self.burst_frequency_hz,
        }


def runs(times: np.ndarray, gap: float = TRAIN_GAP_S) -> list[tuple[int, int]]:
    """``(first, stop)`` of every run of 2+ times whose intervals are <= ``gap``."""
    if len(times) < 2:
        return []
    breaks = np.flatnonzero(np.diff(times) > gap + EPS) + 1
    edges = np.concatenate([[0], breaks, [len(times)]])
    return [
        (int(a), int(b))
        for a, b in zip(edges[:-1], edges[1:], strict=True)
        if b - a > 1
    ]


def _bursts(times: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Burst onsets and sizes when ``times`` is a theta-burst train, else None."""
    intervals = np.diff(times)
    split = intervals > 1.0 / BURST_MIN_RATE_HZ + EPS
    edges = np.concatenate([[0], np.flatnonzero(split) + 1, [len(times)]])
    sizes = np.diff(edges)
    if len(sizes) < BURST_MIN_BURSTS:
        return None
    if sizes.min() < BURST_MIN_PULSES or sizes.max() > BURST_MAX_PULSES:
        return None
    if split.any() and intervals[split].min() < 1.0 / BURST_REPEAT_MAX_HZ - EPS:
        return None
    return times[edges[:-1]], sizes


def _strongest(values: np.ndarray) -> float | None:
    known = values[~np.isnan(values)]
    return float(known.max()) if len(known) else None


def find_trains(
    times: np.ndarray,
    blocks: np.ndarray,
    pct_rmt: np.ndarray,
    pct_amt: np.ndarray,
    power: np.ndarray,
    *,
    fast_hz: float = BURST_REPEAT_MAX_HZ,
) -> list[Train]:
    """Every train among stimuli at sorted worst-case ``times``.

    Parameters
    ----------
    times : ndarray
        Worst-case session time of each stimulus, sorted.
    blocks, pct_rmt, pct_amt, power : ndarray
        Block index, intensity in threshold units and power (NaN unknown)
        of each stimulus.
    fast_hz : float
        Above this rate a train is looked at as theta burst.

    Returns
    -------
    list of Train
        In time order, numbered from 1.
    """
    out = []
    for first, stop in runs(times):
        t = times[first:stop]
        intervals = np.diff(t)
        # Rounded so that equal trains written as sums of floats compare equal.
        frequency = round(1.0 / float(intervals.min()), 6)
        extra: dict = {}
        kind = "rtms"
        bursts = _bursts(t) if frequency > fast_hz + EPS else None
        if bursts is not None:
            onsets, sizes = bursts
            kind = "theta_burst"
            period = float(np.diff(onsets).max()) if len(onsets) > 1 else None
            span = float(onsets[-1] - onsets[0])
            duration = span + (
                period if period else float(t[-1] - t[0]) + 1 / frequency
            )
            extra = dict(
                bursts=len(onsets),
                pulses_per_burst=int(sizes.min()),
                burst_frequency_hz=frequency,
            )
        else:
            duration = float(t[-1] - t[0] + intervals.max())
        out.append(
            Train(
                number=len(out) + 1,
                block=int(blocks[first]),
                first=first,
                stop=stop,
                start_s=float(t[0]),
                end_s=float(t[0]) + duration,
                frequency_hz=frequency,
                duration_s=duration,
                kind=kind,
                pct_rmt=_strongest(pct_rmt[first:stop]),
                pct_amt=_strongest(pct_amt[first:stop]),
                power=_strongest(power[first:stop]),
                **extra,
            )
        )
    return out
