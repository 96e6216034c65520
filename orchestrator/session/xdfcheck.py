"""The end-of-session check of a recording: does the XDF hold what was done?

:func:`check_recording` reads a run's XDF file and its journal and reports,
for the session summary: whether the file ended cleanly, the streams it holds,
and whether every pulse in the journal has its pulse marker (and at what
time). Only the marker stream's samples are decoded; the signal streams are
summarised from the file's chunk index, so an hour of EEG is checked in
moments. A file whose recorder was killed is checked as far as it goes.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np

from stimtrain.vocabulary import MARKER_STREAM_PREFIX, MARKER_STREAM_TYPE, decode_marker

from .journal import read_journal

logger = logging.getLogger("stimtrain.orchestrator.session.xdfcheck")


@dataclass
class StreamCheck:
    """One stream of the file, from its header and chunk index.

    ``duration_s`` spans the first to the last sample's timestamp (sender's
    clock; from the footer when there is one, else estimated from the chunk
    index). ``effective_srate`` is None for irregular streams.
    """

    name: str
    type: str
    channel_count: int
    n_samples: int
    duration_s: float
    nominal_srate: float
    effective_srate: float | None
    footer: bool


@dataclass
class RecordingCheck:
    """What :func:`check_recording` found; ``ok`` when ``problems`` is empty.

    Pulses are ``(block, pulse)`` pairs. ``offset_max_ms`` and
    ``offset_median_ms`` are the largest and median ``|marker timestamp -
    journal actual|`` over the matched pulses. ``notes`` hold what is worth
    knowing but not wrong (no footer after a kill, a cut-off last chunk).
    """

    xdf_path: str
    journal_path: str
    footer: bool = False
    truncated: bool = False
    streams: list[StreamCheck] = field(default_factory=list)
    marker_stream: str | None = None
    pulses_journal: int = 0
    pulses_matched: int = 0
    missing_in_xdf: list[tuple[int, int]] = field(default_factory=list)
    extra_in_xdf: list[tuple[int, int]] = field(default_factory=list)
    duplicate_in_xdf: list[tuple[int, int]] = field(default_factory=list)
    offset_max_ms: float | None = None
    offset_median_ms: float | None = None
    marker_counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """The file loaded and every pulse matches its marker."""
        return not self.problems

    @property
    def reason(self) -> str | None:
        """The problems as one sentence, or None when ``ok``."""
        return "; ".join(self.problems) or None

    def as_dict(self) -> dict:
        """A JSON-ready dict for ``summary.json`` (pulse pairs as lists)."""
        out = {"ok": self.ok, "reason": self.reason, **dataclasses.asdict(self)}
        for key in ("missing_in_xdf", "extra_in_xdf", "duplicate_in_xdf"):
            out[key] = [list(pair) for pair in out[key]]
        return out


def check_recording(
    xdf_path: str | PathLike,
    journal_path: str | PathLike,
    *,
    marker_stream: str | None = None,
    required_streams: Sequence[str] = (),
) -> RecordingCheck:
    """Check a run's XDF file against its journal.

    Parameters
    ----------
    xdf_path : path-like
        The run's recording.
    journal_path : path-like
        The run's journal (JSON lines, see
        :mod:`~stimtrain.orchestrator.session.journal`).
    marker_stream : str | None
        Name of the marker stream; ``None`` takes the stream of type
        ``"Markers"`` whose name starts with ``"stimtrain-markers"``.
    required_streams : sequence of str
        Names of streams that must be in the file with samples (the rig's
        EEG and EMG).

    Returns
    -------
    check : RecordingCheck
        Never raises for a bad file or journal: what went wrong is in
        ``check.problems`` and ``check.ok`` is False.

    Notes
    -----
    Marker timestamps are compared as stored, without clock synchronisation:
    the runner stamps each pulse marker with the actual time that it also
    writes to the journal, both on its own LSL clock, so they should agree
    to the bit.
    """
    check = RecordingCheck(str(xdf_path), str(journal_path))
    journal = _journal_pulses(journal_path, check)
    markers = _read_xdf(Path(xdf_path), marker_stream, required_streams, check)
    if markers is None:
        check.missing_in_xdf = sorted(journal)
    else:
        _match_pulses(journal, *markers, check)
    logger.info(
        "recording check of %s: %s", xdf_path, "ok" if check.ok else check.reason
    )
    return check


def _journal_pulses(path, check: RecordingCheck) -> dict[tuple[int, int], float]:
    """The journal's pulses as ``{(block, pulse): actual}``."""
    try:
        entries = read_journal(path)
    except (OSError, UnicodeDecodeError) as exc:
        check.problems.append(f"journal {path} unreadable: {exc}")
        return {}
    pulses = {}
    for entry in entries:
        if entry.get("event") != "pulse":
            continue
        key = _pulse_key(entry)
        if key is None:
            check.problems.append(f"journal pulse without block/pulse numbers: {entry}")
            continue
        if key in pulses:
            check.problems.append(f"journal lists pulse {key} twice")
            continue
        pulses[key] = float(entry.get("actual", np.nan))
    check.pulses_journal = len(pulses)
    return pulses


def _read_xdf(
    path: Path, marker_stream, required, check: RecordingCheck
) -> tuple[np.ndarray, list[dict]] | None:
    """Summarise the streams; return the markers' times and decoded values.

    ``None`` when the file can't be read or has no marker stream.
    """
    # Imported here: the analysis package pulls in MNE, which the runner
    # needs only at the end of a session.
    from stimtrain.xdf.file import index_xdf
    from stimtrain.xdf.load import load_streams

    try:
        index = index_xdf(path)
    except (OSError, ValueError) as exc:
        check.problems.append(f"XDF file {path} unreadable: {exc}")
        return None
    check.truncated = index.truncated
    check.footer = bool(index.streams) and all(
        s.footer is not None for s in index.streams.values()
    )
    if not check.footer:
        check.notes.append("no stream footer: the recorder did not finish the file")
    check.notes.extend(index.problems)
    check.streams = [_stream_check(s) for s in index.streams.values()]
    for name in required:
        found = [s for s in check.streams if s.name == name]
        if not found:
            check.problems.append(f"required stream {name!r} is not in the file")
        elif not any(s.n_samples for s in found):
            check.problems.append(f"required stream {name!r} holds no sample")

    ids = [
        sid
        for sid, s in index.streams.items()
        if (s.name == marker_stream if marker_stream else _is_stimtrain_marker(s))
    ]
    if not ids:
        visible = [f"{s.name} ({s.type})" for s in index.streams.values()]
        wanted = repr(marker_stream) if marker_stream else "stimtrain marker stream"
        check.problems.append(
            f"no {wanted} in {path.name}; streams: {', '.join(visible) or 'none'}"
        )
        return None
    if len(ids) > 1:
        check.notes.append(
            f"{len(ids)} marker streams match; their markers are checked together"
        )
    check.marker_stream = index.streams[ids[0]].name
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            streams = load_streams(
                path,
                select=ids,
                synchronize_clocks=False,
                dejitter_timestamps=False,
                verbose="error",
            )
    except (OSError, ValueError) as exc:
        check.problems.append(f"markers of {path} unreadable: {exc}")
        return None
    # What the reader warns about (no footer, a cut chunk) is already noted.
    for w in caught:
        logger.debug("reading %s: %s", path.name, w.message)
    times, markers = [], []
    for stream in streams:
        times.extend(np.asarray(stream["time_stamps"], float))
        markers.extend(decode_marker(sample[0]) for sample in stream["time_series"])
    return np.asarray(times, float), markers


def _is_stimtrain_marker(s) -> bool:
    # The same rule as the analysis uses to find the session's markers.
    return s.type == MARKER_STREAM_TYPE and s.name.startswith(MARKER_STREAM_PREFIX)


def _stream_check(s) -> StreamCheck:
    """A :class:`StreamCheck` from a stream's chunk index and footer."""
    n = s.n_samples
    first = last = None
    footer = ((s.footer or {}).get("info")) or {}
    try:
        first = float(footer["first_timestamp"][0])
        last = float(footer["last_timestamp"][0])
    except (KeyError, IndexError, TypeError, ValueError):
        if n:
            firsts, starts = s.estimated_times()
            first = float(firsts[0])
            # Regular streams: the last chunk's samples follow at the nominal
            # rate; irregular ones: its first timestamp is the best known.
            last = float(firsts[-1] + (n - 1 - starts[-1]) * s.tdiff)
    duration = 0.0 if first is None or not np.isfinite(last - first) else last - first
    rate = None
    if s.nominal_srate > 0 and n > 1 and duration > 0:
        rate = (n - 1) / duration
    return StreamCheck(
        name=s.name,
        type=s.type,
        channel_count=s.channel_count,
        n_samples=n,
        duration_s=duration,
        nominal_srate=s.nominal_srate,
        effective_srate=rate,
        footer=s.footer is not None,
    )


def _match_pulses(
    journal: dict, times: np.ndarray, markers: list[dict], check: RecordingCheck
) -> None:
    """Match pulse markers to journal pulses by (block, pulse)."""
    check.marker_counts = dict(Counter(str(m.get("event")) for m in markers))
    seen: dict[tuple, float] = {}
    for t, m in zip(times, markers, strict=True):
        if m.get("event") != "pulse":
            continue
        key = _pulse_key(m)
        if key is None:
            check.problems.append(f"pulse marker without block/pulse numbers: {m}")
        elif key in seen:
            check.duplicate_in_xdf.append(key)
        else:
            seen[key] = float(t)
    check.missing_in_xdf = sorted(k for k in journal if k not in seen)
    check.extra_in_xdf = sorted(k for k in seen if k not in journal)
    matched = [k for k in journal if k in seen]
    check.pulses_matched = len(matched)
    if matched:
        offsets = np.abs([seen[k] - journal[k] for k in matched]) * 1e3
        check.offset_max_ms = float(np.nanmax(offsets))
        check.offset_median_ms = float(np.nanmedian(offsets))
    if check.missing_in_xdf:
        check.problems.append(
            f"{len(check.missing_in_xdf)} journal pulse(s) have no marker in the "
            f"XDF: {_pairs(check.missing_in_xdf)}"
        )
    if check.extra_in_xdf:
        check.problems.append(
            f"{len(check.extra_in_xdf)} pulse marker(s) are not in the journal: "
            f"{_pairs(check.extra_in_xdf)}"
        )
    if check.duplicate_in_xdf:
        check.problems.append(
            f"pulse marker(s) recorded twice: {_pairs(check.duplicate_in_xdf)}"
        )


def _pulse_key(fields: dict) -> tuple[int, int] | None:
    """``(block, pulse)`` of a journal entry or marker; None if malformed."""
    key = (fields.get("block"), fields.get("pulse"))
    if all(isinstance(x, int) and not isinstance(x, bool) for x in key):
        return key
    return None


def _pairs(pairs: list, limit: int = 10) -> str:
    """(block, pulse) pairs for a message, the first ``limit`` of them."""
    text = ", ".join(f"{b}/{p}" for b, p in pairs[:limit])
    return text + (f" and {len(pairs) - limit} more" if len(pairs) > limit else "")
