"""Predict when an EEG rhythm next crosses a target phase (state space).

After Wodeyar, Schatza, Widge, Eden and Kramer 2021 ("A state space modeling
approach to real-time phase estimation", eLife): the signal is the sum of
damped oscillators, each a two-dimensional state rotated by its frequency
and shrunk by its damping every sample and driven by white noise, observed
through their real parts plus white noise. A Kalman filter tracks the
states; the rhythm's phase is the angle of its oscillator's state at the
newest sample, with no filter edge to predict across. Forward prediction is
the oscillator's rotation at its frequency.

Simplifications, and why:

* two oscillators: one in the band (the rhythm) and one at 0 Hz (the 1/f
  background's slow part);
* the parameters are not fitted by EM on every window (too slow for a
  decision every chunk): the damping and the noise ratios are fixed (tuned
  on the synthetic mu of :mod:`stimtrain.devices.sim_mu` at 11 dB: a narrow
  oscillator, 0.7 Hz wide, with state noise a hundredth of the observation
  noise: at the pulses, 20-22 degrees of circular SD against 22 with 0.03
  and 25-29 with 0.1, and closer to the anchors at 5 dB), and
  the rhythm's frequency is re-estimated from the rotation of its own state
  over the window's last part, on a grid of 0.02 Hz inside the band (a
  narrow oscillator 0.1 Hz off the rhythm leads or lags it by 8 degrees);
* the amplitude gate reads the rhythm's power over the window's last 0.1 s,
  where the phase is read, not over the whole window;
* the filter runs at its steady-state gain (the Riccati equation solved
  once per grid frequency), which makes it a fixed linear filter applied
  with :func:`scipy.signal.lfilter`: a whole window costs tens of
  microseconds.

Phase 0 is the rhythm's positive peak, pi (180 degrees) its trough.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
from scipy.linalg import solve_discrete_are
from scipy.signal import lfilter, ss2tf

from .estimator import Estimate, wrap

#: Filter banks by (rate, window length, band, parameters).
_BANKS: dict[tuple, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}


class StateSpaceEstimator:
    """Kalman-filtered oscillator phase, rotated forward to the pulse.

    Parameters
    ----------
    sfreq : float
        The stream's sampling frequency, Hz.
    band : tuple of float
        Low and high edge of the rhythm's band, Hz.
    window_s : float
        How much recent signal each estimate reads, s.
    rate_hz : float
        The rate the window is averaged down to (the stream's rate divided by
        a whole number, at least this).
    bandwidth_hz : float
        The rhythm oscillator's damping, as a bandwidth, Hz.
    slow_hz : float
        The slow oscillator's damping, as a bandwidth, Hz.
    mu_noise : float
        The rhythm's state noise over the observation noise (variance ratio).
    power_s : float
        The band power the amplitude gate compares is the rhythm's mean
        squared amplitude over this much of the window's end, s.
    slow_noise : float
        The slow oscillator's state noise over the observation noise.
    freq_s : float
        How much of the window's end the frequency is measured over, s.
    freq_span_s : float
        The rotation forward to the pulse uses the median of the frequencies
        measured over this long, s (one window's measure is noisy).
    n_passes : int
        At most this many filter passes per estimate, each at the frequency
        the previous one measured (the last one found starts the next
        estimate).
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
        mu_noise: float = 0.01,
        slow_noise: float = 1.0,
        power_s: float = 0.1,
        freq_s: float = 0.3,
        freq_span_s: float = 1.0,
        n_passes: int = 4,
        **_ignored: object,
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
        self.q = max(1, int(self.sfreq // rate_hz))
        # The band must stay well below the averaged-down Nyquist frequency.
        while self.q > 1 and hi >= self.sfreq / self.q / 4:
            self.q -= 1
        self.rate = self.sfreq / self.q
        self.n_window = int(round(window_s * self.rate))
        self.n_freq = max(4, int(round(freq_s * self.rate)))
        self.n_power = max(1, int(round(power_s * self.rate)))
        self.n_passes = int(n_passes)
        self._params = (bandwidth_hz, slow_hz, mu_noise, slow_noise)
        self._grid = np.arange(lo, hi + 1e-9, 0.02)
        # Every grid frequency's filter is made here, not at its first use:
        # one costs about 1 ms (more on a loaded machine), too long inside a
        # real-time decision; all of them about 0.3 s, once per settings
        # (kept for every later estimator with the same ones).
        key = (self.rate, self.n_window, self.band, self._params)
        if key not in _BANKS:
            _BANKS[key] = [self._design(float(f)) for f in self._grid]
        self._filters = _BANKS[key]
        #: The last frequency found: the next window starts from it.
        self._freq = 0.5 * (lo + hi)
        self.freq_span_s = float(freq_span_s)
        #: (decision time, frequency measured) over the last ``freq_span_s``.
        self._measured: deque[tuple[float, float]] = deque()

    @property
    def n_samples(self) -> int:
        """How many of the stream's samples one estimate reads."""
        return self.n_window * self.q

    def estimate(
        self,
        x: np.ndarray,
        t_last: float,
        now: float,
        target: float,
        earliest: float,
        latest: float,
    ) -> Estimate:
        """Estimate the phase at ``now`` and the next target crossing.

        Parameters
        ----------
        x : ndarray, shape (n,)
            The montaged signal, at least :attr:`n_samples` samples, newest
            last.
        t_last : float
            The true time of ``x[-1]``, s.
        now : float
            The decision time, s.
        target : float
            The target phase, radians.
        earliest, latest : float
            The span in which a crossing counts, s.

        Returns
        -------
        Estimate
        """
        z, _ = self._settle(self._decimated(x), now)
        freq = self._rotation_freq()
        # The mean of a block stands for the middle of the block.
        t_z = t_last - (self.q - 1) / 2 / self.sfreq
        phase_last = float(np.angle(z[-1]))
        omega = 2 * np.pi * freq
        phase_now = float(wrap(phase_last + omega * (now - t_z)))
        power = self._power(z)
        # The first time after ``earliest`` the rotating phase reaches the
        # target: phase_last + omega (t - t_z) = target + 2 pi k.
        ahead = float(np.mod(target - phase_last - omega * (earliest - t_z), 2 * np.pi))
        t_cross = earliest + ahead / omega
        crossing = t_cross if t_cross <= latest else None
        return Estimate(crossing, phase_now, power, freq)

    def band_power(self, x: np.ndarray, now: float | None = None) -> float:
        """The rhythm's mean squared amplitude over the window's end.

        Parameters
        ----------
        x : ndarray, shape (n,)
            The montaged signal, at least :attr:`n_samples` samples.
        now : float | None
            The decision time, s: the frequency measured on the way is kept
            for the rotation of later estimates (None: not kept).

        Returns
        -------
        float
            What :meth:`estimate` reports as its power (the same passes, so
            the gate compares like with like).
        """
        z, _ = self._settle(self._decimated(x), now)
        return self._power(z)

    def _settle(self, xd: np.ndarray, now: float | None) -> tuple[np.ndarray, float]:
        """Track the rhythm, re-measuring its frequency until it settles."""
        # Each pass tracks at the last frequency found (a narrow oscillator
        # off the rhythm's frequency lags or leads it, and pulls the rotation
        # measured from it towards its own).
        freq = self._freq
        for _ in range(self.n_passes):
            z = self._track(xd, freq)
            new = self._frequency(z)
            done = abs(new - freq) < 0.02
            freq = new
            if done:
                break
        self._freq = freq
        if now is not None:
            self._measured.append((now, freq))
            while self._measured[0][0] < now - self.freq_span_s:
                self._measured.popleft()
        return z, freq

    def _rotation_freq(self) -> float:
        """The median frequency measured over the last ``freq_span_s``.

        The rhythm's frequency drifts over seconds, while one window's
        measure of it is noisy where the rhythm is weak: rotating the phase
        50 ms forward at a frequency 2 Hz off misses by 36 degrees. Measured
        (benchmarks/closed_loop.py, 200 pulses, 50 ms delay): circular SD at
        -1 dB 102 -> 80 degrees with the median of the last second, at 5 dB
        48 -> 46, at 11 dB 25 -> 24.
        """
        if not self._measured:
            return self._freq
        return float(np.median([f for _, f in self._measured]))

    def _power(self, z: np.ndarray) -> float:
        """The gate's input: the rhythm's power now, not over the whole window.

        Phase is as good as the rhythm is strong where it is read, at the
        window's end; half a second's mean power also opens the gate as a
        burst fades. Measured at 11 dB (benchmarks/closed_loop.py, 200
        pulses): circular SD 29 degrees with the whole window's power, 22
        with the last 0.1 s.
        """
        tail = z[-self.n_power :]
        return float(np.mean(tail.real**2 + tail.imag**2))

    def _decimated(self, x: np.ndarray) -> np.ndarray:
        n_in = self.n_samples
        if len(x) < n_in:
            raise ValueError(f"need {n_in} samples, got {len(x)}")
        xd = np.asarray(x[-n_in:], float).reshape(self.n_window, self.q).mean(axis=1)
        xd = xd - xd.mean()
        # The noise ratios are relative: scaling the window to unit variance
        # keeps the filter (and its start from zero) independent of units.
        sd = float(np.std(xd))
        return xd / sd if sd > 0 else xd

    def _frequency(self, z: np.ndarray) -> float:
        """The rhythm's frequency from its state's rotation over the window's end."""
        tail = z[-self.n_freq :]
        # The amplitude-weighted mean rotation per sample.
        rot = np.angle(np.sum(tail[1:] * np.conj(tail[:-1])))
        freq = float(rot * self.rate / (2 * np.pi))
        lo, hi = self.band
        return min(max(freq, lo), hi)

    def _track(self, y: np.ndarray, freq: float) -> np.ndarray:
        """The rhythm's filtered state (as a complex number) at every sample.

        A narrow oscillator started from zero needs a few of its time
        constants (0.23 s at 0.7 Hz) to settle, about the whole window: the
        filter first runs backwards over the window (a real rhythm reversed
        in time is the same rhythm with its phase negated), and its state at
        the window's first sample, conjugated, starts the forward run. Both
        runs read only the window: the estimate stays causal.
        """
        k = int(np.argmin(np.abs(self._grid - freq)))
        num, den, powers = self._filters[k]
        back = [lfilter(b, den, y[::-1])[-1] for b in num]
        start = np.array([back[0], -back[1], back[2], -back[3]])
        # Forward from the first sample's state: the zero-state response of
        # the rest plus the start's free decay through the filter.
        fwd = np.empty((2, len(y)))
        fwd[:, 0] = start[:2]
        fwd[0, 1:] = lfilter(num[0], den, y[1:])
        fwd[1, 1:] = lfilter(num[1], den, y[1:])
        fwd[:, 1:] += (powers[: len(y) - 1] @ start).T
        return fwd[0] + 1j * fwd[1]

    def _design(self, freq: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The steady-state Kalman filter from the signal to the rhythm's state."""
        bw, slow_bw, q_mu, q_slow = self._params
        w = 2 * np.pi * freq / self.rate
        a_mu = math.exp(-2 * np.pi * bw / self.rate)
        a_slow = math.exp(-2 * np.pi * slow_bw / self.rate)
        rot = np.array([[math.cos(w), -math.sin(w)], [math.sin(w), math.cos(w)]])
        f = np.zeros((4, 4))
        f[:2, :2] = a_mu * rot
        f[2:, 2:] = a_slow * np.eye(2)
        # State noise scaled so each oscillator's stationary variance is its
        # ratio (a damped rotation's variance is q / (1 - a^2)).
        qm = np.diag([q_mu * (1 - a_mu**2)] * 2 + [q_slow * (1 - a_slow**2)] * 2)
        h = np.array([[1.0, 0.0, 1.0, 0.0]])
        r = np.array([[1.0]])
        p = solve_discrete_are(f.T, h.T, qm, r)
        gain = p @ h.T / (h @ p @ h.T + r).item()
        a = (np.eye(4) - gain @ h) @ f
        # Posterior s_k = A s_{k-1} + K y_k, read out whole: state
        # x_k = s_{k-1}, output A x_k + K y_k.
        num, den = ss2tf(a, gain, a, gain)
        # The rhythm's part of A^(k+1), k = 0, 1, ...: a start state's decay.
        powers = np.empty((self.n_window, 2, 4))
        step = a.copy()
        for j in range(self.n_window):
            powers[j] = step[:2]
            step = a @ step
        return np.atleast_2d(num), np.asarray(den), powers
