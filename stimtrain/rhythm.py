"""The offline (non-causal) phase of an EEG rhythm, shared by every room.

What a recording alone says of a rhythm's phase at the pulses is estimated
one way everywhere (the report's phase section, the closed loop's phase
calibration and tests, the simulators' montage, the benchmark): the
channels combined by a montage (:data:`MONTAGES`), each pulse's artifact
bridged by a straight line (:func:`bridge_pulses`), a zero-phase FIR
band-pass (:func:`mne.filter.filter_data`) and the Hilbert transform
(:func:`band_phase`). Phase 0 is the rhythm's positive peak, 180 degrees
(pi) its trough. :func:`phase_at` does all of it for a 1-D signal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import numpy as np

from .circular import wrap_deg

__all__ = [
    "BRIDGE_S",
    "DEFAULT_BAND",
    "DEFAULT_MONTAGE",
    "MONTAGES",
    "band_phase",
    "bridge_pulses",
    "filter_length",
    "montage_weights",
    "phase_at",
]


def _hjorth(centre: str, *neighbours: str) -> Mapping[str, float]:
    """``centre`` minus the mean of ``neighbours`` (Hjorth 1975), read-only."""
    w = -1.0 / len(neighbours)
    return MappingProxyType({centre: 1.0, **{ch: w for ch in neighbours}})


#: Named montages, channel -> weight: a centre channel minus the mean of its
#: four neighbours (Hjorth 1975). C3 Hjorth is PHASTIMATE's for the left
#: motor cortex (Zrenner et al. 2018). The protocol language's presets, the
#: analysis's and the simulators' are this table.
MONTAGES: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {
        "c3_hjorth": _hjorth("C3", "FC1", "FC5", "CP1", "CP5"),
        "c4_hjorth": _hjorth("C4", "FC2", "FC6", "CP2", "CP6"),
    }
)
#: The montage and band used when nothing else is known (the sensorimotor mu
#: rhythm over the left motor cortex).
DEFAULT_MONTAGE = "c3_hjorth"
DEFAULT_BAND: tuple[float, float] = (8.0, 13.0)
#: From this long before to this long after each pulse the signal is replaced
#: by a straight line before filtering (s).
BRIDGE_S: tuple[float, float] = (0.005, 0.02)
# Why bridge rather than estimate from the data before the pulse only: a
# forward prediction from pre-pulse data (what the online estimator does)
# carries the prediction's error, about 20 degrees SD at 11 dB; the
# zero-phase filter over both sides of a short bridge has the rhythm's own
# phase on either side and interpolates across 25 ms (a quarter of a 10 Hz
# cycle). The bridge starts 5 ms before the pulse (the trigger's jitter and
# any ringing in the amplifier's anti-alias filter) and ends 20 ms after it,
# when the pulse artifact has decayed; a longer bridge (the evoked response
# too) bends the phase more than the evoked response does (the closed-loop
# tests measured 10-35 degrees for 300 ms, 0-10 for 15-40 ms on the
# simulated rig at 11 dB).


def montage_weights(montage: Mapping[str, float] | str) -> dict[str, float]:
    """Channel weights of a montage given by preset name or by its weights.

    Parameters
    ----------
    montage : mapping of str to float | str
        Channel weights, or a preset name from :data:`MONTAGES` (any case).

    Returns
    -------
    dict of str to float
        A new dict, channel -> weight.

    Raises
    ------
    ValueError
        For an unknown preset or a montage without channels.
    """
    if isinstance(montage, str):
        try:
            return dict(MONTAGES[montage.lower()])
        except KeyError:
            raise ValueError(
                f"unknown montage {montage!r}; known: {sorted(MONTAGES)}"
            ) from None
    if not montage:
        raise ValueError("montage has no channels")
    return {str(ch): float(w) for ch, w in montage.items()}


def _check_band(sfreq: float, band: Sequence[float]) -> tuple[float, float]:
    low, high = float(band[0]), float(band[1])
    if not 0 < low < high < sfreq / 2:
        raise ValueError(f"band {tuple(band)} must lie within (0, {sfreq / 2}) Hz")
    return low, high


def _transition(low: float, high: float) -> float:
    return min(2.0, (high - low) / 2.0)


def filter_length(sfreq: float, band: Sequence[float]) -> int:
    """Taps of the band-pass :func:`band_phase` uses (odd).

    Parameters
    ----------
    sfreq : float
        Sampling frequency, Hz.
    band : tuple of float
        The rhythm's band, Hz.

    Returns
    -------
    int
        The FIR's length in samples (1651 for 8-13 Hz at 1 kHz: 1.65 s).
    """
    low, high = _check_band(sfreq, band)
    return int(math.ceil(3.3 / _transition(low, high) * sfreq)) | 1


def bridge_pulses(
    signal: np.ndarray,
    indices: Sequence[int] | np.ndarray,
    sfreq: float,
    bridge_s: tuple[float, float] = BRIDGE_S,
) -> np.ndarray:
    """Replace the signal around each pulse by a straight line.

    Parameters
    ----------
    signal : ndarray, shape (n_times,)
        The montaged signal.
    indices : sequence of int
        The pulses' samples (those outside the signal bridge the part of
        their span that falls inside it).
    sfreq : float
        Sampling frequency, Hz.
    bridge_s : tuple of float
        From this long before to this long after each pulse, s.

    Returns
    -------
    ndarray, shape (n_times,)
        A bridged copy (float64).
    """
    y = np.array(signal, dtype=float, copy=True)
    before, after = (int(round(b * sfreq)) for b in bridge_s)
    for k in np.asarray(indices, dtype=int).ravel():
        a, b = max(k - before, 1), min(k + after, len(y) - 1)
        if b > a:
            # The line joins the last sample kept before to the first after.
            y[a:b] = np.linspace(y[a - 1], y[b], b - a + 2)[1:-1]
    return y


def band_phase(
    signal: np.ndarray, sfreq: float, band: Sequence[float] = DEFAULT_BAND
) -> np.ndarray:
    """The rhythm's phase at every sample, zero-phase band-pass then Hilbert.

    Parameters
    ----------
    signal : ndarray, shape (n_times,)
        The montaged (and bridged) signal.
    sfreq : float
        Its sampling frequency, Hz.
    band : tuple of float
        The rhythm's band, Hz: the -6 dB points of the filter.

    Returns
    -------
    ndarray, shape (n_times,)
        Phase, radians in (-pi, pi] (0: peak); all NaN when the signal is
        shorter than the filter (:func:`filter_length`).
    """
    # mne and scipy.signal only when a phase is computed: the protocol
    # language reads MONTAGES from this module.
    import mne
    from scipy.signal import hilbert

    low, high = _check_band(sfreq, band)
    y = np.asarray(signal, dtype=float)
    n_taps = filter_length(sfreq, (low, high))
    if y.ndim != 1:
        raise ValueError(f"the signal must be 1-D (got shape {y.shape})")
    if len(y) < n_taps:
        return np.full(len(y), np.nan)
    # The pass band is narrowed by half a transition on each side so that
    # the -6 dB points are the band's edges (as scipy's firwin cutoffs are),
    # and the FIR is the shortest MNE allows for that transition (1.65 s for
    # 2 Hz). On synthetic mu at 11 dB this gave a circular SD of the error
    # of 24 degrees against 28 with the band as the pass band (a wider
    # response lets more noise in).
    trans = _transition(low, high)
    filtered = mne.filter.filter_data(
        y[np.newaxis],
        sfreq,
        low + trans / 2.0,
        high - trans / 2.0,
        filter_length=n_taps,
        l_trans_bandwidth=trans,
        h_trans_bandwidth=trans,
        phase="zero",
        fir_design="firwin",
        pad="reflect_limited",
        verbose="error",
    )[0]
    return np.angle(hilbert(filtered))


def phase_at(
    signal: np.ndarray,
    sfreq: float,
    band: Sequence[float],
    indices: Sequence[int] | np.ndarray,
    *,
    bridge_s: tuple[float, float] = BRIDGE_S,
) -> np.ndarray:
    """The rhythm's phase at the pulses, from the whole signal around them.

    Every pulse's artifact is bridged (:func:`bridge_pulses`), then the
    signal is band-passed and Hilbert transformed (:func:`band_phase`).

    Parameters
    ----------
    signal : ndarray, shape (n_times,)
        The montaged signal.
    sfreq : float
        Its sampling frequency, Hz.
    band : tuple of float
        The rhythm's band, Hz.
    indices : sequence of int
        The pulses' samples.
    bridge_s : tuple of float
        From this long before to this long after each pulse, the signal is
        replaced by a straight line, s.

    Returns
    -------
    ndarray, shape (n_pulses,)
        Phase at each pulse, degrees in (-180, 180] (0: peak, 180: trough);
        NaN for a pulse outside the signal, or all NaN when the signal is
        shorter than the filter.
    """
    idx = np.asarray(indices, dtype=int).ravel()
    phase = band_phase(bridge_pulses(signal, idx, sfreq, bridge_s), sfreq, band)
    inside = (idx >= 0) & (idx < len(phase))
    out = np.full(len(idx), np.nan)
    out[inside] = np.degrees(phase[idx[inside]])
    return wrap_deg(out)
