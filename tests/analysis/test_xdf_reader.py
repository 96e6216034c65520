"""The XDF reader against pyxdf and against known truth.

LabRecorder files (real LSL, see conftest) must load to the bit as pyxdf
loads them; files written by :class:`synthetic_xdf.XdfWriter` carry timing
faults whose truth is known (dropouts, gaps, clock offsets, jitter, deduced
timestamps, no footer, a cut-off last chunk).
"""

from __future__ import annotations

import numpy as np
import pytest
import pyxdf
from synthetic_xdf import LAYOUTS, XdfWriter, simulate_xdf, write_layout

from stimtrain.analysis import read_raw_xdf, timing_diagnostics
from stimtrain.xdf.fast import WINDOW, read_intact
from stimtrain.xdf.file import index_xdf, read_samples
from stimtrain.xdf.load import load_streams

# Its module fixtures are costly: every test of it runs on one worker.
pytestmark = pytest.mark.xdist_group("test_xdf_reader")

PULSES = [1.0, 3.0, 5.0, 7.0, 9.0, 13.0, 15.0, 17.0]


def _by_id(streams):
    return {s["info"]["stream_id"]: s for s in streams}


def _assert_same_as_pyxdf(path, **kwargs):
    ref = _by_id(pyxdf.load_xdf(str(path), **kwargs)[0])
    kwargs = {k: v for k, v in kwargs.items() if k != "select_streams"}
    got = _by_id(load_streams(path, find_dropouts=False, **kwargs))
    assert set(got) == set(ref)
    for sid, r in ref.items():
        g = got[sid]
        if isinstance(r["time_series"], list):
            assert g["time_series"] == r["time_series"]
        else:
            assert g["time_series"].dtype == r["time_series"].dtype
            np.testing.assert_array_equal(g["time_series"], r["time_series"])
        # Bit for bit, not approximately.
        assert g["time_stamps"].tobytes() == r["time_stamps"].tobytes()
        for key in ("effective_srate", "segments", "clock_segments"):
            assert g["info"][key] == r["info"][key], key
        assert g["clock_times"] == r["clock_times"]
    return got


@pytest.mark.parametrize(
    "options",
    [
        {},
        dict(dejitter_timestamps=False),
        dict(synchronize_clocks=False, dejitter_timestamps=False),
    ],
)
@pytest.mark.parametrize("name", ["rec5k", "rec_gap"])
def test_labrecorder_files_match_pyxdf_bit_for_bit(recordings, name, options):
    got = _assert_same_as_pyxdf(recordings[name].path, **options)
    # No dropout below the break threshold in these files: looking for them
    # (the default) changes nothing.
    default = _by_id(load_streams(recordings[name].path, **options))
    for sid, stream in got.items():
        assert default[sid]["time_stamps"].tobytes() == stream["time_stamps"].tobytes()
    # LabRecorder stamps every other sample (flags 8, 0, 8, ...): both the
    # alternating fast path and the deduced timestamps are exercised.
    eeg = [s for s in got.values() if s["info"]["type"] == ["EEG"]][0]
    assert eeg["time_series"].dtype == np.float32


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    root = tmp_path_factory.mktemp("sims")
    common = dict(duration=20.0, pulses=PULSES, jitter_s=0.0003, seed=3)
    return dict(
        clean=simulate_xdf(root / "clean.xdf", eeg_offset=2.5, **common),
        faults=simulate_xdf(
            root / "faults.xdf",
            dropouts=[(4.0, 4.5), (10.0, 12.0)],
            eeg_offset=3.2,
            eeg_drift_ppm=20,
            marker_offset=-1.5,
            **common,
        ),
        dropout5k=simulate_xdf(
            root / "dropout5k.xdf",
            sfreq=5000.0,
            duration=12.0,
            dropouts=[(4.0, 4.5)],
            pulses=[1.0, 3.0, 5.0, 7.0, 9.0],
            rate_error_ppm=12,
            seed=4,
        ),
        nofooter=simulate_xdf(root / "nofooter.xdf", footer=False, **common),
        mixed=simulate_xdf(
            root / "mixed.xdf", channel_format="int16", stamp_every=3, **common
        ),
        double=simulate_xdf(
            root / "double.xdf",
            channel_format="double64",
            stream_type="EMG",
            n_channels=2,
            **common,
        ),
    )


@pytest.mark.filterwarnings("ignore:nofooter.xdf. no stream footer")
@pytest.mark.parametrize("name", ["clean", "mixed", "double", "nofooter"])
def test_written_files_match_pyxdf(sims, name):
    _assert_same_as_pyxdf(sims[name].path)
    _assert_same_as_pyxdf(
        sims[name].path, synchronize_clocks=False, dejitter_timestamps=False
    )


@pytest.mark.parametrize(
    "pattern", ["all", "none", "alternate", "alternate_from_0", "first", "random"]
)
@pytest.mark.parametrize("n", [7, 8, 300])
def test_every_timestamp_layout_matches_pyxdf(tmp_path, pattern, n):
    """Each decoding path (uniform, alternating, general walk; short and long
    runs of deduced timestamps) against pyxdf's sample-by-sample decoder."""
    rng = np.random.default_rng(n)
    k = np.arange(n)
    has = dict(
        all=np.ones(n, bool),
        none=np.zeros(n, bool),
        alternate=k % 2 == 0,
        alternate_from_0=k % 2 == 1,
        first=k == 0,
        random=rng.random(n) < 0.3,
    )[pattern]
    path = tmp_path / "layout.xdf"
    with XdfWriter(path) as w:
        w.add_stream(1, "S", "EEG", 3, 250.0, "int32")
        for chunk in range(3):
            stamps = 20.0 + (chunk * n + k) / 250.0 + 1e-7 * rng.random(n)
            w.write_samples(1, rng.integers(-1000, 1000, (n, 3)), stamps, has)
    with pytest.warns(RuntimeWarning, match="no stream footer"):
        _assert_same_as_pyxdf(path, synchronize_clocks=False, dejitter_timestamps=False)
    with pytest.warns(RuntimeWarning, match="no stream footer"):
        _assert_same_as_pyxdf(path)


def test_time_windows_on_a_labrecorder_file(recordings):
    rec = recordings["rec5k"]
    full = [s for s in load_streams(rec.path) if s["info"]["type"] == ["EEG"]][0]
    windows = [(t - 0.02, t + 0.05) for t in rec.pulse_times]
    part = load_streams(rec.path, select="EEG", windows=windows)[0]
    numbers = part["timing"]["sample_index"]
    assert len(numbers) == pytest.approx(0.07 * rec.sfreq * len(windows), rel=0.01)
    np.testing.assert_array_equal(part["time_series"], full["time_series"][numbers])
    np.testing.assert_allclose(
        part["time_stamps"], full["time_stamps"][numbers], atol=0.05 / rec.sfreq
    )


def test_formats_kept(sims):
    streams = _by_id(load_streams(sims["mixed"].path))
    assert streams[1]["time_series"].dtype == np.int16
    np.testing.assert_array_equal(streams[1]["time_series"], sims["mixed"].data)
    streams = _by_id(load_streams(sims["double"].path))
    assert streams[1]["time_series"].dtype == np.float64
    np.testing.assert_array_equal(streams[1]["time_series"], sims["double"].data)


def _pulse_samples(raw):
    """Sample of each pulse annotation, and the data step it should sit on."""
    ann = raw.annotations
    onsets = ann.onset[ann.description == "pulse"]
    marked = np.round(onsets * raw.info["sfreq"]).astype(int)
    first_channel = raw.get_data(picks=[0])[0]
    steps = np.flatnonzero(np.diff(first_channel) > 500e-6) + 1
    # Not the ends of zero-filled gaps.
    return marked, steps[first_channel[steps - 1] != 0]


@pytest.mark.parametrize("name", ["faults", "dropout5k"])
def test_dropouts_and_gaps_keep_markers_on_their_samples(sims, name):
    sim = sims[name]
    raw = read_raw_xdf(sim.path)
    sfreq = sim.sfreq
    marked, steps = _pulse_samples(raw)
    assert len(marked) == len(sim.marker_times)
    # Each pulse marker sits on the sample where its step begins ...
    np.testing.assert_allclose(marked, steps, atol=1)
    # ... and at its true time since the first sample, within one sample.
    onsets = raw.annotations.onset[raw.annotations.description == "pulse"]
    np.testing.assert_allclose(
        onsets, sim.marker_times - sim.first_time, atol=1.0 / sfreq
    )
    # Every dropout is a zero-filled BAD_ACQ_SKIP of its true length.
    bad = raw.annotations[raw.annotations.description == "BAD_ACQ_SKIP"]
    assert len(bad) == len(sim.gaps)
    for (a, b), onset, duration in zip(sim.gaps, bad.onset, bad.duration, strict=True):
        assert onset == pytest.approx(a - sim.first_time, abs=1.5 / sfreq)
        assert duration == pytest.approx(b - a, abs=1.5 / sfreq)
    # Sample timestamps stay on the truth (sub-sample), where pyxdf smears
    # the 0.5 s dropout into a large error.
    ours = _by_id(load_streams(sim.path))[1]["time_stamps"]
    assert np.abs(ours - sim.sample_times).max() < 0.5 / sfreq
    ref = _by_id(pyxdf.load_xdf(str(sim.path))[0])[1]["time_stamps"]
    assert np.abs(ref - sim.sample_times).max() > 0.05


def test_timing_diagnostics_report_the_faults(sims):
    sim = sims["faults"]
    diag = timing_diagnostics(load_streams(sim.path))["SimSignal"]
    assert diag["n_segments"] == 2  # the 2 s gap breaks; the 0.5 s one does not
    assert diag["n_dropouts"] == 1
    drop = diag["dropouts"][0]
    assert drop["missing"] == pytest.approx(500, abs=1)
    assert drop["time"] == pytest.approx(sim.gaps[0][1], abs=2e-3)
    assert diag["dropped_samples"] == pytest.approx(2500, abs=2)
    assert len(diag["segment_srates"]) == 2
    for rate in diag["segment_srates"]:
        assert rate == pytest.approx(sim.sfreq, rel=50e-6)
    # The sender's clock ran 20 ppm slow and 3.2 s behind.
    assert diag["clock_drift_ppm"] == pytest.approx(20, abs=0.5)
    assert diag["clock_offset_mean_ms"] == pytest.approx(3200, abs=1)
    assert diag["clock_fit_residual_ms"] < 1e-3
    assert diag["has_footer"] and not diag["truncated"]


def test_timestamps_without_samples(sims):
    """samples=False: the same timestamps and diagnostics, no values read."""
    for name in ("clean", "faults"):
        path = sims[name].path
        whole, stamps_only = load_streams(path), load_streams(path, samples=False)
        assert timing_diagnostics(stamps_only) == timing_diagnostics(whole)
        for a, b in zip(
            _by_id(whole).values(), _by_id(stamps_only).values(), strict=True
        ):
            np.testing.assert_array_equal(a["time_stamps"], b["time_stamps"])
            if isinstance(a["time_series"], list):
                assert b["time_series"] == a["time_series"]  # markers: read
            else:
                assert b["time_series"].shape == (len(a["time_stamps"]), 0)


def test_clock_offsets_are_corrected(sims):
    sim = sims["faults"]
    streams = _by_id(load_streams(sim.path))
    np.testing.assert_allclose(streams[1]["time_stamps"], sim.sample_times, atol=2e-4)
    # The markers came from another clock, 1.5 s ahead of the recorder.
    np.testing.assert_allclose(streams[2]["time_stamps"], sim.marker_times, atol=1e-9)
    raw_stamps = _by_id(load_streams(sim.path, synchronize_clocks=False))[2]
    np.testing.assert_allclose(raw_stamps["time_stamps"], sim.marker_times + 1.5)


def test_no_footer_loads_with_warning(sims):
    sim = sims["nofooter"]
    with pytest.warns(RuntimeWarning, match="no stream footer"):
        streams = _by_id(load_streams(sim.path))
    np.testing.assert_array_equal(streams[1]["time_series"], sim.data)
    assert "footer" not in streams[1]
    diag = timing_diagnostics(list(streams.values()))["SimSignal"]
    assert not diag["has_footer"]


@pytest.mark.parametrize("cut", [1, 37, 1000])
def test_cut_off_last_chunk_keeps_complete_samples(sims, tmp_path, cut):
    sim = sims["nofooter"]
    # The recorder dies while writing the signal's last chunk.
    chunks = index_xdf(sim.path).streams[1]
    end = chunks.chunk_offset[-1] + chunks.chunk_nbytes[-1]
    path = tmp_path / "cut.xdf"
    path.write_bytes(sim.path.read_bytes()[: end - cut])
    with pytest.warns(RuntimeWarning, match="last chunk is cut off"):
        streams = _by_id(load_streams(path))
    values = streams[1]["time_series"]
    n_full = len(sim.data)
    record = 1 + 8 + 4 * sim.n_channels
    # The last chunk loses the samples the cut reached into, no more.
    assert n_full - len(values) == -(-cut // record)
    np.testing.assert_array_equal(values, sim.data[: len(values)])
    diag = timing_diagnostics(list(streams.values()))["SimSignal"]
    assert diag["truncated"] and diag["samples_cut"] == n_full - len(values)


def test_select_streams(sims):
    path = sims["faults"].path
    only = load_streams(path, select="Markers")
    assert [s["info"]["name"][0] for s in only] == ["stimtrain-markers-sim"]
    assert len(load_streams(path, select=["SimSignal"])[0]["time_stamps"]) > 0
    assert len(load_streams(path, select=[{"type": "EEG", "name": "SimSignal"}])) == 1
    assert len(load_streams(path, select=[1, 2])) == 2
    with pytest.raises(ValueError, match="No stream of .* matches select='nope'"):
        load_streams(path, select="nope")
    with pytest.raises(TypeError, match="select must hold"):
        load_streams(path, select=[1.5])
    # The payloads of the other streams are not decoded: a stream whose
    # samples are garbage does not matter when not selected.
    index = index_xdf(path)
    assert set(read_samples(index, [2])) == {2}


def test_time_windows_load_the_same_samples(sims):
    sim = sims["faults"]
    full = _by_id(load_streams(sim.path))[1]
    windows = [(t - 0.05, t + 0.1) for t in sim.marker_times]
    part = _by_id(load_streams(sim.path, windows=windows))
    eeg = part[1]
    keep = np.zeros(len(full["time_stamps"]), bool)
    for a, b in windows:
        keep |= (full["time_stamps"] >= a) & (full["time_stamps"] <= b)
    assert abs(len(eeg["time_stamps"]) - keep.sum()) <= 2 * len(windows)
    # Same samples (by sample number), same values, and timestamps within a
    # small fraction of a sample of the full load's.
    numbers = eeg["timing"]["sample_index"]
    np.testing.assert_array_equal(eeg["time_series"], full["time_series"][numbers])
    np.testing.assert_allclose(
        eeg["time_stamps"], full["time_stamps"][numbers], atol=0.1 / sim.sfreq
    )
    assert all(any(a <= t <= b for a, b in windows) for t in eeg["time_stamps"][::25])
    assert len(part[2]["time_stamps"]) == len(sim.marker_times)
    with pytest.raises(ValueError, match="windows must be finite"):
        load_streams(sim.path, windows=[(2.0, 1.0)])


def test_window_margin_too_small_warns(tmp_path):
    sim = simulate_xdf(
        tmp_path / "jitter.xdf", duration=6.0, pulses=[2.0, 4.0], jitter_s=0.02
    )
    windows = [(t - 0.05, t + 0.1) for t in sim.marker_times]
    with pytest.warns(RuntimeWarning, match="window edge.* may miss samples"):
        load_streams(sim.path, windows=windows, window_margin=0.0)


def _write_short_stream(path, clock_times, clock_values, footer_count):
    """100 samples at 100 Hz with the given offsets and footer count."""
    rng = np.random.default_rng(5)
    with XdfWriter(path) as w:
        w.add_stream(3, "Amp", "EEG", 2, 100.0, "float32")
        for k in range(0, 100, 20):
            stamps = 50.0 + np.arange(k, k + 20) / 100 + rng.normal(0, 1e-4, 20)
            w.write_samples(3, rng.normal(size=(20, 2)), stamps)
        for t, v in zip(clock_times, clock_values, strict=True):
            w.write_clock_offset(3, t, v)
        w.write_footer(3, 50.0, 50.99, footer_count)


def test_pylsl67_extra_sample_and_corrupt_offset_like_pyxdf(tmp_path):
    path = tmp_path / "pylsl67.xdf"
    times = [50.0, 50.2, 50.4, 50.6, 50.8, 90.0]
    values = [1e-3, 1.01e-3, 1.02e-3, 1.03e-3, 1.04e-3, 7.0]
    _write_short_stream(path, times, values, footer_count=99)
    with pytest.warns(RuntimeWarning, match="corrupt last clock offset"):
        got = _assert_same_as_pyxdf(path)
    assert len(got[3]["time_stamps"]) == 99


def test_unmeasured_clock_offset_is_ignored(tmp_path):
    path = tmp_path / "unmeasured.xdf"
    times = [50.0, 50.3, 6.9e-310, 50.6, 50.9]
    values = [2e-3, 2e-3, 0.0, 2e-3, 2e-3]
    _write_short_stream(path, times, values, footer_count=100)
    with pytest.warns(RuntimeWarning, match="1 unmeasured clock offset"):
        (stream,) = load_streams(path)
    clean = tmp_path / "clean.xdf"
    _write_short_stream(clean, times[:2] + times[3:], values[:2] + values[3:], 100)
    (expected,) = load_streams(clean)
    np.testing.assert_array_equal(stream["time_stamps"], expected["time_stamps"])
    assert stream["time_stamps"][0] == pytest.approx(50.002, abs=1e-3)


def test_string_streams(tmp_path):
    path = tmp_path / "strings.xdf"
    rows = [["a", "ünïcode ✓"], ["", "x" * 300], ["json {}", "3"]]
    with XdfWriter(path) as w:
        w.add_stream(7, "Words", "Markers", 2, 0, "string")
        w.write_samples(7, rows[:2], [10.0, 11.0], [True, False])
        w.write_samples(7, rows[2:], [12.5])
    with pytest.warns(RuntimeWarning, match="no stream footer for"):
        (stream,) = load_streams(path)
    assert stream["time_series"] == rows
    # An irregular stream deduces nothing: a missing stamp repeats the last.
    np.testing.assert_array_equal(stream["time_stamps"], [10.0, 10.0, 12.5])
    with pytest.warns(RuntimeWarning, match="no stream footer"):
        _assert_same_as_pyxdf(path)


def test_emg_stream_gives_emg_channels(sims):
    from stimtrain.analysis.xdf import _raw_from_streams

    streams = load_streams(sims["double"].path)
    raw = _raw_from_streams(streams, eeg_stream="SimSignal")
    assert set(raw.get_channel_types()) == {"emg"}


def test_not_an_xdf_file(tmp_path):
    path = tmp_path / "x.xdf"
    path.write_bytes(b"NOPE" + bytes(100))
    with pytest.raises(ValueError, match="not an XDF file"):
        load_streams(path)


# -- the fast path for intact files (stimtrain.xdf.fast) -----------------------


@pytest.mark.parametrize(
    "seconds, chunk_seconds",
    [
        (12, None),  # 0.5 s chunks (0.1 s interleaved, 10 ms small): by chunk
        (12, 0.02),  # 20-sample chunks: gathered a window at a time
        (3, None),  # a few chunks of mixed flags: each walked on its own
    ],
)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_benchmark_layouts_match_pyxdf(tmp_path, layout, seconds, chunk_seconds):
    """Every timestamp layout of benchmarks/xdf_read.py, read by the fast path,
    gives pyxdf's samples and timestamps to the bit."""
    path = write_layout(
        tmp_path / "layout.xdf", layout, seconds, 8, 1000.0, chunk_seconds
    )
    index = index_xdf(path)
    assert read_intact(index, list(index.streams)) is not None  # not the careful path
    _assert_same_as_pyxdf(path)
    _assert_same_as_pyxdf(path, synchronize_clocks=False, dejitter_timestamps=False)


@pytest.mark.parametrize("n", [20, 600])
def test_one_stamp_anywhere_in_a_chunk(tmp_path, n):
    """A chunk with one stamped sample is first read as if it were the first
    one; where it is not, the chunk is walked, still on the fast path."""
    rng = np.random.default_rng(n)
    path = tmp_path / "one.xdf"
    with XdfWriter(path) as w:
        w.add_stream(1, "S", "EEG", 3, 500.0, "int16")
        for chunk in range(30):
            has = np.zeros(n, bool)
            has[rng.integers(0, n) if chunk % 3 else 0] = True
            stamps = 5.0 + (chunk * n + np.arange(n)) / 500.0
            w.write_samples(1, rng.integers(-500, 500, (n, 3)), stamps, has)
        w.write_footer(1, 5.0, 5.0 + (30 * n - 1) / 500.0, 30 * n)
    index = index_xdf(path)
    assert read_intact(index, [1]) is not None
    _assert_same_as_pyxdf(path, synchronize_clocks=False, dejitter_timestamps=False)
    _assert_same_as_pyxdf(path)


@pytest.mark.parametrize("layout", ["omitted", "interleaved", "small chunks"])
def test_fast_and_careful_readers_agree(tmp_path, layout):
    """The same samples and raw timestamps from the fast path and from the
    careful chunk-by-chunk reader (which a row filter selects)."""
    path = write_layout(tmp_path / "l.xdf", layout, 6, 8, 1000.0)
    index = index_xdf(path)
    fast = read_samples(index, list(index.streams))
    careful = read_samples(index, list(index.streams), lambda *a: slice(None))
    for sid, got in fast.items():
        ref = careful[sid]
        if isinstance(got.values, list):
            assert got.values == ref.values
        else:
            np.testing.assert_array_equal(got.values, ref.values)
        assert got.stamps.tobytes() == ref.stamps.tobytes()


_PEAK = """
import json, sys
import numpy as np
from stimtrain.xdf.load import load_streams
def kb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])
open("/proc/self/clear_refs", "w").write("5")
base = kb("VmRSS:")
streams = load_streams(sys.argv[1], verbose="error")
peak = (kb("VmHWM:") - base) * 1024
data = sum(s["time_series"].nbytes + s["time_stamps"].nbytes
           for s in streams if isinstance(s["time_series"], np.ndarray))
print(json.dumps(dict(peak=peak, data=data)))
"""


@pytest.mark.parametrize("layout", ["even", "omitted"])
def test_peak_memory_is_the_data_returned(tmp_path, layout):
    """Peak resident memory of a read (in a fresh process) is at most 1.2 times
    the arrays it returns, plus the window of the file mapped at a time."""
    import json
    import subprocess
    import sys

    path = write_layout(tmp_path / "big.xdf", layout, 60, 64, 5000.0)
    out = subprocess.run(
        [sys.executable, "-c", _PEAK, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    got = json.loads(out.stdout.splitlines()[-1])
    assert got["data"] > 75e6
    assert got["peak"] <= 1.2 * got["data"] + WINDOW, got
