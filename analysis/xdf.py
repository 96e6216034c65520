"""Read stimtrain XDF recordings into MNE-Python.

MNE has no XDF reader, so the EEG stream is loaded with :func:`load_streams`
(our own reader, pyxdf-compatible: clock synchronisation and per-segment
dejittering on, dropouts kept as gaps) and turned into an
:class:`mne.io.RawArray`; the stimtrain marker stream becomes
:class:`mne.Annotations` whose ``extras`` hold every field of each marker.

Time base
---------
``raw.times[0]`` is the first EEG sample. Its LSL time (after pyxdf's clock
synchronisation) is stored in ``raw.info["description"]`` and returned by
:func:`first_lsl_time`. A marker's onset is its position among the EEG samples
(interpolated between the samples' own timestamps) divided by the sampling
rate, so it equals ``marker time - first_time`` when the stream has no gaps
and runs at its nominal rate, and stays attached to the right samples when it
has gaps or a slightly different effective rate (see ``docs/specs/analysis.md``).
Gaps between segments and dropouts inside them are filled with zeros and
annotated ``BAD_ACQ_SKIP``; their length in samples is the gap's duration at
the effective rate of the segment before it.

Longer than most because turning a recording into MNE objects (segments, gaps,
markers on the EEG's clock) is one job whose parts share the same timing rules.
"""

from __future__ import annotations

import json
import re
import warnings
from os import PathLike

import mne
import numpy as np
import pandas as pd
from mne.utils import logger, verbose, warn

from stimtrain.vocabulary import (
    MARKER_STREAM_PREFIX,
    MARKER_STREAM_TYPE,
    decode_marker,
)
from stimtrain.xdf.clock import apply_clock_fit
from stimtrain.xdf.file import index_xdf
from stimtrain.xdf.load import load_streams

__all__ = [
    "read_raw_xdf",
    "read_markers",
    "timing_diagnostics",
    "first_lsl_time",
    "load_streams",
]

# Keys MNE reserves in Annotations.extras: marker fields of these names are
# stored with a "marker_" prefix.
_RESERVED_EXTRAS = ("onset", "duration", "description", "ch_names", "hed_string")

# Scale from a channel's declared unit to volts; stimtrain EEG is in µV.
_UNIT_SCALE = {
    "v": 1.0,
    "volt": 1.0,
    "volts": 1.0,
    "mv": 1e-3,
    "millivolt": 1e-3,
    "millivolts": 1e-3,
    "uv": 1e-6,
    "µv": 1e-6,
    "μv": 1e-6,
    "microvolt": 1e-6,
    "microvolts": 1e-6,
    "nv": 1e-9,
}
_CH_TYPES = {
    "eeg": "eeg",
    "emg": "emg",
    "eog": "eog",
    "ecg": "ecg",
    "trg": "stim",
    "trigger": "stim",
    "stim": "stim",
    "misc": "misc",
}
_FIRST_TIME_RE = re.compile(r"first_time=([-+0-9.eE]+)")


def _montage_name() -> str:
    """The 10-20 template: MNE 1.13 renamed standard_1020 to colin27_1020."""
    names = mne.channels.get_builtin_montages()
    return "colin27_1020" if "colin27_1020" in names else "standard_1020"


def _info_value(info: dict, key: str, default=None):
    """Return the scalar text of a pyxdf info field (pyxdf wraps it in a list)."""
    value = info.get(key, default)
    if isinstance(value, list):
        value = value[0] if value else default
    return default if value is None else value


def _stream_name(stream: dict) -> str:
    return str(_info_value(stream["info"], "name", ""))


def _stream_type(stream: dict) -> str:
    return str(_info_value(stream["info"], "type", ""))


def _nominal_srate(stream: dict) -> float:
    return float(_info_value(stream["info"], "nominal_srate", 0.0))


def _find_eeg_stream(streams: list[dict], eeg_stream: str | None) -> dict:
    if eeg_stream is not None:
        found = [s for s in streams if _stream_name(s) == eeg_stream]
        what = f"named {eeg_stream!r}"
    else:
        found = [s for s in streams if _stream_type(s).lower() == "eeg"]
        what = 'of type "EEG"'
    available = [(_stream_name(s), _stream_type(s)) for s in streams]
    if not found:
        raise ValueError(
            f"The XDF file has no stream {what}; streams (name, type): {available}"
        )
    if len(found) > 1:
        raise ValueError(
            f"The XDF file has {len(found)} streams {what}; choose one with "
            f"eeg_stream=<name>. Streams (name, type): {available}"
        )
    stream = found[0]
    if len(stream["time_stamps"]) == 0:
        raise ValueError(f"The EEG stream {_stream_name(stream)!r} has no samples")
    return stream


def _find_marker_stream(streams: list[dict], marker_stream: str | None) -> dict | None:
    if marker_stream is not None:
        found = [s for s in streams if _stream_name(s) == marker_stream]
    else:
        found = [
            s
            for s in streams
            if _stream_type(s) == MARKER_STREAM_TYPE
            and _stream_name(s).startswith(MARKER_STREAM_PREFIX)
        ]
    if not found:
        return None
    if len(found) > 1:
        # One marker stream per session is the contract; a second one means two
        # runners were on the network, so use the one with the most markers.
        names = [_stream_name(s) for s in found]
        warn(f"{len(found)} marker streams found ({names}); using the largest")
        found.sort(key=lambda s: len(s["time_stamps"]), reverse=True)
    return found[0]


def _channel_meta(stream: dict) -> tuple[list[str], list[str], np.ndarray]:
    """Channel names, MNE types and scales to volts from the stream's desc."""
    info = stream["info"]
    n_ch = int(_info_value(info, "channel_count", 0))
    # A channel without a type takes its stream's (an "EMG" stream's are EMG).
    default_kind = _stream_type(stream) or "EEG"
    channels = []
    try:
        channels = info["desc"][0]["channels"][0]["channel"]
    except (KeyError, IndexError, TypeError):
        pass
    names, types, scales = [], [], []
    for ii in range(n_ch):
        ch = channels[ii] if ii < len(channels) and channels[ii] else {}
        name = str(_info_value(ch, "label", "") or f"EEG{ii + 1:03d}")
        unit = str(_info_value(ch, "unit", "microvolts")).strip().lower()
        kind = str(_info_value(ch, "type", "") or default_kind).strip().lower()
        names.append(name)
        types.append(_CH_TYPES.get(kind, "eeg"))
        # The contract says µV; an unknown unit is treated as µV too.
        scales.append(_UNIT_SCALE.get(unit, 1e-6))
    # Duplicate labels would make RawArray fail; make them unique.
    seen: dict[str, int] = {}
    for ii, name in enumerate(names):
        if name in seen:
            seen[name] += 1
            names[ii] = f"{name}-{seen[name]}"
        else:
            seen[name] = 0
    return names, types, np.asarray(scales)


def _segment_layout(stream: dict, sfreq: float):
    """Place the stream's gap-free runs of samples on one uniform grid.

    Returns the runs as (first sample, last sample, grid position), the total
    number of grid samples, and the knots (time, grid position) that map LSL
    time to grid position.
    """
    ts = np.asarray(stream["time_stamps"], float)
    timing = stream.get("timing")
    if timing is not None and timing.get("runs"):
        g0 = timing["runs"][0][2]
        runs = [(a, b, g - g0) for a, b, g in timing["runs"]]
    else:
        # pyxdf's streams: segments only, placed by their first timestamp.
        runs, next_free = [], 0
        for s0, s1 in stream["info"].get("segments") or [(0, len(ts) - 1)]:
            pos = int(round((ts[s0] - ts[0]) * sfreq))
            # Rounding or a faster effective rate can make a segment start
            # before the previous one ends; samples are never overlapped.
            pos = max(pos, next_free)
            runs.append((s0, s1, pos))
            next_free = pos + (s1 - s0) + 1
    knots_t = np.asarray([t for a, b, _ in runs for t in (ts[a], ts[b])])
    knots_p = np.asarray([p for a, b, g in runs for p in (g, g + b - a)], float)
    n_total = runs[-1][2] + runs[-1][1] - runs[-1][0] + 1
    return runs, n_total, knots_t, knots_p


def _time_to_position(t, knots_t, knots_p, sfreq: float) -> np.ndarray:
    """Map LSL times to fractional grid positions (extrapolating at sfreq)."""
    t = np.asarray(t, float)
    pos = np.interp(t, knots_t, knots_p)
    before, after = t < knots_t[0], t > knots_t[-1]
    pos[before] = knots_p[0] + (t[before] - knots_t[0]) * sfreq
    pos[after] = knots_p[-1] + (t[after] - knots_t[-1]) * sfreq
    return pos


def _flatten_extras(marker: dict) -> dict:
    """Make a marker dict acceptable to Annotations.extras (flat scalars)."""
    out = {}
    for key, value in marker.items():
        if key in _RESERVED_EXTRAS:
            key = f"marker_{key}"
        if isinstance(value, bool):
            value = int(value)
        elif value is not None and not isinstance(value, str | int | float):
            value = json.dumps(value, separators=(",", ":"))
        out[key] = value
    return out


def _decode_stream_markers(stream: dict) -> tuple[np.ndarray, list[dict]]:
    times = np.asarray(stream["time_stamps"], float)
    markers = []
    for sample in stream["time_series"]:
        text = sample[0] if isinstance(sample, list | tuple | np.ndarray) else sample
        markers.append(decode_marker(text))
    return times, markers


def first_lsl_time(raw: mne.io.BaseRaw) -> float:
    """Return the LSL time of the first EEG sample of a raw read from XDF.

    Parameters
    ----------
    raw : instance of Raw
        A raw returned by :func:`read_raw_xdf` (the value is kept in
        ``raw.info["description"]``, which survives saving to FIF).

    Returns
    -------
    float
        The synchronised LSL time of ``raw.times[0]``, in seconds.
    """
    match = _FIRST_TIME_RE.search(raw.info["description"] or "")
    if match is None:
        raise ValueError("raw.info['description'] holds no stimtrain first_time")
    return float(match.group(1))


def _raw_from_streams(
    streams: list[dict],
    *,
    eeg_stream: str | None = None,
    marker_stream: str | None = None,
) -> mne.io.RawArray:
    stream = _find_eeg_stream(streams, eeg_stream)
    ts = np.asarray(stream["time_stamps"], float)
    data = stream["time_series"]
    names, types, scales = _channel_meta(stream)
    sfreq = _nominal_srate(stream) or float(stream["info"]["effective_srate"])
    runs, n_total, knots_t, knots_p = _segment_layout(stream, sfreq)
    # Fill float64 (what RawArray keeps) straight from the stream's float32.
    out = np.zeros((len(names), n_total))
    for s0, s1, pos in runs:
        out[:, pos : pos + s1 - s0 + 1] = data[s0 : s1 + 1].T
    out *= scales[:, np.newaxis]

    info = mne.create_info(names, sfreq, types)
    first_time = float(ts[0])
    info["description"] = (
        f"stimtrain XDF import of stream {_stream_name(stream)!r}; "
        f"first_time={first_time!r} (LSL time of the first sample, s)"
    )
    raw = mne.io.RawArray(out, info, verbose=False)
    del out
    if "eeg" in types:
        with warnings.catch_warnings():
            # EMG channels named like 10-20 sites keep no position; fine.
            warnings.filterwarnings("ignore", "Not setting positions")
            raw.set_montage(_montage_name(), on_missing="ignore", match_case=False)

    onsets, durations, descriptions, extras = [], [], [], []
    # Gaps and dropouts: annotate so that filtering and epoching skip them.
    for (a0, b0, g0), (_, _, g1) in zip(runs, runs[1:], strict=False):
        end = g0 + b0 - a0 + 1
        if g1 > end:
            onsets.append(end / sfreq)
            durations.append((g1 - end) / sfreq)
            descriptions.append("BAD_ACQ_SKIP")
            extras.append(None)
    if len(runs) > 1:
        logger.info(f"EEG stream has {len(runs)} gap-free runs; gaps are zero-filled")

    mstream = _find_marker_stream(streams, marker_stream)
    if mstream is None:
        warn("No stimtrain marker stream in the file: the raw has no markers")
    elif len(mstream["time_stamps"]):
        mtimes, markers = _decode_stream_markers(mstream)
        pos = _time_to_position(mtimes, knots_t, knots_p, sfreq)
        inside = (pos >= 0) & (pos <= n_total - 1)
        if not inside.all():
            logger.info(
                f"{(~inside).sum()} marker(s) lie outside the EEG recording and "
                "are left out of the annotations (see read_markers)"
            )
        for ii in np.flatnonzero(inside):
            t, marker = mtimes[ii], markers[ii]
            onsets.append(pos[ii] / sfreq)
            durations.append(0.0)
            descriptions.append(str(marker.get("event", "unknown")))
            extras.append({**_flatten_extras(marker), "lsl_time": float(t)})
    if onsets:
        raw.set_annotations(
            mne.Annotations(onsets, durations, descriptions, extras=extras)
        )
    return raw


@verbose
def read_raw_xdf(
    fname: str | PathLike,
    *,
    eeg_stream: str | None = None,
    marker_stream: str | None = None,
    find_dropouts: bool = True,
    verbose=None,
) -> mne.io.RawArray:
    """Read the EEG and the stimtrain markers of an XDF file as a Raw.

    Parameters
    ----------
    fname : path-like
        The XDF file.
    eeg_stream : str | None
        Name of the EEG stream. ``None`` picks the only stream of type
        ``"EEG"`` (an error if there are none or several).
    marker_stream : str | None
        Name of the marker stream. ``None`` picks the stream of type
        ``"Markers"`` whose name starts with ``"stimtrain-markers"``. If there
        is none, the raw has no markers (with a warning).
    find_dropouts : bool
        Keep dropouts shorter than pyxdf's break threshold as gaps instead of
        smearing them over the segment (see :func:`load_streams`).
    %(verbose)s

    Returns
    -------
    raw : instance of RawArray
        Data in volts (channels declared in µV are scaled by 1e-6), channel
        names from ``desc/channels/channel/label``, 10-20 template positions
        (``standard_1020``, called ``colin27_1020`` from MNE 1.13) where the
        names match. One annotation per marker, with the marker's
        ``event`` as description, duration 0, and the decoded marker (plus its
        synchronised ``lsl_time``) in ``raw.annotations.extras``. Gaps in the
        EEG (between segments and dropouts inside them) are zero-filled and
        annotated ``BAD_ACQ_SKIP``. The LSL time of the first sample is given
        by :func:`first_lsl_time`; the :func:`timing_diagnostics` of the
        streams read are in ``raw.info["temp"]["timing"]`` (not saved to FIF).
        Only the EEG and marker streams are read from the file.

    Notes
    -----
    Marker fields named like reserved Annotations keys (``onset``,
    ``duration``, ``description``, ``ch_names``) are stored as
    ``marker_<name>``; booleans become 0/1 and nested values JSON text.
    """
    ids = _wanted_ids(fname, eeg_stream, marker_stream, eeg=True)
    streams = load_streams(fname, select=ids or None, find_dropouts=find_dropouts)
    raw = _raw_from_streams(streams, eeg_stream=eeg_stream, marker_stream=marker_stream)
    raw.info["temp"] = dict(timing=timing_diagnostics(streams))
    return raw


def _wanted_ids(fname, eeg_stream, marker_stream, *, eeg: bool) -> list[int]:
    """Ids of the streams read_raw_xdf / read_markers need, from the headers.

    Same rules as :func:`_find_eeg_stream` and :func:`_find_marker_stream`.
    """
    ids = []
    for sid, s in index_xdf(fname).streams.items():
        is_eeg = s.name == eeg_stream if eeg_stream else s.type.lower() == "eeg"
        if marker_stream:
            is_marker = s.name == marker_stream
        else:
            is_marker = s.type == MARKER_STREAM_TYPE and s.name.startswith(
                MARKER_STREAM_PREFIX
            )
        if (eeg and is_eeg) or is_marker:
            ids.append(sid)
    return ids


def _markers_from_streams(
    streams: list[dict], marker_stream: str | None = None
) -> pd.DataFrame:
    mstream = _find_marker_stream(streams, marker_stream)
    if mstream is None or not len(mstream["time_stamps"]):
        return pd.DataFrame(columns=["time", "event"])
    times, markers = _decode_stream_markers(mstream)
    df = pd.DataFrame(markers)
    df.insert(0, "time", times)
    cols = ["time", "event"] + [c for c in df.columns if c not in ("time", "event")]
    return df[cols].sort_values("time", kind="stable").reset_index(drop=True)


@verbose
def read_markers(
    fname: str | PathLike, *, marker_stream: str | None = None, verbose=None
) -> pd.DataFrame:
    """Read the stimtrain markers of an XDF file as a table.

    Parameters
    ----------
    fname : path-like
        The XDF file.
    marker_stream : str | None
        Name of the marker stream; ``None`` picks the stimtrain one.
    %(verbose)s

    Returns
    -------
    markers : pandas.DataFrame
        One row per marker, sorted by time: ``time`` (synchronised LSL time,
        s), ``event``, then the union of all marker fields (missing values are
        NaN). Empty (columns ``time`` and ``event``) when there is no marker
        stream.
    """
    ids = _wanted_ids(fname, None, marker_stream, eeg=False)
    if not ids:
        return _markers_from_streams([], marker_stream)
    return _markers_from_streams(load_streams(fname, select=ids), marker_stream)


def _clock_offsets(stream: dict) -> tuple[np.ndarray, np.ndarray]:
    """The stream's recorded clock offsets, without invalid entries.

    The LabRecorder library writes an offset even when its time-correction
    query timed out (seen here when an outlet vanished before the recorder
    stopped), with an uninitialised time such as 6.9e-310 s.
    """
    times = np.asarray(stream.get("clock_times", []), float)
    values = np.asarray(stream.get("clock_values", []), float)
    ok = np.isfinite(times) & np.isfinite(values) & (np.abs(times) > 1e-300)
    return times[ok], values[ok]


def _clock_offset_fit(stream: dict):
    """Return a function mapping a sender's LSL time to the recorder's clock."""
    fit = (stream.get("timing") or {}).get("clock_fit")
    if fit is not None:

        def to_recorder(t):
            t = np.array(t, float, ndmin=1)
            order = np.argsort(t, kind="stable")
            mapped = t[order]
            apply_clock_fit(mapped, fit)
            t[order] = mapped
            return t

        return to_recorder
    times, values = _clock_offsets(stream)
    if len(values) == 0:
        return lambda t: np.asarray(t, float)
    if len(values) == 1 or np.ptp(times) == 0:
        return lambda t: np.asarray(t, float) + values[0]
    slope, intercept = np.polyfit(times, values, 1)
    return lambda t: np.asarray(t, float) * (1 + slope) + intercept


def timing_diagnostics(streams: list[dict]) -> dict[str, dict]:
    """Summarise the timing of each stream loaded by pyxdf.

    Parameters
    ----------
    streams : list of dict
        Streams as returned by :func:`pyxdf.load_xdf` (or :func:`load_streams`).

    Returns
    -------
    diagnostics : dict
        Keyed by stream name (``"name#id"`` if names repeat). Each value holds
        ``name``, ``type``, ``stream_id``, ``channel_count``, ``n_samples``,
        ``nominal_srate``, ``effective_srate`` and their difference in ppm
        (``srate_error_ppm``), ``first_time``, ``last_time``, ``duration_s``,
        ``n_segments``, ``segments`` (list of (start, stop) LSL times),
        ``gaps_s`` (durations between segments), ``dropped_samples``
        (estimated from the gaps and the nominal rate), ``n_clock_offsets``,
        ``clock_offset_mean_ms``, ``clock_offset_std_ms``,
        ``clock_offset_range_ms``, ``has_footer`` and ``footer_sample_count``.
        Streams from :func:`load_streams` also give ``segment_srates``
        (effective rate of each segment), ``dropouts`` (list of dicts:
        ``time`` of the first sample after it, ``missing`` samples,
        ``duration_s``), ``n_dropouts``, ``clock_drift_ppm`` (slope of the
        clock offset fit), ``clock_fit_residual_ms`` (largest distance of an
        offset from the fit), ``n_clock_resets``, ``truncated`` (the last
        chunk was cut off) and ``samples_cut`` (samples lost with it); for
        those, ``dropped_samples`` counts gaps and dropouts at the effective
        rate.
    """
    out: dict[str, dict] = {}
    names = [_stream_name(s) for s in streams]
    for stream, name in zip(streams, names, strict=True):
        info = stream["info"]
        ts = np.asarray(stream["time_stamps"], float)
        n = len(ts)
        nominal = _nominal_srate(stream)
        effective = float(info.get("effective_srate") or 0.0)
        segments = info.get("segments") or ([(0, n - 1)] if n else [])
        seg_times = [(float(ts[a]), float(ts[b])) for a, b in segments]
        gaps = [b[0] - a[1] for a, b in zip(seg_times, seg_times[1:], strict=False)]
        dropped = (
            int(sum(max(round(g * nominal) - 1, 0) for g in gaps)) if nominal else 0
        )
        offsets = _clock_offsets(stream)[1] * 1e3
        footer = stream.get("footer") or {}
        footer_info = footer.get("info", {}) if isinstance(footer, dict) else {}
        footer_count = _info_value(footer_info, "sample_count", None)
        key = name if names.count(name) == 1 else f"{name}#{info.get('stream_id')}"
        extra = {}
        timing = stream.get("timing")
        if timing is not None:
            extra = _timing_extras(timing, ts, nominal)
            dropped = extra.pop("dropped_samples")
        out[key] = dict(
            name=name,
            type=_stream_type(stream),
            stream_id=info.get("stream_id"),
            channel_count=int(_info_value(info, "channel_count", 0)),
            n_samples=n,
            nominal_srate=nominal,
            effective_srate=effective,
            srate_error_ppm=(
                (effective - nominal) / nominal * 1e6 if nominal and effective else None
            ),
            first_time=float(ts[0]) if n else None,
            last_time=float(ts[-1]) if n else None,
            duration_s=float(ts[-1] - ts[0]) if n else 0.0,
            n_segments=len(segments),
            segments=seg_times,
            gaps_s=gaps,
            dropped_samples=dropped,
            n_clock_offsets=len(offsets),
            clock_offset_mean_ms=float(offsets.mean()) if len(offsets) else None,
            clock_offset_std_ms=float(offsets.std()) if len(offsets) else None,
            clock_offset_range_ms=float(np.ptp(offsets)) if len(offsets) else None,
            has_footer=bool(footer_info),
            footer_sample_count=(
                int(footer_count) if footer_count not in (None, "") else None
            ),
            **extra,
        )
    return out


def _timing_extras(timing: dict, ts: np.ndarray, nominal: float) -> dict:
    """The diagnostics only our reader knows (dropouts, rates, clock fit)."""
    rates = [float(r) for r in timing.get("segment_srates", [])]
    dropouts = []
    for k, missing in timing.get("dropouts", []):
        rate = nominal or 1.0
        dropouts.append(
            dict(time=float(ts[k]), missing=int(missing), duration_s=missing / rate)
        )
    fit = timing.get("clock_fit")
    drift = residual = None
    resets = 0
    if fit is not None and len(fit.clock_times):
        drift = float(fit.coefs[-1][1]) * 1e6
        residual = float(np.abs(fit.residuals).max()) * 1e3
        resets = len(fit.ranges) - 1
    return dict(
        segment_srates=rates,
        dropouts=dropouts,
        n_dropouts=len(dropouts),
        dropped_samples=int(
            sum(timing.get("gaps", [])) + sum(m for _, m in timing.get("dropouts", []))
        ),
        clock_drift_ppm=drift,
        clock_fit_residual_ms=residual,
        n_clock_resets=resets,
        truncated=bool(timing.get("truncated")),
        samples_cut=int(timing.get("n_cut", 0)),
    )
