"""Finding chunk headers, in intact and in damaged files.

:class:`_Reader` tells whether a plausible chunk header lies at a position
and, after damage, scans for the next place where a chunk surely begins
(its header, the chunk after it, and for Samples chunks the sample count
fitting the length; a Boundary chunk's UUID).
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass

import numpy as np

from .format import (
    BOUNDARY_UUID,
    FORMATS,
    TAG_BOUNDARY,
    TAG_CLOCK_OFFSET,
    TAG_FILE_HEADER,
    TAG_SAMPLES,
    TAG_STREAM_FOOTER,
    TAG_STREAM_HEADER,
    _varlen_from,
)

_HEAD = 1 + 8 + 2 + 4  # the longest chunk header: varlen, tag, stream id
_SCAN_BLOCK = 1 << 20


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
    """Chunk headers of one file (an open file descriptor ``fd``).

    Each read is one ``pread``: no seeking, no read-ahead of sample bytes,
    and no pages of the file mapped into the process.
    """

    def __init__(self, fd: int, size: int, streams: dict):
        self.fd, self.size, self.streams = fd, size, streams
        self._map = self._bytes = None

    def read(self, pos: int, n: int) -> bytes:
        return os.pread(self.fd, n, pos) if 0 <= pos < self.size else b""

    def mapped(self) -> np.ndarray:
        """The file's bytes as an array over a memory map (made once).

        Pages are mapped one at a time as they are read (no read-around), so
        reading a few bytes per chunk maps only the pages holding them.
        """
        if self._bytes is None:
            self._map = mmap.mmap(self.fd, 0, access=mmap.ACCESS_READ)
            if hasattr(self._map, "madvise") and hasattr(mmap, "MADV_RANDOM"):
                self._map.madvise(mmap.MADV_RANDOM)
            self._bytes = np.frombuffer(self._map, np.uint8)
        return self._bytes

    def close(self) -> None:
        """Unmap the file if it was mapped."""
        if self._map is not None:
            self._bytes = None
            self._map.close()
            self._map = None

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
