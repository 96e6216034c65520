"""The chunk index of an XDF file, made without decoding any sample.

:func:`index_xdf` walks the chunk headers only (a small read at each
chunk's start, never the sample payloads; runs of chunks with the same
header bytes are checked together with numpy) and records where every
Samples chunk lies, its sample count and its first timestamp; damaged
stretches are skipped or kept for salvage (see :mod:`.chunks` and
:mod:`.salvage`). :mod:`.table` holds what it records.
"""

from __future__ import annotations

import logging
import os
import struct
from os import PathLike
from pathlib import Path

import numpy as np

from .chunks import _HEAD, _Header, _Reader
from .decode import _decode_numeric, _decode_strings
from .format import (
    FORMATS,
    TAG_BOUNDARY,
    TAG_CLOCK_OFFSET,
    TAG_FILE_HEADER,
    TAG_SAMPLES,
    TAG_STREAM_FOOTER,
    TAG_STREAM_HEADER,
    XdfError,
    _parse_xml,
    _varlen_from,
)
from .salvage import _reaches_end
from .table import Damage, StreamIndex, XdfIndex

logger = logging.getLogger("stimtrain.xdf.file")


def _new_stream(sid: int, header: dict) -> StreamIndex:
    info = header.get("info") or {}

    def text(key, default=""):
        value = info.get(key) or [default]
        return default if value[0] is None else value[0]

    fmt = str(text("channel_format", "float32"))
    if fmt != "string" and fmt not in FORMATS:
        raise ValueError(
            f"stream {sid}: channel_format must be one of "
            f"{sorted(FORMATS) + ['string']}, got {fmt!r}"
        )
    try:
        channel_count = int(text("channel_count", "0"))
        srate = float(text("nominal_srate", "0"))
    except (TypeError, ValueError) as err:
        raise ValueError(f"stream {sid}: unreadable header field ({err})") from err
    if channel_count < 1 or channel_count > 1_000_000 or not np.isfinite(srate):
        raise ValueError(
            f"stream {sid}: implausible channel_count {channel_count} or "
            f"nominal_srate {srate}"
        )
    return StreamIndex(
        stream_id=sid,
        header=header,
        name=str(text("name")),
        type=str(text("type")),
        channel_count=channel_count,
        channel_format=fmt,
        nominal_srate=max(srate, 0.0),
    )


def index_xdf(fname: str | PathLike) -> XdfIndex:
    """Index the chunks of an XDF file without decoding any sample.

    Parameters
    ----------
    fname : path-like
        The XDF file.

    Returns
    -------
    index : XdfIndex
        File header, and per stream its header, footer (``None`` if the
        recorder never wrote one), clock offsets and Samples chunk table.
        A file that ends inside a chunk is marked ``truncated``; the complete
        samples of a cut Samples chunk are kept. Damaged chunks (a wrong
        length, tag or stream id, bytes overwritten) are skipped up to the
        next place where a chunk surely begins (its header, the chunk after
        it, and for Samples chunks the sample count fitting the length; a
        Boundary chunk's UUID); a damaged Samples chunk whose tag and stream
        id survive is kept for :func:`read_samples` to salvage, and one whose
        whole header is gone is kept when exactly one stream's samples fit
        its bytes (:func:`_headless_samples`). What was skipped is listed in
        ``index.damage``.

    Raises
    ------
    XdfError
        If the file does not start with ``XDF:``.
    FileNotFoundError
        If there is no file.
    """
    path = Path(fname)
    if not path.is_file():
        raise FileNotFoundError(f"no XDF file at {path}")
    size = os.path.getsize(path)
    streams: dict[int, StreamIndex] = {}
    index = XdfIndex(path=path, file_header=None, streams=streams)
    with open(path, "rb") as f:
        if f.read(4) != b"XDF:":
            raise XdfError(f"{path} is not an XDF file: it does not start with XDF:")
        rd = _Reader(f.fileno(), size, streams)
        try:
            pos = 4
            while pos < size:
                pos = _walk_intact(index, rd, pos)
                if pos >= size:
                    break
                h = rd.header(pos)
                if h is not None and h.end <= size:
                    if rd.whole(h) or _exact(rd, h):
                        _index_chunk(index, rd, h)
                        pos = h.end
                        continue
                    pos = _wrong_length(index, rd, h, rd.scan(h.start + 2))
                    continue
                if h is not None:
                    nxt = rd.scan(h.start + 2)
                    if nxt is None:
                        # The file ends inside this chunk (recorder killed).
                        index.truncated = True
                        _index_chunk(index, rd, h)
                        break
                    pos = _wrong_length(index, rd, h, nxt)
                    continue
                pos = _damaged_header(index, rd, pos, rd.scan(pos + 1))
        finally:
            rd.close()
    if index.truncated:
        index.problems.append("the file ends inside a chunk")
    return index


def _walk_intact(index: XdfIndex, rd: _Reader, pos: int) -> int:
    """Index chunks from ``pos`` while each is whole; return where it stopped.

    The same chunks, indexed the same way, as the careful loop of
    :func:`index_xdf` would (a chunk inside the file followed by a plausible
    header), with one read and one header parse per chunk; the careful loop
    takes over at the first chunk that is not.
    """
    size, read = rd.size, rd.read
    data = read(pos, _AHEAD)
    h = rd.header(pos, data[:_HEAD])
    while h is not None and h.end <= size:
        end = h.end
        nxt_data = nxt = None
        if end < size:
            nxt_data = read(end, _AHEAD)
            nxt = rd.header(end, nxt_data[:_HEAD])
            if nxt is None:
                return pos
        if h.tag == TAG_SAMPLES:
            at = h.start - pos
            head = data[at : at + 24]
            stream = index.streams[h.sid]
            if not _samples_quick(stream, head, h.start, end):
                _index_samples(index, h.sid, head, h.start, end, size)
            elif nxt_data is not None:
                # The same header again (stream, length, count): look for a
                # run of such chunks, evenly spaced, all at once.
                prefix = data[: at + 7 + head[6]]
                if nxt_data[: len(prefix)] == prefix:
                    last = _repeats(stream, rd, pos, end - pos, prefix)
                    if last > end:
                        pos, data = last, read(last, _AHEAD)
                        h = rd.header(pos, data[:_HEAD])
                        continue
        else:
            _index_chunk(index, rd, h)
            if h.tag == TAG_STREAM_HEADER and nxt_data is not None:
                # The new stream's chunks are plausible now.
                nxt = rd.header(end, nxt_data[:_HEAD])
        pos, h, data = end, nxt, nxt_data
    return pos


#: Bytes read at a chunk's start: its header and, for a Samples chunk, the
#: sample count and the first sample's timestamp.
_AHEAD = 40


def _repeats(stream: StreamIndex, rd: _Reader, pos: int, step: int, prefix) -> int:
    """Index the chunks that repeat the one at ``pos`` every ``step`` bytes.

    A chunk repeats it when its header and sample count are the same bytes
    (``prefix``): then it is as plausible, as long and as whole as the first
    one. They are checked and indexed with numpy, in growing batches, up to
    the first chunk that differs. The last one that repeats is left to the
    caller (the chunk after it is not checked here): its position is
    returned, or ``pos + step`` when none repeats.
    """
    data = rd.mapped()
    size = rd.size
    want = np.frombuffer(prefix, np.uint8)
    width = np.arange(len(want))
    times = np.ndarray((max(size - 7, 0),), "<f8", data, 0, (1,))
    most = (size - pos) // step - 1  # chunks 1 .. most lie inside the file
    count = 0  # chunks 1 .. count repeat the first
    batch = 64
    while count < most:
        number = np.arange(count + 1, min(most, count + batch) + 1)
        same = (data[(pos + step * number)[:, None] + width] == want).all(axis=1)
        differs = np.flatnonzero(~same)
        indexed = max(count - 1, 0)
        count += int(differs[0]) if differs.size else len(number)
        # All but the last that repeats: the chunk after each is one too.
        at = pos + step * np.arange(indexed + 1, count)
        _index_repeated(stream, at, len(want), times, data, size)
        if differs.size:
            break
        batch = min(batch * 4, 1 << 16)
    return pos + step * max(count, 1)


def _index_repeated(stream, at, body: int, times, data, size) -> None:
    """Append chunks starting at ``at`` (the layout of the stream's last one).

    As :func:`_index_samples` would: the first timestamp where the first
    sample's flag says 8 and its bytes lie in the file.
    """
    if not len(at):
        return
    first = np.full(len(at), np.nan)
    flag_at = at + body
    readable = flag_at + 9 <= size
    marked = readable & (data[np.minimum(flag_at, size - 1)] == 8)
    first[marked] = times[flag_at[marked] + 1]
    nbytes = stream.chunk_nbytes[-1]
    count = stream.chunk_nsamples[-1]
    stream.chunk_offset.extend((flag_at).tolist())
    stream.chunk_nbytes.extend([nbytes] * len(at))
    stream.chunk_nsamples.extend([count] * len(at))
    stream.chunk_first_time.extend(first.tolist())
    stream.chunk_cut.extend([False] * len(at))
    stream.chunk_damaged.extend([False] * len(at))


def _samples_quick(stream: StreamIndex, head: bytes, start: int, end: int) -> bool:
    """Index an intact numeric Samples chunk as :func:`_index_samples` would.

    Returns ``False``, having done nothing, for anything else (string
    streams, a count or a length that do not fit), which the general
    function then handles.
    """
    fmt = stream.channel_format
    if fmt == "string" or len(head) < 8 or head[6] not in (1, 4, 8):
        return False
    pos = 7 + head[6]
    if pos > len(head):
        return False
    n = int.from_bytes(head[7:pos], "little")
    nbytes = end - (start + pos)
    vsize = stream.channel_count * FORMATS[fmt].itemsize
    if not n * (1 + vsize) <= nbytes <= n * (9 + vsize):
        return False
    first = np.nan
    if pos + 9 <= len(head) and head[pos] == 8:
        first = struct.unpack_from("<d", head, pos + 1)[0]
    stream.chunk_offset.append(start + pos)
    stream.chunk_nbytes.append(nbytes)
    stream.chunk_nsamples.append(n)
    stream.chunk_first_time.append(first)
    stream.chunk_cut.append(False)
    stream.chunk_damaged.append(False)
    return True


def _wrong_length(index: XdfIndex, rd: _Reader, h: _Header, nxt: int | None) -> int:
    """A chunk whose length is wrong: its content runs to the next chunk."""
    stop = rd.size if nxt is None else nxt
    if h.tag == TAG_SAMPLES and stop > h.start + 6:
        # Tag and stream id survive: the samples are salvaged from the bytes
        # up to the next chunk.
        index.damage.append(Damage(h.pos, h.start, "wrong chunk length", h.sid))
        _index_samples(index, h.sid, rd.read(h.start, 24), h.start, stop, rd.size, True)
    else:
        index.damage.append(Damage(h.pos, stop, "wrong chunk length", h.sid))
    return stop


def _damaged_header(index: XdfIndex, rd: _Reader, pos: int, nxt: int | None) -> int:
    """Bytes that start no chunk: a damaged header, or damage across chunks."""
    stop = rd.size if nxt is None else nxt
    for nb in (1, 4, 8):
        # A damaged length in front of an intact Samples tag and stream id.
        guess = rd.read(pos + 1 + nb, 6)
        if len(guess) == 6 and int.from_bytes(guess[:2], "little") == TAG_SAMPLES:
            sid = int.from_bytes(guess[2:6], "little")
            if sid in index.streams and pos + 1 + nb + 6 < stop:
                cs = pos + 1 + nb
                index.damage.append(Damage(pos, cs, "damaged chunk header", sid))
                _index_samples(index, sid, rd.read(cs, 24), cs, stop, rd.size, True)
                return stop
    found = _headless_samples(index, rd, pos, stop)
    if found is not None:
        # The whole header is gone, but one stream's samples tile the bytes
        # up to the next chunk: they are kept as a chunk of that stream. How
        # many samples the damage itself covered is known only as a range
        # (the count went with the header).
        sid, first, n = found
        lo, hi = _headless_lost(index.streams[sid], first - pos)
        lost = f"{hi}" if lo == hi else f"{lo}-{hi}"
        index.damage.append(
            Damage(pos, first, f"damaged chunk header, {lost} samples lost", sid)
        )
        stamp = np.nan
        if rd.read(first, 1) == b"\x08":
            stamp = struct.unpack("<d", rd.read(first + 1, 8))[0]
        index.streams[sid].add_chunk(first, stop - first, n, stamp)
        return stop
    index.damage.append(Damage(pos, stop, "unreadable bytes"))
    return stop


#: A headless stretch longer than this is not searched for samples (a
#: recorder writes chunks of a few MB; the search reads the stretch whole).
_HEADLESS_MAX = 64 << 20
#: How far into a headless stretch its first sample is looked for (damage
#: longer than this loses the stretch, as before this search existed).
_HEADLESS_SEARCH = 1 << 20
#: Samples a stream must tile, up to the next chunk, to be told from chance
#: (a wrong record size tiles k samples with odds of about 1 in 128**k).
_HEADLESS_MIN = 8


def _headless_lost(stream: StreamIndex, nbytes: int) -> tuple[int, int]:
    """Fewest and most samples the ``nbytes`` before a headless chunk's
    first kept sample held: the header took 10-24 bytes (two varlens of 1,
    4 or 8 bytes, with their size bytes, the tag and the stream id), each
    sample its record and perhaps a stamp."""
    record = 1 + stream.channel_count * FORMATS[stream.channel_format].itemsize
    lo = max(-(-(nbytes - 24) // (record + 8)), 0)
    hi = max((nbytes - 10) // record, 0)
    return lo, hi


def _headless_samples(
    index: XdfIndex, rd: _Reader, pos: int, stop: int
) -> tuple[int, int, int] | None:
    """The one numeric stream whose samples run exactly to ``stop``, or None.

    Returns its id, the byte offset of its first sample there and the number
    of samples.

    A Samples chunk whose header (length, tag, stream id, count) was
    overwritten still holds samples laid out at its stream's record size
    (a flag byte of 0 or 8, the stamp, the values) up to the next chunk.
    Each numeric stream is tried from the first position (within
    :data:`_HEADLESS_SEARCH`) where a walk of its samples ends exactly at
    ``stop`` (:func:`.salvage._reaches_end`), and fits when that walk holds
    at least :data:`_HEADLESS_MIN` samples; when more than one stream fits
    (equal record sizes, or flat data that fit any size), the stretch is not
    given to any.
    """
    if stop - pos > _HEADLESS_MAX:
        return None
    buf = rd.read(pos, stop - pos)
    mv = memoryview(buf).cast("B")
    u8 = np.frombuffer(buf, np.uint8)
    head = u8[:_HEADLESS_SEARCH]
    flags = np.flatnonzero((head == 0) | (head == 8)).tolist()
    fits = []
    for sid, stream in index.streams.items():
        if stream.channel_format == "string":
            continue
        record = 1 + stream.channel_count * FORMATS[stream.channel_format].itemsize
        if (stop - pos) < _HEADLESS_MIN * record:
            continue
        dead = bytearray(len(buf) + 1)
        for q in flags:
            m = _reaches_end(mv, q, record, len(buf), dead)
            if m >= 0:
                if m >= _HEADLESS_MIN:
                    fits.append((sid, pos + q, m))
                break
    return fits[0] if len(fits) == 1 else None


def _exact(rd: _Reader, h: _Header) -> bool:
    """Whether a chunk's content fills exactly its stated length."""
    if h.end > rd.size:
        return False
    if h.tag in (TAG_CLOCK_OFFSET, TAG_BOUNDARY):
        return True  # fixed lengths, checked with the header
    if h.tag != TAG_SAMPLES:
        skip = 2 if h.tag == TAG_FILE_HEADER else 6
        if h.length > 64 << 20:
            return False
        text = rd.read(h.start + skip, h.length - skip).strip()
        return text.startswith((b"<?xml", b"<info")) and text.endswith(b">")
    stream = rd.streams[h.sid]
    buf = rd.read(h.start + 6, h.length - 6)
    try:
        n, pos = _varlen_from(buf, 0)
    except (EOFError, ValueError, IndexError):
        return False
    body = memoryview(buf)[pos:]
    if stream.channel_format == "string":
        if n > len(body):
            return False
        values, _, _, used = _decode_strings(body, n, stream.channel_count)
        return len(values) == n and used == len(body)
    vsize = stream.channel_count * FORMATS[stream.channel_format].itemsize
    if not n * (1 + vsize) <= len(body) <= n * (9 + vsize):
        return False
    try:
        _decode_numeric(body, n, stream.channel_count, FORMATS[stream.channel_format])
    except ValueError:
        return False
    return True


def _index_chunk(index: XdfIndex, rd: _Reader, h: _Header) -> None:
    """Record one plausible chunk in the index."""
    size, streams, sid = rd.size, index.streams, h.sid
    whole = h.end <= size
    if h.tag == TAG_FILE_HEADER and whole:
        index.file_header = _parse_xml(
            rd.read(h.start + 2, h.length - 2), "file header"
        )
    elif h.tag == TAG_STREAM_HEADER and whole:
        header = _parse_xml(rd.read(h.start + 6, h.length - 6), f"stream {sid} header")
        if header is None:
            index.problems.append(f"stream {sid}: unreadable header")
            return
        try:
            streams[sid] = _new_stream(sid, header)
        except ValueError as err:
            index.problems.append(str(err))
            logger.warning("%s: ignoring a stream header: %s", index.path, err)
    elif h.tag == TAG_SAMPLES:
        _index_samples(index, sid, rd.read(h.start, 24), h.start, h.end, size)
    elif h.tag == TAG_CLOCK_OFFSET and whole:
        t, v = struct.unpack("<dd", rd.read(h.start + 6, 16))
        streams[sid].clock_times.append(t)
        streams[sid].clock_values.append(v)
    elif h.tag == TAG_STREAM_FOOTER and whole:
        streams[sid].footer = _parse_xml(
            rd.read(h.start + 6, h.length - 6), f"stream {sid} footer"
        )


def _index_samples(
    index: XdfIndex,
    sid,
    head: bytes,
    start: int,
    end: int,
    size: int,
    damaged: bool = False,
) -> None:
    stream = index.streams.get(sid)
    if stream is None:
        index.problems.append(f"samples of stream {sid} before its header")
        return
    try:
        n, pos = _varlen_from(head, 6)
    except (EOFError, ValueError, IndexError):
        if not damaged and end <= size:
            stream.truncated = True
            return
        n, pos = None, 6  # unknown count: salvaged from the bytes
    nbytes = max(min(end, size) - (start + pos), 0)
    if stream.channel_format == "string":
        most = nbytes // (1 + stream.channel_count)
        if n is not None and n > most:
            damaged = True
    else:
        vsize = stream.channel_count * FORMATS[stream.channel_format].itemsize
        most = nbytes // (1 + vsize)
        if (
            n is not None
            and end <= size
            and not n * (1 + vsize) <= nbytes <= n * (9 + vsize)
        ):
            damaged = True
    if n is None or (damaged and n > most):
        n = most  # never allocate from a corrupt count
        stream.guessed_counts.add(len(stream.chunk_offset))
    first = np.nan
    if pos < len(head) and head[pos] == 8 and pos + 9 <= len(head):
        first = struct.unpack("<d", head[pos + 1 : pos + 9])[0]
    stream.add_chunk(start + pos, nbytes, n, first, end > size, damaged)
    if end > size:
        stream.truncated = True
