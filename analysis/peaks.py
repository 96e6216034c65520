"""TEP peak detection the way TESA does it: local extrema, ``largest`` in window.

A sample is a peak of a component when it is more extreme (lower for an N
component, higher for a P component) than every sample within ``±neighbours``
samples of it; among the peaks inside the component's window the largest one
is kept. Without any peak in the window the component is reported as not
found (latency and amplitude NaN) rather than with an arbitrary sample.
"""

from __future__ import annotations

import mne
import numpy as np
import pandas as pd
from mne.utils import logger, verbose

from .tep import TEP_WINDOWS, gmfp

__all__ = ["find_peak", "peak_table", "polarity"]

_COLUMNS = [
    "evoked",
    "signal",
    "component",
    "polarity",
    "tmin_ms",
    "tmax_ms",
    "latency_ms",
    "amplitude_uv",
    "found",
]


def polarity(component: str) -> str:
    """Return ``"neg"`` or ``"pos"`` from a component name (``N100``, ``P30``).

    Parameters
    ----------
    component : str
        A name starting with ``N`` (negative) or ``P`` (positive).

    Returns
    -------
    str
        ``"neg"`` or ``"pos"``.
    """
    first = component[:1].upper()
    if first not in ("N", "P"):
        raise ValueError(
            f"component name must start with N or P to give its polarity "
            f"(got {component!r}); pass polarities explicitly"
        )
    return "neg" if first == "N" else "pos"


def find_peak(
    signal: np.ndarray,
    times: np.ndarray,
    window: tuple[float, float],
    mode: str = "pos",
    *,
    neighbours: int = 5,
    method: str = "largest",
) -> tuple[float, float, bool]:
    """Find one component's peak in a 1-D signal (TESA's peak rule).

    Parameters
    ----------
    signal : ndarray, shape (n_times,)
        The signal (e.g. an ROI average or the GMFP).
    times : ndarray, shape (n_times,)
        Its times (s).
    window : tuple of float
        ``(tmin, tmax)`` (s), both ends included.
    mode : ``"pos"`` | ``"neg"``
        Look for maxima or minima.
    neighbours : int
        A peak must exceed every sample within this many samples either side
        (samples outside the window count as neighbours).
    method : ``"largest"`` | ``"centre"``
        Which peak to keep when there are several: the most extreme, or the
        one closest to the window's centre.

    Returns
    -------
    latency : float
        Time of the peak (s), NaN if none.
    amplitude : float
        Signal value at the peak, NaN if none.
    found : bool
        Whether a peak was found.
    """
    if mode not in ("pos", "neg"):
        raise ValueError(f"mode must be 'pos' or 'neg' (got {mode!r})")
    if method not in ("largest", "centre"):
        raise ValueError(f"method must be 'largest' or 'centre' (got {method!r})")
    if neighbours < 1:
        raise ValueError(f"neighbours must be at least 1 (got {neighbours})")
    tmin, tmax = window
    if not tmin < tmax:
        raise ValueError(f"window must have tmin < tmax (got {window})")
    x = np.asarray(signal, float) * (1.0 if mode == "pos" else -1.0)
    times = np.asarray(times, float)
    eps = 1e-9  # times are floats on a sample grid; keep window ends inclusive
    inside = np.flatnonzero((times >= tmin - eps) & (times <= tmax + eps))
    # Only samples with a full set of neighbours can be tested.
    inside = inside[(inside >= neighbours) & (inside < len(x) - neighbours)]
    if len(inside) == 0:
        return np.nan, np.nan, False
    # Sliding maximum of the neighbours on each side, excluding the sample.
    offsets = np.r_[-neighbours:0, 1 : neighbours + 1]
    neigh = x[inside[:, None] + offsets[None, :]]
    is_peak = (x[inside][:, None] > neigh).all(axis=1)
    peaks = inside[is_peak]
    if len(peaks) == 0:
        return np.nan, np.nan, False
    if method == "largest":
        best = peaks[np.argmax(x[peaks])]
    else:
        best = peaks[np.argmin(np.abs(times[peaks] - (tmin + tmax) / 2))]
    return float(times[best]), float(signal[best]), True


@verbose
def peak_table(
    evokeds: mne.Evoked | dict[str, mne.Evoked],
    windows: dict[str, tuple[float, float]] | None = None,
    *,
    roi: list[str] | dict[str, list[str]] | None = None,
    channels: bool = False,
    use_gmfp: bool = True,
    neighbours: int = 5,
    method: str = "largest",
    polarities: dict[str, str] | None = None,
    verbose=None,
) -> pd.DataFrame:
    """Tabulate TEP peaks of one or several evoked responses.

    Parameters
    ----------
    evokeds : Evoked | dict of Evoked
        The TEP(s); a dict's keys name them in the ``evoked`` column (a single
        Evoked is named by its comment).
    windows : dict | None
        Component name to ``(tmin, tmax)`` (s); ``None`` uses
        :data:`~stimtrain.analysis.tep.TEP_WINDOWS` (N15 … P180).
    roi : list of str | dict | None
        Channels averaged into a region of interest (TESA's ROI analysis);
        a dict names several ROIs. Missing channels are an error.
    channels : bool
        Also find every component on every EEG channel.
    use_gmfp : bool
        Also find every component on the GMFP (always a positive peak).
    neighbours : int
        TESA's neighbour rule, see :func:`find_peak` (5 samples by default).
    method : str
        ``"largest"`` (default) or ``"centre"``, see :func:`find_peak`.
    polarities : dict | None
        Component name to ``"pos"``/``"neg"``; by default from the name's
        first letter.
    %(verbose)s

    Returns
    -------
    peaks : pandas.DataFrame
        One row per evoked, signal and component: ``evoked``, ``signal``
        (``"GMFP"``, ``"roi:<name>"`` or a channel name), ``component``,
        ``polarity``, ``tmin_ms``, ``tmax_ms``, ``latency_ms``,
        ``amplitude_uv`` (µV) and ``found``.
    """
    if isinstance(evokeds, mne.Evoked):
        evokeds = {evokeds.comment or "evoked": evokeds}
    windows = dict(TEP_WINDOWS if windows is None else windows)
    polarities = dict(polarities or {})
    if isinstance(roi, list | tuple):
        roi = {"roi": list(roi)}
    rows = []
    for name, evoked in evokeds.items():
        signals: dict[str, tuple[np.ndarray, bool]] = {}
        if use_gmfp:
            signals["GMFP"] = (gmfp(evoked), True)
        for roi_name, chs in (roi or {}).items():
            missing = [ch for ch in chs if ch not in evoked.ch_names]
            if missing:
                raise ValueError(
                    f"roi {roi_name!r}: channels must be in the evoked "
                    f"(got missing {missing})"
                )
            signals[f"roi:{roi_name}"] = (evoked.get_data(picks=chs).mean(0), False)
        if channels:
            picks = mne.pick_types(evoked.info, eeg=True, exclude="bads")
            data = evoked.get_data(picks=picks)
            for ii, pick in enumerate(picks):
                signals[evoked.ch_names[pick]] = (data[ii], False)
        for sig_name, (signal, always_pos) in signals.items():
            for comp, (tmin, tmax) in windows.items():
                mode = "pos" if always_pos else polarities.get(comp) or polarity(comp)
                lat, amp, found = find_peak(
                    signal,
                    evoked.times,
                    (tmin, tmax),
                    mode,
                    neighbours=neighbours,
                    method=method,
                )
                rows.append(
                    [
                        name,
                        sig_name,
                        comp,
                        mode,
                        tmin * 1e3,
                        tmax * 1e3,
                        lat * 1e3,
                        amp * 1e6,
                        found,
                    ]
                )
    table = pd.DataFrame(rows, columns=_COLUMNS)
    n_missing = int((~table["found"]).sum()) if len(table) else 0
    logger.info(f"Peak table: {len(table)} rows, {n_missing} without a peak")
    return table
