"""Read only the windows around the pulses of a recording, as a lazy Raw.

An hour of 64-channel EEG at 5 kHz is 4.6 GB as the recording's float32 and
9.2 GB as the float64 of an :class:`mne.io.RawArray`, yet TEPs and MEPs need
only the epochs around the pulses: 600 pulses of -1..1 s are a third of it.
:func:`read_raw_windows` reads those windows (and the first seconds, for a
look at the raw) with :func:`~stimtrain.xdf.load.load_streams`, keeps them as
the file's float32, and returns a :class:`RawWindows`: an MNE Raw over the
whole recording's time axis that converts to float64 only the samples asked
for (epochs, :meth:`~mne.io.Raw.get_data`). Samples that were not read are
zeros inside ``BAD_NOT_READ`` annotations, so epochs that reach them are
dropped by MNE's ``reject_by_annotation`` rather than filled in silently.

Timing follows :func:`~stimtrain.analysis.xdf.read_raw_xdf` exactly: the same
sample grid, the same marker positions, the same volts, so the epochs are the
same numbers as from the whole file.
"""

from __future__ import annotations

import warnings
from os import PathLike

import mne
import numpy as np
from mne._fiff.utils import _mult_cal_one
from mne.utils import logger, verbose, warn

from stimtrain.xdf.file import index_xdf
from stimtrain.xdf.load import load_streams

from .xdf import (
    _channel_meta,
    _decode_stream_markers,
    _find_eeg_stream,
    _find_marker_stream,
    _flatten_extras,
    _montage_name,
    _nominal_srate,
    _segment_layout,
    _stream_name,
    _time_to_position,
    _wanted_ids,
)

__all__ = ["RawWindows", "read_raw_windows"]

#: Annotation of the stretches between the windows that were not read.
NOT_READ = "BAD_NOT_READ"


class _Samples:
    """The windows' samples as read (float32), shared by every copy of a raw.

    ``raw.copy()`` deep-copies ``_raw_extras``; the samples are never written,
    so copies share them instead of doubling the memory.
    """

    def __init__(self, values: np.ndarray, runs, scales: np.ndarray) -> None:
        self.values = values  # (n_read, n_channels), the file's dtype
        self.runs = runs  # (first row, last row, grid position) per gap-free run
        self.starts = np.array([g for _, _, g in runs], np.int64)
        self.scales = scales  # per channel, to volts

    def __deepcopy__(self, memo) -> _Samples:
        return self


class RawWindows(mne.io.BaseRaw):
    """A Raw over a whole recording that holds only some windows of it.

    Made by :func:`read_raw_windows`; not preloaded. Reading converts the
    requested samples from the file's float32 to volts (float64); samples
    outside the windows read as zeros (and lie in ``BAD_NOT_READ``
    annotations).

    Parameters
    ----------
    info : mne.Info
        Channels and sampling rate.
    samples : _Samples
        The samples read and where they lie on the grid.
    n_times : int
        Length of the recording's grid (samples).
    %(verbose)s
    """

    def __init__(self, info, samples: _Samples, n_times: int, *, verbose=None):
        super().__init__(
            info,
            preload=False,
            first_samps=(0,),
            last_samps=(n_times - 1,),
            raw_extras=[dict(samples=samples)],
            orig_format="single",
            verbose=verbose,
        )

    def _read_segment_file(self, data, idx, fi, start, stop, cals, mult):
        """Fill ``data`` with samples ``start..stop-1`` (zeros where unread)."""
        store: _Samples = self._raw_extras[fi]["samples"]
        data[...] = 0.0
        first = max(int(np.searchsorted(store.starts, start, "right")) - 1, 0)
        for r0, r1, g in store.runs[first:]:
            if g >= stop:
                break
            a, b = max(start, g), min(stop, g + r1 - r0 + 1)
            if a >= b:
                continue
            one = store.values[r0 + a - g : r0 + b - g].T  # (n_channels, n)
            view = data[:, a - start : b - start]
            if mult is None:
                # The unit's scale joins MNE's calibration: the same float64
                # product as read_raw_xdf's, sample for sample.
                _mult_cal_one(view, one, idx, cals * store.scales[idx, None], None)
            else:
                scaled = one * store.scales[:, None]
                _mult_cal_one(view, scaled, idx, None, mult)


def _markers(fname, marker_stream) -> tuple[list[int], list[dict], np.ndarray]:
    """The marker stream's id(s), its loaded stream(s) and its pulse times."""
    ids = _wanted_ids(fname, None, marker_stream, eeg=False)
    if not ids:
        return [], [], np.zeros(0)
    streams = load_streams(fname, select=ids)
    mstream = _find_marker_stream(streams, marker_stream)
    if mstream is None or not len(mstream["time_stamps"]):
        return ids, streams, np.zeros(0)
    times, markers = _decode_stream_markers(mstream)
    pulses = np.asarray([m.get("event") == "pulse" for m in markers], bool)
    return ids, streams, times[pulses]


@verbose
def read_raw_windows(
    fname: str | PathLike,
    *,
    tmin: float = -1.1,
    tmax: float = 1.1,
    start_seconds: float = 20.0,
    eeg_stream: str | None = None,
    marker_stream: str | None = None,
    find_dropouts: bool = True,
    verbose=None,
) -> RawWindows:
    """Read the EEG around every pulse marker, and the markers, as a lazy Raw.

    Parameters
    ----------
    fname : path-like
        The XDF file.
    tmin, tmax : float
        The window read around each pulse marker (s). The defaults cover
        :func:`~stimtrain.analysis.tesa.run_tesa`'s epochs (-1..1 s, padded
        by 20 ms for the resampling filter).
    start_seconds : float
        Also read the recording's first seconds (the report's raw overview)
        and its last second (so the Raw spans the whole recording).
    eeg_stream, marker_stream : str | None
        As :func:`~stimtrain.analysis.xdf.read_raw_xdf`.
    find_dropouts : bool
        As :func:`~stimtrain.analysis.xdf.read_raw_xdf`.
    %(verbose)s

    Returns
    -------
    raw : RawWindows
        The channels, annotations (every marker, with its fields in
        ``extras``), montage and ``info["description"]`` of
        :func:`~stimtrain.analysis.xdf.read_raw_xdf`, on the same sample
        grid. Stretches not read are annotated ``BAD_NOT_READ``; gaps in the
        recording inside the windows ``BAD_ACQ_SKIP``.
    """
    if not tmin < 0 < tmax:
        raise ValueError(f"need tmin < 0 < tmax (got tmin={tmin}, tmax={tmax})")
    index = index_xdf(fname)
    marker_ids, marker_streams, pulses = _markers(fname, marker_stream)
    eeg_ids = [
        i for i in _wanted_ids(fname, eeg_stream, None, eeg=True) if i not in marker_ids
    ]
    firsts = [
        t
        for i in eeg_ids
        for t in (index.streams[i].estimated_times()[0][[0, -1]])
        if index.streams[i].chunk_first_time
    ]
    if not firsts:
        # No EEG samples: read_raw_xdf's error (or its stream choice) applies.
        streams = load_streams(fname, select=eeg_ids) if eeg_ids else []
        _find_eeg_stream(streams + marker_streams, eeg_stream)
    first, last = min(firsts), max(firsts)
    windows = [(first - 1.0, first + start_seconds), (last - 1.0, last + 60.0)]
    windows += [(t + tmin, t + tmax) for t in pulses]
    streams = load_streams(
        fname, select=eeg_ids, windows=np.asarray(windows), find_dropouts=find_dropouts
    )
    return _raw_windows(streams + marker_streams, windows, eeg_stream, marker_stream)


def _raw_windows(streams, windows, eeg_stream, marker_stream) -> RawWindows:
    stream = _find_eeg_stream(streams, eeg_stream)
    ts = np.asarray(stream["time_stamps"], float)
    names, types, scales = _channel_meta(stream)
    sfreq = _nominal_srate(stream) or float(stream["info"]["effective_srate"])
    runs, n_total, knots_t, knots_p = _segment_layout(stream, sfreq)
    info = mne.create_info(names, sfreq, types)
    info["description"] = (
        f"stimtrain XDF import of stream {_stream_name(stream)!r}; "
        f"first_time={float(ts[0])!r} (LSL time of the first sample, s)"
    )
    samples = _Samples(stream["time_series"], runs, np.asarray(scales, float))
    raw = RawWindows(info, samples, n_total, verbose=False)
    if "eeg" in types:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Not setting positions")
            raw.set_montage(_montage_name(), on_missing="ignore", match_case=False)

    onsets, durations, descriptions, extras = [], [], [], []
    # What lies between two runs was either not read or not recorded: a gap
    # that ends inside a window (and not at its start) was recorded as a gap.
    w = np.asarray(windows, float)
    for (a0, b0, g0), (a1, _, g1) in zip(runs, runs[1:], strict=False):
        end = g0 + b0 - a0 + 1
        if g1 <= end:
            continue
        t_next = ts[a1]
        recorded_gap = np.any((w[:, 0] < t_next - 1.5 / sfreq) & (t_next <= w[:, 1]))
        onsets.append(end / sfreq)
        durations.append((g1 - end) / sfreq)
        descriptions.append("BAD_ACQ_SKIP" if recorded_gap else NOT_READ)
        extras.append(None)
    mstream = _find_marker_stream(streams, marker_stream)
    if mstream is None:
        # As read_raw_xdf: the analysis says so once, rather than finding
        # no pulses in silence.
        warn("No stimtrain marker stream in the file: the raw has no markers")
    if mstream is not None and len(mstream["time_stamps"]):
        mtimes, markers = _decode_stream_markers(mstream)
        pos = _time_to_position(mtimes, knots_t, knots_p, sfreq)
        inside = (pos >= 0) & (pos <= n_total - 1)
        for ii in np.flatnonzero(inside):
            onsets.append(pos[ii] / sfreq)
            durations.append(0.0)
            descriptions.append(str(markers[ii].get("event", "unknown")))
            extras.append(
                {**_flatten_extras(markers[ii]), "lsl_time": float(mtimes[ii])}
            )
    if onsets:
        # Annotations sort by onset, as read_raw_xdf's do.
        raw.set_annotations(
            mne.Annotations(onsets, durations, descriptions, extras=extras)
        )
    read = sum(b - a + 1 for a, b, _ in runs)
    logger.info(
        f"Read {read} of {n_total} samples ({100 * read / max(n_total, 1):.0f} %) "
        f"in {len(runs)} windows"
    )
    return raw
