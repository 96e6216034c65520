"""Reading the samples of chosen streams: the fast path for intact files, the
careful chunk-by-chunk path (salvage, time windows) otherwise, then the
timestamps checked and completed.

Timestamps are returned as stored (sender's clock, no synchronisation): see
:mod:`stimtrain.xdf.clock`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .clock import diff_bounds
from .decode import _decode_numeric, _decode_strings, _gather, deduce_timestamps
from .fast import read_intact
from .format import FORMATS
from .salvage import _note_salvage, _salvage_numeric, _salvage_strings
from .table import StreamIndex, XdfIndex


@dataclass
class StreamSamples:
    """Decoded samples of one stream, timestamps as stored in the file."""

    values: np.ndarray | list  # (n, n_channels) array, or list of lists of str
    stamps: np.ndarray  # raw timestamps (sender's clock), deduced ones filled in
    index: np.ndarray | None  # sample numbers in the stream (None: all samples)
    n_cut: int = 0  # announced samples missing from a cut-off last chunk
    n_lost: int = 0  # samples lost in damaged chunks (announced, not read)
    bad_stamps: int = 0  # timestamps out of line, re-derived (or dropped)


def read_samples(
    index: XdfIndex,
    stream_ids: list[int],
    row_filter: Callable[[int, int, np.ndarray], np.ndarray | slice] | None = None,
) -> dict[int, StreamSamples]:
    """Decode the samples of the given streams.

    Parameters
    ----------
    index : XdfIndex
        From :func:`index_xdf`.
    stream_ids : list of int
        Streams to decode; the payloads of the others are never read.
    row_filter : callable | None
        For regular numeric streams, ``row_filter(stream_id, chunk_number,
        sample_numbers)`` returns which samples of a chunk to keep (a boolean
        mask or a slice); a chunk whose mask is all False is not read. Used
        for time windows. ``None`` keeps everything.

    Returns
    -------
    samples : dict of int to StreamSamples
        Keyed by stream id. A damaged chunk gives the samples that can be
        read in it (see :func:`index_xdf`); each damaged stretch is added to
        ``index.damage``. Timestamps that jump backwards, or far ahead and
        back, are re-derived from their neighbours at the nominal rate (an
        irregular stream's sample with such a timestamp is dropped); they are
        counted in ``index.bad_stamps``.
    """
    if row_filter is None:
        fast = read_fast(index, stream_ids)
        if fast is not None:
            return fast[0]
    plans = {}
    for sid in stream_ids:
        stream = index.streams[sid]
        n = np.asarray(stream.chunk_nsamples, np.int64)
        starts = np.concatenate(([0], np.cumsum(n))).astype(np.int64)
        masks: list = [slice(None)] * len(n)
        if row_filter is not None and stream.channel_format != "string":
            masks = [
                row_filter(sid, c, np.arange(starts[c], starts[c + 1]))
                for c in range(len(n))
            ]
        plans[sid] = (stream, starts, masks)
    jobs = sorted(
        (stream.chunk_offset[c], sid, c)
        for sid, (stream, _, masks) in plans.items()
        for c in range(len(stream.chunk_offset))
        if not (isinstance(masks[c], np.ndarray) and not masks[c].any())
    )
    damage_at = sorted(d.offset for d in index.damage)
    out: dict[int, dict] = {}
    for sid, (stream, starts, masks) in plans.items():
        kept = sum(
            int(starts[c + 1] - starts[c])
            if isinstance(masks[c], slice)
            else int(np.count_nonzero(masks[c]))
            for c in range(len(masks))
        )
        if stream.channel_format == "string":
            state = dict(values=[], stamps=[], flags=[], index=None, fill=0)
        else:
            state = dict(
                values=np.empty(
                    (kept, stream.channel_count), FORMATS[stream.channel_format]
                ),
                stamps=np.empty(kept),
                flags=np.empty(kept, np.uint8),
                index=None if row_filter is None else np.empty(kept, np.int64),
                fill=0,
            )
        state.update(n_cut=0, n_lost=0, breaks=[], skips={}, last_end=None)
        out[sid] = state
    if not jobs:
        return {sid: _finish(index, index.streams[sid], st) for sid, st in out.items()}
    largest = max(index.streams[sid].chunk_nbytes[c] for _, sid, c in jobs)
    buf = bytearray(largest)
    view = memoryview(buf)
    with open(index.path, "rb") as f:
        for offset, sid, c in jobs:
            stream, starts, masks = plans[sid]
            state = out[sid]
            nbytes = stream.chunk_nbytes[c]
            f.seek(offset)
            got = f.readinto(view[:nbytes])
            data = view[:got]
            n = stream.chunk_nsamples[c]
            damaged = stream.chunk_damaged[c]
            # Samples lost before this chunk (damage since the last one read):
            # the first one's timestamp cannot be deduced from its predecessor.
            last = state["last_end"]
            lo = bisect_left(damage_at, 0 if last is None else last)
            if lo < len(damage_at) and damage_at[lo] < offset:
                state["breaks"].append(state["fill"])
            state["last_end"] = offset + nbytes
            if stream.channel_format == "string":
                values, stamps, flags, used = _decode_strings(
                    data, n, stream.channel_count
                )
                if damaged or (
                    not stream.chunk_cut[c] and (len(values) != n or used != got)
                ):
                    s = _salvage_strings(data, n, stream.channel_count)
                    values, stamps = s.rows, np.asarray(s.stamps, float)
                    flags = np.asarray(s.flags, np.uint8)
                    _note_salvage(index, state, sid, offset, s, n, len(values))
                else:
                    state["n_cut"] += n - len(values)
                state["values"].extend(values)
                state["stamps"].append(stamps)
                state["flags"].append(flags)
                state["fill"] += len(values)
                continue
            dtype = FORMATS[stream.channel_format]
            decoded = None
            if not damaged:
                try:
                    decoded = _decode_numeric(
                        data, n, stream.channel_count, dtype, stream.chunk_cut[c]
                    )
                except ValueError:
                    decoded = None
            if decoded is None:
                record = 1 + stream.channel_count * dtype.itemsize
                known = c not in stream.guessed_counts
                s = _salvage_numeric(data, n, record, known)
                decoded = _gather(
                    data, s.positions, s.flags, stream.channel_count, dtype
                )
                _note_salvage(index, state, sid, offset, s, n, len(s.positions), known)
            values, stamps, flags = decoded
            m = len(flags)
            if not damaged:
                state["n_cut"] += n - m if stream.chunk_cut[c] else 0
            mask = masks[c]
            if isinstance(mask, np.ndarray):
                mask = mask[:m]
                values, stamps, flags = values[mask], stamps[mask], flags[mask]
                numbers = np.arange(starts[c], starts[c] + m)[mask]
            else:
                numbers = np.arange(starts[c], starts[c] + m)
            k, m = state["fill"], len(flags)
            state["values"][k : k + m] = values
            state["stamps"][k : k + m] = stamps
            state["flags"][k : k + m] = flags
            if state["index"] is not None:
                state["index"][k : k + m] = numbers
            state["fill"] = k + m
    return {sid: _finish(index, index.streams[sid], st) for sid, st in out.items()}


def read_fast(
    index: XdfIndex,
    stream_ids: list[int],
    background: bool = False,
    values: bool = True,
) -> tuple[dict[int, StreamSamples], Callable[[], None]] | None:
    """Whole streams of an intact file by :mod:`.fast`, or ``None``.

    ``None`` when the file needs the careful reader (damage, or a chunk that
    does not decode exactly). Otherwise the samples, as
    :func:`read_samples` gives them, and a function that waits until their
    values are copied: with ``background``, a thread copies them while the
    caller works on the timestamps. ``values=False``: the numeric streams'
    timestamps only (values of shape ``(n_samples, 0)``).
    """
    if not _intact(index, stream_ids):
        return None
    states = read_intact(index, stream_ids, background, values)
    if states is None:
        return None
    samples = {
        sid: _finish(index, index.streams[sid], states[sid]) for sid in stream_ids
    }
    wait = next(iter(states.values()))["wait"] if states else lambda: None
    return samples, wait


def _intact(index: XdfIndex, stream_ids: list[int]) -> bool:
    """No damage anywhere and no cut or damaged chunk in these streams."""
    if index.damage or index.truncated:
        return False
    for sid in stream_ids:
        s = index.streams[sid]
        if s.truncated or s.guessed_counts or any(s.chunk_cut) or any(s.chunk_damaged):
            return False
    return True


def _finish(index: XdfIndex, stream: StreamIndex, state: dict) -> StreamSamples:
    breaks = state["breaks"]
    if stream.channel_format == "string":
        stamps = np.concatenate(state["stamps"]) if state["stamps"] else np.zeros(0)
        flags = (
            np.concatenate(state["flags"]) if state["flags"] else np.zeros(0, np.uint8)
        )
        values, numbers = state["values"], None
    else:
        fill = state["fill"]
        values, stamps, flags, numbers = (
            state["values"],
            state["stamps"],
            state["flags"],
            state["index"],
        )
        if fill < len(stamps):
            # Fewer samples than announced (a cut or damaged chunk): shrink in
            # place.
            values.resize((fill, values.shape[1]), refcheck=False)
            stamps.resize(fill, refcheck=False)
            flags.resize(fill, refcheck=False)
            if numbers is not None:
                numbers.resize(fill, refcheck=False)
    bad = _bad_stamps(stamps, flags, numbers, stream.tdiff, breaks)
    n_bad = len(bad)
    if n_bad:
        index.bad_stamps[stream.stream_id] = (
            bad if numbers is None else numbers[bad]
        ).tolist()
        if stream.tdiff > 0:
            flags[bad] = 0  # missing: re-derived from the neighbours
            breaks = sorted(set(breaks) | {int(b) for b in bad if b == 0})
        else:
            keep = np.ones(len(flags), bool)
            keep[bad] = False
            stamps, flags = stamps[keep], flags[keep]
            if isinstance(values, list):
                values = [v for v, k in zip(values, keep, strict=True) if k]
            else:
                state.get("wait", lambda: None)()  # values copied in a thread
                values = values[keep]
            numbers = None if numbers is None else numbers[keep]
            breaks = []
    unplaced = []
    if breaks and stream.tdiff > 0:
        unplaced = _backfill(stamps, flags, numbers, breaks, stream.tdiff)
    if numbers is None:
        deduce_timestamps(stamps, flags, stream.tdiff)
        skips = state.get("skips", {})
        for r in sorted(unplaced):
            # No later timestamp: deduced forward, past the samples lost
            # there when their number is known (each shift carries on).
            stamps[r:] += skips.get(r, 0) * stream.tdiff
    else:
        _deduce_sparse(stream, stamps, flags, numbers)
    return StreamSamples(
        values, stamps, numbers, state["n_cut"], state["n_lost"], n_bad
    )


#: A timestamp further than this from its neighbours' line (s, and samples
#: at the nominal rate) is out of line; irregular streams: this far out of
#: order (s).
BAD_STAMP_SECONDS = 0.1
BAD_STAMP_SAMPLES = 20
BAD_ORDER_SECONDS = 1.0
_NEIGHBOURS = 5


def _bad_stamps(stamps, flags, numbers, tdiff: float, breaks=()) -> np.ndarray:
    """Samples whose stored timestamp cannot be right.

    A regular stream's timestamp is out of line when it lies more than
    ``max(BAD_STAMP_SECONDS, BAD_STAMP_SAMPLES / srate)`` off the nominal-rate
    line through both its previous and its next few stamped samples (so a
    real gap, a lasting step, is kept); an irregular stream's when it is more
    than ``BAD_ORDER_SECONDS`` before its previous ones' median or after its
    next ones'. Non-finite timestamps are always out of line. Fast when
    nothing is: one pass over the differences. Neighbours across a break
    (``breaks``: where samples were lost to damage) do not count: a sample
    whose neighbours were lost is judged by those on its own side only, and
    kept when it has none (its stamp is all that says where it belongs).
    """
    none = np.zeros(0, np.int64)
    stamped = int(np.count_nonzero(flags == 8))
    if stamped == 0:
        return none
    limit = max(BAD_STAMP_SECONDS, BAD_STAMP_SAMPLES * tdiff) if tdiff > 0 else None
    dense = numbers is None and stamped == len(flags)
    # Every sample stamped: no array of their numbers (8 bytes a sample).
    has = None if dense else np.flatnonzero(flags == 8)
    t = stamps if dense else stamps[has]
    if dense and tdiff > 0 and len(t) > 1:
        # The usual case without a full-size copy (x - tdiff is monotonic).
        lo, hi = diff_bounds(t)
        if lo - tdiff >= -limit and hi - tdiff <= limit and np.isfinite(t[0]):
            return none
    d = np.diff(t)
    if tdiff > 0:
        if dense:
            d -= tdiff
        else:
            k = has if numbers is None else numbers[has]
            d -= np.diff(k) * tdiff
    if len(d):
        lo, hi = d.min(), d.max()  # NaN in, NaN out: then the slow path
        if tdiff > 0 and lo >= -limit and hi <= limit and np.isfinite(t[0]):
            return none
        if tdiff <= 0 and lo >= -BAD_ORDER_SECONDS and np.isfinite(t).all():
            return none
    elif np.isfinite(t).all():
        return none
    if has is None:
        has = np.arange(len(flags))
    # Something is off: find which stamps, with their neighbours.
    if tdiff > 0:
        k = has if numbers is None else numbers[has]
        u = t - k * tdiff
    else:
        u = np.asarray(t, float)
        limit = BAD_ORDER_SECONDS
    with np.errstate(invalid="ignore"):
        odd = ~np.isfinite(d)
        odd |= (np.abs(d) > limit) if tdiff > 0 else (d < -limit)
    finite = np.isfinite(u)
    cand = np.flatnonzero(odd)
    idx = np.unique(np.concatenate((cand, cand + 1, np.flatnonzero(~finite))))
    # The stretch between breaks each stamped sample is in.
    seg = np.searchsorted(np.sort(np.asarray(list(breaks), np.int64)), has, "right")
    bad = []
    for j in idx.tolist():
        if not finite[j]:
            bad.append(j)
            continue
        a, b = max(j - _NEIGHBOURS, 0), j + 1 + _NEIGHBOURS
        left = u[a:j][seg[a:j] == seg[j]]
        right = u[j + 1 : b][seg[j + 1 : b] == seg[j]]
        left, right = left[np.isfinite(left)], right[np.isfinite(right)]
        if not len(left) and not len(right):
            continue
        if tdiff > 0:
            off_l = not len(left) or abs(u[j] - np.median(left)) > limit
            off_r = not len(right) or abs(u[j] - np.median(right)) > limit
            if off_l and off_r:
                bad.append(j)
        elif (len(left) and u[j] < np.median(left) - limit) or (
            len(right) and u[j] > np.median(right) + limit
        ):
            bad.append(j)
    return has[np.asarray(bad, np.int64)]


def _backfill(stamps, flags, numbers, breaks, tdiff: float) -> list[int]:
    """Timestamps of unstamped samples after lost ones, back from the next stamp.

    Returns the breaks with no stamped sample after them (left unplaced).
    """
    stamped = np.flatnonzero(flags == 8)
    unplaced = []
    for r in breaks:
        if r >= len(flags) or flags[r] == 8:
            continue
        g = np.searchsorted(stamped, r)
        if g >= len(stamped):
            unplaced.append(int(r))
            continue
        g = int(stamped[g])
        steps = (
            np.arange(g - r, 0, -1) if numbers is None else numbers[g] - numbers[r:g]
        )
        stamps[r:g] = stamps[g] - steps * tdiff
        flags[r:g] = 8
    return unplaced


def _deduce_sparse(stream: StreamIndex, stamps, flags, numbers) -> None:
    """Deduce timestamps when only some chunks were read (time windows).

    A sample without a timestamp whose predecessor was not read is placed
    from its chunk's first timestamp in the index (extrapolated at the
    nominal rate); the rest follow sequentially as in a full read.
    """
    if not len(flags) or np.all(flags == 8):
        return
    firsts, chunk_starts = stream.estimated_times()
    breaks = np.ones(len(numbers), bool)
    breaks[1:] = np.diff(numbers) != 1
    seeds = np.flatnonzero(breaks & (flags == 0))
    for k in seeds:
        c = np.searchsorted(chunk_starts, numbers[k], side="right") - 1
        stamps[k] = firsts[c] + (numbers[k] - chunk_starts[c]) * stream.tdiff
    flags = flags.copy()
    flags[seeds] = 8
    deduce_timestamps(stamps, flags, stream.tdiff)
