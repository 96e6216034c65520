"""What the chunk index of an XDF file holds: streams, their chunks, damage.

:func:`~stimtrain.xdf.index.index_xdf` fills these tables; the readers of
samples (:mod:`.samples`, :mod:`.fast`) and the salvage (:mod:`.salvage`)
read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


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

    def add_chunk(
        self,
        offset: int,
        nbytes: int,
        n: int,
        first_time: float,
        cut: bool = False,
        damaged: bool = False,
    ) -> None:
        """Record one Samples chunk: its first sample's byte, payload bytes,
        sample count and first timestamp (NaN when deduced)."""
        self.chunk_offset.append(offset)
        self.chunk_nbytes.append(nbytes)
        self.chunk_nsamples.append(n)
        self.chunk_first_time.append(first_time)
        self.chunk_cut.append(cut)
        self.chunk_damaged.append(damaged)

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
