"""The phase of an EEG rhythm at each TMS pulse, estimated offline.

Phase-locked (triggered) blocks aim each pulse at a phase of the
sensorimotor mu rhythm. What the recording alone says of the phase the
pulses really met is estimated here non-causally, with the whole signal
around each pulse, as :mod:`stimtrain.rhythm` does it for every room: the
channels combined by a montage (C3 Hjorth by default), the pulses'
artifacts bridged, a zero-phase band-pass and the Hilbert transform. Phase
0 is the rhythm's positive peak, 180 its trough.

:func:`circular_mean_deg` and :func:`circular_sd_deg` (from
:mod:`stimtrain.circular`, shared with the session's console) summarise
phases (SD is ``sqrt(-2 ln R)``, as in the closed-loop literature).
"""

from __future__ import annotations

from collections.abc import Mapping

import mne
import numpy as np

from ..circular import circular_mean_deg, circular_sd_deg, wrap_deg
from ..rhythm import (
    BRIDGE_S,
    DEFAULT_BAND,
    DEFAULT_MONTAGE,
    MONTAGES,
    band_phase,
    bridge_pulses,
    filter_length,
    montage_weights,
)

__all__ = [
    "BRIDGE_S",
    "MONTAGES",
    "circular_mean_deg",
    "circular_sd_deg",
    "phase_at_pulses",
]

#: Around each pulse, the segment filtered (s). 1 s each side holds the
#: 1.65 s FIR with its centre on the pulse, and fits inside the -1.1..1.1 s
#: that
#: :func:`~stimtrain.analysis.pulse_windows.read_raw_windows` reads.
SEGMENT_S = 1.0


def phase_at_pulses(
    raw: mne.io.BaseRaw,
    pulse_times: np.ndarray,
    montage: Mapping[str, float] | str = DEFAULT_MONTAGE,
    band: tuple[float, float] = DEFAULT_BAND,
) -> np.ndarray:
    """Estimate the rhythm's phase at each pulse, offline and non-causally.

    For each pulse, the montaged signal from :data:`SEGMENT_S` before to
    :data:`SEGMENT_S` after it is read (only that, so a lazily read or
    windowed Raw never converts the whole recording), every pulse's
    artifact inside it is bridged by a straight line (:data:`BRIDGE_S`),
    and the segment is band-passed with a zero-phase FIR and Hilbert
    transformed; the phase at the pulse's sample is the estimate.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        The recording, with the montage's channels.
    pulse_times : ndarray, shape (n_pulses,)
        Pulse times in seconds on the raw's time axis (``raw.times``, i.e.
        from its first sample).
    montage : mapping of str to float | str
        Channel weights, or a preset name from :data:`MONTAGES`
        (``"c3_hjorth"``: C3 minus the mean of FC1, FC5, CP1, CP5;
        ``"c4_hjorth"`` likewise around C4).
    band : tuple of float
        The rhythm's band, Hz.

    Returns
    -------
    ndarray, shape (n_pulses,)
        Phase at each pulse, degrees in (-180, 180] (0: peak, 180: trough);
        NaN for a pulse outside the recording or too near its edges for
        the filter (within about 0.8 s).
    """
    # Why bridge, and why this filter: see stimtrain/rhythm.py.
    weights = montage_weights(montage)
    missing = [ch for ch in weights if ch not in raw.ch_names]
    if missing:
        raise ValueError(f"the recording lacks montage channels {missing}")
    picks = [raw.ch_names.index(ch) for ch in weights]
    w = np.array(list(weights.values()), float)
    sfreq = float(raw.info["sfreq"])
    times = np.atleast_1d(np.asarray(pulse_times, float))
    idx = np.round(times * sfreq).astype(int)
    n_taps = filter_length(sfreq, band)
    half = max(int(round(SEGMENT_S * sfreq)), n_taps // 2 + 1)
    before, after = (int(round(b * sfreq)) for b in BRIDGE_S)
    out = np.full(len(times), np.nan)
    for i, k in enumerate(idx):
        if not 0 <= k < raw.n_times:
            continue
        start, stop = max(k - half, 0), min(k + half + 1, raw.n_times)
        if stop - start < n_taps:
            # Too close to the recording's edge for the filter.
            continue
        y = w @ raw.get_data(picks=picks, start=start, stop=stop)
        near = idx[(idx >= start - after) & (idx < stop + before)] - start
        y = bridge_pulses(y, near, sfreq, BRIDGE_S)
        out[i] = np.degrees(band_phase(y, sfreq, band)[k - start])
    return wrap_deg(out)
