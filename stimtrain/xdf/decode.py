"""Decoding one Samples chunk: numeric chunks as whole numpy arrays, string
chunks sample by sample, and timestamps deduced from the nominal rate.

The careful reader (:mod:`.samples`) decodes chunk by chunk with these;
intact files are read by :mod:`.fast`.
"""

from __future__ import annotations

import struct

import numpy as np

from .format import _varlen_from

# -- decoding -----------------------------------------------------------------


def _walk_flags(buf, n: int, record: int) -> tuple[np.ndarray, int]:
    """Timestamp flags of ``n`` samples laid out one after the other.

    The general path: the position of a sample depends on every flag before
    it. Returns the flags of the complete samples and their count.
    """
    flags = bytearray(n)
    pos, size = 0, len(buf)
    for k in range(n):
        if pos >= size:
            return np.frombuffer(bytes(flags[:k]), np.uint8), k
        flag = buf[pos]
        if flag != 0 and flag != 8:
            raise ValueError(f"invalid timestamp byte count {flag} in sample {k}")
        flags[k] = flag
        pos += record + flag
        if pos > size:
            return np.frombuffer(bytes(flags[:k]), np.uint8), k
    return np.frombuffer(bytes(flags), np.uint8), n


def _decode_numeric(buf, n: int, nch: int, dtype: np.dtype, cut: bool = False):
    """Decode one Samples chunk of a numeric stream.

    ``cut`` says the chunk is the file's last and cut off: then only its
    complete samples are decoded. Returns ``(values, stamps, flags)``: values as a
    (possibly strided) view or array of shape (m, nch), stamps as float64 with
    unspecified entries where ``flags`` is 0.
    """
    vsize = nch * dtype.itemsize
    u8 = np.frombuffer(buf, np.uint8)
    size = len(u8)
    # Fast path 1: every sample has the same timestamp flag.
    for flag in (8, 0):
        record = 1 + flag + vsize
        m = min(n, size // record) if cut else n
        if (size == n * record or cut) and m:
            if np.all(u8[: m * record : record] == flag):
                fields = [("f", "u1")]
                if flag:
                    fields.append(("t", "<f8"))
                fields.append(("v", dtype, (nch,)))
                rec = np.frombuffer(buf, np.dtype(fields), count=m)
                stamps = rec["t"] if flag else np.zeros(m)
                return rec["v"], stamps, np.full(m, flag, np.uint8)
    # Fast path 2: flags alternate (what the LabRecorder library writes when
    # every other nominal step is off by an ulp).
    if n >= 2:
        a = int(u8[0])
        b = 8 - a if a in (0, 8) else None
        pair = 2 + 8 + 2 * vsize
        m2 = n // 2
        if b is not None and not cut and size >= m2 * pair:
            fields = [("f0", "u1")]
            if a:
                fields.append(("t0", "<f8"))
            fields += [("v0", dtype, (nch,)), ("f1", "u1")]
            if b:
                fields.append(("t1", "<f8"))
            fields.append(("v1", dtype, (nch,)))
            rec = np.frombuffer(buf, np.dtype(fields), count=m2)
            tail = size - m2 * pair
            odd_ok = n % 2 == 0 and tail == 0
            if n % 2 and tail == 1 + a + vsize:
                odd_ok = u8[m2 * pair] == a
            if odd_ok and np.all(rec["f0"] == a) and np.all(rec["f1"] == b):
                values = np.empty((n, nch), dtype)
                values[0 : 2 * m2 : 2] = rec["v0"]
                values[1 : 2 * m2 : 2] = rec["v1"]
                stamps = np.zeros(n)
                flags = np.empty(n, np.uint8)
                flags[0::2], flags[1::2] = a, b
                if a:
                    stamps[0 : 2 * m2 : 2] = rec["t0"]
                if b:
                    stamps[1 : 2 * m2 : 2] = rec["t1"]
                if n % 2:
                    last = m2 * pair
                    if a:
                        stamps[-1] = u8[last + 1 : last + 9].view("<f8")[0]
                    values[-1] = u8[last + 1 + a : last + 1 + a + vsize].view(dtype)
                return values, stamps, flags
    # General path: walk the flags, then gather by position.
    flags, m = _walk_flags(buf, n, 1 + vsize)
    pos = np.zeros(m, np.int64)
    if m > 1:
        np.cumsum(1 + vsize + flags[:-1].astype(np.int64), out=pos[1:])
    used = int(pos[-1]) + 1 + vsize + int(flags[-1]) if m else 0
    if not cut and (m != n or used != size):
        raise ValueError(
            f"Samples chunk of {n} samples: the samples take {used} bytes but the "
            f"chunk holds {size}"
        )
    return _gather(buf, pos, flags, nch, dtype)


def _decode_strings(buf, n: int, nch: int):
    """Decode one Samples chunk of a string stream (sample by sample).

    Stops at the first sample that is cut off or malformed. Returns
    ``(values, stamps, flags, used)``, ``used`` being the bytes the decoded
    samples take.
    """
    values, stamps, flags = [], [], []
    pos = 0
    try:
        for _ in range(n):
            row, stamp, flag, end = _string_sample(buf, pos, nch)
            values.append(row)
            stamps.append(stamp)
            flags.append(flag)
            pos = end
    except (EOFError, IndexError, ValueError):
        pass  # a cut or damaged chunk: keep the complete samples
    return values, np.asarray(stamps, float), np.asarray(flags, np.uint8), pos


def _string_sample(buf, pos: int, nch: int):
    """One string sample at ``pos``: (row, stamp, flag, next position)."""
    size = len(buf)
    flag = buf[pos]
    if flag not in (0, 8):
        raise ValueError(f"invalid timestamp byte count {flag}")
    stamp = 0.0
    if flag:
        if pos + 9 > size:
            raise EOFError
        stamp = struct.unpack_from("<d", buf, pos + 1)[0]
    pos += 1 + flag
    row = []
    for _ch in range(nch):
        length, pos = _varlen_from(buf, pos)
        if pos + length > size:
            raise EOFError
        row.append(bytes(buf[pos : pos + length]).decode(errors="replace"))
        pos += length
    return row, stamp, flag, pos


def _gather(buf, positions, flags, nch: int, dtype: np.dtype):
    """Values and stamps of numeric samples at the given byte offsets."""
    u8 = np.frombuffer(buf, np.uint8)
    vsize = nch * dtype.itemsize
    pos = np.asarray(positions, np.int64)
    flags = np.asarray(flags, np.uint8)
    m = len(pos)
    if not m:
        return np.zeros((0, nch), dtype), np.zeros(0), flags
    values = np.lib.stride_tricks.sliding_window_view(u8, vsize)[pos + 1 + flags]
    values = values.view(dtype).reshape(m, nch)
    stamps = np.zeros(m)
    has = flags == 8
    if has.any():
        raw = np.lib.stride_tricks.sliding_window_view(u8, 8)[pos[has] + 1]
        stamps[has] = raw.view("<f8")[:, 0]
    return values, stamps, flags


def deduce_timestamps(stamps: np.ndarray, flags: np.ndarray, tdiff: float) -> None:
    """Fill in, in place, the timestamps a sample without one implies.

    A sample without a timestamp is the previous sample's time plus the
    nominal interval, added one step at a time (so that the result matches a
    sequential decoder to the bit). The first sample's "previous" time is 0.
    """
    # Runs of missing stamps, from the edges of the flags (no array of
    # indices per sample); each run is seeded by the stamp before it (or 0).
    edges = np.diff((flags == 0).view(np.int8), prepend=0, append=0)
    firsts = np.flatnonzero(edges == 1)
    if firsts.size == 0:
        return
    lengths = np.flatnonzero(edges == -1) - firsts
    del edges
    # A run is filled either alone (one cumsum: cheap for a few long runs)
    # or together with the others, one step from their seeds at a time (for
    # many runs: as many numpy calls as the longest has samples).
    long = lengths > 64
    if long.any() and long.sum() > lengths[long].max() // 2:
        long[:] = False
    for a, n in zip(firsts[long].tolist(), lengths[long].tolist(), strict=True):
        seed = stamps[a - 1] if a > 0 else 0.0
        steps = np.full(n + 1, tdiff)
        steps[0] = seed
        stamps[a : a + n] = np.cumsum(steps)[1:]
    keep = ~long
    if not keep.any():
        return
    # Sorted longest first, so that the runs still going are a prefix.
    sizes = lengths[keep]
    order = np.argsort(-sizes, kind="stable")
    firsts = firsts[keep][order]
    going = np.cumsum(np.bincount(sizes)[::-1])[::-1]  # runs of size >= d
    for d in range(1, len(going)):
        k = firsts[: going[d]]
        prev = stamps[np.maximum(k - 1, 0)]
        if d == 1:
            prev[k == 0] = 0.0  # the decoder's "last time" starts at 0
        stamps[k] = prev + tdiff
        firsts[: going[d]] += 1
