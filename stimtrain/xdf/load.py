"""Load XDF streams fast: clock-synchronised, dejittered, in pyxdf's form.

:func:`load_streams` indexes the file (:mod:`stimtrain.xdf.file`),
decodes only the streams and time windows asked for, and corrects their
timestamps (:mod:`stimtrain.xdf.clock`). The result has the layout of
:func:`pyxdf.load_xdf`'s streams, plus a ``timing`` entry per stream.
"""

from __future__ import annotations

from os import PathLike

import numpy as np
from mne.utils import logger, verbose, warn

from .clock import apply_clock_fit, clock_fit, corrupted_last_offset, dejitter
from .file import XdfError, index_xdf, read_samples
from .samples import read_fast

__all__ = ["load_streams"]


def _merge_windows(windows, margin: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Sorted, non-overlapping (start, stop) arrays of the given windows."""
    w = np.asarray(windows, float).reshape(-1, 2)
    if np.any(~np.isfinite(w)) or np.any(w[:, 1] < w[:, 0]):
        bad = w[~(np.isfinite(w).all(1) & (w[:, 1] >= w[:, 0]))][0].tolist()
        raise ValueError(
            f"windows must be finite (start, stop) pairs with stop >= start; got {bad}"
        )
    w = w[np.argsort(w[:, 0], kind="stable")]
    w[:, 0] -= margin
    w[:, 1] += margin
    starts, stops = [], []
    for a, b in w:
        if starts and a <= stops[-1]:
            stops[-1] = max(stops[-1], b)
        else:
            starts.append(a)
            stops.append(b)
    return np.asarray(starts), np.asarray(stops)


def _in_windows(t: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    i = np.searchsorted(starts, t, side="right") - 1
    inside = i >= 0
    inside[inside] = t[inside] <= stops[i[inside]]
    return inside


def _compact(arrays: list, keep: np.ndarray) -> None:
    """Keep the rows ``keep`` of each array, moving runs down in place."""
    cut = np.flatnonzero(np.diff(np.concatenate(([0], keep.view(np.int8), [0]))))
    dst = 0
    for a, b in zip(cut[::2], cut[1::2], strict=True):
        for arr in arrays:
            arr[dst : dst + b - a] = arr[a:b]
        dst += b - a
    for arr in arrays:
        arr.resize((dst,) + arr.shape[1:], refcheck=False)


def _runs_from_grid(grid: np.ndarray) -> list[tuple[int, int, int]]:
    """(first sample, last sample, grid position) of each gap-free run.

    Grid positions strictly increase (sample numbers plus the samples
    missing before them), so a grid that spans its length is one run.
    """
    if len(grid) == 0:
        return []
    if grid[-1] - grid[0] == len(grid) - 1:
        return [(0, len(grid) - 1, int(grid[0]))]
    cut = np.flatnonzero(np.diff(grid) != 1)
    starts = np.concatenate(([0], cut + 1))
    stops = np.concatenate((cut, [len(grid) - 1]))
    return [(int(a), int(b), int(grid[a])) for a, b in zip(starts, stops, strict=True)]


@verbose
def load_streams(
    fname: str | PathLike,
    *,
    select=None,
    windows=None,
    synchronize_clocks: bool = True,
    dejitter_timestamps: bool = True,
    find_dropouts: bool = True,
    handle_clock_resets: bool = True,
    jitter_break_threshold_seconds: float = 1.0,
    jitter_break_threshold_samples: int = 500,
    window_margin: float = 0.01,
    samples: bool = True,
    verbose=None,
) -> list[dict]:
    """Load the streams of an XDF file, clock-synchronised and dejittered.

    Parameters
    ----------
    fname : path-like
        The XDF file. A file without footer (recorder killed), or whose last
        chunk is cut off, still loads (with a warning). So does a damaged
        file: damaged chunks are skipped or salvaged and out-of-line
        timestamps re-derived (see :func:`~stimtrain.xdf.file.index_xdf`
        and :func:`~stimtrain.xdf.file.read_samples`), with one
        warning saying what was skipped, where, and how many samples it cost.
    select : str | int | dict | list | None
        Streams to load: names or types (str), stream ids (int) or dicts of
        header fields that must all match (as pyxdf's ``select_streams``).
        ``None`` loads all. The sample payloads of other streams are skipped
        without being read.
    windows : array-like, shape (n_windows, 2) | None
        Load only samples whose (synchronised) time lies in one of these
        ``[start, stop]`` windows (LSL seconds). Chunks outside every window
        are not read.
    synchronize_clocks : bool
        Map every stream to the recorder's clock with a robust linear fit of
        its clock offsets.
    dejitter_timestamps : bool
        Replace the timestamps of regular streams by one line per segment.
    find_dropouts : bool
        Keep dropouts shorter than the break threshold as gaps (pyxdf smears
        them over the segment); ``False`` reproduces pyxdf exactly.
    handle_clock_resets : bool
        Split clock offsets at clock resets.
    jitter_break_threshold_seconds, jitter_break_threshold_samples : float, int
        A segment ends at a gap longer than both (pyxdf's defaults).
    window_margin : float
        Extra time (s) read around each window before the exact cut, to cover
        the jitter of the raw timestamps (chunks are selected by their first
        timestamp plus the nominal interval). A warning says when a window
        edge may have been missed because the jitter is larger.
    samples : bool
        ``False`` skips the numeric streams' values where the file is intact
        (their ``time_series`` then has shape ``(n_samples, 0)``): the
        timestamps, segments and timing of an hour-long recording without
        its gigabytes of samples. A damaged file is read whole either way.
    %(verbose)s

    Returns
    -------
    streams : list of dict
        In pyxdf's form: ``info`` (header fields as lists of text, plus
        ``stream_id``, ``effective_srate``, ``segments``, ``clock_segments``),
        ``footer`` (if any), ``time_series`` (numeric streams as an
        ``(n_samples, n_channels)`` array of the stream's own dtype, string
        streams as a list of lists), ``time_stamps``, ``clock_times``,
        ``clock_values``; and ``timing`` (dropouts, gaps, per-segment rates,
        gap-free runs, clock fit; see :func:`timing_diagnostics`).
    """
    index = index_xdf(fname)
    logger.info(f"Reading {index.path}")
    if not index.streams:
        raise XdfError(f"{index.path} holds no readable stream header")
    ids = index.select(select)
    if select is not None and not ids:
        available = [(s.name, s.type) for s in index.streams.values()]
        raise ValueError(
            f"No stream of {index.path} matches select={select!r}; "
            f"streams (name, type): {available}"
        )
    missing_footer = [
        index.streams[i].name for i in ids if index.streams[i].footer is None
    ]
    if missing_footer or index.truncated:
        warn(
            f"{index.path.name}: no stream footer for {missing_footer} "
            f"{'and the last chunk is cut off ' if index.truncated else ''}"
            "(the recorder did not finish); loading what was written"
        )
    fits = {}
    for sid in ids:
        stream = index.streams[sid]
        fits[sid] = None
        if synchronize_clocks:
            times, values = _valid_offsets(stream)
            dropped = _extra_samples(stream) and corrupted_last_offset(times, values)
            if dropped:
                warn(f"Stream {sid}: dropping a corrupt last clock offset (pylsl#67)")
                times, values = times[:-1], values[:-1]
            fits[sid] = clock_fit(
                times, values, handle_clock_resets=handle_clock_resets
            )
            if fits[sid] is not None:
                fits[sid].dropped_last = dropped
    row_filter = None
    if windows is not None:
        w_starts, w_stops = _merge_windows(windows, window_margin)
        estimated = {sid: index.streams[sid].estimated_times() for sid in ids}

        def row_filter(sid, chunk, numbers):
            stream = index.streams[sid]
            if stream.nominal_srate <= 0:
                return slice(None)
            firsts, starts = estimated[sid]
            t = firsts[chunk] + (numbers - starts[chunk]) * stream.tdiff
            apply_clock_fit(t, fits[sid])
            return _in_windows(t, w_starts, w_stops)

    fast = (
        read_fast(index, ids, background=True, values=samples)
        if row_filter is None
        else None
    )
    if fast is not None:
        # The values are copied by a thread while the timestamps are
        # corrected here: waited for before anything uses them.
        samples, wait = fast
    else:
        samples, wait = read_samples(index, ids, row_filter), lambda: None
    if any(fit is not None and fit.dropped_last for fit in fits.values()):
        wait()  # pylsl#67: _assemble drops the extra samples' values
    summary = index.damage_summary(samples)
    if summary is not None:
        # One warning per file: what was skipped, where, and what it cost.
        warn(summary)
    out = []
    for sid in ids:
        out.append(
            _assemble(
                index.streams[sid],
                samples[sid],
                fits[sid],
                dejitter_timestamps=dejitter_timestamps,
                find_dropouts=find_dropouts,
                break_seconds=jitter_break_threshold_seconds,
                break_samples=jitter_break_threshold_samples,
            )
        )
    wait()
    if windows is not None:
        starts, stops = _merge_windows(windows)
        for sid, stream in zip(ids, out, strict=True):
            _check_edges(stream, index.streams[sid], starts, stops, window_margin)
            keep = _in_windows(stream["time_stamps"], starts, stops)
            if keep.all():
                continue
            timing = stream["timing"]
            kept = np.flatnonzero(keep)
            # Positions of segments and dropouts, renumbered over kept samples.
            segments = [
                (
                    int(np.searchsorted(kept, a)),
                    int(np.searchsorted(kept, b, "right")) - 1,
                )
                for a, b in stream["info"]["segments"]
            ]
            stream["info"]["segments"] = [(a, b) for a, b in segments if b >= a]
            timing["dropouts"] = [
                (int(np.searchsorted(kept, k)), m)
                for k, m in timing["dropouts"]
                if np.searchsorted(kept, k) < len(kept)
            ]
            if isinstance(stream["time_series"], list):
                stream["time_series"] = [stream["time_series"][k] for k in kept]
                stream["time_stamps"] = stream["time_stamps"][keep]
                timing["grid"] = timing["grid"][keep]
                timing["sample_index"] = None
            else:
                arrays = [stream["time_series"], stream["time_stamps"]]
                arrays += [timing["sample_index"], timing["grid"]]
                _compact(arrays, keep)
            timing["runs"] = _runs_from_grid(timing["grid"])
    return out


def _check_edges(stream: dict, sindex, starts, stops, margin: float) -> None:
    """Warn if a sample just outside what was read may lie inside a window."""
    numbers = stream["timing"].get("sample_index")
    ts = stream["time_stamps"]
    if numbers is None or sindex.nominal_srate <= 0 or len(ts) == 0:
        return
    tdiff, n = sindex.tdiff, len(ts)
    # The sample before the first one read at each window start ...
    j = np.minimum(np.searchsorted(ts, starts), n - 1)
    unread = (j == 0) | (numbers[j] - numbers[np.maximum(j - 1, 0)] != 1)
    early = unread & (numbers[j] > 0) & (ts[j] - tdiff >= starts) & (ts[j] <= stops)
    # ... and the one after the last sample read at each window stop.
    k = np.maximum(np.searchsorted(ts, stops, side="right") - 1, 0)
    unread = (k == n - 1) | (numbers[np.minimum(k + 1, n - 1)] - numbers[k] != 1)
    last = sindex.n_samples - 1
    late = unread & (numbers[k] < last) & (ts[k] + tdiff <= stops) & (ts[k] >= starts)
    if early.any() or late.any():
        warn(
            f"Stream {sindex.stream_id}: {int(early.sum() + late.sum())} window "
            f"edge(s) may miss samples: the timestamps jitter more than "
            f"window_margin={margin} s; increase it"
        )


def _valid_offsets(stream) -> tuple[list[float], list[float]]:
    """The stream's clock offsets without the ones that were never measured.

    The LabRecorder library writes an offset even when its time-correction
    query timed out, with an uninitialised time such as 6.9e-310 s; pyxdf
    fits it as a clock reset.
    """
    times, values = [], []
    for t, v in zip(stream.clock_times, stream.clock_values, strict=True):
        if np.isfinite(t) and np.isfinite(v) and abs(t) > 1e-300:
            times.append(t)
            values.append(v)
    if len(times) < len(stream.clock_times):
        warn(
            f"Stream {stream.stream_id}: ignoring "
            f"{len(stream.clock_times) - len(times)} unmeasured clock offset(s)"
        )
    return times, values


def _extra_samples(stream) -> bool:
    """More samples than the footer's count (evidence for pylsl#67)."""
    footer = (stream.footer or {}).get("info") or {}
    count = (footer.get("sample_count") or [None])[0]
    return count is not None and stream.n_samples > int(count)


def _assemble(
    stream,
    samples,
    fit,
    *,
    dejitter_timestamps: bool,
    find_dropouts: bool,
    break_seconds: float,
    break_samples: int,
) -> dict:
    """One pyxdf-style stream dict from decoded samples."""
    values, stamps, numbers = samples.values, samples.stamps, samples.index
    footer = (stream.footer or {}).get("info") or {}
    count = (footer.get("sample_count") or [None])[0]
    if count is not None and fit is not None and fit.dropped_last:
        # pylsl#67: the dropped offset came with extra samples; drop them too.
        count = int(count)
        keep = (np.arange(len(stamps)) if numbers is None else numbers) < count
        if not keep.all():
            values = (
                values[: int(keep.sum())] if isinstance(values, list) else values[keep]
            )
            stamps = stamps[keep]
            numbers = None if numbers is None else numbers[keep]
    if numbers is not None and stream.nominal_srate > 0 and len(stamps):
        # Time windows: the chunks' first timestamps anchor the fit between
        # the windows that were read.
        firsts = np.asarray(stream.chunk_first_time, float)
        n = np.asarray(stream.chunk_nsamples, np.int64)
        chunk_starts = np.concatenate(([0], np.cumsum(n)[:-1]))
        ok = np.isfinite(firsts) & ~np.isin(chunk_starts, numbers)
        all_idx = np.concatenate((numbers, chunk_starts[ok]))
        all_t = np.concatenate((stamps, firsts[ok]))
        order = np.argsort(all_idx, kind="stable")
        all_idx, all_t = all_idx[order], all_t[order]
        clock_segments = apply_clock_fit(all_t, fit)
        where = np.searchsorted(all_idx, numbers)
    else:
        all_idx, all_t, where = None, stamps, None
        clock_segments = apply_clock_fit(stamps, fit)
    timing: dict = dict(
        dropouts=[],
        gaps=[],
        segment_srates=[],
        sample_index=numbers,
        n_cut=samples.n_cut,
        n_lost=samples.n_lost,
        bad_stamps=samples.bad_stamps,
        truncated=stream.truncated,
        clock_fit=fit,
    )
    n = len(all_t)
    srate = stream.nominal_srate
    can_drop = _can_drop_samples(stream.header)
    if srate > 0 and n and dejitter_timestamps and not can_drop:
        result = dejitter(
            all_t,
            srate,
            index=all_idx,
            break_seconds=break_seconds,
            break_samples=break_samples,
            find_dropouts=find_dropouts,
        )
        segments, effective, grid = result.segments, result.effective_srate, result.grid
        timing.update(
            dropouts=result.dropouts,
            gaps=result.gaps,
            segment_srates=result.segment_srates,
        )
    else:
        segments = [(0, n - 1)] if n else []
        effective = 0.0
        if srate > 0 and n > 1 and all_t[-1] > all_t[0]:
            effective = (n - 1) / (all_t[-1] - all_t[0])
        grid = np.arange(n) if all_idx is None else all_idx.copy()
    if where is not None:
        # Back from the anchored set to the samples read.
        keep_seg = [(int(a), int(b)) for a, b in segments]
        stamps = all_t[where]
        grid = grid[where]
        segments = _map_segments(keep_seg, where)
        timing["dropouts"] = [
            (int(np.searchsorted(where, k)), m) for k, m in timing["dropouts"]
        ]
    else:
        stamps = all_t
    timing["grid"] = grid
    timing["runs"] = _runs_from_grid(grid)
    header = dict(stream.header)
    info = dict(header.get("info") or {})
    info["stream_id"] = stream.stream_id
    info["effective_srate"] = effective
    info["segments"] = segments
    info["clock_segments"] = clock_segments if where is None else []
    header["info"] = info
    if stream.footer is not None:
        header["footer"] = stream.footer
    header.update(
        time_series=values,
        time_stamps=stamps,
        # The offsets used (as pyxdf: without a corrupt last one; unlike
        # pyxdf: without unmeasured ones).
        clock_times=[float(t) for t in (fit or stream).clock_times],
        clock_values=[float(v) for v in (fit or stream).clock_values],
        timing=timing,
    )
    return header


def _map_segments(segments, where) -> list[tuple[int, int]]:
    """Segments over an anchored sample set, mapped to the samples read."""
    out = []
    for a, b in segments:
        i0, i1 = np.searchsorted(where, a), np.searchsorted(where, b, side="right") - 1
        if i1 >= i0:
            out.append((int(i0), int(i1)))
    return out


def _can_drop_samples(header: dict) -> bool:
    """The stream declares desc/synchronization/can_drop_samples = true."""
    try:
        sync = header["info"]["desc"][0]["synchronization"][0]
        return str(sync["can_drop_samples"][0]).lower() == "true"
    except (KeyError, IndexError, TypeError):
        return False
