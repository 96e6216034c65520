"""A simulated participant's corticospinal system: the MEP each pulse evokes.

The model follows what the literature measures about MEPs:

- **Recruitment.** The noise-free MEP grows with intensity along a Boltzmann
  sigmoid ``A_max / (1 + exp((S50 - S) / k))`` (peak-to-peak µV; Devanne et
  al. 1997; docs/specs/analysis.md), ``k`` a few %MSO.
- **Two sources of variability** (Goetz, Luber, Lisanby & Peterchev 2014):
  the excitability fluctuates from pulse to pulse as if the intensity moved by
  a Gaussian amount (SD about 0.04-0.10 of the threshold: Awiszus's
  threshold-tracking spread of 0.07·MT is the typical value), and the
  amplitude varies multiplicatively (log-normal, SD 0.2-0.5 in log units).
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

#: The IFCN's resting-threshold criterion, µV peak-to-peak.
CRITERION_UV = 50.0
#: Gauss-Hermite nodes for the expectation over the excitability fluctuation.
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(48)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


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
    """

    s50: float
    k: float
    mep_max_uv: float
    spread: float
    amplitude_sd: float
    falloff_mm: float = 15.0
    rmt: float = float("nan")

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
    ) -> MotorSystem:
        """A system whose resting motor threshold is exactly ``rmt`` %MSO.

        ``s50`` is found so that P(MEP >= 50 µV) = 0.5 at ``rmt`` at the
        hotspot (bisection on the exact probability).
        """
        if not 1 <= rmt <= 100:
            raise ValueError(f"rmt must be within 1-100 %MSO, got {rmt}")
        base = cls(0.0, k, mep_max_uv, spread, amplitude_sd, falloff_mm, rmt)
        lo, hi = rmt - 10 * k - 50, rmt + 10 * k + 50
        for _ in range(80):
            mid = (lo + hi) / 2
            # Larger s50: a smaller MEP at rmt.
            if replace(base, s50=mid).p_response(rmt) > 0.5:
                lo = mid
            else:
                hi = mid
        return replace(base, s50=(lo + hi) / 2)

    @classmethod
    def draw(
        cls, rng: np.random.Generator, rmt_range: tuple[float, float] = (30, 80)
    ) -> MotorSystem:
        """A random participant, parameters spanning published ranges."""
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
        return self.mep_max_uv / (1.0 + np.exp((self.s50 - x) / self.k))

    def effective(self, power: float, distance_mm: float = 0.0) -> float:
        """The intensity that reaches the hotspot's neurons from ``distance_mm``."""
        return power * math.exp(-0.5 * (distance_mm / self.falloff_mm) ** 2)

    def p_response(
        self, power: float, distance_mm: float = 0.0, criterion_uv: float = CRITERION_UV
    ) -> float:
        """P(MEP >= ``criterion_uv``) at ``power`` (exact up to quadrature)."""
        x = self.effective(power, distance_mm)
        sd = self.spread * (self.rmt if math.isfinite(self.rmt) else x)
        mu = np.log(np.maximum(self.curve(x + sd * _NODES), 1e-300))
        z = (mu - math.log(criterion_uv)) / self.amplitude_sd
        from scipy.special import ndtr

        return float(np.sum(_WEIGHTS * ndtr(z)))

    def mep(
        self, power: float, rng: np.random.Generator, distance_mm: float = 0.0
    ) -> float:
        """One pulse's MEP (µV peak-to-peak, before the EMG's own noise)."""
        x = self.effective(power, distance_mm)
        sd = self.spread * (self.rmt if math.isfinite(self.rmt) else x)
        fluctuation = float(rng.normal(0.0, sd))
        return float(self.curve(x + fluctuation)) * float(
            rng.lognormal(0.0, self.amplitude_sd)
        )


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
