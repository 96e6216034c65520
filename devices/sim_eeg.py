"""A simulated EEG amplifier that streams over LSL and responds to TMS pulses.

:class:`SimulatedEEG` streams background EEG in real time on the LSL clock and
draws a TMS pulse artifact and a TMS-evoked potential (TEP) into the samples of
every pulse that a simulated stimulator reports through
:meth:`SimulatedEEG.add_pulse`. The ground truth of the TEP is
:attr:`SimulatedEEG.TEP_COMPONENTS`, so an analysis can be checked against it.

Longer than most because the simulated amplifier, its artifact and its
ground-truth TEP are one model that the analysis tests are checked against.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import pylsl
from scipy.signal import lfilter

logger = logging.getLogger("stimtrain.devices.sim_eeg")

# Approximate 2-D head positions (azimuthal equidistant projection of MNE's
# standard 10-20 positions; Cz near the origin, the Fpz-T7-Oz-T8 circle at
# radius ~1). Only used to give the simulated signals smooth topographies.
_POSITIONS: dict[str, tuple[float, float]] = {
    "Fp1": (-0.35, +0.99),
    "Fp2": (+0.35, +0.99),
    "F7": (-0.93, +0.56),
    "F3": (-0.46, +0.48),
    "Fz": (+0.00, +0.46),
    "F4": (+0.47, +0.49),
    "F8": (+0.93, +0.57),
    "FC5": (-0.79, +0.19),
    "FC1": (-0.25, +0.19),
    "FC2": (+0.26, +0.20),
    "FC6": (+0.79, +0.20),
    "T7": (-1.05, -0.20),
    "C3": (-0.50, -0.09),
    "Cz": (+0.00, -0.06),
    "C4": (+0.51, -0.08),
    "T8": (+1.05, -0.19),
    "TP9": (-1.12, -0.61),
    "CP5": (-0.69, -0.40),
    "CP1": (-0.22, -0.29),
    "CP2": (+0.24, -0.29),
    "CP6": (+0.70, -0.39),
    "TP10": (+1.12, -0.61),
    "P7": (-0.71, -0.72),
    "P3": (-0.37, -0.55),
    "Pz": (+0.00, -0.49),
    "P4": (+0.38, -0.54),
    "P8": (+0.72, -0.72),
    "PO9": (-0.58, -1.04),
    "O1": (-0.24, -0.92),
    "Oz": (+0.00, -0.92),
    "O2": (+0.24, -0.92),
    "PO10": (+0.58, -1.04),
}

#: The 32 standard 10-20 labels, in stream order.
CHANNEL_NAMES_32: tuple[str, ...] = tuple(_POSITIONS)

# The simulated coil sits over the left motor cortex.
_STIM_SITE = "C3"

# Paul Kellet's "economy" pinking filter: -10 dB/decade (1/f power) over about
# three decades, which is enough for a plausible EEG background.
_PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
_PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])


class TEPComponent(NamedTuple):
    """One Gaussian-shaped peak of the simulated TMS-evoked potential."""

    name: str
    #: Latency of the peak after the pulse, in seconds.
    latency_s: float
    #: Signed amplitude at the topography's centre for a pulse at power 100, in µV.
    amplitude_uv: float
    #: Standard deviation of the Gaussian, in seconds.
    width_s: float


class SimulatedEEG:
    """Stream simulated EEG over LSL in real time, with TMS responses.

    Sample ``i`` has the LSL timestamp ``t0 + i / sfreq`` exactly, where ``t0``
    is the clock reading at :meth:`start`. Every ``chunk_interval`` seconds a
    background thread renders and pushes all samples whose time is at most
    ``clock() - latency``; holding samples back by ``latency`` lets a pulse
    that is reported up to ``latency`` seconds after it happened still be
    drawn into the right samples.

    Parameters
    ----------
    n_channels : int
        Number of EEG channels. Up to 32 take the standard 10-20 labels of
        :data:`CHANNEL_NAMES_32` in order; further channels are labelled
        ``EEG033``, … and placed on a ring around the head.
    sfreq : float
        Sampling frequency in Hz.
    name : str
        LSL stream name; the source ID is derived from it.
    seed : int
        Seed of the background noise and the channel layout of the artifact;
        the signal is fully deterministic given the seed and the pulses.
    chunk_interval : float
        Seconds between two pushes.
    latency : float
        Seconds by which samples are held back before they are pushed.
    clock : callable
        The clock, in seconds; the LSL clock by default.
    noise_uv : float
        RMS of the pink background noise per channel, in µV.
    alpha_uv : float
        Peak amplitude of the 10 Hz alpha rhythm over posterior channels, in
        µV. Set ``noise_uv=0`` and ``alpha_uv=0`` for a noise-free signal.
    emg_channels : sequence of str
        Labels of EMG channels appended to the stream (type ``EMG`` in its
        description); each pulse draws an MEP on them from the recruitment
        curve :attr:`RECRUITMENT` (ground truth in :attr:`meps`). None by
        default, which leaves the stream as it always was.
    emg_noise_uv : float
        SD of the white background EMG, in µV.
    motor : MotorSystem | None
        The participant's corticospinal system
        (:class:`~stimtrain.devices.sim_mep.MotorSystem`): each MEP is drawn
        from it at the pulse's power and the coil's distance from the hotspot
        (:meth:`move_coil`). None: the fixed curve :attr:`RECRUITMENT`.
    mu_snr_db : float | None
        Add a sensorimotor mu rhythm with known phase
        (:class:`~stimtrain.devices.sim_mu.MuRhythm`) at C3 (a quarter of it
        on FC1, FC5, CP1 and CP5) whose in-band (8-13 Hz) power at the C3
        Hjorth output is this many dB above the background's there. Its true
        phase at every pulse is in :attr:`mu_pulses`. None: no mu rhythm.
    stamp_delay : float
        Seconds added to every sample's time stamp: an amplifier whose data
        are this old when they reach the computer and are stamped there
        (set ``latency`` to the same, so they also arrive that late).
    mu_log : str | None
        A file to which each pulse's true mu phase is appended as a JSON
        line ``{"time", "sample", "phase_deg", "envelope_uv"}``.

    Attributes
    ----------
    TEP_COMPONENTS : tuple of TEPComponent
        Ground truth of the TMS-evoked potential.
    TEP_TOPOGRAPHY : dict
        For each component name, the channel at the centre of its Gaussian
        topography and the topography's spatial standard deviation (in units of
        the head radius); the weight is 1 at the centre.
    """

    TEP_COMPONENTS: tuple[TEPComponent, ...] = (
        TEPComponent("N15", 0.015, -2.0, 0.003),
        TEPComponent("P30", 0.030, +3.0, 0.005),
        TEPComponent("N45", 0.045, -4.0, 0.006),
        TEPComponent("P60", 0.060, +4.0, 0.008),
        TEPComponent("N100", 0.100, -6.0, 0.015),
        TEPComponent("P180", 0.180, +5.0, 0.025),
    )
    # Early components are local to the stimulated motor cortex, the late ones
    # are broad and central (N100 central-negative, P180 central-positive).
    TEP_TOPOGRAPHY: dict[str, tuple[str, float]] = {
        "N15": ("C3", 0.35),
        "P30": ("C3", 0.40),
        "N45": ("FC1", 0.45),
        "P60": ("CP1", 0.50),
        "N100": ("Cz", 0.60),
        "P180": ("Cz", 0.70),
    }
    #: Pulse artifact amplitude (µV) at power 0 and its increase up to power 100.
    #: The floor keeps every pulse detectable by a > 1000 µV sample-to-sample jump.
    ARTIFACT_UV: tuple[float, float] = (2000.0, 6000.0)
    #: Time constant of the fast artifact decay, in seconds (gone within ~5 ms).
    ARTIFACT_TAU_S: float = 0.0008
    #: Amplitude (µV, at power 100) and time constant (s) of the slow decay.
    DECAY_UV: float = 30.0
    DECAY_TAU_S: float = 0.008
    #: Frequency of the simulated alpha rhythm, in Hz.
    ALPHA_HZ: float = 10.0
    #: Ground truth of the MEPs on the EMG channels: the Boltzmann recruitment
    #: curve ``min + (max - min) / (1 + exp((s50 - power) / k))`` in µV
    #: peak-to-peak, with ``power`` in %MSO; each pulse's MEP is the curve
    #: times a log-normal factor of SD ``MEP_SPREAD`` (trial-to-trial
    #: variability).
    RECRUITMENT: dict[str, float] = {
        "mep_min_uv": 10.0,
        "mep_max_uv": 2000.0,
        "s50": 55.0,
        "k": 4.0,
    }
    MEP_SPREAD: float = 0.2
    #: Onset (s after the pulse) and length (s) of the biphasic MEP.
    MEP_LATENCY_S: float = 0.021
    MEP_DURATION_S: float = 0.015

    def __init__(
        self,
        n_channels: int = 32,
        sfreq: float = 5000.0,
        name: str = "stimtrain-sim-eeg",
        *,
        seed: int = 0,
        chunk_interval: float = 0.01,
        latency: float = 0.05,
        clock: Callable[[], float] = pylsl.local_clock,
        noise_uv: float = 10.0,
        alpha_uv: float = 5.0,
        emg_channels: Sequence[str] = (),
        emg_noise_uv: float = 2.0,
        motor=None,
        mu_snr_db: float | None = None,
        stamp_delay: float = 0.0,
        mu_log: str | None = None,
    ) -> None:
        if n_channels < 1:
            raise ValueError(f"n_channels must be at least 1, got {n_channels}")
        if not sfreq > 0:
            raise ValueError(f"sfreq must be positive, got {sfreq}")
        if not chunk_interval > 0:
            raise ValueError(f"chunk_interval must be positive, got {chunk_interval}")
        if latency < 0:
            raise ValueError(f"latency must not be negative, got {latency}")
        if noise_uv < 0 or alpha_uv < 0:
            raise ValueError("noise_uv and alpha_uv must not be negative")
        if emg_noise_uv < 0:
            raise ValueError(f"emg_noise_uv must not be negative, got {emg_noise_uv}")
        self._emg_names = [str(ch) for ch in emg_channels]
        self._emg_noise_uv = float(emg_noise_uv)
        # Their own generators: adding EMG leaves the EEG samples unchanged,
        # and the MEP amplitudes do not depend on how the stream is chunked.
        self._emg_rng = np.random.default_rng([seed, 2])
        self._mep_rng = np.random.default_rng([seed, 3])
        self._meps: list[tuple[float, int, int, float]] = []
        self._mep_amp: dict[int, float] = {}
        self._motor = motor
        self._coil_mm = 0.0
        #: Voluntary EMG (a participant who does not relax): sample ranges
        #: and their amplitude, µV peak-to-peak.
        self._activity: list[tuple[int, int, float]] = []
        self._n_channels = int(n_channels)
        self._sfreq = float(sfreq)
        self._name = name
        self._chunk_interval = float(chunk_interval)
        self._latency = float(latency)
        self._clock = clock
        self._noise_uv = float(noise_uv)
        self._alpha_uv = float(alpha_uv)

        self._ch_names = [
            CHANNEL_NAMES_32[k] if k < 32 else f"EEG{k + 1:03d}"
            for k in range(self._n_channels)
        ]
        self._make_layout(seed)
        self._stamp_delay = float(stamp_delay)
        self._mu = None
        #: Recent true mu phase and envelope per sample: (start, phase, env).
        self._mu_recent: list[tuple[int, np.ndarray, np.ndarray]] = []
        #: (time, sample, read late) of pulses whose phase is not yet known.
        self._mu_waiting: list[tuple[float, int, bool]] = []
        self._mu_pulses: list[tuple[float, int, float, float]] = []
        self._mu_log = mu_log
        if mu_snr_db is not None:
            self._setup_mu(seed, float(mu_snr_db))

        # Two generators, so that the noise does not depend on the layout.
        self._rng = np.random.default_rng([seed, 0])
        # Normalise the pinking filter to unit RMS, then run it long enough
        # (its slowest pole has a time constant of ~230 samples) that the
        # noise is stationary from the first sample.
        impulse = np.zeros(20_000)
        impulse[0] = 1.0
        self._pink_gain = 1.0 / np.sqrt(np.sum(lfilter(_PINK_B, _PINK_A, impulse) ** 2))
        self._zi = np.zeros((len(_PINK_A) - 1, self._n_channels))
        if self._noise_uv > 0:
            self._noise(2000)

        self._info = self._make_info()
        self._outlet: pylsl.StreamOutlet | None = pylsl.StreamOutlet(self._info)

        # The lock guards the pulses and the render position: add_pulse() is
        # called from the stimulator's thread while the stream thread renders.
        self._lock = threading.Lock()
        self._dropouts: list[tuple[float, float]] = []
        self._t0: float | None = None
        self._n_generated = 0
        self._bg = np.zeros((0, self._n_channels))
        self._bg_start = self._bg_stop = 0
        self._n_pushed = 0
        self._pulses: list[tuple[float, int]] = []
        self._active: list[tuple[int, int]] = []
        self._late_pulses = 0
        self._response_len = self._response_length()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._error: BaseException | None = None

    # ------------------------------------------------------------------ setup
    def _make_layout(self, seed: int) -> None:
        """Compute the fixed spatial patterns of every simulated source."""
        n_std = min(self._n_channels, 32)
        n_extra = self._n_channels - n_std
        pos = [_POSITIONS[ch] for ch in self._ch_names[:n_std]]
        angles = 2 * np.pi * np.arange(n_extra) / max(n_extra, 1)
        pos += [(1.15 * np.sin(a), 1.15 * np.cos(a)) for a in angles]
        self._pos = np.array(pos, float).reshape(self._n_channels, 2)

        def blob(centre: tuple[float, float], sigma: float) -> np.ndarray:
            d2 = np.sum((self._pos - np.asarray(centre)) ** 2, axis=1)
            return np.exp(-d2 / (2 * sigma**2))

        rng = np.random.default_rng([seed, 1])
        # The artifact's polarity depends on where an electrode sits relative
        # to the coil, so it is fixed per channel; it is largest near the coil.
        sign = rng.choice([-1.0, 1.0], self._n_channels)
        near = blob(_POSITIONS[_STIM_SITE], 0.5)
        self._artifact_w = sign * (0.7 + 0.3 * near)
        self._decay_w = sign * (0.3 + 0.7 * near)
        self._tep_w = np.array(
            [
                blob(_POSITIONS[centre], sigma)
                for centre, sigma in (
                    self.TEP_TOPOGRAPHY[c.name] for c in self.TEP_COMPONENTS
                )
            ]
        )
        self._alpha_w = blob((0.0, -0.8), 0.35)
        self._alpha_phase = rng.uniform(0, 2 * np.pi, 2)
        # Spatially smooth the noise, like volume conduction does; each row has
        # unit norm so that each channel keeps the requested RMS.
        d2 = np.sum((self._pos[:, None] - self._pos[None]) ** 2, axis=-1)
        mix = np.exp(-d2 / (2 * 0.25**2))
        self._mix = mix / np.linalg.norm(mix, axis=1, keepdims=True)

    def _setup_mu(self, seed: int, snr_db: float) -> None:
        """Place the mu source and scale it for ``snr_db`` at the C3 Hjorth output."""
        from .sim_mu import C3_HJORTH, MU_WEIGHTS, MuRhythm, band_power_fraction
        from .sim_mu import mu_scale as scale_for

        missing = [ch for ch in C3_HJORTH if ch not in self._ch_names]
        if missing:
            raise ValueError(f"a mu rhythm needs the channels {missing}")
        w = np.array([C3_HJORTH.get(ch, 0.0) for ch in self._ch_names])
        # The background at the montage's output: the spatially mixed pink
        # noise (each channel's is the same pink spectrum) and the alpha
        # rhythm (10 Hz, in band; its envelope has mean square 0.44).
        noise = (
            self._noise_uv**2
            * band_power_fraction(self._sfreq)
            * float(np.sum((self._mix.T @ w) ** 2))
        )
        alpha = self._alpha_uv**2 * 0.44 / 2 * float(w @ self._alpha_w) ** 2
        self._mu = MuRhythm(self._sfreq, seed)
        self._mu_w = np.array([MU_WEIGHTS.get(ch, 0.0) for ch in self._ch_names])
        self._mu_scale = scale_for(snr_db, noise + alpha)

    def _make_info(self) -> pylsl.StreamInfo:
        source_id = f"{self._name}_{self._n_channels}ch_{self._sfreq:g}Hz"
        info = pylsl.StreamInfo(
            self._name,
            "EEG",
            self._n_channels + len(self._emg_names),
            self._sfreq,
            pylsl.cf_float32,
            source_id,
        )
        desc = info.desc()
        desc.append_child_value("manufacturer", "stimtrain")
        desc.append_child_value("model", type(self).__name__)
        channels = desc.append_child("channels")
        for ch in self._ch_names:
            channel = channels.append_child("channel")
            channel.append_child_value("label", ch)
            channel.append_child_value("unit", "microvolts")
            channel.append_child_value("type", "EEG")
        for ch in self._emg_names:
            channel = channels.append_child("channel")
            channel.append_child_value("label", ch)
            channel.append_child_value("unit", "microvolts")
            channel.append_child_value("type", "EMG")
        return info

    def _response_length(self) -> int:
        """Number of samples after a pulse that its response still matters."""
        tep_end = max(c.latency_s + 6 * c.width_s for c in self.TEP_COMPONENTS)
        return int(math.ceil(max(tep_end, 15 * self.DECAY_TAU_S) * self._sfreq))

    # ------------------------------------------------------------- properties
    @property
    def info(self) -> pylsl.StreamInfo:
        """The LSL stream info of the outlet."""
        return self._info

    @property
    def ch_names(self) -> list[str]:
        """The channel labels, in stream order."""
        return list(self._ch_names)

    @property
    def emg_names(self) -> list[str]:
        """The EMG channel labels (after the EEG channels in the stream)."""
        return list(self._emg_names)

    @property
    def meps(self) -> list[tuple[float, int, int, float]]:
        """Every pulse's MEP as ``(time, sample, power, amplitude_uv)``."""
        with self._lock:
            return list(self._meps)

    @property
    def sfreq(self) -> float:
        """The sampling frequency in Hz."""
        return self._sfreq

    @property
    def t0(self) -> float | None:
        """Clock time of sample 0, or None before :meth:`start`."""
        return self._t0

    @property
    def n_pushed(self) -> int:
        """Number of samples pushed to the outlet so far."""
        return self._n_pushed

    @property
    def pulses(self) -> list[tuple[float, int]]:
        """Every pulse as ``(time, sample_index)``, in the order added."""
        with self._lock:
            return list(self._pulses)

    @property
    def mu_pulses(self) -> list[tuple[float, int, float, float]]:
        """Each pulse's true mu phase: ``(time, sample, phase_deg, envelope_uv)``.

        The envelope is the rhythm's at C3. A pulse is listed once its
        sample has been rendered.
        """
        with self._lock:
            return list(self._mu_pulses)

    @property
    def late_pulses(self) -> int:
        """Number of pulses that arrived after some of their samples were pushed."""
        return self._late_pulses

    @property
    def tep_topography(self) -> np.ndarray:
        """Weights of each TEP component on each channel, shape (6, n_channels)."""
        return self._tep_w.copy()

    # ---------------------------------------------------------- ground truth
    def artifact(self, times: np.ndarray, power: int = 100) -> np.ndarray:
        """Return the pulse artifact of one pulse.

        Parameters
        ----------
        times : array, shape (n_times,)
            Seconds after the pulse's sample; negative times give zeros.
        power : int
            Stimulator output, 0 to 100.

        Returns
        -------
        artifact : array, shape (n_times, n_channels)
            The artifact in µV.
        """
        t = np.asarray(times, float)
        after = t >= 0
        tt = np.where(after, t, 0.0)
        fast_uv = self.ARTIFACT_UV[0] + self.ARTIFACT_UV[1] * power / 100
        fast = fast_uv * np.exp(-tt / self.ARTIFACT_TAU_S) * after
        slow = self.DECAY_UV * power / 100 * np.exp(-tt / self.DECAY_TAU_S) * after
        return np.outer(fast, self._artifact_w) + np.outer(slow, self._decay_w)

    def evoked(self, times: np.ndarray, power: int = 100) -> np.ndarray:
        """Return the noise-free TMS-evoked potential of one pulse.

        Parameters
        ----------
        times : array, shape (n_times,)
            Seconds after the pulse's sample; negative times give zeros.
        power : int
            Stimulator output, 0 to 100; amplitudes scale with ``power / 100``.

        Returns
        -------
        evoked : array, shape (n_times, n_channels)
            The TEP in µV, the sum of :attr:`TEP_COMPONENTS`.
        """
        t = np.asarray(times, float)[:, None]
        lat = np.array([c.latency_s for c in self.TEP_COMPONENTS])
        amp = np.array([c.amplitude_uv for c in self.TEP_COMPONENTS])
        width = np.array([c.width_s for c in self.TEP_COMPONENTS])
        waves = amp * power / 100 * np.exp(-0.5 * ((t - lat) / width) ** 2)
        return (waves * (t >= 0)) @ self._tep_w

    def mep_curve(self, power: np.ndarray | float) -> np.ndarray:
        """Return the noise-free MEP amplitude (µV peak-to-peak) at ``power``.

        Parameters
        ----------
        power : array-like
            Stimulator output, %MSO.

        Returns
        -------
        ndarray
            :attr:`RECRUITMENT`'s Boltzmann curve at ``power``.
        """
        r = self.RECRUITMENT
        z = (r["s50"] - np.asarray(power, float)) / r["k"]
        return r["mep_min_uv"] + (r["mep_max_uv"] - r["mep_min_uv"]) / (1.0 + np.exp(z))

    def mep(self, times: np.ndarray, amplitude_uv: float) -> np.ndarray:
        """Return one MEP waveform: a single sine cycle of the given p2p.

        Parameters
        ----------
        times : array, shape (n_times,)
            Seconds after the pulse's sample.
        amplitude_uv : float
            Peak-to-peak amplitude, µV.

        Returns
        -------
        mep : array, shape (n_times,)
        """
        t = np.asarray(times, float) - self.MEP_LATENCY_S
        inside = (t >= 0) & (t <= self.MEP_DURATION_S)
        return amplitude_uv / 2 * np.sin(2 * np.pi * t / self.MEP_DURATION_S) * inside

    # ------------------------------------------------------------- rendering
    def _noise(self, n: int) -> np.ndarray:
        # Drawing (n1, ch) then (n2, ch) values gives the same numbers as one
        # (n1 + n2, ch) draw, and the filter carries its state, so the noise
        # does not depend on how the stream happens to be chunked.
        white = self._rng.standard_normal((n, self._n_channels))
        pink, self._zi = lfilter(_PINK_B, _PINK_A, white, axis=0, zi=self._zi)
        return (pink @ self._mix.T) * (self._noise_uv * self._pink_gain)

    def _background(self, start: int, stop: int) -> np.ndarray:
        """Noise plus alpha for samples ``start`` to ``stop`` (float64, new array)."""
        n = stop - start
        if self._noise_uv > 0:
            data = self._noise(n)
        else:
            data = np.zeros((n, self._n_channels))
        if self._mu is not None:
            mu = self._mu.render(n)
            data += np.outer(self._mu_scale * mu.wave, self._mu_w)
            self._mu_recent.append((start, mu.phase, self._mu_scale * mu.envelope))
            # Keep about 10 s for pulses reported after their sample.
            while self._mu_recent and self._mu_recent[0][0] < stop - 10 * self._sfreq:
                self._mu_recent.pop(0)
            self._resolve_mu()
        if self._alpha_uv > 0:
            t = np.arange(start, stop) / self._sfreq
            envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 0.2 * t + self._alpha_phase[0])
            wave = np.sin(2 * np.pi * self.ALPHA_HZ * t + self._alpha_phase[1])
            data += np.outer(self._alpha_uv * envelope * wave, self._alpha_w)
        return data

    def _resolve_mu(self) -> None:
        """Log the true mu phase of every waiting pulse whose sample exists."""
        waiting = []
        for time, sample, late_read in self._mu_waiting:
            for start, phase, env in self._mu_recent:
                if start <= sample < start + len(phase):
                    k = sample - start
                    entry = (time, sample, math.degrees(phase[k]), float(env[k]))
                    self._mu_pulses.append(entry)
                    self._write_mu_log(entry, late_read)
                    break
            else:
                if not self._mu_recent or sample >= self._mu_recent[0][0]:
                    waiting.append((time, sample, late_read))
        self._mu_waiting = waiting

    def _write_mu_log(
        self, entry: tuple[float, int, float, float], late_read: bool
    ) -> None:
        if self._mu_log is None:
            return
        import json

        keys = ("time", "sample", "phase_deg", "envelope_uv")
        row = dict(zip(keys, entry, strict=True))
        if late_read:
            # The trigger's edge was read late: the pulse's time (and the
            # phase there) is only an upper bound of the real one.
            row["late_read"] = True
        with open(self._mu_log, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def _render(self, n: int) -> np.ndarray:
        """Render the next ``n`` samples; call with the lock held (or unshared)."""
        start = self._n_generated
        stop = start + n
        # The background is made in blocks of 0.1 s and sliced: a few large
        # numpy calls cost far less CPU than many small ones every 10 ms.
        parts = []
        pos = start
        while pos < stop:
            if pos >= self._bg_stop:
                block = max(stop - pos, int(math.ceil(0.1 * self._sfreq)))
                self._bg = self._background(pos, pos + block)
                self._bg_start, self._bg_stop = pos, pos + block
            take = min(stop, self._bg_stop) - pos
            parts.append(self._bg[pos - self._bg_start : pos - self._bg_start + take])
            pos += take
        # One copy, straight to the stream's float32; the pulse responses are
        # added to it in place.
        data = np.concatenate(parts, dtype=np.float32)
        for k, power in self._active:
            lo, hi = max(start, k), min(stop, k + self._response_len)
            if lo < hi:
                times = (np.arange(lo, hi) - k) / self._sfreq
                data[lo - start : hi - start] += self.artifact(
                    times, power
                ) + self.evoked(times, power)
        if self._emg_names:
            emg = self._emg_rng.normal(
                0.0, self._emg_noise_uv, (n, len(self._emg_names))
            )
            for a0, a1, uv in self._activity:
                lo, hi = max(start, a0), min(stop, a1)
                if lo < hi:
                    # Muscle activity: broadband, about ``uv`` peak-to-peak.
                    emg[lo - start : hi - start] += self._emg_rng.normal(
                        0.0, uv / 6.0, (hi - lo, len(self._emg_names))
                    )
            self._activity = [a for a in self._activity if a[1] > stop]
            for k, _ in self._active:
                lo, hi = max(start, k), min(stop, k + self._response_len)
                if lo < hi and k in self._mep_amp:
                    times = (np.arange(lo, hi) - k) / self._sfreq
                    emg[lo - start : hi - start] += self.mep(times, self._mep_amp[k])[
                        :, None
                    ]
            data = np.hstack([data, emg.astype(np.float32)])
        for k, _ in self._active:
            if k + self._response_len <= stop:
                self._mep_amp.pop(k, None)
        self._active = [p for p in self._active if p[0] + self._response_len > stop]
        self._n_generated = stop
        return data

    # ------------------------------------------------------------- streaming
    def start(self) -> SimulatedEEG:
        """Anchor ``t0`` on the clock and start streaming in a background thread.

        Returns
        -------
        self : SimulatedEEG
            The simulator, streaming.
        """
        if self._thread is not None or self._stopped:
            raise RuntimeError("SimulatedEEG can only be started once")
        with self._lock:
            self._t0 = self._clock()
        self._thread = threading.Thread(
            target=self._run, name=f"{self._name}-stream", daemon=True
        )
        self._thread.start()
        logger.debug("Streaming %r from t0=%.6f", self._name, self._t0)
        return self

    def _run(self) -> None:
        try:
            next_wake = self._clock()
            while True:
                self._push_due()
                # Wake-ups are scheduled on the clock (non-slip); when the
                # thread fell behind it resumes from now instead of bursting.
                next_wake += self._chunk_interval
                delay = next_wake - self._clock()
                if delay < 0:
                    next_wake -= delay
                    delay = 0.0
                if self._stop_event.wait(delay):
                    break
        except BaseException as exc:  # noqa: B036 - reported by stop()
            self._error = exc
            logger.exception("Simulated EEG stream %r failed", self._name)

    def _push_due(self) -> None:
        """Render and push every sample whose time is ``<= clock() - latency``."""
        with self._lock:
            due = (self._clock() - self._latency - self._t0) * self._sfreq
            n_end = math.floor(due) + 1
            n = n_end - self._n_generated
            if n <= 0:
                return
            chunk = self._render(n)
        now = self._clock()
        if any(start <= now < end for start, end in self._dropouts):
            # An amplifier dropout: the samples are generated (time goes on)
            # but never reach the stream, as with a pulled cable.
            self._n_pushed = n_end
            return
        # One timestamp for the chunk: liblsl treats it as the time of the
        # *last* sample and derives the others backwards at the nominal rate.
        self._outlet.push_chunk(
            chunk, self._t0 + (n_end - 1) / self._sfreq + self._stamp_delay
        )
        self._n_pushed = n_end

    def add_dropout(self, start: float, duration: float) -> None:
        """Stop pushing samples from clock time ``start`` for ``duration`` s.

        Fault injection: the stream goes silent (its samples are lost), as
        when an amplifier's cable is pulled, then resumes.
        """
        self._dropouts.append((start, start + duration))

    def move_coil(self, distance_mm: float) -> None:
        """Put the coil ``distance_mm`` from the participant's hotspot."""
        if not distance_mm >= 0:
            raise ValueError(f"distance_mm must be >= 0, got {distance_mm}")
        with self._lock:
            self._coil_mm = float(distance_mm)

    def add_activity(self, start: float, duration: float, uv: float) -> None:
        """Voluntary EMG from clock time ``start`` for ``duration`` s, ~``uv`` p-p."""
        with self._lock:
            if self._t0 is None:
                raise RuntimeError("add_activity() needs a started SimulatedEEG")
            a0 = round((start - self._t0) * self._sfreq)
            self._activity.append((a0, a0 + round(duration * self._sfreq), uv))

    def add_pulse(self, time: float, power: int, *, late_read: bool = False) -> int:
        """Draw a TMS pulse delivered at clock time ``time`` into the signal.

        The pulse's sample is ``round((time - t0) * sfreq)``: the artifact
        starts exactly there and the TEP follows. A pulse whose sample was
        already pushed is counted in :attr:`late_pulses` and logged; the part
        of its response that is not yet pushed is still drawn.

        Parameters
        ----------
        time : float
            Clock time of the pulse, in seconds.
        power : int
            Stimulator output, 0 to 100 (% of maximum).
        late_read : bool
            The simulated trigger box read the edge late (``time`` is an
            upper bound): said so in the mu rhythm's log.

        Returns
        -------
        sample : int
            Index of the pulse's sample, or -1 if the stream was already
            stopped (the pulse is then only logged).
        """
        if not 0 <= power <= 100:
            raise ValueError(f"power must be within 0-100, got {power}")
        with self._lock:
            if self._t0 is None:
                raise RuntimeError("add_pulse() needs a started SimulatedEEG")
            if self._stopped:
                logger.warning("Pulse at %.6f ignored: stream stopped", time)
                return -1
            sample = round((time - self._t0) * self._sfreq)
            self._pulses.append((time, sample))
            self._active.append((sample, power))
            if self._mu is not None:
                self._mu_waiting.append((time, sample, late_read))
                self._resolve_mu()
            if self._emg_names and self._motor is not None:
                amp = float(
                    self._motor.mep(power, self._mep_rng, distance_mm=self._coil_mm)
                )
                self._mep_amp[sample] = amp
                self._meps.append((time, sample, power, amp))
            elif self._emg_names:
                amp = float(self.mep_curve(power)) * float(
                    self._mep_rng.lognormal(0.0, self.MEP_SPREAD)
                )
                self._mep_amp[sample] = amp
                self._meps.append((time, sample, power, amp))
            if sample < self._n_generated:
                self._late_pulses += 1
                logger.warning(
                    "Pulse at %.6f came %.1f ms after its sample %d was pushed "
                    "(latency %.0f ms); drawing only what remains",
                    time,
                    (self._n_generated - sample) / self._sfreq * 1e3,
                    sample,
                    self._latency * 1e3,
                )
        return sample

    def stop(self) -> None:
        """Stop streaming and destroy the outlet (idempotent)."""
        with self._lock:
            self._stopped = True
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join()
        # Dropping the last reference destroys the liblsl outlet, so inlets
        # see the stream disappear.
        self._outlet = None
        logger.debug("Stopped %r after %d samples", self._name, self._n_pushed)
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(f"stream {self._name!r} failed") from error

    def __enter__(self) -> SimulatedEEG:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "streaming" if self._thread and not self._stopped else "idle"
        return (
            f"<SimulatedEEG {self._name!r} | {self._n_channels} ch, "
            f"{self._sfreq:g} Hz, {state}, {self._n_pushed} samples pushed>"
        )
