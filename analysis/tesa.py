"""The TMS-EEG pipeline in TESA's reference order, on MNE objects.

:func:`run_tesa` follows ``docs/specs/analysis.md`` (Rogasch et al. 2017):

1. pulses from the markers, optionally realigned to the artifact;
2. epoch -1..1 s, demean; replace -2..10 ms with a cubic fit on 1 ms either
   side; only then downsample 5000 → 1000 Hz (:func:`~.tep.pulse_epochs`);
3. bad channels and trials (robust z-scores, see :func:`find_bad_channels`
   and :func:`find_bad_trials`);
4. ICA round 1 (FastICA, symmetric, tanh): TMS-evoked muscle and decay;
5. band-pass 1-100 Hz and band-stop 48-52 Hz (zero-phase Butterworth, order 4);
6. ICA round 2: blinks, eye movements, muscle;
7. interpolate bad channels; average reference; baseline -500..-5 ms;
8. TEPs per condition, GMFP, peak table.

Demeaning commutes with the cubic interpolation (a constant shifts the fit by
the same constant), so doing it after the interpolation gives TESA's result.

Longer than most because it is one pipeline whose steps must be read in their
order (TESA's), each step a function.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import mne
import numpy as np
import pandas as pd
from mne.utils import logger, verbose, warn

from .peaks import peak_table
from .tep import TEP_WINDOWS, gmfp, pulse_epochs, realign_pulses

__all__ = [
    "ICA_METHODS",
    "TesaResult",
    "run_tesa",
    "find_bad_channels",
    "find_bad_trials",
    "muscle_components",
    "high_frequency_components",
    "robust_z",
]


@dataclass
class TesaResult:
    """Everything :func:`run_tesa` made, for reports and group analysis.

    Attributes
    ----------
    epochs : Epochs
        Clean, referenced, baselined epochs (bad trials dropped).
    evokeds : dict of Evoked
        ``"all"`` and one TEP per condition (``"<column>=<value>"``).
    gmfp : pandas.DataFrame
        Tidy GMFP: ``evoked``, ``time_ms``, ``gmfp_uv``.
    peaks : pandas.DataFrame
        The peak table (see :func:`~stimtrain.analysis.peaks.peak_table`).
    bad_channels : list of str
        Channels marked bad and interpolated.
    bad_trials : list of int
        Pulse numbers (``pulse`` metadata, or epoch index) dropped.
    ica : pandas.DataFrame
        Every component removed: ``round``, ``component``, ``rule``,
        ``score``.
    alignment : pandas.DataFrame | None
        Artifact alignment table if pulses were realigned.
    steps : list of str
        The steps run, in order, for the report.
    icas : dict of ICA
        The fitted ICA of each round run (``1``, ``2``).
    """

    epochs: mne.BaseEpochs
    evokeds: dict[str, mne.Evoked]
    gmfp: pd.DataFrame
    peaks: pd.DataFrame
    bad_channels: list[str] = field(default_factory=list)
    bad_trials: list[int] = field(default_factory=list)
    ica: pd.DataFrame = field(default_factory=pd.DataFrame)
    alignment: pd.DataFrame | None = None
    steps: list[str] = field(default_factory=list)
    icas: dict[int, mne.preprocessing.ICA] = field(default_factory=dict)


def robust_z(values: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Robust z-score: ``(x - median) / (1.4826 * MAD)``.

    Parameters
    ----------
    values : array-like
        The values.
    axis : int | None
        Axis along which the median and MAD are taken.

    Returns
    -------
    ndarray
        The scores (0 where the MAD is 0).
    """
    x = np.asarray(values, float)
    med = np.median(x, axis=axis, keepdims=True)
    mad = 1.4826 * np.median(np.abs(x - med), axis=axis, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(mad > 0, (x - med) / mad, 0.0)
    return z


def _chunks(epochs: mne.BaseEpochs, nbytes: float = 64e6):
    """The preloaded epochs' data, a few epochs at a time (views, no copy).

    Rules that reduce each epoch to a number need not copy an hour's epochs
    (600 MB at 1 kHz) to do it.
    """
    data = epochs.get_data(copy=False)
    step = max(int(nbytes // max(data[0].nbytes, 1)), 1)
    for k in range(0, len(data), step):
        yield data[k : k + step]


def find_bad_channels(
    epochs: mne.BaseEpochs,
    *,
    z_threshold: float = 5.0,
    flat_uv: float = 0.01,
    window: tuple[float | None, float] = (None, -0.005),
) -> list[str]:
    """Find noisy and flat EEG channels.

    Rule: a channel is bad when the robust z-score (across channels) of the
    log of its typical SD exceeds ``z_threshold`` (too noisy or, for negative
    scores, too quiet), or when that SD is below ``flat_uv``. The typical SD
    is the median over epochs of the SD in ``window``: the pre-pulse part of
    each epoch by default, so that a large TEP or TMS-evoked muscle does not
    make a good channel look noisy, and the median over epochs, so that
    occasional blinks do not either (ICA round 2 handles them); a broken
    electrode is noisy in most epochs.

    Parameters
    ----------
    epochs : Epochs
        Preloaded epochs.
    z_threshold : float
        Robust z-score limit.
    flat_uv : float
        SD (µV) under which a channel counts as flat.
    window : tuple
        Times (s) used; ``None`` is the epoch's start.

    Returns
    -------
    bads : list of str
    """
    picks = mne.pick_types(epochs.info, eeg=True, exclude=[])
    t0 = epochs.times[0] if window[0] is None else window[0]
    keep = (epochs.times >= t0) & (epochs.times <= window[1])
    sd = np.concatenate(
        [part[:, picks][..., keep].std(axis=-1) for part in _chunks(epochs)]
    )
    sd = np.median(sd, axis=0) * 1e6
    z = robust_z(np.log(np.maximum(sd, 1e-12)))
    bad = (np.abs(z) > z_threshold) | (sd < flat_uv)
    return [epochs.ch_names[p] for p in picks[bad]]


def find_bad_trials(
    epochs: mne.BaseEpochs,
    *,
    z_threshold: float = 5.0,
    exclude: tuple[float, float] | None = (-0.002, 0.015),
) -> np.ndarray:
    """Find epochs with outlying amplitude.

    Rule: an epoch is bad when the robust z-score (across epochs) of its
    largest absolute value over good EEG channels exceeds ``z_threshold``.
    The pulse window ``exclude`` is left out so that the residual artifact,
    common to every epoch, does not decide.

    Parameters
    ----------
    epochs : Epochs
        Preloaded epochs.
    z_threshold : float
        Robust z-score limit.
    exclude : tuple | None
        Times (s) ignored.

    Returns
    -------
    bad : ndarray of int
        Indices of the bad epochs.
    """
    picks = mne.pick_types(epochs.info, eeg=True, exclude="bads")
    keep = np.ones(len(epochs.times), bool)
    if exclude is not None:
        keep = (epochs.times < exclude[0]) | (epochs.times > exclude[1])
    peak = np.concatenate(
        [np.abs(part[:, picks][..., keep]).max(axis=(1, 2)) for part in _chunks(epochs)]
    )
    peak = np.log(peak + 1e-15)
    return np.flatnonzero(robust_z(peak) > z_threshold)


def muscle_components(
    ica: mne.preprocessing.ICA,
    epochs: mne.BaseEpochs,
    *,
    window: tuple[float, float] = (0.011, 0.030),
    ratio: float = 8.0,
) -> tuple[list[int], np.ndarray]:
    """TESA's TMS-evoked muscle rule.

    Rule: a component is muscle when the mean of its absolute single-trial
    time course in ``window`` is more than ``ratio`` times the mean over the
    whole epoch. Single trials are used (not the average) so that a small
    phase-locked TEP component, buried in ongoing activity, is kept while
    the large muscle burst of every trial is caught.

    Parameters
    ----------
    ica : ICA
        A fitted ICA.
    epochs : Epochs
        The epochs it was fitted on.
    window : tuple of float
        The muscle window (s); 11-30 ms.
    ratio : float
        The threshold (8 in TESA).

    Returns
    -------
    components : list of int
    scores : ndarray
        The ratio of every component.
    """
    sources = np.abs(ica.get_sources(epochs).get_data())  # (n_ep, n_comp, n_t)
    times = epochs.times
    win = (times >= window[0]) & (times <= window[1])
    scores = sources[..., win].mean(axis=(0, 2)) / sources.mean(axis=(0, 2))
    return [int(i) for i in np.flatnonzero(scores > ratio)], scores


#: ICA algorithms :func:`run_tesa` runs, with the parameters that make each
#: estimate TESA's ICA: symmetric (all components at once, kept orthogonal)
#: with the log-cosh contrast (whose derivative is tanh). sklearn's FastICA
#: calls these "parallel" and "logcosh"; Picard-O (``ortho=True``) converges
#: to the same fixed points as symmetric FastICA (Ablin et al. 2018, IEEE
#: TSP 66:3920), with ``extended=True`` for sub-Gaussian sources as FastICA
#: finds them, but by a preconditioned quasi-Newton method that needs tens of
#: iterations where FastICA needs hundreds (or does not converge in 1000).
ICA_METHODS = {
    # tol bounds the gradient's norm. MNE's rule of thumb equates FastICA's
    # tol with Picard's squared, so FastICA's 1e-4 matches Picard's 1e-2;
    # 1e-4 is far stricter and took 59 iterations where Picard's default 1e-7
    # took hundreds, for the same components (|r| of topographies 0.998).
    "picard": dict(ortho=True, extended=True, fun="tanh", tol=1e-4),
    "fastica": dict(algorithm="parallel", fun="logcosh"),
}

#: ``ica_decim="auto"`` fits each ICA on every n-th sample, n as large as
#: leaves at least this many samples per unmixing weight (n_components²).
#: The fit uses only which values occur together across channels, never their
#: order, so every n-th sample is a subsample of the same distribution, not a
#: resampling that could alias; the fit's time is in proportion to its
#: samples. Measured on the benchmark's recordings (64 channels): on 5
#: minutes, 3 per weight found the round-1 component of a fit on every
#: sample (|r| of topographies 0.998) and 1.5 its round-2 eye component
#: (1.000); on the hour, 5 per weight (20,400 samples) found the three
#: round-1 components of a fit on 150,000 (|r| 0.999, 0.988, 0.969), in 5 s
#: instead of 69 s.
ICA_SAMPLES_PER_WEIGHT = 5

#: Round 1 also keeps at least this many samples inside the muscle window
#: (11-30 ms: 1 % of a 2 s epoch), where its components show: with 60 there
#: (32 channels, 15 pulses, every 5th sample) one of three round-1
#: components changed (|r| 0.58); with 150 all three were found (|r| >=
#: 0.993). Round 2 looks at whole epochs, filtered, and has no such window.
ICA_WINDOW_SAMPLES = 200


def _auto_decim(epochs: mne.BaseEpochs, n_components, window=None) -> int:
    n_ch = len(mne.pick_types(epochs.info, eeg=True, eog=True, exclude="bads"))
    n = n_ch if not isinstance(n_components, int) else min(n_components, n_ch)
    n_samples = len(epochs) * len(epochs.times)
    decim = n_samples // (ICA_SAMPLES_PER_WEIGHT * n * n)
    if window is not None:
        inside = (epochs.times >= window[0]) & (epochs.times <= window[1])
        decim = min(decim, len(epochs) * int(inside.sum()) // ICA_WINDOW_SAMPLES)
    return max(1, decim)


def _subsample(epochs: mne.BaseEpochs, decim: int) -> mne.EpochsArray:
    """Every ``decim``-th sample of every epoch, as small epochs to fit on.

    Epoch ``i`` starts at sample ``i % decim``, so that across epochs every
    latency is sampled: with the same start in every epoch, every 58th sample
    of 2 s epochs at 1 kHz missed the 11-30 ms of the TMS-evoked muscle in
    all of them, and round 1 then flagged 32 components instead of 3. (The
    samples no longer sit at their epochs' times, which the fit never reads.)
    ``ICA.fit(epochs, decim=n)`` would also copy every sample first, then
    order the components by variance on all of them: two passes over an
    hour's epochs that the fit does not need.
    """
    info = epochs.info.copy()
    with info._unlock():
        info["sfreq"] = info["sfreq"] / decim
        info["lowpass"] = min(info["lowpass"], info["sfreq"] / 2)
    data = epochs.get_data(copy=False)
    n = data.shape[-1] // decim  # the shortest of the offsets' lengths
    out = np.empty(data.shape[:2] + (n,))
    for i, epoch in enumerate(data):
        out[i] = epoch[:, i % decim :: decim][:, :n]
    return mne.EpochsArray(out, info, tmin=epochs.tmin, baseline=None, verbose=False)


def _fit_ica(
    epochs, method, n_components, random_state, max_iter, decim, verbose, window=None
):
    if decim == "auto":
        decim = _auto_decim(epochs, n_components, window)
    if decim is not None and decim > 1:
        epochs, decim = _subsample(epochs, decim), None
    ica = mne.preprocessing.ICA(
        n_components=n_components,
        method=method,
        fit_params=dict(ICA_METHODS[method]),
        random_state=random_state,
        max_iter=max_iter,
        verbose=verbose,
    )
    # TESA fits round 1 on epoched, demeaned, unfiltered data on purpose;
    # MNE's advice to high-pass first does not apply.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(high-pass|baseline-corrected)")
        ica.fit(epochs, decim=decim, verbose="error" if verbose is None else verbose)
    return ica


def _apply(ica, epochs, exclude, verbose):
    # The baseline is applied again at the end, after the last ICA.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*baseline-corrected")
        ica.apply(
            epochs, exclude=exclude, verbose="error" if verbose is None else verbose
        )


def _eog_proxies(epochs: mne.BaseEpochs, proxies: tuple[str, ...]) -> list[str]:
    eog = [epochs.ch_names[i] for i in mne.pick_types(epochs.info, eog=True)]
    good = [
        ch for ch in proxies if ch in epochs.ch_names and ch not in epochs.info["bads"]
    ]
    return eog or good


def high_frequency_components(
    ica: mne.preprocessing.ICA,
    epochs: mne.BaseEpochs,
    *,
    band: tuple[float, float] = (30.0, 100.0),
    total: tuple[float, float] = (1.0, 100.0),
    ratio: float = 0.6,
) -> tuple[list[int], np.ndarray]:
    """TESA's round-2 muscle rule: components dominated by high frequencies.

    Rule: a component is muscle when the mean of its power spectrum (Welch,
    over every epoch) in ``band`` is more than ``ratio`` times its mean over
    ``total``. EEG falls like 1/f (a ratio near 0.4 for 30-100 Hz against
    1-100 Hz); muscle is broadband or rises into the gamma band (near or
    above 1).

    Parameters
    ----------
    ica : ICA
        A fitted ICA.
    epochs : Epochs
        Its data.
    band, total : tuple of float
        Frequency bands (Hz).
    ratio : float
        The threshold.

    Returns
    -------
    components : list of int
    scores : ndarray
    """
    sources = ica.get_sources(epochs).get_data()  # (n_ep, n_comp, n_t)
    sfreq = epochs.info["sfreq"]
    fmax = min(total[1], sfreq / 2)
    # MNE computes the spectra of an array over 10 MB one row at a time (an
    # hour's 38,400 rows took 7 s); under it, in one call: the same spectra.
    step = max(int(9e6 // sources[0].nbytes), 1)
    psd = 0.0
    for k in range(0, len(sources), step):
        part, freqs = mne.time_frequency.psd_array_welch(
            sources[k : k + step],
            sfreq,
            fmin=total[0],
            fmax=fmax,
            n_fft=min(sources.shape[-1], int(sfreq)),
            verbose="error",
        )
        psd = psd + part.sum(axis=0)
    psd = psd / len(sources)  # (n_comp, n_freqs), the mean over epochs
    in_band = (freqs >= band[0]) & (freqs <= band[1])
    scores = psd[:, in_band].mean(axis=1) / psd.mean(axis=1)
    return [int(i) for i in np.flatnonzero(scores > ratio)], scores


def _round2(
    ica, epochs, *, eog_channels, eog_threshold, eog_min_r, muscle_ratio, verbose
):
    """Eye components by correlation with EOG (or frontal proxies), muscle by
    TESA's high-frequency power rule."""
    found = []
    for ch in eog_channels:
        idx, scores = ica.find_bads_eog(
            epochs, ch_name=ch, threshold=eog_threshold, verbose=verbose
        )
        for i in idx:
            # MNE z-scores again after taking the first outlier out, so among
            # 60 components that are noise one may pass by chance (|r| 0.14
            # seen): an eye component must also correlate by itself.
            if abs(scores[i]) >= eog_min_r:
                found.append((int(i), f"eye ({ch})", float(np.abs(scores[i]))))
    if muscle_ratio is not None:
        idx, scores = high_frequency_components(ica, epochs, ratio=muscle_ratio)
        for i in idx:
            found.append((int(i), "muscle (30-100 Hz power)", float(scores[i])))
    out, seen = [], set()
    for item in found:
        if item[0] not in seen:
            seen.add(item[0])
            out.append(item)
    if len(out) > ica.n_components_ / 2:
        warn(
            f"ICA round 2 flags {len(out)} of {ica.n_components_} components; "
            "check the rules' thresholds against this recording"
        )
    return out


@verbose
def run_tesa(
    raw: mne.io.BaseRaw,
    *,
    realign: bool = False,
    threshold_uv_per_ms: float = 1e4,
    tmin: float = -1.0,
    tmax: float = 1.0,
    exclude_artifact: tuple[float, float] = (-0.002, 0.010),
    fit_window: float = 0.001,
    sfreq: float | None = 1000.0,
    bad_channel_z: float | None = 5.0,
    bad_trial_z: float | None = 5.0,
    ica_round1: bool = True,
    muscle_window: tuple[float, float] = (0.011, 0.030),
    muscle_ratio: float = 8.0,
    l_freq: float | None = 1.0,
    h_freq: float | None = 100.0,
    notch: tuple[float, float] | None = (48.0, 52.0),
    filter_order: int = 4,
    ica_round2: bool = True,
    eog_proxies: tuple[str, ...] = ("Fp1", "Fp2"),
    eog_threshold: float = 3.0,
    eog_min_r: float = 0.3,
    hf_muscle_ratio: float | None = 0.6,
    ica_method: str = "picard",
    ica_n_components: int | float | None = None,
    ica_max_iter: int = 1000,
    ica_decim: int | str | None = "auto",
    random_state: int | None = 0,
    reference: str | None = "average",
    baseline: tuple[float, float] | None = (-0.5, -0.005),
    condition: str | None = "block",
    windows: dict[str, tuple[float, float]] | None = None,
    roi: list[str] | dict[str, list[str]] | None = None,
    neighbours: int = 5,
    peak_method: str = "largest",
    timer: Callable[[str], AbstractContextManager] | None = None,
    verbose=None,
) -> TesaResult:
    """Run the TMS-EEG pipeline in TESA's order with its defaults.

    Parameters
    ----------
    raw : instance of Raw
        EEG with ``"pulse"`` annotations (see :func:`read_raw_xdf`).
    realign : bool
        Realign the pulses to the artifact first (:func:`realign_pulses`).
    threshold_uv_per_ms : float
        Artifact threshold for the realignment (µV/ms).
    tmin, tmax : float
        Epoch limits (s), -1..1 s.
    exclude_artifact : tuple of float
        Window replaced by the cubic fit (s), -2..10 ms.
    fit_window : float
        Data (s) each side used for the cubic fit, 1 ms.
    sfreq : float | None
        Rate after interpolation (1000 Hz); ``None`` keeps the recording's.
    bad_channel_z, bad_trial_z : float | None
        Robust z limits of :func:`find_bad_channels` and
        :func:`find_bad_trials`; ``None`` skips the step.
    ica_round1 : bool
        Run the first ICA round (TMS-evoked muscle and decay).
    muscle_window, muscle_ratio
        The rule of :func:`muscle_components` (11-30 ms, 8×).
    l_freq, h_freq : float | None
        Band-pass (1-100 Hz).
    notch : tuple of float | None
        Band-stop edges (48-52 Hz).
    filter_order : int
        Butterworth order (4); applied forward and backward (zero phase).
    ica_round2 : bool
        Run the second ICA round (blink, eye movement, muscle).
    eog_proxies : tuple of str
        Frontal channels standing in for EOG when there are no EOG channels.
    eog_threshold : float
        z limit of :meth:`mne.preprocessing.ICA.find_bads_eog` (3).
    eog_min_r : float
        Least absolute correlation with the EOG (or proxy) channel of an eye
        component, whatever its z-score (0.3).
    hf_muscle_ratio : float | None
        Threshold of :func:`high_frequency_components` (TESA's 0.6); ``None``
        skips the muscle rule of round 2.
    ica_method : str
        ``"picard"`` (default) or ``"fastica"``: both estimate TESA's
        symmetric log-cosh ICA (see :data:`ICA_METHODS`); ``"fastica"``
        with ``ica_decim=None`` is this function's behaviour before Picard.
    ica_n_components : int | float | None
        Passed to :class:`mne.preprocessing.ICA` (``None``: full rank).
    ica_max_iter : int
        FastICA iterations.
    ica_decim : int | ``"auto"`` | None
        Fit the ICAs on every n-th sample; ``"auto"`` (default) chooses n
        for :data:`ICA_SAMPLES_PER_WEIGHT` samples per unmixing weight and,
        in round 1, :data:`ICA_WINDOW_SAMPLES` in the muscle window;
        ``None`` fits on every sample.
    random_state : int | None
        Seed of both ICA rounds.
    reference : str | None
        ``"average"`` or ``None`` to keep the recording reference.
    baseline : tuple of float | None
        Baseline (s), -500..-5 ms.
    condition : str | None
        Metadata column whose values define conditions (a TEP each);
        ``None`` makes only ``"all"``.
    windows : dict | None
        Peak windows (default :data:`TEP_WINDOWS`).
    roi : list | dict | None
        Regions of interest for the peak table.
    neighbours : int
        Peak rule (±5 samples).
    peak_method : str
        ``"largest"`` (default) or ``"centre"``.
    timer : callable | None
        Called with each step's name (``"epochs"``, ``"ica1"``,
        ``"filters"``, ``"ica2"``, ``"teps"``, ``"peaks"``); the context
        manager it returns is entered for the step (to time it or measure
        its memory, as ``benchmarks/analysis.py`` does).
    %(verbose)s

    Returns
    -------
    result : TesaResult
    """
    steps = []
    step = timer or (lambda name: nullcontext())
    alignment = None
    if not len(mne.pick_types(raw.info, eeg=True)):
        raise ValueError(
            f"raw must have EEG channels for TEPs (got channel types "
            f"{sorted(set(raw.get_channel_types()))})"
        )
    with step("epochs"):
        if realign:
            raw, alignment = realign_pulses(
                raw, threshold_uv_per_ms=threshold_uv_per_ms, verbose=verbose
            )
            steps.append(
                f"pulses realigned to the artifact ({threshold_uv_per_ms:g} µV/ms)"
            )
        epochs = _epochs(
            raw, tmin, tmax, exclude_artifact, fit_window, sfreq, steps, verbose
        )
        bad_channels, bad_trials = _bads(
            epochs, bad_channel_z, bad_trial_z, steps, verbose
        )
    ica = dict(method=ica_method, n_components=ica_n_components)
    ica.update(random_state=random_state, max_iter=ica_max_iter, decim=ica_decim)
    removed, icas = [], {}
    if ica_round1:
        with step("ica1"):
            icas[1], found = _ica_round1(
                epochs, ica, muscle_window, muscle_ratio, steps, verbose
            )
            removed += [(1, *f) for f in found]
    with step("filters"):
        _filters(epochs, l_freq, h_freq, notch, filter_order, steps, verbose)
    if ica_round2:
        with step("ica2"):
            icas[2], found = _ica_round2(
                epochs,
                ica,
                dict(
                    eog_channels=_eog_proxies(epochs, eog_proxies),
                    eog_threshold=eog_threshold,
                    eog_min_r=eog_min_r,
                    muscle_ratio=hf_muscle_ratio,
                ),
                steps,
                verbose,
            )
            removed += [(2, *f) for f in found]
    with step("teps"):
        evokeds = _teps(
            epochs, bad_channels, reference, baseline, condition, steps, verbose
        )
        gmfp_rows = [
            pd.DataFrame(
                {"evoked": name, "time_ms": ev.times * 1e3, "gmfp_uv": gmfp(ev) * 1e6}
            )
            for name, ev in evokeds.items()
        ]
    with step("peaks"):
        peaks = peak_table(
            evokeds,
            TEP_WINDOWS if windows is None else windows,
            roi=roi,
            neighbours=neighbours,
            method=peak_method,
            verbose=verbose,
        )
    ica_table = pd.DataFrame(removed, columns=["round", "component", "rule", "score"])
    logger.info(
        f"TESA pipeline: {len(epochs)} epochs, {len(bad_channels)} bad channels, "
        f"{len(bad_trials)} bad trials, {len(ica_table)} ICA components removed"
    )
    return TesaResult(
        epochs=epochs,
        evokeds=evokeds,
        gmfp=pd.concat(gmfp_rows, ignore_index=True),
        peaks=peaks,
        bad_channels=bad_channels,
        bad_trials=bad_trials,
        ica=ica_table,
        alignment=alignment,
        steps=steps,
        icas=icas,
    )


#: Epochs of a Raw that is not preloaded (:class:`~.pulse_windows.RawWindows`)
#: are made in batches of about this many bytes at the recording's rate, so
#: that only one batch, not an hour's pulses, is ever held at 5 kHz.
EPOCH_BATCH_BYTES = 256 * 2**20


def _pulse_batches(raw, span: float, n_channels: int, n_times: int) -> list:
    """Groups of pulse annotations, split only where pulses are > span apart.

    No epoch of one group then holds a pulse of another, so interpolating
    each group's pulses interpolates every pulse inside its epochs.
    """
    idx = np.flatnonzero(raw.annotations.description == "pulse")
    per = max(int(EPOCH_BATCH_BYTES // (8 * n_channels * n_times)), 1)
    onsets = raw.annotations.onset[idx]
    batches, start = [], 0
    for k in range(1, len(idx) + 1):
        if k == len(idx) or (k - start >= per and onsets[k] - onsets[k - 1] > span):
            batches.append(idx[start:k])
            start = k
    return batches


def _epochs(raw, tmin, tmax, exclude_artifact, fit_window, sfreq, steps, verbose):
    """Epoch, interpolate the pulse, downsample, demean (TESA steps 1-4)."""
    picks = ["eeg", "eog"] if len(mne.pick_types(raw.info, eog=True)) else "eeg"
    kwargs = dict(
        tmin=tmin,
        tmax=tmax,
        baseline=None,
        exclude_artifact=exclude_artifact,
        fit_window=fit_window,
        sfreq=sfreq,
        picks=picks,
        verbose=verbose,
    )
    n_ch = len(mne.pick_types(raw.info, eeg=True, eog=True, exclude=[]))
    span = tmax - tmin + 0.1  # the epoch and its resampling pad
    batches = _pulse_batches(raw, span, n_ch, int(span * raw.info["sfreq"]))
    if raw.preload or len(batches) < 2:
        epochs = pulse_epochs(raw, **kwargs)
    else:
        others = np.flatnonzero(raw.annotations.description != "pulse")
        parts = []
        for batch in batches:
            part = raw.copy()  # the samples are shared, not copied
            keep = np.sort(np.concatenate((others, batch)))
            part.set_annotations(raw.annotations[keep])
            # The raw's annotations are not kept with the epochs: MNE cannot
            # concatenate them (and nothing here reads them).
            parts.append(pulse_epochs(part, **kwargs).set_annotations(None))
        epochs = mne.concatenate_epochs(parts, add_offset=False, verbose=False)
        del parts
    if len(epochs) < 2:
        raise ValueError(
            f"TEPs need at least 2 pulse epochs inside the recording "
            f"({tmin:g}..{tmax:g} s around each pulse) (got {len(epochs)})"
        )
    epochs.apply_baseline((None, None), verbose=verbose)
    steps.append(
        f"epoched {tmin:g}..{tmax:g} s, demeaned; {exclude_artifact[0] * 1e3:g}.."
        f"{exclude_artifact[1] * 1e3:g} ms cubic-interpolated; "
        f"{raw.info['sfreq']:g} → {epochs.info['sfreq']:g} Hz"
    )
    return epochs


def _bads(epochs, bad_channel_z, bad_trial_z, steps, verbose):
    """Mark bad channels and drop bad trials; return both."""
    bad_channels = []
    if bad_channel_z is not None:
        bad_channels = find_bad_channels(epochs, z_threshold=bad_channel_z)
        epochs.info["bads"] = sorted(set(epochs.info["bads"]) | set(bad_channels))
        steps.append(
            f"bad channels (|robust z| of log variance > {bad_channel_z:g}): "
            f"{bad_channels or 'none'}"
        )
    pulse_ids = (
        epochs.metadata["pulse"].tolist()
        if epochs.metadata is not None and "pulse" in epochs.metadata
        else list(range(len(epochs)))
    )
    bad_trials = []
    if bad_trial_z is not None:
        bad_idx = find_bad_trials(epochs, z_threshold=bad_trial_z)
        bad_trials = [pulse_ids[i] for i in bad_idx]
        if len(bad_idx):
            epochs.drop(bad_idx, reason="TESA_BAD_TRIAL", verbose=verbose)
        steps.append(
            f"bad trials (robust z of max |EEG| > {bad_trial_z:g}): "
            f"{len(bad_trials)} dropped"
        )
    return bad_channels, bad_trials


def _ica_name(ica: mne.preprocessing.ICA, epochs: mne.BaseEpochs) -> str:
    name = "Picard-O" if ica.method == "picard" else "FastICA"
    total = len(epochs) * len(epochs.times)
    fitted = f", fitted on {ica.n_samples_} of {total} samples"
    return f"{name}, symmetric, tanh; {ica.n_components_} components{fitted}"


def _ica_round1(epochs, ica_args, window, ratio, steps, verbose):
    """TMS-evoked muscle and decay components, removed; returns (ICA, found)."""
    ica = _fit_ica(epochs, **ica_args, verbose=verbose, window=window)
    comps, scores = muscle_components(ica, epochs, window=window, ratio=ratio)
    if comps:
        _apply(ica, epochs, comps, verbose)
    steps.append(
        f"ICA round 1 ({_ica_name(ica, epochs)}): {len(comps)} removed "
        f"by the muscle rule (mean |IC| in {window[0] * 1e3:g}-{window[1] * 1e3:g} "
        f"ms > {ratio:g}× the epoch's)"
    )
    return ica, [(c, "TMS-evoked muscle/decay", float(scores[c])) for c in comps]


def _filters(epochs, l_freq, h_freq, notch, order, steps, verbose):
    """Band-pass and band-stop, zero-phase Butterworth, in place."""
    iir = dict(order=order, ftype="butter", output="sos")
    if l_freq is not None or h_freq is not None:
        epochs.filter(
            l_freq, h_freq, method="iir", iir_params=iir, phase="zero", verbose=verbose
        )
        steps.append(
            f"band-pass {l_freq}-{h_freq} Hz (Butterworth {order}, zero phase)"
        )
    if notch is not None:
        # l_freq > h_freq makes MNE design a band-stop.
        epochs.filter(
            notch[1],
            notch[0],
            method="iir",
            iir_params=iir,
            phase="zero",
            verbose=verbose,
        )
        steps.append(f"band-stop {notch[0]:g}-{notch[1]:g} Hz")


def _ica_round2(epochs, ica_args, rules, steps, verbose):
    """Eye and muscle components, removed; returns (ICA, found)."""
    ica = _fit_ica(epochs, **ica_args, verbose=verbose)
    found = _round2(ica, epochs, **rules, verbose=verbose)
    if found:
        _apply(ica, epochs, [c for c, _, _ in found], verbose)
    steps.append(
        f"ICA round 2 ({_ica_name(ica, epochs)}): {len(found)} removed "
        f"(eye: |z| of correlation with EOG/frontal channels > "
        f"{rules['eog_threshold']:g} and |r| >= {rules['eog_min_r']:g}; "
        f"muscle: mean power 30-100 Hz > {rules['muscle_ratio']}× 1-100 Hz)"
    )
    return ica, found


def _teps(epochs, bad_channels, reference, baseline, condition, steps, verbose):
    """Interpolate, re-reference, baseline; the TEP of all and per condition."""
    if epochs.info["bads"]:
        epochs.interpolate_bads(reset_bads=True, verbose=verbose)
        steps.append(f"interpolated {bad_channels}")
    if reference == "average":
        epochs.set_eeg_reference("average", projection=False, verbose=verbose)
        steps.append("average reference")
    if baseline is not None:
        epochs.apply_baseline(baseline, verbose=verbose)
        steps.append(f"baseline {baseline[0] * 1e3:g}..{baseline[1] * 1e3:g} ms")
    evokeds = {"all": epochs.average(picks="eeg")}
    evokeds["all"].comment = "all"
    if (
        condition is not None
        and epochs.metadata is not None
        and condition in epochs.metadata
    ):
        for value in sorted(epochs.metadata[condition].dropna().unique(), key=str):
            sel = np.flatnonzero((epochs.metadata[condition] == value).to_numpy())
            name = f"{condition}={value}"
            evokeds[name] = epochs[sel].average(picks="eeg")
            evokeds[name].comment = name
    return evokeds
