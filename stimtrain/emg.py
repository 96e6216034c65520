"""An MEP measured from one pulse's EMG: the rule the session and the analysis share.

Peak-to-peak amplitude in a window after the pulse (default 15-50 ms), the
pre-activation as the peak-to-peak in -50..-5 ms, and the onset latency
(docs/specs/analysis.md). Peak-to-peak is taken after the baseline's mean is
removed, so that an amplifier's DC offset never adds to an MEP (the sum of
absolute maximum and minimum, as some tools take it, would).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Where pre-activation is measured, seconds from the pulse.
BASELINE_S = (-0.050, -0.005)
#: Where the MEP is measured by default, seconds from the pulse.
WINDOW_S = (0.015, 0.050)


@dataclass(frozen=True)
class MEP:
    """One pulse's MEP.

    Attributes
    ----------
    amplitude_uv : float
        Peak-to-peak in the window, µV.
    preactivation_uv : float
        Peak-to-peak in the baseline window, µV.
    latency_s : float | None
        Onset: the first sample in the window more than five baseline SDs from
        the baseline's mean (a common onset rule); None when there is none.
    """

    amplitude_uv: float
    preactivation_uv: float
    latency_s: float | None


def measure_meps(
    times: np.ndarray,
    data: np.ndarray,
    *,
    window: tuple[float, float] = WINDOW_S,
    baseline: tuple[float, float] = BASELINE_S,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Measure MEPs of many pulses (and channels) at once.

    Parameters
    ----------
    times : ndarray, shape (n_times,)
        Sample times, seconds from the pulse.
    data : ndarray, shape (..., n_times)
        The EMG around each pulse, µV.
    window, baseline : tuple of float
        Where the MEP and the pre-activation are measured, seconds.

    Returns
    -------
    amplitude, preactivation, latency : ndarray, shape (...)
        Peak-to-peak in ``window`` and in ``baseline`` (µV), and the onset
        latency (s; NaN where no sample deviates).

    Raises
    ------
    ValueError
        When either window holds no sample.
    """
    times = np.asarray(times, dtype=float)
    data = np.asarray(data, dtype=float)
    # Sample times are sums of sample periods: a window edge must not miss
    # the sample that falls on it by a rounding error.
    in_win = (times >= window[0] - 1e-9) & (times <= window[1] + 1e-9)
    in_pre = (times >= baseline[0] - 1e-9) & (times <= baseline[1] + 1e-9)
    if not in_win.any() or not in_pre.any():
        raise ValueError(
            f"no EMG sample in the baseline {baseline} or the window {window} (s)"
        )
    pre = data[..., in_pre]
    post = data[..., in_win] - pre.mean(-1, keepdims=True)
    amplitude = np.ptp(post, axis=-1)
    preactivation = np.ptp(pre, axis=-1)
    spread = 5 * np.maximum(pre.std(-1, keepdims=True), 1e-3)
    dev = np.abs(post) > spread
    first = np.where(dev.any(-1), dev.argmax(-1), -1)
    latency = np.where(first >= 0, times[in_win][first.clip(0)], np.nan)
    return amplitude, preactivation, latency


def measure_mep(
    times: np.ndarray,
    values: np.ndarray,
    *,
    window: tuple[float, float] = WINDOW_S,
    baseline: tuple[float, float] = BASELINE_S,
) -> MEP:
    """Measure the MEP of one pulse (see :func:`measure_meps`).

    Parameters
    ----------
    times : ndarray
        Sample times, seconds from the pulse.
    values : ndarray
        The EMG, µV, one value per time.
    window, baseline : tuple of float
        Where the MEP and the pre-activation are measured, seconds.

    Returns
    -------
    MEP
    """
    amplitude, pre, latency = measure_meps(
        times, values, window=window, baseline=baseline
    )
    lat = float(latency)
    return MEP(float(amplitude), float(pre), None if np.isnan(lat) else lat)
