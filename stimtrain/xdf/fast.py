"""Decoding the samples of an intact XDF file at the speed of reading its bytes.

Every numeric stream's output arrays are sized once from the chunk index
(the sample counts) and each chunk is copied straight into its slice, from a
memory map of the file opened a window at a time (so the mapped pages never
add up to the file's size). No per-sample Python objects are made:

- A chunk's stamped samples are counted by its length alone (a sample takes
  ``1 + values`` or ``9 + values`` bytes): all or none stamped gives the
  layout at once; one stamped is taken to be the first. Their flags are
  checked when the chunk is copied.
- Other chunks (some samples stamped, some not, as LabRecorder writes a
  regular stream whose stamps are off the nominal step by an ulp) are walked
  flag by flag, all of them at once: one vectorised step moves every chunk's
  walker to its next sample, so the number of numpy calls is the length of
  the longest chunk, not the number of samples. A few long chunks left over
  are walked in C through Python's iterators (see :func:`_walk_one`).
- Chunks of fewer than :data:`BATCH_BELOW` samples are gathered together,
  a window at a time, with one fancy index per window.

Anything that does not decode exactly (a flag other than 0 or 8, samples
that do not fill their chunk) makes :func:`read_intact` give up, and the
careful reader (:mod:`stimtrain.xdf.file`) reads the file instead, salvaging
what it can.
"""

from __future__ import annotations

import mmap
import operator
import os
from functools import partial
from itertools import islice

import numpy as np

from .decode import _decode_strings
from .format import FORMATS

__all__ = ["read_intact"]

#: Chunks with fewer samples are copied a window at a time by one fancy
#: index (a per-chunk structured view costs about 10 µs of calls).
BATCH_BELOW = 256
#: Bytes mapped at a time while copying (the mapping counts in the resident
#: memory until it is closed).
WINDOW = 8 << 20
#: Below this many chunks still walking, the vectorised walk's per-step calls
#: cost more than walking the rest of each chunk alone.
WALK_TOGETHER = 24


class _Undecodable(Exception):
    """A chunk that the fast reader cannot decode exactly."""


def read_intact(index, stream_ids: list[int]) -> dict[int, dict] | None:
    """Decode whole streams of an intact file, or ``None`` to read carefully.

    Parameters
    ----------
    index : XdfIndex
        From :func:`~stimtrain.xdf.file.index_xdf`, with no damage.
    stream_ids : list of int
        Streams to decode.

    Returns
    -------
    states : dict of int to dict | None
        Per stream, in the form :func:`~stimtrain.xdf.file.read_samples`
        finishes: ``values``, ``stamps`` (as stored, zero where not
        stamped), ``flags`` (8: stamped, 0: deduced), ``fill`` and the
        counts of lost samples (none). ``None`` when a chunk does not decode
        exactly.
    """
    size = os.path.getsize(index.path)
    numeric = [
        sid for sid in stream_ids if index.streams[sid].channel_format != "string"
    ]
    out: dict[int, dict] = {}
    with open(index.path, "rb") as f:
        try:
            flags = {sid: _flags(f, size, index.streams[sid]) for sid in numeric}
            for sid in numeric:
                stream = index.streams[sid]
                n = int(sum(stream.chunk_nsamples))
                out[sid] = dict(
                    values=np.empty(
                        (n, stream.channel_count), FORMATS[stream.channel_format]
                    ),
                    stamps=np.empty(n),
                    flags=flags[sid],
                    index=None,
                    fill=n,
                )
            _copy(f, size, index, out)
            for sid in stream_ids:
                if sid not in out:
                    out[sid] = _strings(f, index.streams[sid])
        except _Undecodable:
            return None
    for state in out.values():
        state.update(n_cut=0, n_lost=0, breaks=[], last_end=None)
    return out


# -- flags ---------------------------------------------------------------------


def _flags(f, size: int, stream) -> np.ndarray:
    """Every sample's timestamp flag (0 or 8), chunk by chunk, from the layout.

    Checked against the bytes when the samples are copied.
    """
    counts = np.asarray(stream.chunk_nsamples, np.int64)
    nbytes = np.asarray(stream.chunk_nbytes, np.int64)
    record = 1 + stream.channel_count * FORMATS[stream.channel_format].itemsize
    extra = nbytes - counts * record
    stamped, rest = np.divmod(extra, 8)
    if np.any(rest) or np.any(stamped < 0) or np.any(stamped > counts):
        raise _Undecodable
    starts = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    total = int(starts[-1])
    # Stamped or not by the sample's chunk, then the chunks of one stamp.
    flags = np.repeat(np.where(stamped == counts, 8, 0).astype(np.uint8), counts)
    one = np.flatnonzero((stamped == 1) & (counts > 1))
    flags[starts[one]] = 8
    mixed = np.flatnonzero((stamped > 1) & (stamped < counts))
    if mixed.size:
        _walk(f, size, stream, record, mixed, starts, flags)
    assert len(flags) == total
    return flags


def _walk(f, size, stream, record: int, chunks, starts, flags) -> None:
    """Walk the flags of the given chunks, all together, into ``flags``."""
    offsets = np.asarray(stream.chunk_offset, np.int64)[chunks]
    ends = offsets + np.asarray(stream.chunk_nbytes, np.int64)[chunks]
    left = np.asarray(stream.chunk_nsamples, np.int64)[chunks]
    at = starts[chunks].copy()
    pos = offsets.copy()
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        u8 = np.frombuffer(mm, np.uint8)
        try:
            live = np.arange(len(chunks))
            while len(live) >= WALK_TOGETHER:
                p = pos[live]
                flag = u8[p]
                if np.any((flag != 0) & (flag != 8)):
                    raise _Undecodable
                flags[at[live]] = flag
                pos[live] = p + record + flag
                at[live] += 1
                left[live] -= 1
                done = left[live] == 0
                if done.any():
                    live = live[~done]
            for c in live.tolist():
                got = _walk_one(mm[pos[c] : ends[c]], record, int(left[c]))
                flags[at[c] : at[c] + len(got)] = got
                pos[c] = ends[c]
            if np.any(pos != ends):
                raise _Undecodable
        finally:
            del u8


def _walk_one(data: bytes, record: int, n: int) -> np.ndarray:
    """The flags of ``n`` samples from ``pos``, walked by iterators in C.

    Each step reads the flag at the current position and appends the next
    position to the list being iterated (a list iterator sees what is
    appended), so no Python bytecode runs per sample.
    """
    if n == 0:
        return np.zeros(0, np.uint8)
    positions = [0]
    try:
        positions.extend(
            islice(
                map(
                    partial(operator.add, record),
                    map(
                        operator.add,
                        iter(positions),
                        map(data.__getitem__, iter(positions)),
                    ),
                ),
                n - 1,
            )
        )
    except IndexError:  # a walk past the end: a bad flag on the way
        raise _Undecodable from None
    p = np.asarray(positions, np.int64)
    u8 = np.frombuffer(data, np.uint8)
    if p[-1] >= len(u8):
        raise _Undecodable
    got = u8[p]
    if np.any((got != 0) & (got != 8)) or p[-1] + record + got[-1] != len(u8):
        raise _Undecodable
    return got


# -- copying -------------------------------------------------------------------


def _copy(f, size: int, index, out: dict) -> None:
    """Copy every numeric chunk into its slice, one mapped window at a time."""
    jobs = []  # (offset, end, stream id, chunk, first sample)
    for sid in out:
        stream = index.streams[sid]
        counts = stream.chunk_nsamples
        k = 0
        for c, offset in enumerate(stream.chunk_offset):
            jobs.append((offset, offset + stream.chunk_nbytes[c], sid, c, k))
            k += counts[c]
    jobs.sort()
    gran = mmap.ALLOCATIONGRANULARITY
    i = 0
    while i < len(jobs):
        base = jobs[i][0] // gran * gran
        j = i + 1
        while j < len(jobs) and jobs[j][1] - base <= WINDOW:
            j += 1
        stop = max(end for _, end, *_ in jobs[i:j])
        flags = getattr(mmap, "MAP_POPULATE", 0) | mmap.MAP_SHARED
        mm = mmap.mmap(
            f.fileno(), stop - base, flags=flags, prot=mmap.PROT_READ, offset=base
        )
        try:
            _copy_window(mm, base, jobs[i:j], index, out)
        finally:
            mm.close()
        i = j


def _copy_window(mm, base: int, jobs, index, out: dict) -> None:
    u8 = np.frombuffer(mm, np.uint8)
    try:
        small: dict[int, list] = {}
        for offset, end, sid, c, k in jobs:
            n = index.streams[sid].chunk_nsamples[c]
            if n >= BATCH_BELOW:
                _copy_chunk(
                    u8, offset - base, end - base, k, n, index.streams[sid], out[sid]
                )
            elif n:
                small.setdefault(sid, []).append((offset - base, end - base, k, n))
        for sid, chunks in small.items():
            _copy_batch(u8, chunks, index.streams[sid], out[sid])
    finally:
        del u8


def _copy_chunk(u8, start: int, end: int, k: int, n: int, stream, state) -> None:
    """One chunk's samples into ``state``'s arrays at sample ``k``.

    A chunk whose samples after the first share one layout (all stamped,
    none, or only the first) is copied through a strided record view;
    others by positions (:func:`_copy_batch`).
    """
    dtype = FORMATS[stream.channel_format]
    nch = stream.channel_count
    vsize = nch * dtype.itemsize
    flags = state["flags"][k : k + n]
    head, rest = int(flags[0]), int(flags[-1])
    body = start + 1 + head + vsize  # the second sample
    if flags[1] != rest or end - body != (n - 1) * (1 + rest + vsize):
        _copy_batch(u8, [(start, end, k, n)], stream, state)
        return
    if u8[start] != head:
        _rewalk(u8, [(start, end, k, n)], stream, state)
        return
    fields = [("f", "u1")] + ([("t", "<f8")] if rest else [])
    rec = np.frombuffer(
        u8, np.dtype(fields + [("v", dtype, (nch,))]), count=n - 1, offset=body
    )
    if np.any(rec["f"] != rest):
        _rewalk(u8, [(start, end, k, n)], stream, state)
        return
    flags[1:] = rest  # what the bytes say (the walk, if any, said the same)
    values, stamps = state["values"], state["stamps"]
    values[k] = u8[start + 1 + head : body].view(dtype)
    stamps[k] = u8[start + 1 : start + 9].view("<f8")[0] if head else 0.0
    values[k + 1 : k + n] = rec["v"]
    stamps[k + 1 : k + n] = rec["t"] if rest else 0.0


def _rewalk(u8, chunks, stream, state) -> None:
    """Chunks whose flags were guessed wrong: walk them, then copy them."""
    vsize = stream.channel_count * FORMATS[stream.channel_format].itemsize
    flags = state["flags"]
    for start, end, k, n in chunks:
        flags[k : k + n] = _walk_one(u8[start:end].tobytes(), 1 + vsize, n)
    _copy_batch(u8, chunks, stream, state, walked=True)


def _copy_batch(u8, chunks, stream, state, walked: bool = False) -> None:
    """Chunks of one stream, consecutive in it, by positions and one gather.

    Rows are gathered as opaque records of the values' size (a memcpy each),
    timestamps through an unaligned float64 view of the bytes.
    """
    dtype = FORMATS[stream.channel_format]
    vsize = stream.channel_count * dtype.itemsize
    k0 = chunks[0][2]
    k1 = chunks[-1][2] + chunks[-1][3]
    flags = state["flags"][k0:k1]
    counts = np.fromiter((c[3] for c in chunks), np.int64, len(chunks))
    starts = np.fromiter((c[0] for c in chunks), np.int64, len(chunks))
    ends = np.fromiter((c[1] for c in chunks), np.int64, len(chunks))
    step = flags.astype(np.int64)
    step += 1 + vsize
    pos = np.cumsum(step)
    first = np.concatenate(([0], np.cumsum(counts)[:-1]))
    # Positions inside each chunk, then moved to the chunk's start.
    shift = starts - (pos[first] - step[first])
    pos -= step
    pos += np.repeat(shift, counts)
    last = first + counts - 1
    if np.any(pos[last] + step[last] != ends) or np.any(u8[pos] != flags):
        if walked:
            raise _Undecodable
        _rewalk(u8, chunks, stream, state)
        return
    size = len(u8)
    row = np.dtype((np.void, vsize))
    rows = np.ndarray((size - vsize + 1,), row, u8, 0, (1,))
    out = state["values"][k0:k1].reshape(k1 - k0, vsize // dtype.itemsize)
    out.view(row)[:, 0] = rows[pos + 1 + flags]
    stamps = state["stamps"][k0:k1]
    stamps[:] = 0.0
    has = np.flatnonzero(flags)
    if has.size:
        times = np.ndarray((size - 7,), "<f8", u8, 0, (1,))
        stamps[has] = times[pos[has] + 1]


def _strings(f, stream) -> dict:
    """A string stream's samples, chunk by chunk (marker streams are small)."""
    values: list = []
    stamps, flags = [], []
    for c, offset in enumerate(stream.chunk_offset):
        n, nbytes = stream.chunk_nsamples[c], stream.chunk_nbytes[c]
        data = os.pread(f.fileno(), nbytes, offset)
        rows, times, marks, used = _decode_strings(data, n, stream.channel_count)
        if len(rows) != n or used != nbytes:
            raise _Undecodable
        values.extend(rows)
        stamps.append(times)
        flags.append(marks)
    return dict(values=values, stamps=stamps, flags=flags, index=None, fill=len(values))
