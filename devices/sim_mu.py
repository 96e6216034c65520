"""A simulated sensorimotor mu rhythm whose instantaneous phase is known.

Closed-loop stimulation is judged against the phase the rhythm really had at
each pulse, so the simulated rhythm is built from its phase:
``sqrt(2) * envelope(t) * cos(phase(t))``, with a frequency drifting around
10.5 Hz (an Ornstein-Uhlenbeck process held within 8.5-12.5 Hz, inside the
8-13 Hz band) and a bursting envelope (log-normal, a few hundred ms per
burst) of unit mean power. Phase 0 is the rhythm's positive peak, pi its
trough.

:class:`MuRhythm` renders it chunk by chunk (the result does not depend on
the chunking, as with the simulated EEG's background);
:func:`band_power_fraction` and :func:`mu_scale` set its amplitude for a
chosen in-band signal-to-noise ratio at a montage's output;
:func:`synthetic_recording` makes a whole offline recording (mu at C3 and its
Hjorth neighbours over pink background) for tests and benchmarks; besides
this rhythm it can make two that are built differently (:data:`RHYTHMS`), to
measure how an estimator does on a rhythm its model does not describe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from scipy.signal import freqz, lfilter

from ..rhythm import MONTAGES
from .sim_eeg import _PINK_A, _PINK_B

#: The C3 Hjorth montage: C3 minus the mean of its four neighbours (the
#: shared table's, :data:`stimtrain.rhythm.MONTAGES`); here it sets the SNR.
C3_HJORTH: dict[str, float] = dict(MONTAGES["c3_hjorth"])
#: How strongly the mu source reaches each channel (volume conduction: the
#: neighbours see a quarter of it, so the Hjorth output keeps 0.75 of it).
MU_WEIGHTS: dict[str, float] = {
    "C3": 1.0,
    "FC1": 0.25,
    "FC5": 0.25,
    "CP1": 0.25,
    "CP5": 0.25,
}
#: The band in which the signal-to-noise ratio is defined, Hz.
SNR_BAND: tuple[float, float] = (8.0, 13.0)


class MuChunk(NamedTuple):
    """One rendered piece of the rhythm."""

    #: The rhythm, unit mean power over a long run, shape (n,).
    wave: np.ndarray
    #: Its true instantaneous phase, radians wrapped to (-pi, pi], shape (n,).
    phase: np.ndarray
    #: Its envelope (the wave is ``envelope * cos(phase)``), shape (n,).
    envelope: np.ndarray


class MuRhythm:
    """Render a bursting, drifting mu rhythm with known phase, chunk by chunk.

    Parameters
    ----------
    sfreq : float
        Sampling frequency, Hz.
    seed : int
        Seed of the frequency drift, the envelope and the starting phase.
    freq_hz : float
        Centre frequency, Hz.
    freq_sd_hz : float
        Standard deviation of the frequency drift, Hz.
    freq_tau_s : float
        Time constant of the drift, s.
    burst_sd : float
        Standard deviation of the log-envelope (how strongly it bursts).
    burst_tau_s : float
        Time constant of the log-envelope, s (about a burst's length).
    """

    #: The frequency never leaves this range (so the rhythm stays in band).
    FREQ_RANGE_HZ: tuple[float, float] = (8.5, 12.5)

    def __init__(
        self,
        sfreq: float,
        seed: int = 0,
        *,
        freq_hz: float = 10.5,
        freq_sd_hz: float = 0.7,
        freq_tau_s: float = 2.0,
        burst_sd: float = 0.6,
        burst_tau_s: float = 0.3,
    ) -> None:
        if not sfreq > 2 * self.FREQ_RANGE_HZ[1]:
            raise ValueError(f"sfreq must be above 25 Hz, got {sfreq}")
        self._sfreq = float(sfreq)
        self._rng = np.random.default_rng([seed, 7])
        self._f0 = float(freq_hz)
        self._burst_sd = float(burst_sd)
        # Two first-order Ornstein-Uhlenbeck processes, as filters with state
        # so that the chunking does not change the result.
        self._ou = []
        for tau, sd in ((freq_tau_s, freq_sd_hz), (burst_tau_s, burst_sd)):
            a = math.exp(-1.0 / (tau * self._sfreq))
            self._ou.append((a, sd * math.sqrt(1 - a * a)))
        # Start both processes in their stationary distribution.
        self._zi = [
            np.array([a * sd * self._rng.standard_normal()])
            for (a, _), sd in zip(self._ou, (freq_sd_hz, burst_sd), strict=True)
        ]
        self._phase = float(self._rng.uniform(-np.pi, np.pi))

    @property
    def sfreq(self) -> float:
        """The sampling frequency, Hz."""
        return self._sfreq

    def render(self, n: int) -> MuChunk:
        """Render the next ``n`` samples.

        Parameters
        ----------
        n : int
            Number of samples.

        Returns
        -------
        MuChunk
            The wave (unit mean power) and its true phase.
        """
        # Drawn sample-major, so that the numbers do not depend on chunking.
        white = self._rng.standard_normal((n, 2)).T
        proc = []
        for k, (a, gain) in enumerate(self._ou):
            y, self._zi[k] = lfilter([gain], [1.0, -a], white[k], zi=self._zi[k])
            proc.append(y)
        freq = np.clip(self._f0 + proc[0], *self.FREQ_RANGE_HZ)
        # The phase at sample k is the previous phase plus this sample's
        # step, so the chunks join without a seam.
        phase = self._phase + np.cumsum(2 * np.pi * freq / self._sfreq)
        if n:
            self._phase = float(np.angle(np.exp(1j * phase[-1])))
        # exp(g - sd^2) has unit mean square for g ~ N(0, sd^2).
        envelope = math.sqrt(2) * np.exp(proc[1] - self._burst_sd**2)
        wave = envelope * np.cos(phase)
        return MuChunk(wave, np.angle(np.exp(1j * phase)), envelope)


def band_power_fraction(
    sfreq: float, band: tuple[float, float] = SNR_BAND, n_freqs: int = 1 << 16
) -> float:
    """Share of unit-RMS pink noise's power that lies within ``band``.

    The pink noise is the simulated EEG's: white noise through Paul Kellet's
    economy filter, normalised to unit RMS.

    Parameters
    ----------
    sfreq : float
        Sampling frequency, Hz.
    band : tuple of float
        Low and high edge, Hz.
    n_freqs : int
        Frequency points of the numerical integral.

    Returns
    -------
    float
        In-band power divided by total power.
    """
    freqs, h = freqz(_PINK_B, _PINK_A, worN=n_freqs, fs=sfreq)
    power = np.abs(h) ** 2
    inside = (freqs >= band[0]) & (freqs <= band[1])
    return float(power[inside].sum() / power.sum())


def mu_scale(
    snr_db: float,
    noise_band_power: float,
    mu_weights: Mapping[str, float] = MU_WEIGHTS,
    montage: Mapping[str, float] = C3_HJORTH,
) -> float:
    """Amplitude of the mu source for an in-band SNR at a montage's output.

    Parameters
    ----------
    snr_db : float
        In-band signal-to-noise ratio wanted at the montage's output, dB.
    noise_band_power : float
        In-band power of the background at the montage's output.
    mu_weights : mapping of str to float
        How strongly the source reaches each channel.
    montage : mapping of str to float
        The montage's channel weights.

    Returns
    -------
    float
        The factor by which :class:`MuRhythm`'s unit-power wave is scaled.
    """
    gain = sum(w * mu_weights.get(ch, 0.0) for ch, w in montage.items())
    if gain == 0:
        raise ValueError("the montage does not see the mu source")
    return math.sqrt(noise_band_power * 10 ** (snr_db / 10)) / abs(gain)


#: The rhythms :func:`synthetic_recording` makes. ``drifting``: :class:`MuRhythm`
#: (one oscillation whose frequency wanders, bursting). ``resonant``: bursting
#: white noise through a two-pole resonance at 10.5 Hz, 1.5 Hz wide (no
#: single frequency; its phase is that of the analytic signal of its 8-13 Hz
#: part, an ideal band-pass of the noise-free rhythm). ``arched``: the drifting
#: rhythm with a second harmonic at 0.4 of the fundamental's amplitude, the
#: arch shape of real mu (sharp peaks, round troughs; phase and SNR are the
#: fundamental's, the harmonic lies above the band).
RHYTHMS: tuple[str, ...] = ("drifting", "resonant", "arched")


def _resonant(sfreq: float, n: int, seed: int) -> MuChunk:
    """Bursting noise through a 10.5 Hz resonance, unit in-band power."""
    rng = np.random.default_rng([seed, 8])
    pad = int(5 * sfreq)  # the resonance and the bursts settle
    a = math.exp(-1.0 / (0.3 * sfreq))
    log_env = lfilter(
        [0.6 * math.sqrt(1 - a * a)], [1.0, -a], rng.standard_normal(n + pad)
    )
    drive = np.exp(log_env) * rng.standard_normal(n + pad)
    r = math.exp(-math.pi * 1.5 / sfreq)
    w0 = 2 * math.pi * 10.5 / sfreq
    source = lfilter([1.0], [1.0, -2 * r * math.cos(w0), r * r], drive)[pad:]
    # The truth is the rhythm's in-band part, kept whole by an ideal
    # band-pass: one-sided spectrum inside the band, so its inverse is the
    # analytic signal (phase 0 at the peaks).
    spec = np.fft.fft(source)
    freqs = np.fft.fftfreq(n, 1.0 / sfreq)
    analytic = np.fft.ifft(
        np.where((freqs >= SNR_BAND[0]) & (freqs <= SNR_BAND[1]), 2 * spec, 0)
    )
    scale = 1.0 / math.sqrt(float(np.mean(analytic.real**2)))
    return MuChunk(source * scale, np.angle(analytic), np.abs(analytic) * scale)


def _rhythm(name: str, sfreq: float, n: int, seed: int) -> MuChunk:
    """Render ``n`` samples of one of :data:`RHYTHMS`."""
    if name == "resonant":
        return _resonant(sfreq, n, seed)
    mu = MuRhythm(sfreq, seed).render(n)
    if name == "arched":
        wave = mu.wave + 0.4 * mu.envelope * np.cos(2 * mu.phase)
        return MuChunk(wave, mu.phase, mu.envelope)
    return mu


class Recording(NamedTuple):
    """An offline synthetic recording with its ground truth."""

    #: Samples, shape (n_times, n_channels), µV.
    data: np.ndarray
    #: Channel labels.
    ch_names: list[str]
    #: Sampling frequency, Hz.
    sfreq: float
    #: True mu phase at every sample, radians.
    phase: np.ndarray
    #: The mu rhythm's envelope at the montage's output, µV.
    envelope: np.ndarray


def synthetic_recording(
    seconds: float,
    snr_db: float,
    *,
    sfreq: float = 5000.0,
    seed: int = 0,
    noise_uv: float = 10.0,
    channels: Sequence[str] = tuple(C3_HJORTH),
    rhythm: str = "drifting",
) -> Recording:
    """Mu at C3 over independent pink noise on each channel, offline.

    The SNR is the rhythm's in-band power over the background's in-band
    power (:data:`SNR_BAND`) at the output of the C3 Hjorth montage.

    Parameters
    ----------
    seconds : float
        Length, s.
    snr_db : float
        In-band SNR at the C3 Hjorth output, dB.
    sfreq : float
        Sampling frequency, Hz (the simulated amplifier's 5 kHz by default).
    seed : int
        Seed of everything random.
    noise_uv : float
        RMS of each channel's pink background, µV.
    channels : sequence of str
        Channel labels; those of :data:`C3_HJORTH` must be among them.
    rhythm : str
        Which rhythm, one of :data:`RHYTHMS`.

    Returns
    -------
    Recording
        The data and its ground truth.
    """
    missing = set(C3_HJORTH) - set(channels)
    if missing:
        raise ValueError(f"channels must include {sorted(missing)}")
    if rhythm not in RHYTHMS:
        raise ValueError(f"rhythm must be one of {list(RHYTHMS)}, got {rhythm!r}")
    n = int(round(seconds * sfreq))
    rng = np.random.default_rng([seed, 0])
    white = rng.standard_normal((len(channels), n))
    impulse = np.zeros(20_000)
    impulse[0] = 1.0
    gain = 1.0 / np.sqrt(np.sum(lfilter(_PINK_B, _PINK_A, impulse) ** 2))
    # A burn-in of 2000 samples makes the noise stationary from sample 0.
    pad = np.hstack([rng.standard_normal((len(channels), 2000)), white])
    pink = lfilter(_PINK_B, _PINK_A, pad, axis=1)[:, 2000:] * gain * noise_uv
    # Independent channels: the montage's output has sum(w^2) times one
    # channel's in-band power.
    noise_power = (
        noise_uv**2
        * band_power_fraction(sfreq)
        * sum(w * w for w in C3_HJORTH.values())
    )
    scale = mu_scale(snr_db, noise_power)
    mu = _rhythm(rhythm, sfreq, n, seed)
    weights = np.array([MU_WEIGHTS.get(ch, 0.0) for ch in channels])
    data = pink.T + np.outer(scale * mu.wave, weights)
    gain_out = sum(w * MU_WEIGHTS.get(ch, 0.0) for ch, w in C3_HJORTH.items())
    return Recording(
        data, list(channels), float(sfreq), mu.phase, scale * gain_out * mu.envelope
    )
