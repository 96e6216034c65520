"""The phase of an EEG rhythm at each TMS pulse, estimated offline.

Phase-locked (triggered) blocks aim each pulse at a phase of the
sensorimotor mu rhythm. What the recording alone says of the phase the
pulses really met is estimated here non-causally, with the whole signal
around each pulse: the channels combined by a montage (C3 Hjorth by
default), the pulses' artifacts bridged, a zero-phase band-pass
(:func:`mne.filter.filter_data`) and the Hilbert transform
(:func:`scipy.signal.hilbert`). Phase 0 is the rhythm's positive peak, 180
its trough.

:func:`circular_mean_deg` and :func:`circular_sd_deg` (from
:mod:`stimtrain.circular`, shared with the session's console) summarise
phases (SD is ``sqrt(-2 ln R)``, as in the closed-loop literature).
"""

from __future__ import annotations

import math

import mne
import numpy as np
from scipy.signal import hilbert

from ..circular import circular_mean_deg, circular_sd_deg, wrap_deg

__all__ = ["MONTAGES", "circular_mean_deg", "circular_sd_deg", "phase_at_pulses"]

#: Montage presets: channel -> weight. C3 Hjorth is C3 minus the mean of its
#: four neighbours (Zrenner et al. 2018).
MONTAGES: dict[str, dict[str, float]] = {
    "c3_hjorth": {"C3": 1.0, "FC1": -0.25, "FC5": -0.25, "CP1": -0.25, "CP5": -0.25},
}

#: Around each pulse, the segment filtered (s). 1 s each side holds the
#: 1.65 s FIR with its centre on the pulse, and fits inside the -1.1..1.1 s
#: that
#: :func:`~stimtrain.analysis.pulse_windows.read_raw_windows` reads.
SEGMENT_S = 1.0
#: From this long before to this long after each pulse the signal is replaced
#: by a straight line before filtering (s).
BRIDGE_S = (0.005, 0.02)


def _montage(montage: dict[str, float] | str) -> dict[str, float]:
    if isinstance(montage, str):
        try:
            return MONTAGES[montage.lower()]
        except KeyError:
            raise ValueError(
                f"unknown montage {montage!r}; known: {sorted(MONTAGES)}"
            ) from None
    if not montage:
        raise ValueError("montage has no channels")
    return dict(montage)


def phase_at_pulses(
    raw: mne.io.BaseRaw,
    pulse_times: np.ndarray,
    montage: dict[str, float] | str = "c3_hjorth",
    band: tuple[float, float] = (8.0, 13.0),
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
    montage : dict of str to float | str
        Channel weights, or a preset name from :data:`MONTAGES`
        (``"c3_hjorth"``: C3 minus the mean of FC1, FC5, CP1, CP5).
    band : tuple of float
        The rhythm's band, Hz.

    Returns
    -------
    ndarray, shape (n_pulses,)
        Phase at each pulse, degrees in (-180, 180] (0: peak, 180: trough);
        NaN for a pulse outside the recording or too near its edges for
        the filter (within about 0.8 s).
    """
    # Why bridge rather than estimate from the data before the pulse only:
    # a forward prediction from pre-pulse data (what the online estimator
    # does) carries the prediction's error, about 20 degrees SD at 11 dB;
    # the zero-phase filter over both sides of a short bridge has the
    # rhythm's own phase on either side and interpolates across 25 ms (a
    # quarter of a 10 Hz cycle). The bridge starts 5 ms before the pulse
    # (the trigger's jitter and any ringing in the amplifier's anti-alias
    # filter) and ends 20 ms after it, when the pulse artifact has decayed;
    # a longer bridge (the evoked response too) bends the phase more than
    # the evoked response does (the closed-loop tests measured 10-35
    # degrees for 300 ms, 0-10 for 15-40 ms on the simulated rig).
    weights = _montage(montage)
    missing = [ch for ch in weights if ch not in raw.ch_names]
    if missing:
        raise ValueError(f"the recording lacks montage channels {missing}")
    picks = [raw.ch_names.index(ch) for ch in weights]
    w = np.array(list(weights.values()), float)
    sfreq = float(raw.info["sfreq"])
    times = np.atleast_1d(np.asarray(pulse_times, float))
    idx = np.round(times * sfreq).astype(int)
    low, high = float(band[0]), float(band[1])
    if not 0 < low < high < sfreq / 2:
        raise ValueError(f"band {band} must lie within (0, {sfreq / 2}) Hz")
    # The pass band is narrowed by half a transition on each side so that
    # the -6 dB points are the band's edges (as scipy's firwin cutoffs are),
    # and the FIR is the shortest MNE allows for that transition (1.65 s for
    # 2 Hz). On synthetic mu at 11 dB this gave a circular SD of the error
    # of 24 degrees against 28 with the band as the pass band (a wider
    # response lets more noise in).
    trans = min(2.0, (high - low) / 2.0)
    n_taps = int(math.ceil(3.3 / trans * sfreq)) | 1
    half = max(int(round(SEGMENT_S * sfreq)), n_taps // 2 + 1)
    before, after = (int(round(b * sfreq)) for b in BRIDGE_S)
    out = np.full(len(times), np.nan)
    for i, k in enumerate(idx):
        if not 0 <= k < raw.n_times:
            continue
        start, stop = max(k - half, 0), min(k + half + 1, raw.n_times)
        y = w @ raw.get_data(picks=picks, start=start, stop=stop)
        for p in idx[(idx >= start - after) & (idx < stop + before)] - start:
            a, b = max(p - before, 1), min(p + after, len(y) - 1)
            if b > a:
                y[a:b] = np.linspace(y[a - 1], y[b], b - a)
        if len(y) < n_taps:
            # Too close to the recording's edge for the filter.
            continue
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
        out[i] = math.degrees(float(np.angle(hilbert(filtered)[k - start])))
    return wrap_deg(out)
