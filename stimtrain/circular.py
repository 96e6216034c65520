"""Circular statistics of phases in degrees, shared by every room.

The closed loop's console, the live view and the report all summarise the
phase at the pulses the same way: the circular mean direction and the
circular standard deviation ``sqrt(-2 ln R)`` (the closed-loop
literature's measure of spread), NaN phases ignored.
"""

from __future__ import annotations

import math

import numpy as np


def wrap_deg(deg: np.ndarray) -> np.ndarray:
    """Wrap degrees to (-180, 180].

    Parameters
    ----------
    deg : ndarray | float
        Angles, degrees.

    Returns
    -------
    ndarray
        The same angles in (-180, 180].
    """
    out = np.mod(np.asarray(deg, float) + 180.0, 360.0) - 180.0
    return np.where(out == -180.0, 180.0, out)


def circular_mean_deg(phases_deg: np.ndarray) -> float:
    """Circular mean of phases in degrees.

    Parameters
    ----------
    phases_deg : ndarray
        Phases, degrees (NaN ignored).

    Returns
    -------
    float
        Mean direction, degrees in (-180, 180]; NaN when there are none.
    """
    z = _resultant(phases_deg)
    if z is None:
        return math.nan
    return float(wrap_deg(math.degrees(math.atan2(z.imag, z.real))))


def circular_sd_deg(phases_deg: np.ndarray) -> float:
    """Circular standard deviation ``sqrt(-2 ln R)`` of phases, in degrees.

    Parameters
    ----------
    phases_deg : ndarray
        Phases, degrees (NaN ignored).

    Returns
    -------
    float
        Circular SD, degrees (infinite when the resultant length is 0); NaN
        when there are none.
    """
    z = _resultant(phases_deg)
    if z is None:
        return math.nan
    r = abs(z)
    # Opposite phases cancel only to rounding (about 1e-16).
    if r < 1e-12:
        return math.inf
    return math.degrees(math.sqrt(-2.0 * math.log(min(r, 1.0))))


def _resultant(phases_deg: np.ndarray) -> complex | None:
    """Mean resultant vector of the finite phases, or None when there are none."""
    a = np.asarray(phases_deg, float).ravel()
    a = a[np.isfinite(a)]
    if a.size == 0:
        return None
    return complex(np.mean(np.exp(1j * np.radians(a))))
