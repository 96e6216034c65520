"""Predict when an EEG rhythm next crosses a target phase (state space).

After Wodeyar, Schatza, Widge, Eden and Kramer 2021 ("A state space modeling
approach to real-time phase estimation", eLife): the signal is the sum of
damped oscillators, each a two-dimensional state rotated by its frequency
and shrunk by its damping every sample and driven by white noise, observed
through their real parts plus white noise. A Kalman filter tracks the
states; the rhythm's phase is the angle of its oscillator's state at the
newest sample, with no filter edge to predict across. Forward prediction is
the oscillator's rotation at its frequency.

Where this differs from that paper, and why:

* the rhythm's frequency is a state too (a random walk), tracked by an
  extended Kalman filter, not a parameter refitted by EM on each window:
  the mu rhythm's frequency drifts by tenths of a hertz within a second,
  and a narrow oscillator a tenth of a hertz off the rhythm leads or lags it
  by several degrees. Measured on the synthetic mu of
  :mod:`stimtrain.devices.sim_mu` (benchmarks/closed_loop.py): given the
  generator's true frequency the oscillator reaches 13 degrees of circular
  SD at 11 dB, with the frequency measured afresh from each window 20-22;
* the filter runs continuously: each decision feeds it only the samples
  that arrived since the previous one (a few per chunk), so its frequency
  and state carry the whole recent past, not half a second. Through the
  blank after each pulse it predicts without reading the samples; it
  restarts from the window (a pass backwards over it, then forwards,
  keeping the frequency it had) only when samples went unseen: at the
  first decision and after a gap in the stream;
* two oscillators only: one in the band (the rhythm) and one at 0 Hz (the
  1/f background's slow part), with damping and noise ratios fixed
  (tuned on the synthetic mu at 11 dB), not fitted;
* the amplitude gate reads the rhythm's power over the last 50 ms, where
  the phase is read, not over the whole window.

Phase 0 is the rhythm's positive peak, pi (180 degrees) its trough.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from .base import Estimate, RhythmEstimator, wrap


class StateSpaceEstimator(RhythmEstimator):
    """Kalman-tracked oscillator phase and frequency, rotated to the pulse.

    Parameters
    ----------
    sfreq : float
        The stream's sampling frequency, Hz.
    band : tuple of float
        Low and high edge of the rhythm's band, Hz; the tracked frequency
        stays inside it.
    window_s : float
        How much recent signal a restart reads, s.
    rate_hz : float
        The rate the signal is averaged down to (the stream's rate divided
        by a whole number, at least this).
    bandwidth_hz : float
        The rhythm oscillator's damping, as a bandwidth, Hz.
    slow_hz : float
        The slow oscillator's damping, as a bandwidth, Hz.
    mu_noise : float
        The rhythm's stationary variance over the observation noise's.
    slow_noise : float
        The slow oscillator's stationary variance over the observation
        noise's.
    freq_walk_hz : float
        How fast the rhythm's frequency may wander: the SD of its change
        over one second, Hz.
    power_s : float
        The band power the amplitude gate compares is the rhythm's mean
        squared amplitude over this long, s.
    scale_s : float
        The signal is divided by its standard deviation over about this
        long (the noise ratios are relative), s.
    **_ignored
        Settings of other estimators (``ar_order``), accepted and ignored.

    Raises
    ------
    ValueError
        For a band that is empty, negative or reaches the Nyquist frequency
        of the averaged-down signal, or a window shorter than two cycles of
        the band's lower edge.
    """

    def __init__(
        self,
        sfreq: float,
        band: tuple[float, float] = (8.0, 13.0),
        window_s: float = 0.5,
        *,
        rate_hz: float = 500.0,
        bandwidth_hz: float = 0.7,
        slow_hz: float = 1.0,
        mu_noise: float = 0.1,
        slow_noise: float = 1.0,
        freq_walk_hz: float = 0.55,
        power_s: float = 0.05,
        scale_s: float = 2.0,
        **_ignored: object,
    ) -> None:
        # The band must stay well below the averaged-down Nyquist frequency.
        super().__init__(sfreq, band, window_s, rate_hz, headroom=4.0)
        lo, hi = self.band
        rate = self.rate
        self._a = math.exp(-2 * math.pi * bandwidth_hz / rate)
        self._a_slow = math.exp(-2 * math.pi * slow_hz / rate)
        # State noise scaled so each oscillator's stationary variance is its
        # ratio (a damped rotation's variance is q / (1 - a^2)).
        self._q_mu = mu_noise * (1 - self._a**2)
        self._q_slow = slow_noise * (1 - self._a_slow**2)
        self._mu_noise = float(mu_noise)
        self._slow_noise = float(slow_noise)
        step = 2 * math.pi / rate
        self._q_w = (step * freq_walk_hz) ** 2 / rate
        self._w_lo, self._w_hi = step * lo, step * hi
        # Before anything is known: the band's middle, give or take a
        # quarter of its width.
        self._w_prior = (step * 0.5 * (lo + hi), (step * 0.25 * (hi - lo)) ** 2)
        self._scale_a = math.exp(-1 / (scale_s * rate))
        self._power = deque(maxlen=max(1, int(round(power_s * rate))))
        self._x = [0.0, 0.0, 0.0, self._w_prior[0]]
        self._p = self._prior_cov(self._w_prior[1])
        self._mean = 0.0
        self._var = 1.0
        #: Raw samples of a block not yet complete.
        self._partial = np.empty(0)
        self._started = False

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

        Feeds the filter the ``new`` samples (starting over from the window
        when ``new`` is None or more than a window), then rotates the phase
        at the newest sample forward at the tracked frequency. Parameters and
        return as :meth:`RhythmEstimator.estimate`.
        """
        self._feed(x, t_last, new)
        c, d, _, w = self._x
        t_z = float(self._block_times(t_last, 1)[0])
        phase_last = math.atan2(d, c)
        omega = w * self.rate
        phase_now = float(wrap(phase_last + omega * (now - t_z)))
        # The first time after ``earliest`` the rotating phase reaches the
        # target: phase_last + omega (t - t_z) = target + 2 pi k.
        ahead = float(np.mod(target - phase_last - omega * (earliest - t_z), 2 * np.pi))
        t_cross = earliest + ahead / omega
        crossing = t_cross if t_cross <= latest else None
        return Estimate(crossing, phase_now, self._band_power(), omega / (2 * np.pi))

    def band_power(
        self,
        x: np.ndarray,
        t_last: float,
        new: int | None = None,
        clean_from: float = -math.inf,
    ) -> float:
        """Take in the newest samples; the rhythm's power over the last ``power_s``.

        Samples before ``clean_from`` are predicted through, not read.
        Parameters and return as :meth:`RhythmEstimator.band_power`.
        """
        self._feed(x, t_last, new, clean_from)
        return self._band_power()

    def _band_power(self) -> float:
        # In the signal's units: the gate then follows the rhythm's own
        # amplitude, not its share of a scale that follows the rhythm.
        return float(np.mean(self._power)) * self._var if self._power else 0.0

    def _feed(
        self,
        x: np.ndarray,
        t_last: float,
        new: int | None,
        clean_from: float = -math.inf,
    ) -> None:
        n_in = self.n_samples
        if len(x) < n_in:
            raise ValueError(f"need {n_in} samples, got {len(x)}")
        if new is None or not self._started or new > n_in:
            self._restart(x, t_last, clean_from)
            return
        if new <= 0:
            return
        raw = np.concatenate([self._partial, np.asarray(x[-new:], float)])
        n_blocks = len(raw) // self.q
        used = n_blocks * self.q
        self._partial = raw[used:]
        if not n_blocks:
            return
        blocks = raw[:used].reshape(n_blocks, self.q).mean(axis=1)
        times = self._block_times(t_last, n_blocks)
        for v, t in zip(blocks.tolist(), times.tolist(), strict=True):
            self._step(self._scaled(v) if t >= clean_from else None)

    def _block_times(self, t_last: float, n_blocks: int) -> np.ndarray:
        """The times the newest ``n_blocks`` complete blocks stand for."""
        # A block's mean stands for its middle; the partial block is newer.
        newest = t_last - (len(self._partial) + (self.q - 1) / 2) / self.sfreq
        return newest - np.arange(n_blocks - 1, -1, -1) * (self.q / self.sfreq)

    def _scaled(self, v: float) -> float:
        """One block, centred and scaled by a running mean and variance."""
        a = self._scale_a
        self._mean = a * self._mean + (1 - a) * v
        dev = v - self._mean
        self._var = a * self._var + (1 - a) * dev * dev
        return dev / math.sqrt(self._var) if self._var > 0 else 0.0

    def _restart(self, x: np.ndarray, t_last: float, clean_from: float) -> None:
        """Start over from a window: backwards over it, then forwards.

        A narrow oscillator started from zero needs a few of its time
        constants to settle, about the whole window: the backward pass (a
        real rhythm reversed in time is the same rhythm with its phase
        negated, at the same frequency) gives the state at the window's
        first sample, conjugated, and its frequency, from which the forward
        pass starts. Both read only the window (and of it only what is
        after ``clean_from``): the estimate stays causal. The frequency
        known before the restart, if any, is where the backward pass starts.
        """
        blocks = self._averaged(x)
        self._partial = np.empty(0)
        seen = self._block_times(t_last, self.n_window) >= clean_from
        clean = blocks[seen]
        self._mean = float(clean.mean()) if len(clean) else 0.0
        self._var = (float(clean.var()) if len(clean) else 0.0) or 1.0
        y = [
            (v - self._mean) / math.sqrt(self._var) if ok else None
            for v, ok in zip(blocks.tolist(), seen.tolist(), strict=True)
        ]
        w = self._x[3] if self._started else self._w_prior[0]
        self._x = [0.0, 0.0, 0.0, w]
        self._p = self._prior_cov(self._w_prior[1])
        for v in reversed(y[1:]):
            self._step(v)
        c, d, s, w = self._x
        self._x = [c, -d, s, w]
        p = self._p
        for i, j in ((0, 1), (1, 2), (1, 3)):
            p[i][j] = p[j][i] = -p[i][j]
        self._power.clear()
        for v in y:
            self._step(v)
        self._started = True

    def _prior_cov(self, var_w: float) -> list[list[float]]:
        p = [[0.0] * 4 for _ in range(4)]
        p[0][0] = p[1][1] = self._mu_noise
        p[2][2] = self._slow_noise
        p[3][3] = var_w
        return p

    def _step(self, y: float | None) -> None:
        """One sample of the extended Kalman filter (state c, d, slow, omega).

        ``y`` None: a sample not observed (a pulse's artifact), predicted
        through.
        """
        c, d, s, w = self._x
        p = self._p
        a, a_s = self._a, self._a_slow
        cw, sw = math.cos(w), math.sin(w)
        r00, r01, r10, r11 = a * cw, -a * sw, a * sw, a * cw
        c2, d2 = r00 * c + r01 * d, r10 * c + r11 * d
        s2 = a_s * s
        # F = [[R, 0, g], [0, a_s, 0], [0, 0, 1]], g = d(c2, d2)/d omega.
        g0, g1 = -d2, c2
        p00, p01, p02, p03 = p[0]
        p11, p12, p13 = p[1][1], p[1][2], p[1][3]
        p22, p23, p33 = p[2][2], p[2][3], p[3][3]
        a00, a01 = r00 * p00 + r01 * p01, r00 * p01 + r01 * p11
        a10, a11 = r10 * p00 + r11 * p01, r10 * p01 + r11 * p11
        u0, u1 = r00 * p03 + r01 * p13, r10 * p03 + r11 * p13
        n00 = a00 * r00 + a01 * r01 + 2 * u0 * g0 + g0 * g0 * p33 + self._q_mu
        n01 = a00 * r10 + a01 * r11 + u0 * g1 + g0 * u1 + g0 * g1 * p33
        n11 = a10 * r10 + a11 * r11 + 2 * u1 * g1 + g1 * g1 * p33 + self._q_mu
        n02 = a_s * (r00 * p02 + r01 * p12 + g0 * p23)
        n12 = a_s * (r10 * p02 + r11 * p12 + g1 * p23)
        n03, n13 = u0 + g0 * p33, u1 + g1 * p33
        n22 = a_s * a_s * p22 + self._q_slow
        n23 = a_s * p23
        n33 = p33 + self._q_w
        n = (
            (n00, n01, n02, n03),
            (n01, n11, n12, n13),
            (n02, n12, n22, n23),
            (n03, n13, n23, n33),
        )
        if y is None:
            self._x = [c2, d2, s2, w]
            self._p = [list(row) for row in n]
            self._power.append(c2 * c2 + d2 * d2)
            return
        # Observed: the rhythm's real part plus the slow part, unit noise.
        h = (n00 + n02, n01 + n12, n02 + n22, n03 + n23)
        gain = 1.0 / (h[0] + h[2] + 1.0)
        e = (y - c2 - s2) * gain
        w2 = min(max(w + h[3] * e, self._w_lo), self._w_hi)
        self._x = [c2 + h[0] * e, d2 + h[1] * e, s2 + h[2] * e, w2]
        self._p = [[n[i][j] - h[i] * h[j] * gain for j in range(4)] for i in range(4)]
        zc, zd = self._x[0], self._x[1]
        self._power.append(zc * zc + zd * zd)
