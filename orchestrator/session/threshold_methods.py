"""Threshold-hunting methods: which intensity next, and when the threshold is known.

Every method has one interface (:class:`ThresholdMethod`): :meth:`next_power`
(an integer %MSO the unit can give), :meth:`update` with the MEP that power
evoked, and ``done``, ``converged``, ``estimate`` and ``ci``. A hunt is
``done`` when it converged, ran out of pulses, or is sure the threshold lies
beyond its bounds; only ``converged`` means the threshold was found. They
know nothing of devices or streams; the threshold block runs them
(:mod:`.hunting`), and
benchmarks/threshold_methods.py measures them on simulated participants
(:mod:`stimtrain.devices.sim_mep`) against the known truth.

- ``bayes`` (the default): a posterior over threshold, slope and spread of
  the log MEP near threshold, from every MEP's amplitude (not only whether it
  passed 50 µV, and read through the EMG's noise); the next pulse at the
  posterior median; stops when the 95 % credible interval is narrow.
- ``samt``: stochastic approximation with adaptive harmonic steps on
  yes/no responses, as the SAMT tool (Wang, Peterchev & Goetz 2023): 25
  pulses; ``control="analog"`` steps by the log MEP instead.
- ``ml-pest``: maximum-likelihood threshold tracking on yes/no responses
  with a cumulative Gaussian of spread 0.07·MT (Awiszus 2003, MTAT 2.0): the
  next pulse at the current estimate; 20 pulses.
- ``relative-frequency``: the IFCN rule (Rossini et al. 2015): the lowest
  intensity with at least 5 of 10 MEPs of 50 µV, descending in 2 %MSO and
  ascending in 1 %MSO steps; ~75 pulses as usually run (fewer here: an
  intensity is decided once its outcome is certain), the reference.
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

    Attributes
    ----------
    powers, meps : list
        Every counted pulse's intensity (%MSO) and MEP (µV), in order.
    converged : bool
        The threshold was found (the method's own stop rule).
    stopped : bool
        The hunt ended sure that the threshold lies beyond ``min_power`` or
        ``max_power``; ``estimate`` is then the bound or beyond it.
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
        # Ended without an answer: the threshold lies beyond a bound.
        self.stopped = False
        self._setup(**options)

    def _setup(self) -> None:
        """Each method's own parameters (keyword-only) and state."""

    @property
    def pulses(self) -> int:
        """MEPs counted so far."""
        return len(self.meps)

    @property
    def done(self) -> bool:
        """Whether the hunt ends: converged, out of pulses, or at a bound.

        Only ``converged`` means the threshold was found: a hunt that ran out
        of pulses, or whose threshold lies beyond ``min_power`` or
        ``max_power`` (``stopped``), ends without it.
        """
        return self.converged or self.stopped or self.pulses >= self.max_pulses

    def clip(self, power: float) -> int:
        """An intensity the unit can give within this hunt's bounds."""
        return int(min(self.max_power, max(self.min_power, round(power))))

    def update(self, power: int, mep_uv: float) -> None:
        """Count one MEP (µV peak-to-peak) evoked at ``power``.

        Raises
        ------
        ValueError
            For an MEP that is not a finite, non-negative number (one NaN
            would silently spoil every estimate after it).
        """
        if not (math.isfinite(mep_uv) and mep_uv >= 0):
            raise ValueError(f"an MEP must be a peak-to-peak >= 0 uV, got {mep_uv}")
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


#: What the EMG's noise adds to a peak-to-peak reading: the median of
#: (reading - MEP) / sigma for an MEP of ``_PP_A`` sigma, white noise of RMS
#: sigma (Li et al. 2022: peak-to-peak turns noise into a skewed excess). For
#: the simulated rig's reading (a one-cycle MEP, 176 samples: 5 kHz over the
#: 15-50 ms window), 200,000 draws each; the tests derive it again. Noise
#: alone reads 5.4 sigma; an MEP of 25 sigma (50 µV at 2 µV RMS) reads 2.5
#: sigma, 10 % too large, which moves a threshold read from peak-to-peak down
#: by about 1 %. Other sampling rates and MEP shapes change it only slowly
#: (the extremes of more or fewer samples).
_PP_A = np.array(
    [0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 75, 100, 150, 200,
     300, 400], dtype=float,
)  # fmt: skip
_PP_EXCESS = np.array(
    [5.36, 4.5, 3.92, 3.59, 3.39, 3.28, 3.19, 3.05, 2.95, 2.86, 2.75, 2.61, 2.49,
     2.4, 2.25, 2.13, 1.9, 1.74, 1.5, 1.32, 1.06, 0.87],
)  # fmt: skip


class Bayes(ThresholdMethod):
    """A Bayesian estimate from every MEP's amplitude (the default).

    Our design. Qi, Wu & Schweighofer (2011) showed that a Bayesian adaptive
    hunt with a stop rule on the estimate's precision needs few pulses; it
    read yes/no responses. This one reads amplitudes: near threshold the
    median log MEP grows about linearly with intensity (the foot of the
    Boltzmann curve; Goetz et al. 2014 for the variability around it), so
    the model is ``log(MEP) ~ N(log(criterion) + (x - t) / k, sigma)``, with
    threshold ``t``, slope ``k`` and spread ``sigma`` unknown (flat priors
    over grids spanning published participants: ``t`` in steps of 0.25 %MSO
    over the hunt's range and 10 %MSO beyond, ``k`` 1.5-9 %MSO, ``sigma``
    0.4-1.4). The threshold is where an MEP of criterion is as likely as
    not, the definition of a motor threshold.

    Each reading is a peak-to-peak on a noisy EMG, so it is first taken back
    to the MEP it most likely was (the noise's median excess, see
    ``_PP_EXCESS``, for noise of ``noise_uv`` RMS; 0 takes readings as they
    are); a reading at or below ``floor_uv`` is read as "an MEP no larger
    than that reading's", censored, and an MEP far above criterion (the
    sigmoid's saturation) as "at least 8 times criterion". Each pulse goes to
    the posterior median; the hunt stops when the 95 % credible interval is
    within ``tolerance`` of it on both sides, after at least ``min_pulses``
    (±5 % and 16 pulses; seeds other than the benchmark's give the same
    numbers, docs/benchmarks.md), or ends unconverged when the interval lies wholly
    beyond ``min_power`` or ``max_power``. ``noise_uv`` should be the
    recording's: the simulated rig's is 2 µV RMS; a real one can take it
    from the EMG before the pulses (peak-to-peak over 35 ms is about 5.4
    times the RMS).
    """

    name = "bayes"

    def _setup(
        self,
        *,
        tolerance: float = 0.05,
        min_pulses: int = 16,
        floor_uv: float = 15.0,
        noise_uv: float = 2.0,
    ) -> None:
        self.tolerance = tolerance
        self.min_pulses = min_pulses
        self.noise_uv = float(noise_uv)
        self.floor_uv = float(floor_uv)
        self.floor = math.log(max(self._mep(floor_uv), 1e-3))
        self.ceiling = math.log(8 * self.criterion_uv)
        self.t = np.arange(max(1.0, self.min_power - 10), self.max_power + 10.25, 0.25)
        self.k = np.array([1.5, 2.5, 4.0, 6.0, 9.0])
        self.sigma = np.array([0.4, 0.7, 1.0, 1.4])
        self.log_post = np.zeros((self.t.size, self.k.size, self.sigma.size))
        # The posterior's 2.5 %, 50 % and 97.5 % points, after each MEP.
        self._q = (float(self.min_power), float(self.start), float(self.max_power))

    def _mep(self, reading_uv: float) -> float:
        """The MEP (µV) a peak-to-peak reading most likely came from."""
        if self.noise_uv <= 0:
            return reading_uv
        r = reading_uv / self.noise_uv
        reads = _PP_A + _PP_EXCESS
        if r >= reads[-1]:
            return (r - _PP_EXCESS[-1]) * self.noise_uv
        return float(np.interp(r, reads, _PP_A)) * self.noise_uv

    def _learn(self, power: int, mep_uv: float) -> None:
        t = self.t[:, None, None]
        k = self.k[None, :, None]
        s = self.sigma[None, None, :]
        mu = math.log(self.criterion_uv) + (power - t) / k
        y = math.log(max(self._mep(mep_uv), 1e-3))
        if mep_uv <= self.floor_uv:
            ll = log_ndtr((self.floor - mu) / s)
        elif y >= self.ceiling:
            ll = log_ndtr((mu - self.ceiling) / s)
        else:
            z = (y - mu) / s
            ll = -0.5 * z * z - np.log(s)
        self.log_post = self.log_post + ll
        p = np.exp(self.log_post - self.log_post.max()).sum(axis=(1, 2))
        cdf = np.cumsum(p / p.sum())
        low, mid, high = (float(np.interp(q, cdf, self.t)) for q in (0.025, 0.5, 0.975))
        self._q = low, mid, high
        if self.pulses < self.min_pulses:
            return
        # A posterior piled against the grid's end is cut off there, not
        # narrow: the threshold lies beyond what the hunt can tell.
        inside = low > self.t[0] + 1 and high < self.t[-1] - 1
        self.converged = inside and high - low <= 2 * self.tolerance * mid
        # Sure that the threshold is beyond a bound: more pulses cannot find it.
        self.stopped = not self.converged and (
            low > self.max_power or high < self.min_power
        )

    def next_power(self) -> int:
        return self.clip(self._q[1] if self.meps else self.start)

    @property
    def estimate(self) -> float:
        return self._q[1] if self.meps else float(self.start)

    @property
    def ci(self) -> tuple[float, float]:
        if not self.meps:
            return (float(self.min_power), float(self.max_power))
        return self._q[0], self._q[2]


class SAMT(ThresholdMethod):
    """Stochastic approximation of the motor threshold (the SAMT tool).

    Robbins-Monro root finding, ``x[i+1] = x[i] - a[i] * e[i]``, as in the
    SAMT tool (tms-samt.github.io; the method and its variants in Wang,
    Peterchev & Goetz 2023, J Neural Eng 20:056002, "DCS-HA"): the error
    ``e`` is +1 for a response (MEP >= criterion) and -1 for none (a
    *digital* control sequence), and the step ``a`` starts at ``step`` (4.2
    %MSO, the tool's) and follows the harmonic sequence only when the
    response flips (Kesten's adaptive stepping: ``a = step / (1 + n)`` after
    ``n`` flips). The estimate is the next intensity, not rounded; the tool
    reports it after 25 pulses from a start near threshold, preferably above
    it (the hotspot's intensity), with a median error under 1.5 %.

    ``control="analog"`` reads amplitudes instead, ``e = log10(MEP /
    criterion)`` (the paper's "ACS-HA"; ``step`` then in %MSO per decade,
    6.7 by default as in the paper's simulations).

    Where the sources are silent or specific to their tool: the iterate is
    kept within the hunt's bounds (the tool keeps the next intensity within
    1-100 %MSO); an analog MEP below ``floor_uv`` counts as ``floor_uv``
    (noise has no meaningful logarithm); ``ci`` is the estimate plus or
    minus the current step, a heuristic (stochastic approximation gives no
    interval).
    """

    name = "samt"

    def _setup(
        self,
        *,
        control: str = "digital",
        step: float | None = None,
        n_pulses: int = 25,
        floor_uv: float = 10.0,
    ) -> None:
        if control not in ("digital", "analog"):
            raise ValueError(f"control must be 'digital' or 'analog', got {control!r}")
        self.control = control
        self.x = float(self.clip(self.start))
        if step is None:
            step = 4.2 if control == "digital" else 6.7
        self.step = float(step)
        self.n_pulses = n_pulses
        self.floor_uv = floor_uv
        self._last: bool | None = None
        self._flips = 0

    @property
    def _a(self) -> float:
        return self.step / (1 + self._flips)

    def _learn(self, power: int, mep_uv: float) -> None:
        response = mep_uv >= self.criterion_uv
        if self._last is not None and response != self._last:
            self._flips += 1
        self._last = response
        if self.control == "digital":
            error = 1.0 if response else -1.0
        else:
            error = math.log10(max(mep_uv, self.floor_uv) / self.criterion_uv)
        # The step is the one after this pulse's flip (as in the paper): a
        # flip shortens the very step it causes.
        self.x = min(self.max_power, max(self.min_power, self.x - self._a * error))
        if self.pulses >= self.n_pulses:
            # Held at a bound by the last answer: the threshold is beyond it.
            pinned = (self.x >= self.max_power and not response) or (
                self.x <= self.min_power and response
            )
            self.stopped, self.converged = pinned, not pinned

    def next_power(self) -> int:
        return self.clip(self.x)

    @property
    def estimate(self) -> float:
        return self.x

    @property
    def ci(self) -> tuple[float, float]:
        return self.x - self._a, self.x + self._a


class MLPest(ThresholdMethod):
    """Maximum-likelihood threshold tracking on yes/no MEPs (Awiszus 2003).

    A response is an MEP of at least criterion (50 µV at rest);
    P(response | x, t) = Phi((x - t) / (0.07 t)), the spread fixed at 0.07
    of the threshold (Awiszus 2003; the TMS Motor Threshold Assessment Tool,
    MTAT 2.0, Awiszus & Borckardt 2011). Before the first pulse two virtual
    answers bracket the range (a response at ``max_power``, none at
    ``min_power``), as in MTAT; each next pulse is at the current maximum
    likelihood estimate. About 17 pulses sufficed on average in Awiszus's
    reports; the count is fixed here, ``n_pulses`` (20, as MTAT 2.0 is
    commonly run).

    Where the sources are silent: the likelihood is evaluated on a 0.1 %MSO
    grid within the hunt's bounds and a flat maximum (a plateau) is read at
    its middle; an estimate on a bound after ``n_pulses`` stops the hunt
    unconverged (the threshold is beyond it); ``ci`` is the likelihood
    interval (a drop of 1.92 in log likelihood).
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
        if self.pulses >= self.n_pulses:
            # An estimate on the grid's edge says only "beyond the bound".
            inside = self.min_power < self._ml() < self.max_power
            self.stopped, self.converged = not inside, inside

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

    Rossini et al. 2015 (IFCN): the resting threshold is the lowest
    intensity that evokes an MEP of at least 50 µV in at least 5 of 10
    consecutive trials. From ``start`` (meant to be above threshold) the
    intensity goes down by ``down`` %MSO while an intensity passes, then up
    by ``up`` %MSO until one passes again: that one is the threshold.

    Where the rule is silent: an intensity is decided as soon as the outcome
    is certain (5 responses: passes; 6 misses: fails), which saves pulses
    without changing any decision; passing at ``min_power`` or failing at
    ``max_power`` stops the hunt unconverged; ``ci`` spans the last failing
    intensity to the result (the rule's own resolution).
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
        if passed and self.current <= self.min_power:
            # Passes at the floor: the threshold is there or below.
            self.result, self.stopped = float(self.current), True
        elif self.descending and passed:
            self.current = self.clip(self.current - self.down)
        elif passed:
            self.result, self.converged = float(self.current), True
        elif self.current >= self.max_power:
            # Fails at the ceiling: the threshold is above it.
            self.result, self.stopped = float(self.current), True
        else:
            self.descending = False
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
