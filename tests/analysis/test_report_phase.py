"""The report's phase section on a triggered session with known phase.

The recording (the tests' XDF writer, 32 channels at 1000 Hz) holds the
simulator's mu rhythm at C3 at 11 dB over pink background; the pulses of a
triggered block fall where the true phase is at the peak or the trough,
each with a pulse artifact, and their markers carry ``target_phase`` and an
``online_phase`` (the truth plus a known error). A run without those fields
gets no phase section.
"""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_xdf import XdfWriter

from stimtrain.analysis.report import session_analysis
from stimtrain.analysis.report_phase import TITLE
from stimtrain.devices.sim_eeg import CHANNEL_NAMES_32
from stimtrain.devices.sim_mu import synthetic_recording
from stimtrain.vocabulary import encode_marker

SFREQ = 1000.0
T0 = 500.0  # recorder clock at the first EEG sample
FAST = dict(ica_n_components=10, ica_decim=2)
#: The online estimate's known error, degrees.
ONLINE_ERROR = 10.0


def _pulses(true_phase: np.ndarray) -> list[tuple[int, float]]:
    """(sample, target) at the true peaks and troughs, >= 1.2 s apart."""
    deg = np.degrees(true_phase)
    out, k, target = [], int(3 * SFREQ), 0.0
    while k < len(deg) - 3 * SFREQ:
        # The next sample within 2 degrees of the target.
        near = np.flatnonzero(np.abs((deg[k:] - target + 180.0) % 360.0 - 180.0) < 2.0)
        if not near.size:
            break
        out.append((k + int(near[0]), target))
        k += int(near[0]) + int(1.2 * SFREQ)
        target = 180.0 - target
    return out


def write_session(folder, *, triggered: bool = True):
    """A 90 s session with one stimulate block; returns the pulses' truth."""
    folder.mkdir(parents=True)
    rec = synthetic_recording(
        90.0, 11.0, sfreq=SFREQ, seed=5, channels=CHANNEL_NAMES_32
    )
    data = rec.data.astype(np.float32)
    pulses = _pulses(rec.phase)
    n_art = int(0.03 * SFREQ)
    art = 5000.0 * np.exp(-np.arange(n_art) / 3.0)
    for k, _ in pulses:
        data[k : k + n_art] += art[:, None].astype(np.float32)
    times = T0 + np.arange(len(data)) / SFREQ
    markers = [
        (
            T0 + 1.0,
            encode_marker(
                "session_start",
                participant="01",
                session="1",
                run=1,
                protocol="phase test",
                protocol_sha256="0" * 64,
            ),
        ),
        (
            T0 + 2.0,
            encode_marker("block_start", block=0, type="stimulate", label="mu"),
        ),
    ]
    for i, (k, target) in enumerate(pulses):
        fields = dict(
            block=0,
            pulse=i,
            pattern="single",
            intensity=110,
            unit="%RMT",
            power=60,
            scheduled=float(times[k] - 0.0001),
        )
        if triggered:
            online = (np.degrees(rec.phase[k]) + ONLINE_ERROR) % 360.0
            fields.update(target_phase=target, online_phase=float(online))
        markers.append((times[k], encode_marker("pulse", **fields)))
    markers.append(
        (T0 + 88.0, encode_marker("block_end", block=0, type="stimulate", label="mu"))
    )
    with XdfWriter(folder / "sub-01_ses-1_run-01_recording.xdf") as w:
        channels = [
            dict(label=ch, unit="microvolts", type="EEG") for ch in CHANNEL_NAMES_32
        ]
        w.add_stream(1, "TestEEG", "EEG", len(channels), SFREQ, "float32", channels)
        w.add_stream(2, "stimtrain-markers-test", "Markers", 1, 0, "string")
        for chunk in np.array_split(np.arange(len(data)), 32):
            w.write_samples(1, data[chunk], times[chunk])
        w.write_samples(2, [[m] for _, m in markers], [t for t, _ in markers])
        for t in np.arange(times[0], times[-1], 5.0):
            w.write_clock_offset(1, t, 0.0)
            w.write_clock_offset(2, t, 0.0)
        w.write_footer(1, times[0], times[-1], len(data))
        w.write_footer(2, markers[0][0], markers[-1][0], len(markers))
    return rec, pulses


@pytest.fixture(scope="module")
def triggered(tmp_path_factory):
    folder = tmp_path_factory.mktemp("phase") / "sub-01" / "ses-1"
    rec, pulses = write_session(folder)
    analysis = session_analysis(folder, tesa=FAST, verbose="error")
    return rec, pulses, analysis


def test_phase_table_matches_the_truth(triggered):
    """Offline means within 10 degrees of the targets, online beside them."""
    _, pulses, analysis = triggered
    table = analysis.tables["phase"]
    assert list(table["target_phase"]) == [0.0, 180.0]
    assert table["pulses"].sum() == len(pulses) >= 50
    assert (table["offline_error"].abs() < 10.0).all()
    assert (table["offline_sd"] < 35.0).all()
    # The online estimate is the truth plus 10 degrees, exactly.
    online_error = (
        table["online_mean"] - table["target_phase"] - ONLINE_ERROR + 180
    ) % 360 - 180
    assert (online_error.abs() < 1.0).all()
    offline = analysis.tables["pulses"]["offline_phase"]
    assert offline.notna().all()


def test_report_has_the_section_and_tsv(triggered):
    """The HTML has the section, its table and its polar figure; phase.tsv."""
    _, _, analysis = triggered
    text = analysis.report_path.read_text(encoding="utf-8")
    assert TITLE in text
    assert "offline (filled) and online (outline)" in text
    assert "online_mean" in text
    tsv = analysis.report_path.parent / "sub-01_ses-1_run-01_phase.tsv"
    assert tsv.is_file()


def test_no_section_without_the_fields(tmp_path):
    """Pulse markers without target_phase: no phase section, no phase.tsv."""
    folder = tmp_path / "sub-01" / "ses-1"
    write_session(folder, triggered=False)
    analysis = session_analysis(folder, report=False, tesa=FAST, verbose="error")
    assert "phase" not in analysis.tables
    assert "offline_phase" not in analysis.tables["pulses"]
