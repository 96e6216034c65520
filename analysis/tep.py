"""TMS-evoked potentials: pulse events, artifact interpolation, TEP and GMFP.

Follows the reference order of ``docs/specs/analysis.md`` (TESA): epoch around each
pulse marker, replace -2..10 ms with a cubic fit on 1 ms of data either side,
only then downsample, baseline, and average; find the artifact in the EEG
(with or without markers) and realign the pulses to it. ICA, filtering and the
rest of TESA's order are in :mod:`stimtrain.analysis.tesa`.

Longer than most: the artifact handling, the realignment and the rule for
which pulses overlap (:func:`pulse_overlap`) share one timing model.
"""

from __future__ import annotations

import mne
import numpy as np
import pandas as pd
from mne.utils import logger, verbose, warn

__all__ = [
    "pulse_events",
    "pulse_epochs",
    "interpolate_artifact",
    "tep",
    "gmfp",
    "artifact_alignment",
    "detect_artifacts",
    "realign_pulses",
    "pulse_overlap",
    "TEP_WINDOWS",
    "TEP_SPAN",
]

#: Motor-cortex TEP component windows (s), from docs/specs/analysis.md.
TEP_WINDOWS = {
    "N15": (0.010, 0.020),
    "P30": (0.020, 0.040),
    "N45": (0.040, 0.055),
    "P60": (0.050, 0.070),
    "N100": (0.070, 0.150),
    "P180": (0.150, 0.240),
}


#: The TEP a report shows and measures (s around the pulse): the last
#: component window ends at 240 ms, and the plots run to 350 ms.
TEP_SPAN = (-0.1, 0.35)


def _pulse_indices(raw: mne.io.BaseRaw) -> np.ndarray:
    return np.flatnonzero(raw.annotations.description == "pulse")


def _relative_onsets(raw: mne.io.BaseRaw, idx: np.ndarray) -> np.ndarray:
    """Onsets (s) of annotations idx relative to the raw's first sample."""
    onsets = raw.annotations.onset[idx]
    if raw.annotations.orig_time is not None:
        # Annotations with an orig_time count from meas_date, not first_samp.
        onsets = onsets - raw.first_time
    return onsets


def _pulse_metadata(raw: mne.io.BaseRaw, idx: np.ndarray) -> pd.DataFrame:
    extras = [dict(raw.annotations.extras[ii] or {}) for ii in idx]
    md = pd.DataFrame(extras, index=range(len(idx)))
    md.insert(0, "onset", raw.annotations.onset[idx])
    return md.drop(columns=["event"], errors="ignore")


def pulse_events(raw: mne.io.BaseRaw, *, event_id: int = 1) -> np.ndarray:
    """Make an MNE events array from the ``"pulse"`` annotations.

    Parameters
    ----------
    raw : instance of Raw
        A raw with stimtrain annotations (see :func:`read_raw_xdf`).
    event_id : int
        The event code given to every pulse.

    Returns
    -------
    events : ndarray of int, shape (n_pulses, 3)
        Sample (including ``raw.first_samp``, rounded to the nearest sample),
        0, ``event_id``; in the order of the annotations (time order).
    """
    idx = _pulse_indices(raw)
    onsets = _relative_onsets(raw, idx)
    samples = np.round(onsets * raw.info["sfreq"]).astype(int) + raw.first_samp
    events = np.zeros((len(idx), 3), int)
    events[:, 0] = samples
    events[:, 2] = event_id
    return events


def _cubic_fill(data: np.ndarray, center: int, n0: int, n1: int, n_fit: int) -> bool:
    """Replace data[..., center+n0 : center+n1+1] with a cubic fit, in place.

    The cubic is fitted on ``n_fit`` samples before and after the window, for
    every leading index (epoch, channel) at once. Returns False if the fit
    samples do not fit in the data.
    """
    a, b = center + n0, center + n1  # first and last replaced sample
    n_times = data.shape[-1]
    if a - n_fit < 0 or b + n_fit >= n_times:
        return False
    x_fit = np.r_[np.arange(a - n_fit, a), np.arange(b + 1, b + 1 + n_fit)]
    x_new = np.arange(a, b + 1)
    # Centre and scale x so that the Vandermonde system is well conditioned.
    mid, half = (a + b) / 2.0, max((b - a) / 2.0 + n_fit, 1.0)
    vander_fit = np.vander((x_fit - mid) / half, 4)
    vander_new = np.vander((x_new - mid) / half, 4)
    y = data[..., x_fit].reshape(-1, len(x_fit)).T  # (n_fit_points, n_series)
    coef, *_ = np.linalg.lstsq(vander_fit, y, rcond=None)
    fill = (vander_new @ coef).T.reshape(data.shape[:-1] + (len(x_new),))
    data[..., a : b + 1] = fill
    return True


@verbose
def interpolate_artifact(
    epochs: mne.BaseEpochs,
    tmin: float = -0.002,
    tmax: float = 0.010,
    *,
    fit_window: float = 0.001,
    pulse_samples: np.ndarray | None = None,
    verbose=None,
) -> mne.BaseEpochs:
    """Replace the pulse artifact with a cubic fit, in place (TESA's cubic).

    Parameters
    ----------
    epochs : instance of Epochs
        Preloaded epochs, at the recording's sampling rate.
    tmin, tmax : float
        The window removed around each pulse (s), both ends included.
    fit_window : float
        Length of data (s) used on each side of the window for the fit. At
        least 2 samples per side are used (4 points define a cubic).
    pulse_samples : ndarray of int | None
        Samples (raw time base, as in ``epochs.events[:, 0]``) of every pulse.
        Pulses other than an epoch's own that fall inside it (trains) are
        interpolated too. ``None`` uses the epochs' events only.
    %(verbose)s

    Returns
    -------
    epochs : instance of Epochs
        The same object, modified.
    """
    if not epochs.preload:
        raise ValueError("interpolate_artifact needs preloaded epochs")
    sfreq = epochs.info["sfreq"]
    n0 = int(round(tmin * sfreq))
    n1 = int(round(tmax * sfreq))
    n_fit = max(int(round(fit_window * sfreq)), 2)
    zero = int(round(-epochs.tmin * sfreq))  # index of t = 0 in each epoch
    n_times = len(epochs.times)
    events = epochs.events[:, 0]
    pulses = np.sort(events if pulse_samples is None else np.asarray(pulse_samples))
    # Epochs' data are modified in place, the way mne.preprocessing's
    # fix_stim_artifact does for Epochs; get_data() would return a copy.
    data = epochs._data
    skipped = 0
    for ei, ev in enumerate(events):
        start = ev - zero
        inside = pulses[(pulses >= start) & (pulses < start + n_times)] - start
        for center in inside:
            skipped += not _cubic_fill(data[ei], int(center), n0, n1, n_fit)
    if skipped:
        warn(f"{skipped} pulse window(s) too close to an epoch edge to interpolate")
    logger.info(
        f"Interpolated {tmin * 1e3:g}..{tmax * 1e3:g} ms around pulses with a cubic "
        f"fit on {n_fit} samples per side"
    )
    return epochs


@verbose
def pulse_epochs(
    raw: mne.io.BaseRaw,
    tmin: float = -0.1,
    tmax: float = 0.35,
    baseline: tuple[float | None, float | None] | None = (-0.1, -0.005),
    *,
    exclude_artifact: tuple[float, float] | None = (-0.002, 0.010),
    fit_window: float = 0.001,
    sfreq: float | None = 1000.0,
    picks=None,
    reject_by_annotation: bool = True,
    verbose=None,
) -> mne.Epochs:
    """Epoch the raw around each TMS pulse, with the artifact interpolated.

    Parameters
    ----------
    raw : instance of Raw
        A raw with ``"pulse"`` annotations (see :func:`read_raw_xdf`).
    tmin, tmax : float
        Epoch limits (s) relative to the pulse.
    baseline : tuple | None
        Baseline window (s) applied after interpolation and resampling.
    exclude_artifact : tuple of float | None
        Window (s) replaced by a cubic fit on ``fit_window`` of data each
        side (see :func:`interpolate_artifact`); ``None`` keeps the artifact.
    fit_window : float
        Data (s) used on each side of the artifact window for the fit.
    sfreq : float | None
        Sampling rate of the returned epochs. Resampling (polyphase,
        anti-aliased) happens only after the interpolation, on epochs padded
        by 20 ms that are cropped afterwards so that the filter's edges do not
        reach ``tmin``/``tmax``. ``None`` or a rate at or above the
        recording's keeps the recording's rate.
    picks : str | list | None
        Channels to keep (MNE picks); ``None`` keeps all data channels.
    reject_by_annotation : bool
        Drop epochs overlapping ``BAD_*`` annotations (e.g. acquisition gaps).
    %(verbose)s

    Returns
    -------
    epochs : instance of Epochs
        Preloaded, one per kept pulse, with ``epochs.metadata`` holding the
        pulse marker's fields (``block``, ``pulse``, ``pattern``,
        ``intensity``, ``unit``, ``power``, ``scheduled``, ``lsl_time``) and
        its ``onset`` in the raw (s).
    """
    idx = _pulse_indices(raw)
    if len(idx) == 0:
        raise ValueError("The raw has no 'pulse' annotations")
    events = pulse_events(raw)
    metadata = _pulse_metadata(raw, idx)
    raw_sfreq = raw.info["sfreq"]
    resample = sfreq is not None and sfreq < raw_sfreq
    start, stop = tmin, tmax
    if resample:
        # Pad by >= 20 ms so that the anti-aliasing filter's edges are cropped
        # away; start on the target grid so that t = 0 stays a sample; and
        # make the length a multiple of the ratio when it is an integer, so
        # that the polyphase filter is the short 1/down one, not one designed
        # for a ratio like 492/2461.
        start = np.floor((tmin - 0.02) * sfreq) / sfreq
        n = int(round((tmax + 0.02 - start) * raw_sfreq)) + 1
        ratio = raw_sfreq / sfreq
        if np.isclose(ratio, round(ratio)):
            n = int(np.ceil(n / round(ratio)) * round(ratio))
        stop = start + (n - 1) / raw_sfreq
    epochs = mne.Epochs(
        raw,
        events,
        event_id={"pulse": 1},
        tmin=start,
        tmax=stop,
        baseline=None,
        picks=picks,
        preload=True,
        metadata=metadata,
        reject_by_annotation=reject_by_annotation,
        verbose=verbose,
    )
    if exclude_artifact is not None:
        interpolate_artifact(
            epochs,
            *exclude_artifact,
            fit_window=fit_window,
            pulse_samples=events[:, 0],
            verbose=verbose,
        )
    if resample:
        epochs.resample(sfreq, method="polyphase", verbose=verbose)
        epochs.crop(tmin, tmax, verbose=verbose)
    if baseline is not None:
        epochs.apply_baseline(baseline, verbose=verbose)
    return epochs


def tep(epochs: mne.BaseEpochs, *, picks=None) -> mne.Evoked:
    """Average pulse epochs into a TMS-evoked potential.

    Parameters
    ----------
    epochs : instance of Epochs
        Pulse epochs, e.g. from :func:`pulse_epochs`.
    picks : str | list | None
        Channels to average; ``None`` averages all data channels.

    Returns
    -------
    evoked : instance of Evoked
        The TEP, with comment ``"TEP"``.
    """
    evoked = epochs.average(picks=picks)
    evoked.comment = "TEP"
    return evoked


def gmfp(evoked: mne.Evoked, *, picks="eeg") -> np.ndarray:
    """Compute the global mean field power of an evoked response.

    Parameters
    ----------
    evoked : instance of Evoked
        The TEP.
    picks : str | list
        Channels over which the field power is taken (EEG by default).

    Returns
    -------
    gmfp : ndarray, shape (n_times,)
        ``sqrt(mean_i (v_i - mean_j v_j) ** 2)`` at each time point, in the
        data's unit (volts), i.e. the population standard deviation across
        channels (Lehmann & Skrandies 1980).
    """
    data = evoked.get_data(picks=picks)
    return data.std(axis=0)


@verbose
def artifact_alignment(
    raw: mne.io.BaseRaw,
    *,
    threshold_uv_per_ms: float = 1e4,
    window: float = 0.005,
    picks="eeg",
    verbose=None,
) -> pd.DataFrame:
    """Locate the TMS artifact in the EEG around each pulse marker.

    Parameters
    ----------
    raw : instance of Raw
        A raw with ``"pulse"`` annotations.
    threshold_uv_per_ms : float
        Threshold on the first derivative (TESA's default, 1e4 µV/ms). The
        derivative is the mean over channels of ``|x[k+1] - x[k]|``.
    window : float
        Search half-width (s) around each marker.
    picks : str | list
        Channels used.
    %(verbose)s

    Returns
    -------
    alignment : pandas.DataFrame
        One row per pulse marker: ``block``, ``pulse`` (if the marker has
        them), ``onset`` (s), ``marker_sample`` (nearest sample),
        ``artifact_sample`` (first sample after the first threshold crossing
        in the window; ``-1`` if none), ``offset_samples`` (artifact −
        marker sample), ``offset_ms`` (artifact sample time − exact marker
        onset, ms; NaN if none) and ``found``.
    """
    idx = _pulse_indices(raw)
    events = pulse_events(raw)
    sfreq = raw.info["sfreq"]
    half = int(round(window * sfreq))
    picks_idx = mne.pick_types(raw.info, eeg=True) if picks == "eeg" else picks
    # Derivative in µV/ms from volts per sample.
    scale = 1e6 * sfreq / 1e3
    rows = []
    onsets = _relative_onsets(raw, idx)
    for ii, ev, onset in zip(idx, events[:, 0], onsets, strict=True):
        extras = raw.annotations.extras[ii] or {}
        marker = ev - raw.first_samp
        start = max(marker - half, 0)
        stop = min(marker + half + 1, raw.n_times)
        seg = raw.get_data(picks=picks_idx, start=start, stop=stop)
        deriv = np.abs(np.diff(seg, axis=-1)).mean(axis=0) * scale
        above = np.flatnonzero(deriv > threshold_uv_per_ms)
        found = len(above) > 0
        art = start + above[0] + 1 if found else -1
        rows.append(
            dict(
                block=extras.get("block"),
                pulse=extras.get("pulse"),
                onset=onset,
                marker_sample=int(marker),
                artifact_sample=int(art),
                offset_samples=int(art - marker) if found else None,
                offset_ms=(art / sfreq - onset) * 1e3 if found else np.nan,
                found=found,
            )
        )
    df = pd.DataFrame(
        rows,
        columns=[
            "block",
            "pulse",
            "onset",
            "marker_sample",
            "artifact_sample",
            "offset_samples",
            "offset_ms",
            "found",
        ],
    )
    df["offset_samples"] = df["offset_samples"].astype("Int64")
    n_missing = int((~df["found"]).sum())
    if n_missing:
        logger.info(
            f"No artifact found within ±{window * 1e3:g} ms of {n_missing} pulses"
        )
    return df


@verbose
def detect_artifacts(
    raw: mne.io.BaseRaw,
    *,
    threshold_uv_per_ms: float = 1e4,
    refractory: float = 0.003,
    picks="eeg",
    chunk_duration: float = 10.0,
    verbose=None,
) -> np.ndarray:
    """Find every TMS pulse artifact in the EEG, with or without markers.

    TESA's rule (``tesa_findpulse``): a pulse is where the first derivative
    exceeds the threshold; crossings within the refractory period of the
    previous pulse belong to that pulse.

    Parameters
    ----------
    raw : instance of Raw
        The recording.
    threshold_uv_per_ms : float
        Threshold on the mean absolute first derivative over ``picks``
        (µV/ms; TESA's default 1e4).
    refractory : float
        Time (s) after a detected pulse in which no other one is detected
        (TESA's default 3 ms).
    picks : str | list
        Channels used.
    chunk_duration : float
        The data are scanned in chunks of this length (s) to bound memory.
    %(verbose)s

    Returns
    -------
    samples : ndarray of int
        Sample of each artifact onset (first sample after the crossing),
        relative to the raw's first sample (not including ``first_samp``).
    """
    if threshold_uv_per_ms <= 0:
        raise ValueError(f"threshold_uv_per_ms must be > 0 (got {threshold_uv_per_ms})")
    if refractory < 0:
        raise ValueError(f"refractory must be >= 0 s (got {refractory})")
    sfreq = raw.info["sfreq"]
    picks_idx = mne.pick_types(raw.info, eeg=True) if picks == "eeg" else picks
    scale = 1e6 * sfreq / 1e3
    step = max(int(chunk_duration * sfreq), 2)
    crossings = []
    # Chunks overlap by one sample so that no difference is lost at a border.
    for start in range(0, raw.n_times - 1, step):
        stop = min(start + step + 1, raw.n_times)
        seg = raw.get_data(picks=picks_idx, start=start, stop=stop)
        deriv = np.abs(np.diff(seg, axis=-1)).mean(axis=0) * scale
        crossings.append(start + np.flatnonzero(deriv > threshold_uv_per_ms) + 1)
    crossings = np.concatenate(crossings) if crossings else np.zeros(0, int)
    gap = int(round(refractory * sfreq))
    onsets = []
    for sample in crossings:
        if not onsets or sample - onsets[-1] > gap:
            onsets.append(int(sample))
    logger.info(f"Found {len(onsets)} pulse artifacts above {threshold_uv_per_ms:g}")
    return np.asarray(onsets, int)


@verbose
def realign_pulses(
    raw: mne.io.BaseRaw,
    *,
    threshold_uv_per_ms: float = 1e4,
    window: float = 0.005,
    picks="eeg",
    verbose=None,
) -> tuple[mne.io.BaseRaw, pd.DataFrame]:
    """Move each ``"pulse"`` annotation to the artifact found in the EEG.

    Parameters
    ----------
    raw : instance of Raw
        A raw with ``"pulse"`` annotations.
    threshold_uv_per_ms, window, picks
        See :func:`artifact_alignment`.
    %(verbose)s

    Returns
    -------
    raw : instance of Raw
        A copy whose pulse annotations start on their artifact's first sample
        (pulses without an artifact within ``window`` keep the marker time).
        Every marker field is kept.
    alignment : pandas.DataFrame
        The table of :func:`artifact_alignment`.
    """
    alignment = artifact_alignment(
        raw,
        threshold_uv_per_ms=threshold_uv_per_ms,
        window=window,
        picks=picks,
        verbose=verbose,
    )
    raw = raw.copy()
    idx = _pulse_indices(raw)
    if len(idx) == 0:
        return raw, alignment
    annotations = raw.annotations
    onsets = annotations.onset.copy()
    found = alignment["found"].to_numpy(bool)
    new = alignment["artifact_sample"].to_numpy(float) / raw.info["sfreq"]
    if annotations.orig_time is not None:
        new = new + raw.first_time
    onsets[idx[found]] = new[found]
    raw.set_annotations(
        mne.Annotations(
            onsets,
            annotations.duration,
            annotations.description,
            orig_time=annotations.orig_time,
            ch_names=annotations.ch_names,
            extras=annotations.extras,
        )
    )
    logger.info(f"Realigned {int(found.sum())} of {len(idx)} pulses to the artifact")
    return raw, alignment


def pulse_overlap(
    raw: mne.io.BaseRaw, *, span: tuple[float, float] = TEP_SPAN
) -> pd.DataFrame:
    """Which pulses have a TEP of their own, and which overlap others.

    Two pulses ``d`` s apart overlap when ``d`` is shorter than the span:
    the later pulse's artifact and response fall inside the earlier pulse's
    TEP when ``d < span[1]``, and the earlier pulse's response (as long as
    the span) reaches into the later one's when ``d < span[1] - span[0]``.
    A block whose own pulses overlap (theta-burst pulses 20 ms apart, a
    10 Hz train, a pair 3 ms apart) is left out whole: its average would
    mix several pulses' responses. A pulse of another block that overlaps a
    pulse (at a block's border) is left out alone.

    Parameters
    ----------
    raw : instance of Raw
        A raw with ``"pulse"`` annotations.
    span : tuple of float
        The TEP's time span around each pulse (s).

    Returns
    -------
    overlap : pandas.DataFrame
        One row per pulse annotation in time order: ``block`` (NaN when the
        marker has none), ``pulse``, ``onset`` (s), ``nearest_ms`` (to the
        nearest other pulse), ``block_interval_ms`` (the shortest interval
        between consecutive pulses of its block), ``block_overlaps`` (its
        block is left out), ``overlaps`` (another pulse is closer than the
        span) and ``use`` (neither: the pulse goes into the TEPs).
    """
    if span[1] <= span[0]:
        raise ValueError(f"span must run forward in time (got {span})")
    idx = _pulse_indices(raw)
    onsets = raw.annotations.onset[idx]
    extras = [raw.annotations.extras[ii] or {} for ii in idx]
    table = pd.DataFrame(
        {
            "block": pd.to_numeric(
                pd.Series([e.get("block") for e in extras], dtype=object),
                errors="coerce",
            ),
            "pulse": [e.get("pulse") for e in extras],
            "onset": onsets,
        }
    )
    order = np.argsort(onsets, kind="stable")
    sorted_onsets = onsets[order]
    gaps = np.diff(sorted_onsets)
    nearest = np.full(len(onsets), np.inf)
    if len(gaps):
        nearest[order] = np.minimum(np.r_[np.inf, gaps], np.r_[gaps, np.inf])
    table["nearest_ms"] = nearest * 1e3
    length = span[1] - span[0]
    shortest = {}
    for block, group in table.groupby("block"):
        steps = np.diff(np.sort(group["onset"].to_numpy()))
        shortest[block] = steps.min() if len(steps) else np.inf
    table["block_interval_ms"] = table["block"].map(shortest).astype(float) * 1e3
    # Pulses without a block are judged on their own (no block to leave out).
    table["block_overlaps"] = table["block"].notna() & (
        table["block_interval_ms"] < length * 1e3
    )
    table["overlaps"] = table["nearest_ms"] < length * 1e3
    table["use"] = ~(table["block_overlaps"] | table["overlaps"])
    return table
