"""A simulated participant's corticospinal system: the MEP each pulse evokes.

The model follows what the literature measures about MEPs:

- **Recruitment.** The noise-free MEP grows with intensity along a Boltzmann
  sigmoid ``min + (max - min) / (1 + exp((S50 - S) / k))`` (peak-to-peak µV;
  Devanne, Lavoie & Capaday 1997; docs/specs/analysis.md), ``k`` a few %MSO.
- **Two sources of variability** (Goetz, Luber, Lisanby & Peterchev 2014):
  the excitability fluctuates from pulse to pulse as if the intensity moved by
  a Gaussian amount (SD about 0.04-0.10 of the threshold: Awiszus's
  threshold-tracking spread of 0.07·MT is the typical value), and the
  amplitude varies multiplicatively (log-normal, SD 0.2-0.5 in log units).
- **The EMG's noise floor.** The amplifier's noise adds to the MEP before its
  peak-to-peak is read, which turns a small Gaussian noise into a skewed
  floor of about 10 µV (Li, Peterchev, Rothwell & Goetz 2022);
  :meth:`MotorSystem.measured` reads it the way the session does.
- **Coil position.** Away from the hotspot the effective intensity falls
  with the distance (a Gaussian of width ``falloff_mm``; MEPs shrink by half
  within about a centimetre, Wassermann et al. 1992), so a hotspot search has
  a true answer.

The resting motor threshold is *defined* as the intensity at the hotspot
where an MEP of at least 50 µV is as likely as not (Rossini et al. 2015), and
:meth:`MotorSystem.with_rmt` places the curve so that this holds exactly: the
threshold a method reports is compared with this truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy.special import ndtr

from stimtrain.emg import WINDOW_S

#: The IFCN's resting-threshold criterion, µV peak-to-peak.
CRITERION_UV = 50.0
#: Gauss-Hermite nodes for the expectation over the excitability fluctuation.
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(48)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()

#: The simulated rig's EMG (devices/sim_eeg.py, kept equal by a test): its
#: sampling rate, and the MEP's onset and length (one sine cycle).
EMG_SFREQ = 5000.0
MEP_LATENCY_S = 0.021
MEP_DURATION_S = 0.015
# The MEP's shape (unit peak-to-peak) on the samples of the session's MEP
# window, so that measured() reads what the session would read from the rig.
_T = np.arange(round(WINDOW_S[0] * EMG_SFREQ), round(WINDOW_S[1] * EMG_SFREQ) + 1)
_T = _T / EMG_SFREQ - MEP_LATENCY_S
_SHAPE = (
    0.5 * np.sin(2 * np.pi * _T / MEP_DURATION_S) * ((_T >= 0) & (_T <= MEP_DURATION_S))
)


@dataclass(frozen=True)
class MotorSystem:
    """One participant's MEPs as a function of intensity and coil position.

    Attributes
    ----------
    s50 : float
        Intensity (%MSO) of half the maximal MEP.
    k : float
        Boltzmann slope parameter, %MSO.
    mep_max_uv : float
        The largest MEP, µV peak-to-peak.
    spread : float
        SD of the excitability fluctuation, as a fraction of the threshold.
    amplitude_sd : float
        SD of the log-normal amplitude variability (natural log units).
    falloff_mm : float
        Width of the fall-off of effective intensity with distance from the
        hotspot.
    rmt : float
        The resting motor threshold this system has (%MSO).
    mep_min_uv : float
        The Boltzmann curve's floor, µV. Fits to recorded MEPs find the
        baseline EMG here; this model keeps that noise apart (``emg_noise_uv``)
        so the default is 0.
    emg_noise_uv : float
        RMS of the EMG's additive noise (µV), used by :meth:`measured`; the
        simulated rig's default amplifier noise.
    """

    s50: float
    k: float
    mep_max_uv: float
    spread: float
    amplitude_sd: float
    falloff_mm: float = 15.0
    rmt: float = float("nan")
    mep_min_uv: float = 0.0
    emg_noise_uv: float = 2.0

    @classmethod
    def with_rmt(
        cls,
        rmt: float,
        *,
        k: float = 4.0,
        mep_max_uv: float = 2000.0,
        spread: float = 0.07,
        amplitude_sd: float = 0.35,
        falloff_mm: float = 15.0,
        mep_min_uv: float = 0.0,
        emg_noise_uv: float = 2.0,
    ) -> MotorSystem:
        """A system whose resting motor threshold is exactly ``rmt`` %MSO.

        ``s50`` is found so that P(MEP >= 50 µV) = 0.5 at ``rmt`` at the
        hotspot (bisection on the exact probability, which falls as ``s50``
        grows).

        Parameters
        ----------
        rmt : float
            The threshold, %MSO (1-100).
        k, mep_max_uv, spread, amplitude_sd, falloff_mm, mep_min_uv, emg_noise_uv
            As the attributes.

        Raises
        ------
        ValueError
            For a threshold outside 1-100 %MSO, or a curve that cannot cross
            the criterion (its floor at or above 50 µV, its top at or below).
        """
        if not 1 <= rmt <= 100:
            raise ValueError(f"rmt must be within 1-100 %MSO, got {rmt}")
        if not 0 <= mep_min_uv < CRITERION_UV < mep_max_uv:
            raise ValueError(
                f"the curve must cross {CRITERION_UV:g} uV: need 0 <= mep_min_uv "
                f"< {CRITERION_UV:g} < mep_max_uv, got {mep_min_uv} and {mep_max_uv}"
            )
        base = cls(
            0.0, k, mep_max_uv, spread, amplitude_sd, falloff_mm, rmt, mep_min_uv,
            emg_noise_uv,
        )  # fmt: skip
        lo, hi = rmt - 10 * k - 50, rmt + 10 * k + 50
        for _ in range(80):
            mid = (lo + hi) / 2
            if replace(base, s50=mid).p_response(rmt) > 0.5:
                lo = mid
            else:
                hi = mid
        return replace(base, s50=(lo + hi) / 2)

    @classmethod
    def draw(
        cls, rng: np.random.Generator, rmt_range: tuple[float, float] = (30, 80)
    ) -> MotorSystem:
        """A random participant, parameters spanning published ranges.

        Parameters
        ----------
        rng : numpy.random.Generator
            Source of the draw (four numbers after the threshold, always in
            this order, so a seed gives the same participant).
        rmt_range : tuple of float
            The threshold is uniform in it, %MSO (resting FDI thresholds of
            healthy adults mostly lie in 30-80 %MSO).

        Returns
        -------
        MotorSystem
            Slope ``k`` uniform in 2-6 %MSO, maximal MEP log-uniform in
            0.5-5 mV (Devanne et al. 1997), excitability spread uniform in
            0.04-0.10 of the threshold (Awiszus 2003's 0.07 in the middle),
            amplitude SD uniform in 0.2-0.5 (Goetz et al. 2014).
        """
        return cls.with_rmt(
            float(rng.uniform(*rmt_range)),
            k=float(rng.uniform(2.0, 6.0)),
            mep_max_uv=float(np.exp(rng.uniform(np.log(500), np.log(5000)))),
            spread=float(rng.uniform(0.04, 0.10)),
            amplitude_sd=float(rng.uniform(0.2, 0.5)),
        )

    def curve(self, intensity: np.ndarray | float) -> np.ndarray:
        """The noise-free MEP (µV) at an effective intensity (%MSO)."""
        x = np.asarray(intensity, dtype=float)
        span = self.mep_max_uv - self.mep_min_uv
        return self.mep_min_uv + span / (1.0 + np.exp((self.s50 - x) / self.k))

    def effective(self, power: float, distance_mm: float = 0.0) -> float:
        """The intensity that reaches the hotspot's neurons from ``distance_mm``."""
        return power * math.exp(-0.5 * (distance_mm / self.falloff_mm) ** 2)

    def _fluctuation_sd(self, x: float) -> float:
        # On the intensity axis, in proportion to the threshold (Awiszus's
        # spread is a fraction of MT); a system built without one scales it
        # with the intensity instead.
        return self.spread * (self.rmt if math.isfinite(self.rmt) else x)

    def p_response(
        self, power: float, distance_mm: float = 0.0, criterion_uv: float = CRITERION_UV
    ) -> float:
        """P(MEP >= ``criterion_uv``) at ``power`` (exact up to quadrature).

        The MEP without the EMG's noise, the quantity the threshold is
        defined on.
        """
        x = self.effective(power, distance_mm)
        sd = self._fluctuation_sd(x)
        mu = np.log(np.maximum(self.curve(x + sd * _NODES), 1e-300))
        z = (mu - math.log(criterion_uv)) / self.amplitude_sd
        return float(np.sum(_WEIGHTS * ndtr(z)))

    def mep(
        self, power: float, rng: np.random.Generator, distance_mm: float = 0.0
    ) -> float:
        """One pulse's MEP (µV peak-to-peak, before the EMG's own noise).

        The simulated rig draws its EMG noise on the waveform itself, so it
        takes this; :meth:`measured` adds the noise for code without a rig.

        Parameters
        ----------
        power : float
            Stimulator output, %MSO.
        rng : numpy.random.Generator
            Source of both variabilities (two draws per pulse).
        distance_mm : float
            The coil's distance from the hotspot.
        """
        x = self.effective(power, distance_mm)
        fluctuation = float(rng.normal(0.0, self._fluctuation_sd(x)))
        return float(self.curve(x + fluctuation)) * float(
            rng.lognormal(0.0, self.amplitude_sd)
        )

    def measured(
        self, power: float, rng: np.random.Generator, distance_mm: float = 0.0
    ) -> float:
        """One pulse's MEP as the session reads it from the simulated rig.

        The MEP's waveform plus white noise of ``emg_noise_uv`` RMS, sampled
        at 5 kHz, peak-to-peak over the session's MEP window (15-50 ms,
        :data:`stimtrain.emg.WINDOW_S`). With no MEP this is the noise floor,
        about 5.3 RMS (11 µV at the default).
        """
        amplitude = self.mep(power, rng, distance_mm)
        trace = amplitude * _SHAPE + rng.normal(0.0, self.emg_noise_uv, _SHAPE.size)
        return float(trace.max() - trace.min())


def simulated_participant(rmt: float, seed: int = 0) -> MotorSystem:
    """The simulated rig's participant: true RMT ``rmt``, the rest drawn by ``seed``.

    Parameters
    ----------
    rmt : float
        Resting motor threshold, %MSO.
    seed : int
        Seed of the slope, maximal MEP and variability.
    """
    rng = np.random.default_rng([seed, 47])
    drawn = MotorSystem.draw(rng, (rmt, rmt))
    return replace(drawn, rmt=float(rmt))
