"""Recruitment (input-output) curves and the resting motor threshold from MEPs.

The curve is the Boltzmann sigmoid of ``docs/specs/analysis.md``,
``MEP(S) = MEPmin + (MEPmax - MEPmin) / (1 + exp((S50 - S) / k))``, fitted by
non-linear least squares (:func:`scipy.optimize.curve_fit`). Confidence
intervals are percentile intervals of a trial-wise bootstrap by default (MEP
amplitudes are skewed and heteroscedastic, so the covariance-based interval
is too narrow); the covariance-based Wald interval is available too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from mne.utils import logger, verbose, warn
from scipy import stats
from scipy.optimize import curve_fit

__all__ = [
    "boltzmann",
    "RecruitmentFit",
    "fit_recruitment",
    "motor_threshold",
    "PARAMS",
]

#: Names of the Boltzmann parameters, in :func:`boltzmann`'s order.
PARAMS = ("mep_min", "mep_max", "s50", "k")


def boltzmann(
    s: np.ndarray | float, mep_min: float, mep_max: float, s50: float, k: float
) -> np.ndarray:
    """Evaluate the Boltzmann recruitment curve.

    Parameters
    ----------
    s : array-like
        Stimulation intensity (e.g. %MSO).
    mep_min, mep_max : float
        Lower and upper plateaus (the MEP's unit, e.g. µV).
    s50 : float
        Intensity at half of the range.
    k : float
        Slope parameter (intensity units); the slope at ``s50`` is
        ``(mep_max - mep_min) / (4 k)``.

    Returns
    -------
    ndarray
        The curve at ``s``.
    """
    s = np.asarray(s, float)
    # Clipping the exponent keeps extreme intensities from overflowing.
    z = np.clip((s50 - s) / k, -700, 700)
    return mep_min + (mep_max - mep_min) / (1.0 + np.exp(z))


@dataclass
class RecruitmentFit:
    """A fitted recruitment curve.

    Attributes
    ----------
    params : dict
        ``mep_min``, ``mep_max``, ``s50``, ``k``.
    ci : pandas.DataFrame
        Indexed by parameter: ``estimate``, ``low``, ``high``, ``se``.
    ci_method : str
        ``"bootstrap"`` (percentile, trial-wise resampling) or
        ``"covariance"`` (Wald interval from curve_fit's covariance).
    level : float
        Confidence level.
    n_trials : int
        Trials used.
    n_boot : int
        Bootstrap resamples that converged (0 for the covariance method).
    r2 : float
        Coefficient of determination on the trials.
    """

    params: dict[str, float]
    ci: pd.DataFrame
    ci_method: str
    level: float
    n_trials: int
    n_boot: int = 0
    r2: float = np.nan
    boot: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)), repr=False)

    def predict(self, s: np.ndarray | float) -> np.ndarray:
        """Evaluate the fitted curve at intensities ``s``."""
        return boltzmann(s, *(self.params[p] for p in PARAMS))

    def intensity_at(self, amplitude: float) -> float:
        """Intensity where the fitted curve reaches ``amplitude`` (NaN if never)."""
        lo, hi, s50, k = (self.params[p] for p in PARAMS)
        frac = (amplitude - lo) / (hi - lo)
        if not 0 < frac < 1:
            return np.nan
        return float(s50 - k * np.log(1.0 / frac - 1.0))

    def table(self) -> pd.DataFrame:
        """The fit as a tidy table (one row per parameter)."""
        out = self.ci.reset_index(names="parameter")
        out["ci_method"] = self.ci_method
        out["level"] = self.level
        out["n_trials"] = self.n_trials
        out["r2"] = self.r2
        return out


def _initial(s: np.ndarray, y: np.ndarray) -> list[float]:
    lo, hi = np.percentile(y, 5), np.percentile(y, 95)
    # The intensity nearest the middle of the range, from the per-level means.
    levels = np.unique(s)
    means = np.array([y[s == v].mean() for v in levels])
    s50 = levels[np.argmin(np.abs(means - (lo + hi) / 2))]
    k = max(np.ptp(s) / 10.0, 1e-3)
    return [lo, hi, float(s50), float(k)]


def _fit(s, y, p0):
    lower = [-np.inf, -np.inf, s.min() - np.ptp(s), 1e-3]
    upper = [np.inf, np.inf, s.max() + np.ptp(s), 10 * max(np.ptp(s), 1.0)]
    p0 = np.clip(p0, np.add(lower, 1e-9), np.subtract(upper, 1e-9))
    return curve_fit(boltzmann, s, y, p0=p0, bounds=(lower, upper), maxfev=20000)


@verbose
def fit_recruitment(
    intensity: np.ndarray,
    amplitude: np.ndarray,
    *,
    ci: str = "bootstrap",
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int | None = 0,
    verbose=None,
) -> RecruitmentFit:
    """Fit a Boltzmann recruitment curve to MEP amplitudes.

    Parameters
    ----------
    intensity : array-like, shape (n_trials,)
        Stimulation intensity of each trial (e.g. the ``power`` column, %%MSO).
    amplitude : array-like, shape (n_trials,)
        MEP amplitude of each trial (e.g. ``mep_uv``); NaNs are dropped.
    ci : ``"bootstrap"`` | ``"covariance"``
        How the confidence intervals are made: percentile intervals over
        ``n_boot`` trial-wise bootstrap refits, or Wald intervals from the
        covariance of the least-squares fit.
    level : float
        Confidence level, in (0, 1).
    n_boot : int
        Bootstrap resamples.
    seed : int | None
        Seed of the bootstrap.
    %(verbose)s

    Returns
    -------
    fit : RecruitmentFit
    """
    s = np.asarray(intensity, float)
    y = np.asarray(amplitude, float)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError(
            f"intensity and amplitude must be 1-D of equal length "
            f"(got shapes {s.shape} and {y.shape})"
        )
    if ci not in ("bootstrap", "covariance"):
        raise ValueError(f"ci must be 'bootstrap' or 'covariance' (got {ci!r})")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1) (got {level})")
    ok = np.isfinite(s) & np.isfinite(y)
    s, y = s[ok], y[ok]
    if len(s) < 5 or len(np.unique(s)) < 4:
        raise ValueError(
            f"a recruitment curve needs at least 5 trials at 4 or more "
            f"intensities (got {len(s)} trials at {len(np.unique(s))})"
        )
    popt, pcov = _fit(s, y, _initial(s, y))
    resid = y - boltzmann(s, *popt)
    r2 = 1.0 - np.sum(resid**2) / np.sum((y - y.mean()) ** 2)
    alpha = 1.0 - level
    boot = np.zeros((0, 4))
    if ci == "covariance":
        se = np.sqrt(np.clip(np.diag(pcov), 0, None))
        z = stats.t.ppf(1 - alpha / 2, max(len(s) - 4, 1))
        low, high = popt - z * se, popt + z * se
    else:
        rng = np.random.default_rng(seed)
        fits = []
        for _ in range(n_boot):
            pick = rng.integers(0, len(s), len(s))
            if len(np.unique(s[pick])) < 4:
                continue
            try:
                fits.append(_fit(s[pick], y[pick], popt)[0])
            except (RuntimeError, ValueError):
                continue  # a resample that does not converge is left out
        boot = np.asarray(fits).reshape(-1, 4)
        if len(boot) < max(0.9 * n_boot, 1):
            warn(f"only {len(boot)} of {n_boot} bootstrap fits converged")
        if len(boot):
            low = np.percentile(boot, 100 * alpha / 2, axis=0)
            high = np.percentile(boot, 100 * (1 - alpha / 2), axis=0)
            se = boot.std(axis=0, ddof=1) if len(boot) > 1 else np.full(4, np.nan)
        else:
            low = high = se = np.full(4, np.nan)
    table = pd.DataFrame(
        {"estimate": popt, "low": low, "high": high, "se": se}, index=list(PARAMS)
    )
    params = dict(zip(PARAMS, map(float, popt), strict=True))
    logger.info(
        f"Boltzmann fit on {len(s)} trials: S50 {params['s50']:.2f} "
        f"[{table.loc['s50', 'low']:.2f}, {table.loc['s50', 'high']:.2f}], "
        f"k {params['k']:.2f}, R² {r2:.3f}"
    )
    return RecruitmentFit(
        params=params,
        ci=table,
        ci_method=ci,
        level=level,
        n_trials=len(s),
        n_boot=len(boot),
        r2=float(r2),
        boot=boot,
    )


def motor_threshold(
    intensity: np.ndarray,
    amplitude: np.ndarray,
    *,
    criterion_uv: float = 50.0,
    fraction: float = 0.5,
    min_trials: int = 5,
) -> tuple[float, pd.DataFrame]:
    """Resting motor threshold from the data (relative-frequency method).

    The threshold is the lowest tested intensity at which at least
    ``fraction`` of the trials give an MEP of at least ``criterion_uv``, and
    at every higher tested intensity too (so that one lucky trial at a low
    intensity cannot set it).

    Parameters
    ----------
    intensity : array-like
        Intensity of each trial (%MSO).
    amplitude : array-like
        MEP peak-to-peak amplitude of each trial, in µV.
    criterion_uv : float
        The MEP criterion (50 µV at rest).
    fraction : float
        Required proportion of trials meeting the criterion (0.5: 5 of 10).
    min_trials : int
        Intensities with fewer trials are not considered.

    Returns
    -------
    rmt : float
        The threshold, NaN if no tested intensity qualifies.
    table : pandas.DataFrame
        Per intensity: ``n_trials``, ``n_above``, ``fraction_above``.
    """
    s = np.asarray(intensity, float)
    y = np.asarray(amplitude, float)
    if s.shape != y.shape:
        raise ValueError(
            f"intensity and amplitude must have equal shapes "
            f"(got {s.shape} and {y.shape})"
        )
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1] (got {fraction})")
    ok = np.isfinite(s) & np.isfinite(y)
    df = pd.DataFrame({"intensity": s[ok], "above": y[ok] >= criterion_uv})
    table = df.groupby("intensity").agg(
        n_trials=("above", "size"), n_above=("above", "sum")
    )
    table["fraction_above"] = table["n_above"] / table["n_trials"]
    usable = table[table["n_trials"] >= min_trials]
    meets = (usable["fraction_above"] >= fraction).to_numpy()
    # Lowest intensity from which every higher one meets the criterion.
    tail_ok = np.flip(np.logical_and.accumulate(np.flip(meets)))
    rmt = float(usable.index[np.argmax(tail_ok)]) if tail_ok.any() else np.nan
    return rmt, table
