"""Clock synchronisation and dejittering of XDF timestamps.

The defaults and the arithmetic follow :func:`pyxdf.load_xdf` (1.17) where it
is right, so that timestamps agree with it to the bit: clock offsets are
fitted robustly (Huber loss, solved by ADMM; the offsets are split at clock
resets), and a regular stream is dejittered with one least-squares line per
segment, a segment ending where consecutive samples are more than
``max(break_seconds, break_samples / srate)`` apart.

Where pyxdf is wrong this module differs: a dropout shorter than the break
threshold (samples never sent, e.g. a 0.5 s radio dropout) is detected as a
lasting step in the timestamps and the line is fitted against the sample's
position on a gap-free grid, so the gap stays a gap instead of being smeared
over the whole segment.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger("stimtrain.xdf.clock")

__all__ = [
    "ClockFit",
    "Dejittered",
    "clock_fit",
    "apply_clock_fit",
    "corrupted_last_offset",
    "dejitter",
]


@dataclass
class ClockFit:
    """Linear maps from a sender's clock to the recorder's, one per clock range.

    ``ranges`` are inclusive index ranges into the clock offsets; ``coefs``
    hold (intercept, slope) for each: ``t_recorder = t + intercept + slope*t``.
    """

    clock_times: np.ndarray
    clock_values: np.ndarray
    ranges: list[tuple[int, int]] = field(default_factory=list)
    coefs: list[tuple[float, float]] = field(default_factory=list)
    dropped_last: bool = False  # a corrupt last offset was left out (pylsl#67)

    @property
    def residuals(self) -> np.ndarray:
        """Offsets minus the fitted line (s), per offset."""
        out = np.zeros(len(self.clock_times))
        for (a, b), (c0, c1) in zip(self.ranges, self.coefs, strict=True):
            t = self.clock_times[a : b + 1]
            out[a : b + 1] = self.clock_values[a : b + 1] - (c0 + c1 * t)
        return out


def _huber_admm(A: np.ndarray, y: np.ndarray, rho: float = 1.0, iters: int = 1000):
    """Minimise sum(huber(A @ x - y)) by ADMM (Boyd et al., 2011, sec. 6.1.1).

    The second column of ``A`` is shifted to start at 0 for conditioning, and
    the intercept shifted back at the end.
    """
    A = A.copy()
    shift = np.min(A[:, 1])
    A[:, 1] -= shift
    Aty = np.dot(A.T, y)
    lower = np.linalg.cholesky(np.dot(A.T, A))
    upper = lower.T
    z = np.zeros_like(y)
    u = z
    x = z
    keep, spill = rho / (1 + rho), 1 / (1 + rho)
    for _ in range(iters):
        x = np.linalg.solve(upper, np.linalg.solve(lower, Aty + np.dot(A.T, z - u)))
        d = np.dot(A, x) - y + u
        inv = np.zeros_like(d)
        np.divide(1, d, out=inv, where=d != 0)
        # Proximal step of the Huber loss: shrink large residuals towards 0.
        shrink = np.maximum(0, (1 - (1 + 1 / rho) * np.abs(inv)))
        z_next = keep * d + spill * shrink * d
        u_next = d - z_next
        if np.array_equal(z_next, z) and np.array_equal(u_next, u):
            # A fixed point, to the bit: every later iteration would repeat
            # this one (x depends on z and u only). Usually within 60.
            break
        z, u = z_next, u_next
    x[0] -= x[1] * shift
    return x


def _mad_outliers(diff: np.ndarray, n_stds: float, seconds: float) -> np.ndarray:
    """Entries far from the median both in MAD units and in seconds."""
    centred = diff - np.median(diff)
    mad = np.median(np.abs(centred)) + np.finfo(float).eps
    return (np.abs(centred / mad) > n_stds) & (np.abs(centred) > seconds)


def _ranges_from_breaks(breaks: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (start, stop) ranges of a sequence cut after each True."""
    cut = np.flatnonzero(breaks)
    starts = np.concatenate(([0], cut + 1))
    stops = np.concatenate((cut, [len(breaks)]))
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def _clock_reset_ranges(times, values, time_stds, time_s, value_stds, value_s):
    """Split the clock offsets where the sender's clock was reset."""
    dt, dv = np.diff(times), np.diff(values)
    resets = (dt < 0) | (
        _mad_outliers(dt, time_stds, time_s) & _mad_outliers(dv, value_stds, value_s)
    )
    return _ranges_from_breaks(resets)


def clock_fit(
    clock_times,
    clock_values,
    *,
    handle_clock_resets: bool = True,
    reset_threshold_stds: float = 5,
    reset_threshold_seconds: float = 5,
    reset_threshold_offset_stds: float = 10,
    reset_threshold_offset_seconds: float = 1,
    winsor_threshold: float = 0.0001,
) -> ClockFit | None:
    """Fit the recorded clock offsets of one stream.

    Parameters
    ----------
    clock_times, clock_values : array-like
        The ClockOffset chunks' collection times and offsets (s).
    handle_clock_resets : bool
        Split the offsets at clock resets and fit each range on its own.
    reset_threshold_stds, reset_threshold_seconds : float
        A reset delays an offset by this many MADs and seconds.
    reset_threshold_offset_stds, reset_threshold_offset_seconds : float
        And jumps the offset by this many MADs and seconds.
    winsor_threshold : float
        Offsets further than this (s) from the line count as outliers
        (Huber loss scale).

    Returns
    -------
    fit : ClockFit | None
        ``None`` if there are no offsets.
    """
    times = np.asarray(clock_times, float)
    values = np.asarray(clock_values, float)
    if len(times) == 0:
        return None
    if handle_clock_resets and len(times) > 1:
        ranges = _clock_reset_ranges(
            times,
            values,
            reset_threshold_stds,
            reset_threshold_seconds,
            reset_threshold_offset_stds,
            reset_threshold_offset_seconds,
        )
    else:
        ranges = [(0, len(times) - 1)]
    coefs = []
    for a, b in ranges:
        if a == b:
            coefs.append((values[a], 0))
            continue
        A = np.column_stack([np.ones(b + 1 - a), times[a : b + 1] / winsor_threshold])
        y = values[a : b + 1] / winsor_threshold
        try:
            x = _huber_admm(A, y)
            x[0] *= winsor_threshold
            coefs.append((x[0], x[1]))
        except np.linalg.LinAlgError:
            logger.warning("Clock offsets %s cannot be fitted; not corrected", (a, b))
            coefs.append((0, 0))
    return ClockFit(times, values, ranges, coefs)


#: Samples per block of element-wise work. Temporaries of a whole stream's
#: length (24 MB for 10 min at 5 kHz) would be kept by the C library's
#: allocator once freed (its threshold for returning memory rises to the
#: largest block freed, up to 32 MB), adding to the reader's peak memory.
BLOCK = 1 << 18


def _blocks(n: int, start: int = 0):
    """Slices of at most :data:`BLOCK` samples covering ``start .. start+n``."""
    for a in range(start, start + n, BLOCK):
        yield slice(a, min(a + BLOCK, start + n))


def diff_bounds(x: np.ndarray) -> tuple[float, float]:
    """``(min, max)`` of ``np.diff(x)``, block by block (no full-size copy)."""
    lo, hi = np.inf, -np.inf
    for part in _blocks(len(x) - 1):
        d = np.diff(x[part.start : part.stop + 1])
        lo, hi = np.minimum(lo, d.min()), np.maximum(hi, d.max())  # NaN stays
    return lo, hi


def apply_clock_fit(stamps: np.ndarray, fit: ClockFit | None) -> list[tuple[int, int]]:
    """Map timestamps (sorted, in place) to the recorder's clock.

    Returns the inclusive index ranges of the samples each clock range
    applied to (pyxdf's ``clock_segments``).
    """
    n = len(stamps)
    if fit is None or n == 0:
        return []
    if len(fit.ranges) == 1:
        c0, c1 = fit.coefs[0]
        for part in _blocks(n):  # small temporaries (see _blocks)
            stamps[part] += c0 + (c1 * stamps[part])
        return [(0, n - 1)]
    out = []
    start = 0
    times = fit.clock_times
    for (a, b), (c0, c1) in zip(fit.ranges, fit.coefs, strict=True):
        if b + 1 < len(times):
            # Samples up to the first one closer to the next range's first
            # offset than to this range's last one.
            rest = stamps[start:]
            closer = np.abs(rest - times[b]) < np.abs(rest - times[b + 1])
            stop = start + (len(closer) if closer.all() else int(np.argmin(closer)))
        else:
            stop = n
        if stop == start:
            logger.warning("No samples in clock offsets %s", (a, b))
            continue
        out.append((start, stop - 1))
        for part in _blocks(stop - start, start):
            stamps[part] += c0 + c1 * stamps[part]
        start = stop
    return out


def corrupted_last_offset(clock_times, clock_values) -> bool:
    """Whether the last clock offset looks like pylsl#67 garbage.

    Its interval is more than 10 median intervals, or its value more than 10
    robust standard deviations from the others.
    """
    times = np.asarray(clock_times, float)
    values = np.asarray(clock_values, float)
    if len(times) < 3:
        return False
    intervals = np.diff(times)
    typical = np.median(intervals[:-1])
    last = np.abs(intervals[-1])
    if typical > 0:
        ratio = last / typical
    else:
        ratio = np.inf if last > 0 else 1.0
    centre = np.median(values[:-1])
    mad = np.median(np.abs(values[:-1] - centre))
    z = np.abs(values[-1] - centre) / (1.4826 * mad) if mad > np.finfo(float).eps else 0
    return bool(ratio > 10.0 or z > 10.0)


@dataclass
class Dejittered:
    """What :func:`dejitter` found.

    Indices refer to the timestamps passed in. ``grid`` is every sample's
    position on one gap-free sample grid (dropouts and gaps leave holes).
    """

    segments: list[tuple[int, int]]  # inclusive, split at breaks (pyxdf rule)
    dropouts: list[tuple[int, int]]  # (first sample after it, samples missing)
    gaps: list[int]  # samples missing between consecutive segments
    grid: np.ndarray
    segment_srates: list[float]
    effective_srate: float


def _find_dropouts(
    idx: np.ndarray,
    ts: np.ndarray,
    tdiff: float,
    threshold: float,
    window: int,
) -> list[tuple[int, int]]:
    """Dropouts in one segment: lasting steps of the timestamps.

    A candidate is a step between consecutive samples that is more than
    ``threshold`` (s) longer than expected; it is a dropout when the median
    time residual after it, over ``window`` samples, stays that much above
    the median before it (a late chunk that is followed by on-time ones is
    jitter, not a dropout). Returns (position after the dropout, samples
    missing) with positions into ``ts``.
    """
    if len(ts) < 3:
        return []
    excess = np.diff(ts)
    excess -= np.diff(idx) * tdiff
    cand = np.flatnonzero(excess > threshold)
    if cand.size == 0:
        return []
    resid = (ts - ts[0]) - (idx - idx[0]) * tdiff
    found = []
    for i in cand[np.argsort(-excess[cand], kind="stable")]:
        lo = np.searchsorted(idx, idx[i] - window)
        hi = np.searchsorted(idx, idx[i + 1] + window, side="right")
        before, after = resid[lo : i + 1], resid[i + 1 : hi]
        step = np.median(before[:: max(1, len(before) // 1000)])
        step = np.median(after[:: max(1, len(after) // 1000)]) - step
        missing = int(round(step / tdiff))
        if step > threshold and missing >= 1:
            found.append((int(i) + 1, missing))
            resid[i + 1 :] -= missing * tdiff
    return sorted(found)


def _line_fit(pos: np.ndarray, t: np.ndarray, replace: bool) -> float:
    """Least-squares line of ``t`` against ``pos``; return the slope.

    Centred sums instead of a design matrix: a few vectors of memory, not a
    copy of the samples' (n, 2) matrix. With ``replace``, ``t`` is
    overwritten by the line.
    """
    if len(t) < 2:
        return float("nan")
    x = (pos - pos[0]).astype(float)
    x_mean = x.mean()
    x -= x_mean
    t_ref = t[0]
    y_mean = float(np.mean(t - t_ref))
    slope = float(np.dot(x, t - t_ref) / np.dot(x, x))
    if replace:
        x *= slope
        x += t_ref + y_mean
        t[:] = x
    return slope


def dejitter(
    stamps: np.ndarray,
    srate: float,
    *,
    index: np.ndarray | None = None,
    break_seconds: float = 1.0,
    break_samples: int = 500,
    find_dropouts: bool = True,
    dropout_seconds: float = 0.005,
    dropout_window_seconds: float = 1.0,
    fit: bool = True,
) -> Dejittered:
    """Dejitter the timestamps of a regular stream in place.

    Parameters
    ----------
    stamps : ndarray, shape (n,)
        Timestamps (clock-synchronised), increasing. Overwritten by the fit.
    srate : float
        The nominal sampling rate (> 0).
    index : ndarray of int | None
        Sample numbers of ``stamps`` when they are a subset of the stream
        (time windows); ``None`` means ``0 .. n-1``.
    break_seconds, break_samples : float, int
        A segment ends where two consecutive samples are more than
        ``max(break_seconds, break_samples / srate)`` apart.
    find_dropouts : bool
        Look for dropouts shorter than the break threshold and keep them as
        gaps (``False`` reproduces pyxdf, which smears them).
    dropout_seconds : float
        The smallest lasting timestamp step taken as a dropout.
    dropout_window_seconds : float
        How long a step must last to be a dropout rather than jitter.
    fit : bool
        Replace the timestamps by the per-segment lines (``False`` only finds
        segments, dropouts and rates).

    Returns
    -------
    result : Dejittered
    """
    n = len(stamps)
    tdiff = 1.0 / srate
    dense = index is None
    limit = max(break_seconds, break_samples * tdiff)
    cand = None  # dropout candidates: steps longer than nominal + threshold
    if dense:
        # One difference array for breaks and dropout candidates, and no
        # copy of the sample numbers: memory stays a few vectors.
        lo, hi = diff_bounds(stamps) if n > 1 else (0.0, 0.0)
        breaks = None  # the usual case, told by two reductions
        if not (-limit <= lo and hi <= limit):
            step = np.diff(stamps)
            breaks = (step > limit) | (step < -limit)
        cand = np.zeros(0, np.int64)
        # x - tdiff is monotonic in x: the largest step says if any is over.
        if find_dropouts and (hi - tdiff > dropout_seconds or not np.isfinite(hi)):
            step = np.diff(stamps)
            step -= tdiff
            cand = np.flatnonzero(step > dropout_seconds)
        step = None
        idx_all = None
    else:
        idx_all = np.asarray(index, np.int64)
        span = np.diff(stamps) - (np.diff(idx_all) - 1) * tdiff
        breaks = np.abs(span) > limit
    if breaks is None:
        segments = [(0, n - 1)] if n else []
    else:
        segments = _ranges_from_breaks(breaks) if n else []
    del breaks
    dropouts, gaps, rates = [], [], []
    window = int(round(dropout_window_seconds * srate))
    shift = 0
    last_grid = 0  # grid position of the previous segment's last sample
    placed = []  # (first, last, extra or None, shift) per segment
    spare = None
    for seg_no, (a, b) in enumerate(segments):
        first = a if dense else int(idx_all[a])
        if seg_no:
            # Samples missing in the break, at the previous segment's rate.
            prev_rate = rates[-1] if np.isfinite(rates[-1]) else srate
            span = stamps[a] - stamps[a - 1]
            expected = first + shift - last_grid
            missing = max(int(round(span * prev_rate)) - int(expected), 0)
            gaps.append(missing)
            shift += missing
        found = []
        if find_dropouts and (
            not dense or np.any((cand >= a) & (cand < b))  # steps inside it
        ):
            idx = np.arange(a, b + 1) if dense else idx_all[a : b + 1]
            found = _find_dropouts(
                idx, stamps[a : b + 1], tdiff, dropout_seconds, window
            )
        extra = None
        if found:
            extra = np.zeros(b + 1 - a, np.int64)
            for k, missing in found:
                extra[k:] += missing
                dropouts.append((a + k, missing))
        if dense and not found:
            # pyxdf's fit (the same least-squares solver on the same design
            # matrix, values and operations), so the result matches it to the
            # bit; sample numbers are exact in float64. The design matrix and
            # lstsq's own copies are the largest memory of a read.
            X = np.empty((b + 1 - a, 2))
            X[:, 0] = 1.0
            # a .. b, exact integers, without a temporary arange.
            np.add.accumulate(np.broadcast_to(1.0, b + 1 - a), out=X[:, 1])
            X[:, 1] += a - 1
            mapping = np.linalg.lstsq(X, stamps[a : b + 1, np.newaxis], rcond=-1)[0]
            intercept, slope = mapping[0, 0], mapping[1, 0]
            if fit:
                seg = stamps[a : b + 1]
                np.multiply(X[:, 1], slope, out=seg)
                seg += intercept
            if len(segments) == 1:
                spare = X  # its memory becomes the grid (below)
            del X
            slope = float(slope)
        else:
            pos = np.arange(a, b + 1) if dense else idx_all[a : b + 1]
            if extra is not None:
                pos = pos + extra
            slope = _line_fit(pos, stamps[a : b + 1], fit)
        placed.append((a, b, extra, shift))
        last_grid = (b if dense else int(idx_all[b])) + shift
        if extra is not None:
            last_grid += int(extra[-1])
            shift += int(extra[-1])
        rates.append(1.0 / slope if b > a and slope > 0 else float("nan"))
    # Every sample's place on the gap-free grid, made last (after the fits'
    # temporary arrays are gone).
    if spare is not None:
        # Shrunk in place (realloc) and filled with 0 .. n-1 without a
        # temporary: no new memory while the other streams are read.
        spare.resize(n, refcheck=False)
        grid = spare.view(np.int64)
        np.add.accumulate(np.broadcast_to(np.int64(1), n), out=grid)
        grid -= 1
    else:
        grid = np.arange(n, dtype=np.int64) if dense else idx_all.astype(np.int64)
    for a, b, extra, moved in placed:
        grid[a : b + 1] += moved
        if extra is not None:
            grid[a : b + 1] += extra
    effective = 0.0
    if segments:
        starts = np.asarray([a for a, _ in segments])
        stops = np.asarray([b for _, b in segments])
        counts = (grid[stops] + 1) - grid[starts]
        if np.any(counts > 1):
            durations = stamps[stops] - stamps[starts]
            effective = np.sum(counts - 1) / np.sum(durations)
        if srate and abs(srate - effective) / srate > 0.1:
            logger.warning(
                "Effective sampling rate %.4f Hz differs from the nominal %.4f Hz",
                effective,
                srate,
            )
    return Dejittered(
        segments=segments,
        dropouts=dropouts,
        gaps=gaps,
        grid=grid,
        segment_srates=rates,
        effective_srate=float(effective),
    )
