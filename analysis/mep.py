"""Motor-evoked potentials: per-pulse peak-to-peak EMG with pre-activation check.

The EMG is epoched around each ``"pulse"`` annotation at its own sampling
rate (no artifact interpolation, no resampling: both would change the
peak-to-peak amplitude). A trial is rejected for pre-activation when the EMG's
peak-to-peak amplitude in the pre-pulse window exceeds the limit; peak-to-peak
is used rather than the absolute value so that a DC offset of the amplifier
does not reject every trial.
"""

from __future__ import annotations

import mne
import pandas as pd
from mne.utils import logger, verbose

from stimtrain.emg import measure_meps

from .tep import pulse_epochs

__all__ = ["mep_epochs", "mep_table"]


@verbose
def mep_epochs(
    raw: mne.io.BaseRaw,
    *,
    tmin: float = -0.1,
    tmax: float = 0.1,
    picks="emg",
    verbose=None,
) -> mne.Epochs:
    """Epoch the EMG around every pulse, untouched (no baseline, no resampling).

    Parameters
    ----------
    raw : instance of Raw
        A raw with EMG channels and ``"pulse"`` annotations.
    tmin, tmax : float
        Epoch limits (s).
    picks : str | list
        EMG channels (MNE picks).
    %(verbose)s

    Returns
    -------
    epochs : instance of Epochs
        With the pulse markers' fields as metadata (see :func:`pulse_epochs`).
    """
    if picks == "emg" and not len(mne.pick_types(raw.info, emg=True)):
        raise ValueError(
            f"raw must have EMG channels for MEPs (got channel types "
            f"{sorted(set(raw.get_channel_types()))})"
        )
    return pulse_epochs(
        raw,
        tmin=tmin,
        tmax=tmax,
        baseline=None,
        exclude_artifact=None,
        sfreq=None,
        picks=picks,
        verbose=verbose,
    )


@verbose
def mep_table(
    epochs: mne.BaseEpochs | mne.io.BaseRaw,
    *,
    window: tuple[float, float] = (0.015, 0.050),
    pre_window: tuple[float, float] = (-0.050, -0.005),
    pre_max_uv: float = 50.0,
    picks="emg",
    verbose=None,
) -> pd.DataFrame:
    """Measure the MEP of every pulse: peak-to-peak, latency, pre-activation.

    Parameters
    ----------
    epochs : Epochs | Raw
        EMG epochs (see :func:`mep_epochs`), or a raw to epoch with its
        defaults.
    window : tuple of float
        MEP window (s after the pulse); 15-50 ms by default (some labs use
        10-50 ms).
    pre_window : tuple of float
        Window (s) checked for pre-activation.
    pre_max_uv : float
        A trial whose peak-to-peak EMG in ``pre_window`` exceeds this (µV) is
        rejected; 50 µV at rest, about 200 µV for threshold hunting.
    picks : str | list
        EMG channels.
    %(verbose)s

    Returns
    -------
    meps : pandas.DataFrame
        One row per pulse and channel: the pulse marker's fields (``block``,
        ``pulse``, ``intensity``, ``unit``, ``power`` … when present), ``onset``,
        ``channel``, ``mep_uv`` (peak-to-peak in ``window``, µV),
        ``latency_ms`` (first sample deviating from the pre-pulse mean by more
        than 5 SD of the pre-pulse window, a common onset rule; NaN if none),
        ``pre_uv`` (peak-to-peak in ``pre_window``, µV) and ``rejected``.
    """
    if isinstance(epochs, mne.io.BaseRaw):
        epochs = mep_epochs(epochs, picks=picks, verbose=verbose)
    for name, (t0, t1) in (("window", window), ("pre_window", pre_window)):
        if not t0 < t1:
            raise ValueError(f"{name} must have tmin < tmax (got {(t0, t1)})")
        if t0 < epochs.times[0] - 1e-9 or t1 > epochs.times[-1] + 1e-9:
            raise ValueError(
                f"{name} must lie within the epochs "
                f"({epochs.times[0]:g}..{epochs.times[-1]:g} s) (got {(t0, t1)})"
            )
    if pre_max_uv <= 0:
        raise ValueError(f"pre_max_uv must be > 0 µV (got {pre_max_uv})")
    ch_names = [epochs.ch_names[i] for i in mne.pick_types(epochs.info, emg=True)]
    if picks != "emg":
        ch_names = list(epochs.copy().pick(picks).ch_names)
    data = epochs.get_data(picks=ch_names) * 1e6  # (n_epochs, n_ch, n_times), µV
    # The session's online MEPs are measured by the same rule.
    p2p, pre, latency = measure_meps(
        epochs.times, data, window=window, baseline=pre_window
    )
    latency = latency * 1e3
    md = (
        epochs.metadata.reset_index(drop=True)
        if epochs.metadata is not None
        else pd.DataFrame(index=range(len(epochs)))
    )
    rows = []
    for ci, ch in enumerate(ch_names):
        part = md.copy()
        part["channel"] = ch
        part["mep_uv"] = p2p[:, ci]
        part["latency_ms"] = latency[:, ci]
        part["pre_uv"] = pre[:, ci]
        part["rejected"] = pre[:, ci] > pre_max_uv
        rows.append(part)
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    if len(table):
        logger.info(
            f"{len(epochs)} MEP trials on {len(ch_names)} channel(s); "
            f"{int(table['rejected'].sum())} rejected for pre-activation "
            f"> {pre_max_uv:g} µV"
        )
    return table
