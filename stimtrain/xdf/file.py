"""Low-level XDF reading: chunk index and vectorised sample decoding.

An XDF file is the magic ``XDF:`` followed by chunks ``[NumLengthBytes]
[Length] [Tag] [Content]``. Tags: 1 FileHeader, 2 StreamHeader, 3 Samples,
4 ClockOffset, 5 Boundary, 6 StreamFooter. :func:`index_xdf` walks the chunk
headers only (seeking over sample payloads) and records where every Samples
chunk lies, its sample count and its first timestamp; :func:`read_samples`
then decodes the chunks asked for, each as whole numpy arrays, straight into
preallocated output arrays. Timestamps are returned as stored (sender's clock,
no synchronisation): see :mod:`stimtrain.xdf.clock`.

A sample is ``[TimeStampBytes] [TimeStamp] [values]`` where TimeStampBytes
is 0 (the time is the previous one plus 1/nominal_srate) or 8 (a double
follows). Numeric values are little-endian; a string value is a
variable-length length and the bytes.

Longer than most because indexing, decoding and salvaging share the chunk
format and one pass over the bytes; a damaged file is read by all three at
once.
"""

from __future__ import annotations

import logging
import os
import struct
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from xml.etree.ElementTree import ParseError, fromstring

import numpy as np

logger = logging.getLogger("stimtrain.xdf.file")

__all__ = [
    "Damage",
    "XdfError",
    "XdfIndex",
    "StreamIndex",
    "index_xdf",
    "read_samples",
    "xml_to_dict",
]

TAG_FILE_HEADER = 1
TAG_STREAM_HEADER = 2
TAG_SAMPLES = 3
TAG_CLOCK_OFFSET = 4
TAG_BOUNDARY = 5
TAG_STREAM_FOOTER = 6

FORMATS = {
    "int8": np.dtype("<i1"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "float32": np.dtype("<f4"),
    "double64": np.dtype("<f8"),
}
# Boundary chunks carry this UUID; used to resynchronise after corruption.
BOUNDARY_UUID = bytes.fromhex("43a546dccbf5410fb30ed5467383cbe4")


def xml_to_dict(element) -> dict:
    """Turn an attribute-less XML element into pyxdf's nested dict form.

    Every child tag maps to a list of its values (dicts or text), so that
    ``info["name"][0]`` is the stream's name, as in :func:`pyxdf.load_xdf`.
    """
    children: defaultdict = defaultdict(list)
    for child in element:
        for key, value in xml_to_dict(child).items():
            children[key].append(value)
    return {element.tag: children or element.text}


def _parse_xml(raw: bytes, what: str) -> dict | None:
    try:
        return xml_to_dict(fromstring(raw.decode("utf-8", "replace")))
    except ParseError as err:
        logger.warning("Ignoring the corrupt XML of a %s (%s)", what, err)
        return None


class XdfError(ValueError):
    """A file that cannot be read as XDF at all (no magic, no stream header)."""


@dataclass
class Damage:
    """A damaged stretch of an XDF file and what it cost.

    ``offset`` and ``end`` are byte offsets in the file; ``stream_id`` is the
    stream whose chunk was damaged (``None`` when no stream could be told);
    ``samples_lost`` the announced samples that could not be read (``None``
    when unknown).
    """

    offset: int
    end: int
    what: str
    stream_id: int | None = None
    samples_lost: int | None = None

    @property
    def nbytes(self) -> int:
        """Bytes in the damaged stretch."""
        return max(self.end - self.offset, 0)


@dataclass
class StreamIndex:
    """Where one stream's data lie in the file, and its header fields."""

    stream_id: int
    header: dict  # pyxdf form: {"info": {...}}
    name: str
    type: str
    channel_count: int
    channel_format: str
    nominal_srate: float
    footer: dict | None = None
    clock_times: list[float] = field(default_factory=list)
    clock_values: list[float] = field(default_factory=list)
    # One entry per Samples chunk, in file order.
    chunk_offset: list[int] = field(default_factory=list)  # first sample's byte
    chunk_nbytes: list[int] = field(default_factory=list)  # payload bytes present
    chunk_nsamples: list[int] = field(default_factory=list)
    chunk_first_time: list[float] = field(default_factory=list)  # nan: deduced
    chunk_cut: list[bool] = field(default_factory=list)  # cut off by end of file
    chunk_damaged: list[bool] = field(default_factory=list)  # to be salvaged
    guessed_counts: set[int] = field(default_factory=set)  # chunks, count unknown
    truncated: bool = False  # its last chunk is cut off

    @property
    def n_samples(self) -> int:
        """Samples announced by the chunk headers (a cut chunk may hold fewer)."""
        return int(sum(self.chunk_nsamples))

    @property
    def tdiff(self) -> float:
        """The nominal sampling interval used for deduced timestamps."""
        return 1.0 / self.nominal_srate if self.nominal_srate > 0 else 0.0

    def estimated_times(self) -> tuple[np.ndarray, np.ndarray]:
        """Estimated raw times of each chunk's first sample and sample index.

        Deduced first timestamps are extrapolated from the previous chunk, as
        the decoder would deduce them.
        """
        n = np.asarray(self.chunk_nsamples, np.int64)
        start = np.concatenate(([0], np.cumsum(n)[:-1])).astype(np.int64)
        first = np.asarray(self.chunk_first_time, float)
        last = 0.0
        for ii in range(len(first)):
            if np.isnan(first[ii]):
                first[ii] = last + self.tdiff
            last = first[ii] + (n[ii] - 1) * self.tdiff
        return first, start


@dataclass
class XdfIndex:
    """The chunk index of an XDF file (see :func:`index_xdf`)."""

    path: Path
    file_header: dict | None
    streams: dict[int, StreamIndex]
    truncated: bool = False  # the file ends inside a chunk
    problems: list[str] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)  # stretches skipped
    bad_stamps: dict[int, list[int]] = field(default_factory=dict)  # sample numbers

    def damage_summary(self, samples: dict | None = None) -> str | None:
        """One sentence on what damage cost, or ``None`` for an intact file.

        Parameters
        ----------
        samples : dict of int to StreamSamples | None
            What :func:`read_samples` returned (for the samples lost).
        """
        if not self.damage and not self.bad_stamps:
            return None
        parts = []
        if self.damage:
            spans = sorted({(d.offset, d.end, d.what) for d in self.damage})
            nbytes = sum(b - a for a, b, _ in spans)
            where = ", ".join(f"{a}-{b} ({what})" for a, b, what in spans[:8])
            more = f" and {len(spans) - 8} more" if len(spans) > 8 else ""
            parts.append(
                f"damaged: {nbytes} bytes skipped or repaired at byte offsets "
                f"{where}{more}"
            )
        if samples:
            lost = {
                self.streams[sid].name or str(sid): s.n_lost
                for sid, s in samples.items()
                if s.n_lost
            }
            if lost:
                parts.append(
                    "samples lost: " + ", ".join(f"{k} {v}" for k, v in lost.items())
                )
        for sid, numbers in self.bad_stamps.items():
            name = self.streams[sid].name or str(sid)
            regular = self.streams[sid].nominal_srate > 0
            shown = ", ".join(map(str, numbers[:5]))
            more = "…" if len(numbers) > 5 else ""
            parts.append(
                f"{len(numbers)} timestamp(s) of {name} out of line (samples "
                f"{shown}{more}), "
                + ("re-derived from their neighbours" if regular else "dropped")
            )
        return f"{self.path.name}: " + "; ".join(parts)

    def select(self, select=None) -> list[int]:
        """Stream ids matching ``select`` (see :func:`read_samples`)."""
        if select is None:
            return list(self.streams)
        if isinstance(select, str | int | dict):
            select = [select]
        out = []
        for sid, s in self.streams.items():
            for item in select:
                if isinstance(item, bool) or not isinstance(item, str | int | dict):
                    raise TypeError(
                        "select must hold stream names/types (str), ids (int) or "
                        f"header field dicts; got {item!r}"
                    )
                if isinstance(item, int):
                    hit = sid == item
                elif isinstance(item, str):
                    hit = item in (s.name, s.type)
                else:
                    fields = s.header.get("info", {})
                    hit = all(
                        str((fields.get(k) or [None])[0]) == str(v)
                        for k, v in item.items()
                    )
                if hit:
                    out.append(sid)
                    break
        return out


_HEAD = 1 + 8 + 2 + 4  # the longest chunk header: varlen, tag, stream id
_SCAN_BLOCK = 1 << 20


def _varlen_from(buf, pos: int) -> tuple[int, int]:
    """Decode a variable-length integer at ``buf[pos]``; return value, next pos."""
    size = buf[pos]
    if size not in (1, 4, 8):
        raise ValueError(f"invalid variable-length integer size byte {size}")
    end = pos + 1 + size
    if end > len(buf):
        raise EOFError
    return int.from_bytes(buf[pos + 1 : end], "little"), end


@dataclass
class _Header:
    """A chunk header as found at ``pos`` (not yet known to be right)."""

    pos: int
    length: int
    tag: int
    sid: int | None
    start: int  # first byte after the length: the tag

    @property
    def end(self) -> int:
        return self.start + self.length


class _Reader:
    """Chunk headers of one file, read through small cached reads."""

    def __init__(self, f, size: int, streams: dict):
        self.f, self.size, self.streams = f, size, streams

    def read(self, pos: int, n: int) -> bytes:
        self.f.seek(pos)
        return self.f.read(n)

    def header(self, pos: int, data: bytes | None = None) -> _Header | None:
        """The chunk header at ``pos`` if it is plausible, else ``None``.

        Plausible: a length of 1, 4 or 8 bytes, a known tag, a stream id
        among the declared streams (Samples, ClockOffset, StreamFooter), the
        fixed length of ClockOffset and Boundary chunks. The chunk may end
        beyond the file (checked by the caller).
        """
        if data is None:
            data = self.read(pos, _HEAD)
        if not data or data[0] not in (1, 4, 8):
            return None
        nb = data[0]
        if len(data) < 1 + nb + 2:
            return None
        length = int.from_bytes(data[1 : 1 + nb], "little")
        tag = int.from_bytes(data[1 + nb : 3 + nb], "little")
        if tag < TAG_FILE_HEADER or tag > TAG_STREAM_FOOTER or length < 2:
            return None
        sid = None
        if tag not in (TAG_FILE_HEADER, TAG_BOUNDARY):
            if len(data) < 7 + nb or length < 6:
                return None
            sid = int.from_bytes(data[3 + nb : 7 + nb], "little")
            if tag != TAG_STREAM_HEADER and sid not in self.streams:
                return None
        if tag == TAG_CLOCK_OFFSET and length != 22:
            return None
        if tag == TAG_BOUNDARY and length != 18:
            return None
        return _Header(pos, length, tag, sid, pos + 1 + nb)

    def whole(self, h: _Header | None) -> bool:
        """The chunk lies inside the file and is followed by a plausible one."""
        if h is None or h.end > self.size:
            return False
        return h.end == self.size or self.header(h.end) is not None

    def anchored(self, h: _Header | None) -> bool:
        """A strong check for a chunk found by scanning (see :meth:`scan`)."""
        if not self.whole(h):
            return False
        if h.tag == TAG_BOUNDARY:
            return self.read(h.start + 2, 16) == BOUNDARY_UUID
        if h.tag in (TAG_FILE_HEADER, TAG_STREAM_HEADER, TAG_STREAM_FOOTER):
            skip = 2 if h.tag == TAG_FILE_HEADER else 6
            if not self.read(h.start + skip, 5).startswith((b"<?xml", b"<info")):
                return False
        if h.tag == TAG_SAMPLES and not self._samples_fit(h):
            return False
        # Two chunks in a row: the next one must also be whole (or end the file).
        return h.end == self.size or self.whole(self.header(h.end))

    def _samples_fit(self, h: _Header) -> bool:
        stream = self.streams[h.sid]
        head = self.read(h.start + 6, 9)
        try:
            n, pos = _varlen_from(head, 0)
        except (EOFError, ValueError, IndexError):
            return False
        payload = h.length - 6 - pos
        if payload < 0 or (n == 0) != (payload == 0):
            return False
        if stream.channel_format == "string":
            return n <= payload
        vsize = stream.channel_count * FORMATS[stream.channel_format].itemsize
        return n * (1 + vsize) <= payload <= n * (9 + vsize)

    def scan(self, start: int, stop: int | None = None) -> int | None:
        """The first position at or after ``start`` where a chunk surely begins.

        Candidates are picked with numpy (a length byte of 1, 4 or 8 followed
        by a known tag, and a declared stream id where the tag has one), then
        checked with :meth:`anchored`. Reads the file in 1 MiB blocks.
        """
        stop = self.size if stop is None else min(stop, self.size)
        ids = np.fromiter(self.streams, np.uint32, len(self.streams))
        pos = start
        while pos < stop:
            block = self.read(pos, _SCAN_BLOCK + _HEAD)
            if len(block) < 3:
                return None
            u8 = np.frombuffer(block, np.uint8)
            usable = min(_SCAN_BLOCK, len(block), stop - pos)
            found = []
            for nb in (1, 4, 8):
                room = len(u8) - (7 + nb)
                k = min(usable, max(room, 0))
                if k <= 0:
                    continue
                c = np.flatnonzero(u8[:k] == nb)
                if c.size == 0:
                    continue
                tag = u8[c + 1 + nb].astype(np.int64) | (
                    u8[c + 2 + nb].astype(np.int64) << 8
                )
                ok = (tag >= TAG_FILE_HEADER) & (tag <= TAG_STREAM_FOOTER)
                c, tag = c[ok], tag[ok]
                sid = np.zeros(len(c), np.uint32)
                for b in range(4):
                    sid |= u8[c + 3 + nb + b].astype(np.uint32) << (8 * b)
                keyed = (tag == TAG_SAMPLES) | (tag == TAG_CLOCK_OFFSET)
                keyed |= tag == TAG_STREAM_FOOTER
                ok = ~keyed | np.isin(sid, ids)
                found.append(c[ok])
            for c in np.sort(np.concatenate(found)) if found else ():
                here = pos + int(c)
                if self.anchored(self.header(here)):
                    return here
            if len(block) < _SCAN_BLOCK + _HEAD:
                return None
            pos += _SCAN_BLOCK
        return None


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
        id survive is kept for :func:`read_samples` to salvage. What was
        skipped is listed in ``index.damage``.

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
        rd = _Reader(f, size, streams)
        pos = 4
        while pos < size:
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
    if index.truncated:
        index.problems.append("the file ends inside a chunk")
    return index


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
    index.damage.append(Damage(pos, stop, "unreadable bytes"))
    return stop


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
    stream.chunk_offset.append(start + pos)
    stream.chunk_nbytes.append(nbytes)
    stream.chunk_nsamples.append(n)
    stream.chunk_first_time.append(first)
    stream.chunk_cut.append(end > size)
    stream.chunk_damaged.append(damaged)
    if end > size:
        stream.truncated = True


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
    values = np.lib.stride_tricks.sliding_window_view(u8, vsize)[pos + 1 + flags]
    values = values.view(dtype).reshape(m, nch)
    stamps = np.zeros(m)
    has = flags == 8
    if has.any():
        raw = np.lib.stride_tricks.sliding_window_view(u8, 8)[pos[has] + 1]
        stamps[has] = raw.view("<f8")[:, 0]
    return values, stamps, flags


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
    missing = np.flatnonzero(flags == 0)
    if missing.size == 0:
        return
    # Depth of a missing stamp = steps since the last sample with a stamp.
    run_start = np.ones(missing.size, bool)
    run_start[1:] = np.diff(missing) != 1
    run_id = np.cumsum(run_start) - 1
    starts = missing[run_start]
    depth = missing - starts[run_id] + 1
    lengths = np.bincount(run_id)
    long_runs = np.flatnonzero(lengths > 64)
    short = lengths[run_id] <= 64
    for d in range(1, min(int(depth.max()), 64) + 1):
        k = missing[short & (depth == d)]
        if k.size:
            prev = stamps[np.maximum(k - 1, 0)]
            prev[k == 0] = 0.0  # the decoder's "last time" starts at 0
            stamps[k] = prev + tdiff
    for r in long_runs:
        a, n = starts[r], lengths[r]
        seed = stamps[a - 1] if a > 0 else 0.0
        steps = np.full(n + 1, tdiff)
        steps[0] = seed
        stamps[a : a + n] = np.cumsum(steps)[1:]


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
        state.update(n_cut=0, n_lost=0, breaks=[], last_end=None)
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
                _note_salvage(index, state, sid, offset, s, n, len(s.positions))
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


def _note_salvage(index, state, sid, offset, s: _Salvaged, n: int, m: int) -> None:
    """Record what a salvaged chunk lost, and where decoding resumed."""
    fill = state["fill"]
    state["breaks"].extend(fill + r for r in s.resumes)
    lost = max(n - m, 0)
    state["n_lost"] += lost
    for a, b in s.skipped:
        index.damage.append(
            Damage(offset + a, offset + b, "damaged samples", sid, None)
        )
    if s.skipped:
        index.damage[-1].samples_lost = lost
    elif lost:
        index.damage.append(Damage(offset, offset, "damaged samples", sid, lost))


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
    bad = _bad_stamps(stamps, flags, numbers, stream.tdiff)
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
                values = values[keep]
            numbers = None if numbers is None else numbers[keep]
            breaks = []
    if breaks and stream.tdiff > 0:
        _backfill(stamps, flags, numbers, breaks, stream.tdiff)
    if numbers is None:
        deduce_timestamps(stamps, flags, stream.tdiff)
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


def _bad_stamps(stamps, flags, numbers, tdiff: float) -> np.ndarray:
    """Samples whose stored timestamp cannot be right.

    A regular stream's timestamp is out of line when it lies more than
    ``max(BAD_STAMP_SECONDS, BAD_STAMP_SAMPLES / srate)`` off the nominal-rate
    line through both its previous and its next few stamped samples (so a
    real gap, a lasting step, is kept); an irregular stream's when it is more
    than ``BAD_ORDER_SECONDS`` before its previous ones' median or after its
    next ones'. Non-finite timestamps are always out of line. Fast when
    nothing is: one pass over the differences.
    """
    has = np.flatnonzero(flags == 8)
    if has.size == 0:
        return has
    limit = max(BAD_STAMP_SECONDS, BAD_STAMP_SAMPLES * tdiff) if tdiff > 0 else None
    dense = numbers is None and has.size == len(flags)
    t = stamps if dense else stamps[has]
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
            return has[:0]
        if tdiff <= 0 and lo >= -BAD_ORDER_SECONDS and np.isfinite(t).all():
            return has[:0]
    elif np.isfinite(t).all():
        return has[:0]
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
    bad = []
    for j in idx.tolist():
        if not finite[j]:
            bad.append(j)
            continue
        left = u[max(j - _NEIGHBOURS, 0) : j]
        right = u[j + 1 : j + 1 + _NEIGHBOURS]
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


def _backfill(stamps, flags, numbers, breaks, tdiff: float) -> None:
    """Timestamps of unstamped samples after lost ones, back from the next stamp."""
    stamped = np.flatnonzero(flags == 8)
    for r in breaks:
        if r >= len(flags) or flags[r] == 8:
            continue
        g = np.searchsorted(stamped, r)
        if g >= len(stamped):
            continue
        g = int(stamped[g])
        steps = (
            np.arange(g - r, 0, -1) if numbers is None else numbers[g] - numbers[r:g]
        )
        stamps[r:g] = stamps[g] - steps * tdiff
        flags[r:g] = 8


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
