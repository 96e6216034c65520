"""Threshold-hunting methods: which intensity next, and when the threshold is known.

Every method has one interface (:class:`ThresholdMethod`): :meth:`next_power`
(an integer %MSO the unit can give), :meth:`update` with the MEP that power
evoked, and ``done``, ``estimate`` and ``ci``. They know nothing of devices
or streams; the threshold block runs them (:mod:`.hunting`), and
benchmarks/threshold_methods.py measures them on simulated participants
(:mod:`stimtrain.devices.sim_mep`) against the known truth.

- ``bayes`` (the default): a posterior over threshold, slope and spread of
  the log MEP near threshold, from every MEP's amplitude (not only whether it
  passed 50 µV); the next pulse at the posterior median; stops when the 95 %
  credible interval is narrow.
- ``samt``: stochastic approximation in the log-MEP domain with adaptive
  steps (Qi, Wu & Schweighofer 2011): ~25 pulses.
- ``ml-pest``: maximum-likelihood threshold tracking on yes/no responses
  with a cumulative Gaussian of spread 0.07·MT (Awiszus 2003, MTAT 2.0): the
  next pulse at the current estimate; 20 pulses.
- ``relative-frequency``: the IFCN rule (Rossini et al. 2015): the lowest
  intensity with at least 5 of 10 MEPs of 50 µV, descending in 2 %MSO and
  ascending in 1 %MSO steps; ~75 pulses and biased upward, the reference.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import log_ndtr


class ThresholdMethod:
    """The interface of a hunting method (and what every method keeps).

    Parameters
    ----------
    start : int
        Intensity of the first pulse, %MSO.
    max_power : int
        Never go above this, %MSO.
    max_pulses : int
        Stop after this many MEPs even if not converged.
    criterion_uv : float
        MEP that counts as a response (50 µV at rest, 200 µV active).
    min_power : int
        Never go below this, %MSO.
    **options
        The method's own parameters (see each method's ``_setup``).
    """

    name = ""

    def __init__(
        self,
        start: int,
        max_power: int = 100,
        max_pulses: int = 40,
        criterion_uv: float = 50.0,
        min_power: int = 1,
        **options,
    ) -> None:
        self.start = int(start)
        self.max_power = int(max_power)
        self.min_power = int(min_power)
        self.max_pulses = int(max_pulses)
        self.criterion_uv = float(criterion_uv)
        self.powers: list[int] = []
        self.meps: list[float] = []
        self.converged = False
        self._setup(**options)

    def _setup(self) -> None:
        """Each method's own parameters (keyword-only) and state."""

    @property
    def pulses(self) -> int:
        """MEPs counted so far."""
        return len(self.meps)

    @property
    def done(self) -> bool:
        """Whether the hunt ends: converged, or out of pulses."""
        return self.converged or self.pulses >= self.max_pulses

    def clip(self, power: float) -> int:
        """An intensity the unit can give within this hunt's bounds."""
        return int(min(self.max_power, max(self.min_power, round(power))))

    def update(self, power: int, mep_uv: float) -> None:
        """Count one MEP (µV peak-to-peak) evoked at ``power``."""
        self.powers.append(int(power))
        self.meps.append(float(mep_uv))
        self._learn(int(power), float(mep_uv))

    def _learn(self, power: int, mep_uv: float) -> None:
        raise NotImplementedError

    def next_power(self) -> int:
        """The intensity of the next pulse, %MSO."""
        raise NotImplementedError

    @property
    def estimate(self) -> float:
        """The threshold estimate, %MSO."""
        raise NotImplementedError

    @property
    def ci(self) -> tuple[float, float]:
        """A 95 % interval of the threshold, %MSO (wide when unknown)."""
        raise NotImplementedError


class Bayes(ThresholdMethod):
    """A Bayesian estimate from every MEP's amplitude (the default).

    Near threshold the median log MEP grows about linearly with intensity
    (the foot of the Boltzmann curve), so the model is
    ``log(MEP) ~ N(log(criterion) + (x - t) / k, sigma)``, with threshold
    ``t``, slope ``k`` and spread ``sigma`` unknown (flat priors over
    plausible grids), an MEP below the EMG's noise floor read as "at most the
    floor" (censored), and an MEP far above criterion (the sigmoid's
    saturation) read as "at least 8 times criterion". The threshold is where
    an MEP of criterion is as likely as not, the definition of a motor
    threshold. Each pulse goes to the posterior median; the hunt stops when
    the 95 % credible interval is within ``tolerance`` of it on both sides
    (and after ``min_pulses``).
    """

    name = "bayes"

    def _setup(
        self,
        *,
        tolerance: float = 0.05,
        min_pulses: int = 16,
        floor_uv: float = 15.0,
    ) -> None:
        self.tolerance = tolerance
        self.min_pulses = min_pulses
        self.floor = math.log(max(floor_uv, 1e-3))
        self.ceiling = math.log(8 * self.criterion_uv)
        self.t = np.arange(max(1.0, self.min_power - 10), self.max_power + 10.25, 0.25)
        self.k = np.array([1.5, 2.5, 4.0, 6.0, 9.0])
        self.sigma = np.array([0.4, 0.7, 1.0, 1.4])
        self.log_post = np.zeros((self.t.size, self.k.size, self.sigma.size))

    def _learn(self, power: int, mep_uv: float) -> None:
        t = self.t[:, None, None]
        k = self.k[None, :, None]
        s = self.sigma[None, None, :]
        mu = math.log(self.criterion_uv) + (power - t) / k
        y = math.log(max(mep_uv, 1e-3))
        if y <= self.floor:
            ll = log_ndtr((self.floor - mu) / s)
        elif y >= self.ceiling:
            ll = log_ndtr((mu - self.ceiling) / s)
        else:
            z = (y - mu) / s
            ll = -0.5 * z * z - np.log(s)
        self.log_post = self.log_post + ll
        self.converged = self.pulses >= self.min_pulses and self._narrow()

    def _marginal(self) -> np.ndarray:
        p = np.exp(self.log_post - self.log_post.max()).sum(axis=(1, 2))
        return p / p.sum()

    def _quantile(self, q: float) -> float:
        cdf = np.cumsum(self._marginal())
        return float(np.interp(q, cdf, self.t))

    def _narrow(self) -> bool:
        low, mid, high = (self._quantile(q) for q in (0.025, 0.5, 0.975))
        return high - low <= 2 * self.tolerance * mid

    def next_power(self) -> int:
        if not self.meps:
            return self.clip(self.start)
        return self.clip(self._quantile(0.5))

    @property
    def estimate(self) -> float:
        return self._quantile(0.5) if self.meps else float(self.start)

    @property
    def ci(self) -> tuple[float, float]:
        if not self.meps:
            return (float(self.min_power), float(self.max_power))
        return self._quantile(0.025), self._quantile(0.975)


class SAMT(ThresholdMethod):
    """Stochastic approximation in the log-MEP domain (Qi et al. 2011).

    ``x[i+1] = x[i] - c[i] * (log10(MEP[i]) - log10(criterion))``, with the
    step ``c`` halved at every sign change of the error (Kesten's rule, the
    "adaptive steps"); the first step ``step`` %MSO per decade. The estimate
    is the next intensity; ``n_pulses`` pulses (25 in the clinical anchor).
    """

    name = "samt"

    def _setup(
        self,
        *,
        step: float = 8.0,
        n_pulses: int = 25,
        floor_uv: float = 10.0,
    ) -> None:
        self.x = float(self.start)
        self.step = step
        self.n_pulses = n_pulses
        self.floor_uv = floor_uv
        self._last_sign = 0
        self._changes = 0

    def _learn(self, power: int, mep_uv: float) -> None:
        error = math.log10(max(mep_uv, self.floor_uv)) - math.log10(self.criterion_uv)
        sign = int(np.sign(error))
        if sign and self._last_sign and sign != self._last_sign:
            self._changes += 1
        if sign:
            self._last_sign = sign
        c = self.step / (1 + self._changes)
        self.x = float(np.clip(self.x - c * error, self.min_power, self.max_power))
        self.converged = self.pulses >= self.n_pulses

    def next_power(self) -> int:
        return self.clip(self.x)

    @property
    def estimate(self) -> float:
        return self.x

    @property
    def ci(self) -> tuple[float, float]:
        c = self.step / (1 + self._changes)
        return self.x - c / 2, self.x + c / 2


class MLPest(ThresholdMethod):
    """Maximum-likelihood threshold tracking on yes/no MEPs (Awiszus 2003).

    P(response | x, t) = Phi((x - t) / (0.07 t)). Before the first pulse two
    virtual answers bracket the range (a response at ``max_power``, none at
    ``min_power``), as in MTAT; each next pulse is at the current maximum
    likelihood estimate (the middle of its plateau). ``n_pulses`` pulses (20
    in MTAT 2.0).
    """

    name = "ml-pest"

    def _setup(
        self,
        *,
        spread: float = 0.07,
        n_pulses: int = 20,
    ) -> None:
        self.spread = spread
        self.n_pulses = n_pulses
        self.t = np.arange(self.min_power, self.max_power + 0.05, 0.1)
        self.ll = self._ll(self.max_power, True) + self._ll(self.min_power, False)

    def _ll(self, power: float, response: bool) -> np.ndarray:
        z = (power - self.t) / (self.spread * self.t)
        return log_ndtr(z) if response else log_ndtr(-z)

    def _learn(self, power: int, mep_uv: float) -> None:
        self.ll = self.ll + self._ll(power, mep_uv >= self.criterion_uv)
        self.converged = self.pulses >= self.n_pulses

    def _ml(self) -> float:
        best = np.flatnonzero(self.ll >= self.ll.max() - 1e-9)
        return float(self.t[best].mean())

    def next_power(self) -> int:
        return self.clip(self.start if not self.meps else self._ml())

    @property
    def estimate(self) -> float:
        return self._ml()

    @property
    def ci(self) -> tuple[float, float]:
        # The likelihood interval (a drop of 1.92 in log likelihood: 95 %).
        inside = self.t[self.ll >= self.ll.max() - 1.92]
        return float(inside.min()), float(inside.max())


class RelativeFrequency(ThresholdMethod):
    """The IFCN rule: the lowest intensity with >= 5 of 10 MEPs of criterion.

    From ``start`` (meant to be above threshold) the intensity goes down by
    ``down`` %MSO while an intensity passes, then up by ``up`` %MSO until one
    passes again: that one is the threshold. An intensity is decided as soon
    as the outcome is certain (5 responses: passes; 6 misses: fails).
    """

    name = "relative-frequency"

    def _setup(
        self,
        *,
        down: int = 2,
        up: int = 1,
    ) -> None:
        self.down, self.up = down, up
        self.current = self.clip(self.start)
        self.hits = self.misses = 0
        self.descending = True
        self.lowest_pass: int | None = None
        self.result: float | None = None

    def _learn(self, power: int, mep_uv: float) -> None:
        if mep_uv >= self.criterion_uv:
            self.hits += 1
        else:
            self.misses += 1
        if self.hits < 5 and self.misses < 6:
            return
        passed = self.hits >= 5
        self.hits = self.misses = 0
        if passed:
            self.lowest_pass = self.current
        if self.descending:
            if passed and self.current > self.min_power:
                self.current = self.clip(self.current - self.down)
            else:
                self.descending = False
                self.current = self.clip(self.current + self.up)
        elif passed or self.current >= self.max_power:
            self.result = float(self.current)
            self.converged = True
        else:
            self.current = self.clip(self.current + self.up)

    def next_power(self) -> int:
        return self.current

    @property
    def estimate(self) -> float:
        if self.result is not None:
            return self.result
        return float(self.lowest_pass if self.lowest_pass is not None else self.current)

    @property
    def ci(self) -> tuple[float, float]:
        e = self.estimate
        return e - self.up, e


#: Every method by the name protocols use.
METHODS: dict[str, type[ThresholdMethod]] = {
    cls.name: cls for cls in (Bayes, SAMT, MLPest, RelativeFrequency)
}


def make_method(name: str, **kwargs) -> ThresholdMethod:
    """The hunting method ``name`` (see :data:`METHODS`) with its parameters.

    Raises
    ------
    ValueError
        For an unknown name.
    """
    if name not in METHODS:
        raise ValueError(f"unknown threshold method {name!r}; known: {list(METHODS)}")
    return METHODS[name](**kwargs)


__all__ = ["METHODS", "ThresholdMethod", "make_method"]
