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
- Consecutive chunks of one layout and length, evenly spaced in the file
  (small chunks, or a stream's chunks alternating with another's), are
  copied through one strided view; chunks of mixed flags are gathered by
  their samples' positions, a window at a time.

Anything that does not decode exactly (a flag other than 0 or 8, samples
that do not fill their chunk) makes :func:`read_intact` give up, and the
careful reader (:mod:`stimtrain.xdf.file`) reads the file instead, salvaging
what it can.
"""

from __future__ import annotations

import mmap
import operator
import os
import threading
from functools import partial
from itertools import islice

import numpy as np

from .decode import _decode_strings
from .format import FORMATS

__all__ = ["read_intact"]

#: Bytes mapped at a time while copying (the mapping counts in the resident
#: memory until it is closed).
WINDOW = 8 << 20
#: Samples gathered at a time (their rows stay in the CPU's cache).
GATHER = 2048
#: Below this many chunks still walking, the vectorised walk's per-step calls
#: cost more than walking the rest of each chunk alone.
WALK_TOGETHER = 24


class _Undecodable(Exception):
    """A chunk that the fast reader cannot decode exactly."""


def read_intact(
    index, stream_ids: list[int], background: bool = False, values: bool = True
) -> dict[int, dict] | None:
    """Decode whole streams of an intact file, or ``None`` to read carefully.

    Parameters
    ----------
    index : XdfIndex
        From :func:`~stimtrain.xdf.file.index_xdf`, with no damage.
    stream_ids : list of int
        Streams to decode.
    background : bool
        Return once the timestamps are read and every chunk is known to
        decode, the values being copied by a thread: each state's ``wait``
        waits for them (and re-raises what stopped the thread). The
        timestamps can then be corrected while the values are copied.
    values : bool
        ``False`` reads the numeric streams' timestamps only: their values
        are ``(n_samples, 0)`` arrays (timing diagnostics of an hour-long
        recording without its gigabytes of samples).

    Returns
    -------
    states : dict of int to dict | None
        Per stream, in the form :func:`~stimtrain.xdf.file.read_samples`
        finishes: ``values``, ``stamps`` (as stored, zero where not
        stamped), ``flags`` (8: stamped, 0: deduced), ``fill``, the counts
        of lost samples (none) and ``wait``. ``None`` when a chunk does not
        decode exactly.
    """
    size = os.path.getsize(index.path)
    numeric = [
        sid for sid in stream_ids if index.streams[sid].channel_format != "string"
    ]
    out: dict[int, dict] = {}
    f = open(index.path, "rb")  # closed by the copy of the values
    try:
        flags = {sid: _flags(f, size, index.streams[sid]) for sid in numeric}
        for sid in numeric:
            marks, kinds = flags.pop(sid)
            stream = index.streams[sid]
            n = int(sum(stream.chunk_nsamples))
            out[sid] = dict(
                values=np.empty(
                    (n, stream.channel_count), FORMATS[stream.channel_format]
                ),
                stamps=np.empty(n),
                flags=marks,
                kinds=kinds,
                index=None,
                fill=n,
            )
        _copy(f, size, index, out, "stamps")  # every chunk checked here
        if not values:
            # The stamps' pass takes views of the (never written, so never
            # resident) values; with it done they are dropped unread.
            for sid in numeric:
                out[sid]["values"] = out[sid]["values"][:, :0].copy()
        for sid in stream_ids:
            if sid not in out:
                out[sid] = _strings(f, index.streams[sid])
    except _Undecodable:
        f.close()
        return None
    except BaseException:
        f.close()
        raise
    copied = {sid: out[sid] for sid in numeric} if values else {}
    wait = _copy_values(f, size, index, copied, background)
    for state in out.values():
        state.update(n_cut=0, n_lost=0, breaks=[], last_end=None, wait=wait)
    return out


def _copy_values(f, size: int, index, states: dict, background: bool):
    """Copy the values (now or in a thread); return the function waiting for them."""
    failed: list = []

    def copy() -> None:
        try:
            _copy(f, size, index, states, "values")
        except BaseException as err:  # noqa: BLE001 - re-raised by wait()
            failed.append(err)
        finally:
            f.close()

    if not background or not states:
        copy()
        thread = None
    else:
        thread = threading.Thread(target=copy, name="xdf-values", daemon=True)
        thread.start()

    def wait() -> None:
        if thread is not None:
            thread.join()
        if failed:
            raise failed[0]

    if thread is None:
        wait()
    return wait


# -- flags ---------------------------------------------------------------------


#: Chunk layouts: every sample stamped, none, only the first, a mix (walked).
ALL, NONE, FIRST, MIXED = 8, 0, 1, 2


def _flags(f, size: int, stream) -> tuple[np.ndarray, np.ndarray]:
    """Every sample's timestamp flag (0 or 8) and every chunk's layout.

    Told by the chunk lengths (checked against the bytes when the samples
    are copied); chunks of a mix of stamped and unstamped samples walked.
    """
    counts = np.asarray(stream.chunk_nsamples, np.int64)
    nbytes = np.asarray(stream.chunk_nbytes, np.int64)
    record = 1 + stream.channel_count * FORMATS[stream.channel_format].itemsize
    extra = nbytes - counts * record
    stamped, rest = np.divmod(extra, 8)
    if np.any(rest) or np.any(stamped < 0) or np.any(stamped > counts):
        raise _Undecodable
    starts = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    kinds = np.where(stamped == counts, ALL, NONE).astype(np.int8)
    kinds[(stamped == 1) & (counts > 1)] = FIRST
    kinds[(stamped > 1) & (stamped < counts)] = MIXED
    flags = np.repeat(np.where(kinds == ALL, 8, 0).astype(np.uint8), counts)
    flags[starts[:-1][kinds == FIRST]] = 8
    mixed = np.flatnonzero(kinds == MIXED)
    if mixed.size:
        _walk(f, size, stream, record, mixed, starts, flags)
    return flags, kinds


def _walk(f, size, stream, record: int, chunks, starts, flags) -> None:
    """Walk the flags of the given chunks, all together, into ``flags``.

    The walkers are sorted longest chunk first, so that those still walking
    are a prefix of the arrays: a step is five numpy calls. A bad flag sends
    its walker astray; the flags and the ends are checked afterwards.
    """
    counts = np.asarray(stream.chunk_nsamples, np.int64)[chunks]
    order = np.argsort(-counts, kind="stable")
    chunks, counts = chunks[order], counts[order]
    pos = np.asarray(stream.chunk_offset, np.int64)[chunks]
    ends = pos + np.asarray(stream.chunk_nbytes, np.int64)[chunks]
    at = starts[chunks].copy()
    live = len(chunks)
    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        u8 = np.frombuffer(mm, np.uint8)
        try:
            step = 0
            while live >= WALK_TOGETHER:
                p, a = pos[:live], at[:live]
                flag = u8[p]
                flags[a] = flag
                p += flag
                p += record
                a += 1
                step += 1
                while live and counts[live - 1] == step:
                    live -= 1  # this one is through its chunk
            for c in range(live):
                got = _walk_one(mm[pos[c] : ends[c]], record, int(counts[c]) - step)
                flags[at[c] : at[c] + len(got)] = got
                pos[c] = ends[c]
        except IndexError:  # a walker past the end of the file: a bad flag
            raise _Undecodable from None
        finally:
            del u8
    if np.any(pos != ends) or np.any((flags != 0) & (flags != 8)):
        raise _Undecodable


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


def _copy(f, size: int, index, out: dict, part: str) -> None:
    """Copy every numeric chunk's ``part`` into its slice, a window at a time.

    ``part`` is ``"stamps"`` (the timestamps, every flag checked against the
    bytes, chunks whose one stamp is not the first walked) or ``"values"``
    (afterwards: no checks left). The file is cut into windows of
    :data:`WINDOW` bytes (a chunk belongs to the window its first sample is
    in). In each stream, consecutive chunks of one window, layout and
    length, evenly spaced, form a group copied by one strided view;
    consecutive chunks of mixed flags are gathered together.
    """
    plans = {
        sid: _groups(index.streams[sid], state["kinds"]) for sid, state in out.items()
    }
    windows = sorted({int(w) for plan in plans.values() for w in plan[0]})
    gran = mmap.ALLOCATIONGRANULARITY
    populate = getattr(mmap, "MAP_POPULATE", 0) | mmap.MAP_SHARED
    for w in windows:
        todo = []  # (stream id, first and last chunk of this window's groups)
        lo, hi = size, 0
        for sid, (win, first, last, off, end, _) in plans.items():
            a, b = np.searchsorted(win, [w, w + 1])
            if a < b:
                todo.append((sid, first[a:b], last[a:b]))
                lo = min(lo, int(off[first[a]]))
                hi = max(hi, int(end[last[b - 1]]))
        base = lo // gran * gran
        mm = mmap.mmap(
            f.fileno(), hi - base, flags=populate, prot=mmap.PROT_READ, offset=base
        )
        try:
            _copy_window(
                np.frombuffer(mm, np.uint8), base, todo, plans, index, out, part
            )
        except _Undecodable:
            # The traceback holds the frames whose arrays view the window;
            # closing the mapping while they live raises BufferError, which
            # would hide this from read_intact (and the careful reader would
            # never be tried). Raised again below, without those frames.
            undecodable = True
        except BaseException:
            _close(mm)
            raise
        else:
            undecodable = False
        _close(mm)
        if undecodable:
            raise _Undecodable


def _close(mm: mmap.mmap) -> None:
    """Close a window's mapping; one still viewed goes when its views do."""
    try:
        mm.close()
    except BufferError:
        pass


def _copy_window(u8, base: int, todo, plans, index, out: dict, part: str) -> None:
    """The groups of one mapped window (its array is gone when this returns)."""
    for sid, firsts, lasts in todo:
        stream, state = index.streams[sid], out[sid]
        for g0, g1 in zip(firsts.tolist(), lasts.tolist(), strict=True):
            _copy_chunks(u8, base, g0, g1 + 1, plans[sid], stream, state, part)


def _groups(stream, kinds):
    """Groups of a stream's chunks: window, first and last chunk of each, and
    per chunk its offset, end and first sample number.

    A group is consecutive chunks of one window, of mixed flags, or of one
    other layout and length evenly spaced. Chunks without samples are left
    out.
    """
    off = np.asarray(stream.chunk_offset, np.int64)
    nbytes = np.asarray(stream.chunk_nbytes, np.int64)
    counts = np.asarray(stream.chunk_nsamples, np.int64)
    end = off + nbytes
    win = off // WINDOW
    first_sample = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    kept = np.flatnonzero(counts > 0)
    if kept.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, off, end, first_sample
    o, n, b, k, w = off[kept], counts[kept], nbytes[kept], kinds[kept], win[kept]
    new = np.ones(len(kept), bool)
    new[1:] = (
        (w[1:] != w[:-1])
        | (k[1:] != k[:-1])
        | (np.diff(kept) != 1)  # a chunk without samples between
    )
    uniform = k[1:] != MIXED
    same = (n[1:] == n[:-1]) & (b[1:] == b[:-1])
    new[1:] |= uniform & ~same
    spacing = np.diff(o)
    new[2:] |= uniform[1:] & (spacing[1:] != spacing[:-1])
    starts = np.flatnonzero(new)
    stops = np.append(starts[1:], len(kept)) - 1
    return w[starts], kept[starts], kept[stops], off, end, first_sample


def _copy_chunks(u8, base: int, c0: int, c1: int, plan, stream, state, part) -> None:
    """Chunks ``c0 .. c1-1`` of a group (see :func:`_groups`)."""
    off, end, first_sample = plan[3], plan[4], plan[5]
    kinds = state["kinds"]
    kind = int(kinds[c0])
    k0, n = int(first_sample[c0]), stream.chunk_nsamples[c0]
    if kind != MIXED:
        s0 = int(off[c0]) - base
        spacing = int(off[c0 + 1] - off[c0]) if c1 - c0 > 1 else int(end[c0] - off[c0])
        if _copy_group(u8, s0, spacing, c1 - c0, n, k0, kind, stream, state, part):
            return
    counts = stream.chunk_nsamples
    chunks = [
        (int(off[c]) - base, int(end[c]) - base, int(first_sample[c]), counts[c])
        for c in range(c0, c1)
    ]
    if kind == MIXED:
        _copy_batch(u8, chunks, stream, state, part)
        return
    # The one stamp is not the first sample's: walk these chunks, which are
    # copied by their samples' positions from now on.
    vsize = stream.channel_count * FORMATS[stream.channel_format].itemsize
    for start, stop, k, count in chunks:
        data = u8[start:stop].tobytes()
        state["flags"][k : k + count] = _walk_one(data, 1 + vsize, count)
        _copy_batch(u8, [(start, stop, k, count)], stream, state, part)
    kinds[c0:c1] = MIXED


def _copy_group(u8, s0, spacing, count, n, k0, kind, stream, state, part) -> bool:
    """Evenly spaced chunks of one layout and length through a strided view.

    Returns ``False`` when chunks taken to have one stamp, the first, do not
    (found when the stamps are copied).
    """
    dtype = FORMATS[stream.channel_format]
    nch = stream.channel_count
    vsize = nch * dtype.itemsize
    values = state["values"][k0 : k0 + count * n].reshape(count, n, nch)
    stamps = state["stamps"][k0 : k0 + count * n].reshape(count, n)

    def records(flag: int, offset: int, length: int):
        fields = [("f", "u1")] + ([("t", "<f8")] if flag else [])
        dt = np.dtype(fields + [("v", dtype, (nch,))])
        return np.ndarray((count, length), dt, u8, offset, (spacing, dt.itemsize))

    if kind == FIRST:
        head, rest = records(8, s0, 1), records(0, s0 + 9 + vsize, n - 1)
        if part == "values":
            values[:, :1] = head["v"]
            values[:, 1:] = rest["v"]
            return True
        if np.any(head["f"] != 8) or np.any(rest["f"] != 0):
            return False
        stamps[:, :1] = head["t"]
        stamps[:, 1:] = 0.0
        return True
    rec = records(kind, s0, n)
    if part == "values":
        values[...] = rec["v"]
        return True
    if np.any(rec["f"] != kind):
        raise _Undecodable
    stamps[...] = rec["t"] if kind else 0.0
    return True


def _copy_batch(u8, chunks, stream, state, part: str) -> None:
    """Chunks of one stream, consecutive in it, by their samples' positions.

    Rows are gathered as opaque records of the values' size (a memcpy each),
    in blocks that stay in the cache; timestamps through an unaligned float64
    view of the bytes.
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
    size = len(u8)
    if part == "values":
        row = np.dtype((np.void, vsize))
        rows = np.ndarray((size - vsize + 1,), row, u8, 0, (1,))
        out = state["values"][k0:k1].reshape(k1 - k0, vsize // dtype.itemsize)
        out = out.view(row)[:, 0]
        pos += 1
        pos += flags
        for a in range(0, k1 - k0, GATHER):
            # In blocks, so that the gathered rows are still in the cache
            # when they are copied out.
            out[a : a + GATHER] = rows[pos[a : a + GATHER]]
        return
    last = first + counts - 1
    if np.any(pos[last] + step[last] != ends) or np.any(u8[pos] != flags):
        raise _Undecodable
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
