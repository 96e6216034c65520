"""Low-level XDF reading: chunk index and vectorised sample decoding.

An XDF file is the magic ``XDF:`` followed by chunks ``[NumLengthBytes]
[Length] [Tag] [Content]``. Tags: 1 FileHeader, 2 StreamHeader, 3 Samples,
4 ClockOffset, 5 Boundary, 6 StreamFooter. :func:`index_xdf` walks the chunk
headers only (seeking over sample payloads) and records where every Samples
chunk lies, its sample count and its first timestamp; :func:`read_samples`
then decodes the chunks asked for, each as whole numpy arrays, straight into
preallocated output arrays. Timestamps are returned as stored (sender's clock,
no synchronisation): see :mod:`stimtrain.analysis.xdfclock`.

A sample is ``[TimeStampBytes] [TimeStamp] [values]`` where TimeStampBytes
is 0 (the time is the previous one plus 1/nominal_srate) or 8 (a double
follows). Numeric values are little-endian; a string value is a
variable-length length and the bytes.
"""

from __future__ import annotations

import logging
import os
import struct
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from xml.etree.ElementTree import ParseError, fromstring

import numpy as np

logger = logging.getLogger("stimtrain.analysis.xdffile")

__all__ = ["XdfIndex", "StreamIndex", "index_xdf", "read_samples", "xml_to_dict"]

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


def _read_varlen(f) -> int:
    nbytes = f.read(1)
    if not nbytes:
        raise EOFError
    size = nbytes[0]
    if size not in (1, 4, 8):
        raise ValueError(f"invalid variable-length integer size byte {size}")
    raw = f.read(size)
    if len(raw) != size:
        raise EOFError
    return int.from_bytes(raw, "little")


def _varlen_from(buf, pos: int) -> tuple[int, int]:
    """Decode a variable-length integer at ``buf[pos]``; return value, next pos."""
    size = buf[pos]
    if size not in (1, 4, 8):
        raise ValueError(f"invalid variable-length integer size byte {size}")
    end = pos + 1 + size
    if end > len(buf):
        raise EOFError
    return int.from_bytes(buf[pos + 1 : end], "little"), end


def _scan_to_boundary(f) -> bool:
    """Move after the next Boundary chunk's UUID; False at end of file."""
    block = 1 << 20
    while True:
        here = f.tell()
        data = f.read(block)
        hit = data.find(BOUNDARY_UUID)
        if hit >= 0:
            f.seek(here + hit + len(BOUNDARY_UUID))
            return True
        if len(data) < block:
            return False
        f.seek(here + len(data) - len(BOUNDARY_UUID))


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
    return StreamIndex(
        stream_id=sid,
        header=header,
        name=str(text("name")),
        type=str(text("type")),
        channel_count=int(text("channel_count", "0")),
        channel_format=fmt,
        nominal_srate=float(text("nominal_srate", "0")),
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
        samples of a cut Samples chunk are kept.
    """
    path = Path(fname)
    if not path.is_file():
        raise FileNotFoundError(f"no XDF file at {path}")
    size = os.path.getsize(path)
    streams: dict[int, StreamIndex] = {}
    index = XdfIndex(path=path, file_header=None, streams=streams)
    with open(path, "rb") as f:
        if f.read(4) != b"XDF:":
            raise ValueError(f"{path} is not an XDF file: it does not start with XDF:")
        while True:
            chunk_pos = f.tell()
            try:
                length = _read_varlen(f)
            except EOFError:
                if f.tell() != chunk_pos:
                    index.truncated = True
                break
            except ValueError as err:
                index.problems.append(f"corrupt chunk length at byte {chunk_pos}")
                logger.warning("%s: %s; scanning to the next boundary", path, err)
                f.seek(chunk_pos + 1)
                if _scan_to_boundary(f):
                    continue
                break
            start = f.tell()
            end = start + length
            if end > size:
                index.truncated = True
            head = f.read(min(length, 2 + 4 + 9 + 9))
            if len(head) < 2:
                index.truncated = True
                break
            tag = int.from_bytes(head[:2], "little")
            sid = int.from_bytes(head[2:6], "little") if len(head) >= 6 else None
            if tag in (TAG_STREAM_HEADER, TAG_SAMPLES, TAG_CLOCK_OFFSET):
                if sid is None:
                    index.truncated = True
                    break
            if tag == TAG_FILE_HEADER and end <= size:
                f.seek(start + 2)
                index.file_header = _parse_xml(f.read(length - 2), "file header")
            elif tag == TAG_STREAM_HEADER and end <= size:
                f.seek(start + 6)
                header = _parse_xml(f.read(length - 6), f"stream {sid} header")
                if header is not None:
                    streams[sid] = _new_stream(sid, header)
            elif tag == TAG_SAMPLES:
                _index_samples(index, sid, head, start, end, size)
            elif tag == TAG_CLOCK_OFFSET and end <= size and len(head) >= 22:
                if sid in streams:
                    t, v = struct.unpack("<dd", head[6:22])
                    streams[sid].clock_times.append(t)
                    streams[sid].clock_values.append(v)
            elif tag == TAG_STREAM_FOOTER and end <= size and sid in streams:
                f.seek(start + 6)
                streams[sid].footer = _parse_xml(
                    f.read(length - 6), f"stream {sid} footer"
                )
            if end >= size:
                break
            f.seek(end)
    if index.truncated:
        index.problems.append("the file ends inside a chunk")
    return index


def _index_samples(
    index: XdfIndex, sid, head: bytes, start: int, end: int, size: int
) -> None:
    stream = index.streams.get(sid)
    if stream is None:
        index.problems.append(f"samples of stream {sid} before its header")
        return
    try:
        n, pos = _varlen_from(head, 6)
    except (EOFError, ValueError, IndexError):
        stream.truncated = True
        return
    first = np.nan
    if pos < len(head) and head[pos] == 8 and pos + 9 <= len(head):
        first = struct.unpack("<d", head[pos + 1 : pos + 9])[0]
    stream.chunk_offset.append(start + pos)
    stream.chunk_nbytes.append(max(min(end, size) - (start + pos), 0))
    stream.chunk_nsamples.append(n)
    stream.chunk_first_time.append(first)
    stream.chunk_cut.append(end > size)
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
    """Decode one Samples chunk of a string stream (sample by sample)."""
    values, stamps, flags = [], [], []
    pos, size = 0, len(buf)
    try:
        for _ in range(n):
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
            values.append(row)
            stamps.append(stamp)
            flags.append(flag)
    except (EOFError, IndexError):
        pass  # a cut chunk: keep the complete samples
    return values, np.asarray(stamps, float), np.asarray(flags, np.uint8)


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
        Keyed by stream id.
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
    out: dict[int, dict] = {}
    for sid, (stream, starts, masks) in plans.items():
        kept = sum(
            int(starts[c + 1] - starts[c])
            if isinstance(masks[c], slice)
            else int(np.count_nonzero(masks[c]))
            for c in range(len(masks))
        )
        if stream.channel_format == "string":
            state = dict(values=[], stamps=[], flags=[], index=None)
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
        state["n_cut"] = 0
        out[sid] = state
    if not jobs:
        return {sid: _finish(index.streams[sid], st) for sid, st in out.items()}
    largest = max(index.streams[sid].chunk_nbytes[c] for _, sid, c in jobs)
    buf = bytearray(largest)
    view = memoryview(buf)
    with open(index.path, "rb") as f:
        for offset, sid, c in jobs:
            stream, starts, masks = plans[sid]
            nbytes = stream.chunk_nbytes[c]
            f.seek(offset)
            got = f.readinto(view[:nbytes])
            data = view[:got]
            n = stream.chunk_nsamples[c]
            state = out[sid]
            if stream.channel_format == "string":
                values, stamps, flags = _decode_strings(data, n, stream.channel_count)
                state["values"].extend(values)
                state["stamps"].append(stamps)
                state["flags"].append(flags)
                state["n_cut"] += n - len(values)
                continue
            dtype = FORMATS[stream.channel_format]
            values, stamps, flags = _decode_numeric(
                data, n, stream.channel_count, dtype, stream.chunk_cut[c]
            )
            m = len(flags)
            state["n_cut"] += n - m
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
    return {sid: _finish(index.streams[sid], st) for sid, st in out.items()}


def _finish(stream: StreamIndex, state: dict) -> StreamSamples:
    if stream.channel_format == "string":
        stamps = np.concatenate(state["stamps"]) if state["stamps"] else np.zeros(0)
        flags = (
            np.concatenate(state["flags"]) if state["flags"] else np.zeros(0, np.uint8)
        )
        deduce_timestamps(stamps, flags, stream.tdiff)
        return StreamSamples(state["values"], stamps, None, state["n_cut"])
    fill = state["fill"]
    values, stamps, flags, numbers = (
        state["values"],
        state["stamps"],
        state["flags"],
        state["index"],
    )
    if fill < len(stamps):
        # A cut last chunk held fewer samples than announced: shrink in place.
        values.resize((fill, values.shape[1]), refcheck=False)
        stamps.resize(fill, refcheck=False)
        flags.resize(fill, refcheck=False)
        if numbers is not None:
            numbers.resize(fill, refcheck=False)
    if numbers is None:
        deduce_timestamps(stamps, flags, stream.tdiff)
    else:
        _deduce_sparse(stream, stamps, flags, numbers)
    return StreamSamples(values, stamps, numbers, state["n_cut"])


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
