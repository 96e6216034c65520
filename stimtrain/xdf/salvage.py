"""Salvaging the samples of a damaged Samples chunk.

A damaged chunk is decoded sample by sample; where a sample cannot be right
(a timestamp flag other than 0/8, a sample running past the chunk), decoding
resumes at the first later position from which the samples fill the rest of
the chunk exactly. Each byte is walked about once per damaged site.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .decode import _string_sample
from .table import Damage

# Salvage: a damaged Samples chunk is decoded sample by sample; where a sample
# cannot be right (a timestamp flag other than 0/8, a sample running past the
# chunk), decoding resumes at the first later position from which the samples
# fill the rest of the chunk exactly.
_STRING_SALVAGE_MAX = 4 << 20  # string chunks longer than this are not resumed


@dataclass
class _Salvaged:
    positions: list[int]  # byte offset of each sample kept (in the chunk body)
    flags: list[int]
    resumes: list[int]  # sample numbers (in the kept samples) after a skip
    skipped: list[tuple[int, int]]  # (start, stop) byte ranges skipped
    rows: list | None = None  # string values
    stamps: list[float] | None = None  # string stamps


def _numeric_walk(mv, pos: int, record: int, limit: int, out=None) -> tuple[int, int]:
    """Walk samples from ``pos``; return (samples, position where it stopped)."""
    size, k = len(mv), 0
    while k < limit and pos < size:
        flag = mv[pos]
        if (flag != 0 and flag != 8) or pos + record + flag > size:
            break
        if out is not None:
            out[0].append(pos)
            out[1].append(int(flag))
        pos += record + int(flag)
        k += 1
    return k, pos


def _reaches_end(mv, pos: int, record: int, limit: int, dead=None) -> int:
    """Samples from ``pos`` to the chunk's end exactly (at most ``limit``), or -1.

    ``dead`` (a bytearray over the chunk) marks positions from which no walk
    can succeed at this damaged site: the walk breaks (a bad flag, a sample
    past the end) or needs more than ``limit`` samples to the end. Every
    position before a dead one on a walk is dead too, so walks from later
    candidates stop where they meet an earlier walk, and every position is
    walked about once per damaged site. Without it, a chunk whose bytes look
    like flags at the record's spacing (runs of zeros) or whose sample count
    was damaged made every candidate walk to the end: quadratic in the
    chunk's length (a 3 MB chunk of 80,000 samples ran for over 20 minutes).
    """
    size = len(mv)
    if pos > size:
        return -1
    path = []
    reached = False
    while True:
        if pos == size:
            reached = True
            break
        if dead is not None and dead[pos]:
            break
        flag = mv[pos]
        if (flag != 0 and flag != 8) or pos + record + flag > size:
            break
        if dead is None and len(path) > limit:
            break  # without the marks, walking further cannot succeed
        path.append(pos)
        pos += record + int(flag)
    if reached and len(path) <= limit:
        return len(path)
    if dead is not None:
        # Too many samples: only the positions too far from the end are dead.
        stop = len(path) - limit if reached else len(path)
        for p in path[:stop]:
            dead[p] = 1
        if not reached and pos < size:
            dead[pos] = 1
    return -1


def _salvage_numeric(buf, n: int, record: int, known: bool) -> _Salvaged:
    """Find the samples of a damaged numeric chunk (see module notes)."""
    u8 = np.frombuffer(buf, np.uint8)
    mv = memoryview(buf).cast("B")  # fast single-byte reads
    size = len(u8)
    out: _Salvaged = _Salvaged([], [], [], [])
    pos = 0
    while len(out.positions) < n and pos < size:
        _, pos = _numeric_walk(
            mv, pos, record, n - len(out.positions), (out.positions, out.flags)
        )
        k = len(out.positions)
        if k >= n or pos >= size:
            break
        left = n - k - 1 if known else size
        fixed = False
        for flag in (8, 0):
            # One damaged flag byte: the sample is whole either way.
            m = _reaches_end(mv, pos + record + flag, record, left)
            if m >= 0 and (not known or k + 1 + m == n):
                out.positions.append(pos)
                out.flags.append(flag)
                out.skipped.append((pos, pos + 1))
                pos += record + flag
                fixed = True
                break
        if fixed:
            continue
        bad = pos
        if out.positions and out.positions[-1] + record + out.flags[-1] == bad:
            # The damage may have begun inside the sample before.
            bad = out.positions.pop()
            out.flags.pop()
        k = len(out.positions)
        cand = np.flatnonzero((u8[pos + 1 :] == 0) | (u8[pos + 1 :] == 8)) + pos + 1
        resume = None
        dead = bytearray(size + 1)
        for q in cand.tolist():
            if _reaches_end(mv, q, record, (n - k) if known else size, dead) >= 0:
                resume = q
                break
        out.skipped.append((bad, size if resume is None else resume))
        if resume is None:
            pos = size
            break
        out.resumes.append(k)
        pos = resume
    if pos < size and len(out.positions) >= n:
        out.skipped.append((pos, size))
    return out


def _salvage_strings(buf, n: int, nch: int) -> _Salvaged:
    """Find the samples of a damaged string chunk."""
    size = len(buf)
    out = _Salvaged([], [], [], [], rows=[], stamps=[])
    pos = 0

    def take(p: int, limit: int, keep: bool) -> tuple[int, int]:
        k = 0
        while k < limit and p < size:
            try:
                row, stamp, flag, end = _string_sample(buf, p, nch)
            except (EOFError, IndexError, ValueError):
                break
            if keep:
                out.positions.append(p)
                out.flags.append(flag)
                out.rows.append(row)
                out.stamps.append(stamp)
            p, k = end, k + 1
        return k, p

    while len(out.positions) < n and pos < size:
        _, pos = take(pos, n - len(out.positions), True)
        if len(out.positions) >= n or pos >= size:
            break
        resume = None
        if size <= _STRING_SALVAGE_MAX:
            for q in range(pos + 1, size):
                if buf[q] not in (0, 8):
                    continue
                k, end = take(q, n - len(out.positions), False)
                if k and end == size:
                    resume = q
                    break
        out.skipped.append((pos, size if resume is None else resume))
        if resume is None:
            break
        out.resumes.append(len(out.positions))
        pos = resume
    return out


def _note_salvage(
    index, state, sid, offset, s: _Salvaged, n: int, m: int, known: bool = True
) -> None:
    """Record what a salvaged chunk lost, and where decoding resumed."""
    fill = state["fill"]
    state["breaks"].extend(fill + r for r in s.resumes)
    lost = max(n - m, 0)
    state["n_lost"] += lost
    if known and lost and len(s.resumes) == 1:
        # All the chunk's lost samples lie before its one resume: where no
        # later timestamp places the samples after it, they are deduced
        # forward past that many.
        state["skips"][fill + s.resumes[0]] = lost
    for a, b in s.skipped:
        index.damage.append(
            Damage(offset + a, offset + b, "damaged samples", sid, None)
        )
    if s.skipped:
        index.damage[-1].samples_lost = lost
    elif lost:
        index.damage.append(Damage(offset, offset, "damaged samples", sid, lost))
