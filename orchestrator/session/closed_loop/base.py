"""What every phase estimator is: the settings it checks, its rate, its calls.

The trigger (:mod:`.trigger`) drives every estimator the same way, so it never
asks which one it holds: :class:`RhythmEstimator` checks the band and the
window against the stream's rate, picks the whole factor the signal is
averaged down by, and declares the two calls (:meth:`~RhythmEstimator.estimate`
at a decision, :meth:`~RhythmEstimator.band_power` between them).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np


class Estimate(NamedTuple):
    """What one run of the estimator found."""

    #: Absolute time of the first target crossing within the search span, or
    #: None when the prediction does not cross it there.
    crossing: float | None
    #: Estimated phase at the decision time ``now``, radians in (-pi, pi].
    phase: float
    #: The band power the amplitude gate compares (each estimator's own
    #: measure, the same as :meth:`RhythmEstimator.band_power` returns).
    power: float
    #: The predicted rhythm's frequency, Hz.
    freq: float


def wrap(angle: np.ndarray | float) -> np.ndarray | float:
    """Angles wrapped to (-pi, pi]."""
    return np.pi - np.mod(np.pi - np.asarray(angle), 2 * np.pi)


class RhythmEstimator:
    """The settings and calls every phase estimator shares.

    Parameters
    ----------
    sfreq : float
        The stream's sampling frequency, Hz.
    band : tuple of float
        Low and high edge of the rhythm's band, Hz.
    window_s : float
        How much recent signal an estimate reads, s (at least two cycles of
        the band's lower edge).
    rate_hz : float
        The rate the signal is averaged down to (the stream's rate divided by
        a whole number, at least this).
    headroom : float
        The averaged-down rate stays above ``headroom`` times the band's
        upper edge (the boxcar's droop and what folds in stay out of the
        band).

    Raises
    ------
    ValueError
        For a non-positive rate, a band that is empty, negative or reaches
        the Nyquist frequency, or a window shorter than two cycles of the
        band's lower edge; the message names the value and the rule.
    """

    def __init__(
        self,
        sfreq: float,
        band: tuple[float, float],
        window_s: float,
        rate_hz: float,
        headroom: float,
    ) -> None:
        lo, hi = (float(b) for b in band)
        if not sfreq > 0:
            raise ValueError(f"sfreq must be positive, got {sfreq}")
        if not 0 < lo < hi:
            raise ValueError(
                f"band must be two frequencies 0 < low < high, got {lo:g}-{hi:g} Hz"
            )
        if hi >= sfreq / 2:
            raise ValueError(
                f"band {lo:g}-{hi:g} Hz reaches the Nyquist frequency of the "
                f"stream ({sfreq / 2:g} Hz at {sfreq:g} Hz)"
            )
        if window_s < 2 / lo:
            raise ValueError(
                f"window {window_s:g} s is shorter than two cycles of the "
                f"band's lower edge ({2 / lo:g} s at {lo:g} Hz)"
            )
        self.sfreq = float(sfreq)
        self.band = (lo, hi)
        self.window_s = float(window_s)
        # A whole factor, so each averaged-down sample is the mean of q
        # input samples.
        self.q = max(1, int(self.sfreq // rate_hz))
        while self.q > 1 and hi >= self.sfreq / self.q / headroom:
            self.q -= 1
        self.rate = self.sfreq / self.q
        self.n_window = int(round(window_s * self.rate))

    @property
    def n_samples(self) -> int:
        """How many of the stream's samples a whole window holds."""
        return self.n_window * self.q

    def estimate(
        self,
        x: np.ndarray,
        t_last: float,
        now: float,
        target: float,
        earliest: float,
        latest: float,
        new: int | None = None,
    ) -> Estimate:
        """Estimate the phase at ``now`` and the next target crossing.

        Parameters
        ----------
        x : ndarray, shape (n,)
            The montaged signal, at least :attr:`n_samples` samples, the
            newest last.
        t_last : float
            The true time of ``x[-1]`` (its stamp minus the amplifier's
            delay), s.
        now : float
            The decision time, s, on the same clock.
        target : float
            The target phase, radians (0: peak; pi: trough).
        earliest, latest : float
            The span in which a crossing counts, s.
        new : int | None
            How many of ``x``'s samples arrived since the previous call
            (None: unknown, e.g. at the first call or after a gap).

        Returns
        -------
        Estimate
        """
        raise NotImplementedError

    def band_power(
        self,
        x: np.ndarray,
        t_last: float,
        new: int | None = None,
        clean_from: float = -math.inf,
    ) -> float:
        """The power the gate compares, between decisions.

        Parameters
        ----------
        x : ndarray, shape (n,)
            The montaged signal, at least :attr:`n_samples` samples.
        t_last : float
            The true time of ``x[-1]``, s.
        new : int | None
            How many of ``x``'s samples arrived since the previous call.
        clean_from : float
            Samples before this time carry a pulse's artifact and response,
            s: they are not read as the rhythm.

        Returns
        -------
        float
            What :meth:`estimate` reports as its power (NaN when there is
            nothing clean to measure it on).
        """
        raise NotImplementedError

    def _averaged(self, x: np.ndarray) -> np.ndarray:
        """The newest whole window, averaged down by :attr:`q`."""
        n_in = self.n_samples
        if len(x) < n_in:
            raise ValueError(f"need {n_in} samples, got {len(x)}")
        return np.asarray(x[-n_in:], float).reshape(self.n_window, self.q).mean(axis=1)
