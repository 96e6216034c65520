"""End to end: protocols/demo.yaml on the simulated rig, checked from the XDF alone."""

import json
import subprocess
import sys

import numpy as np
import pytest
import pyxdf

from stimtrain.protocols import protocol_path

# Whole sessions run one after another on one test worker (with the device
# process tests): two at once on a 2-core machine would measure each other's
# load, not the tool.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("rig")]


# Session-scoped: the tests of this module may be interleaved with others on
# their worker, and the demo must run once.
@pytest.fixture(scope="session")
def demo_session(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stimtrain.cli",
            "run",
            str(protocol_path("demo.yaml")),
            "--participant",
            "e2e",
            "--session",
            "1",
            "--rmt",
            "50",
            "--data",
            str(data),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (data / "printed.txt").write_text(proc.stdout + proc.stderr)
    folder = proc.stdout.strip().splitlines()[-1]
    return data / "sub-e2e" / "ses-1", folder


def _streams(folder):
    xdf = folder / "sub-e2e_ses-1_run-01_recording.xdf"
    # Every stream of the simulated rig is stamped on this machine's LSL
    # clock, so the recorded stamps are the truth. Clock synchronisation
    # would only add the noise of LabRecorder's offset measurements, which on
    # a loaded 2-core machine shifted the EEG against the markers by 0.6–1.4
    # ms in one CI run (3–7 samples, growing through the recording).
    streams, _ = pyxdf.load_xdf(
        str(xdf), synchronize_clocks=False, dejitter_timestamps=False
    )
    eeg = next(s for s in streams if s["info"]["type"][0] == "EEG")
    markers = next(s for s in streams if s["info"]["type"][0] == "Markers")
    decoded = [json.loads(m[0]) for m in markers["time_series"]]
    return eeg, markers["time_stamps"], decoded


def test_session_folder_contents(demo_session):
    folder, printed = demo_session
    assert printed == str(folder)
    names = {p.name.removeprefix("sub-e2e_ses-1_run-01_") for p in folder.iterdir()}
    assert {
        "recording.xdf",
        "protocol.yaml",
        "protocol.sha256",
        "plan.json",
        "journal.jsonl",
        "summary.json",
        "devices.jsonl",
        "libraries.log",
        "block-05_task-flanker_trials.tsv",
    } <= names
    # What the recording library prints is in the folder, not on the console.
    log = (folder / "sub-e2e_ses-1_run-01_libraries.log").read_text()
    assert "Wrote footer" in log
    console = (folder.parents[1] / "printed.txt").read_text()
    assert "Wrote footer" not in console and "Offsets thread" not in console
    # Nor PsychoPy's own log lines, nor a raw warning with its source path.
    assert "WARNING" not in console and "Monitor specification" not in console
    assert "Warning:" not in console
    assert "completed: 72 of 72 pulses delivered" in console
    copy = (folder / "sub-e2e_ses-1_run-01_protocol.yaml").read_text()
    assert copy == protocol_path("demo.yaml").read_text()
    summary = json.loads((folder / "sub-e2e_ses-1_run-01_summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["pulses_delivered"] == summary["pulses_planned"] == 72
    # The journal says whether pulses were timed at real-time priority.
    journal = folder / "sub-e2e_ses-1_run-01_journal.jsonl"
    opened = [
        json.loads(line)
        for line in journal.read_text().splitlines()
        if '"device_opened"' in line
    ]
    assert len(opened) == 1 and isinstance(opened[0]["realtime"], bool)


def test_one_pulse_marker_per_planned_pulse(demo_session):
    folder, _ = demo_session
    plan = json.loads((folder / "sub-e2e_ses-1_run-01_plan.json").read_text())
    _, times, markers = _streams(folder)
    pulses = [
        (t, m) for t, m in zip(times, markers, strict=True) if m["event"] == "pulse"
    ]
    assert len(pulses) == plan["total_pulses"] == 72
    for block in plan["blocks"]:
        mine = [m for _, m in pulses if m["block"] == block["index"]]
        assert [m["pulse"] for m in mine] == list(range(block["pulses"]))
    # Each pulse left the host within a few ms of its schedule (generous bound;
    # benchmarks/pulse_timing.py measures the real distribution).
    errors = [t - m["scheduled"] for t, m in pulses]
    assert max(abs(e) for e in errors) < 0.005


def test_eeg_artifact_follows_each_pulse_marker(demo_session):
    folder, _ = demo_session
    eeg, times, markers = _streams(folder)
    channels = eeg["info"]["desc"][0]["channels"][0]["channel"]
    # EEG channels only: the FDI EMG channel's MEPs (15–50 ms after a pulse)
    # would pass for the next theta-burst pulse's artifact 20 ms later.
    is_eeg = np.array([c["type"][0].lower() == "eeg" for c in channels])
    assert 0 < is_eeg.sum() < len(channels)  # the simulated rig has EMG too
    data = np.asarray(eeg["time_series"], dtype=float)[:, is_eeg]
    ts = eeg["time_stamps"]
    step = np.abs(np.diff(data, axis=0)).mean(axis=1)
    offsets, missing = [], []
    for t, m in zip(times, markers, strict=True):
        if m["event"] != "pulse":
            continue
        marker_index = int(np.argmin(np.abs(ts - t)))
        # Search up to 19 ms after the marker: theta-burst pulses are 20 ms
        # apart, so a later jump would be the next pulse's artifact.
        window = np.arange(marker_index - 10, marker_index + 95)
        jumps = window[step[window - 1] > 1000]
        if len(jumps):
            offsets.append(int(jumps[0] - marker_index))
        else:
            missing.append(m)
    # Every pulse reached the simulated stimulator.
    sim_log = folder / "sub-e2e_ses-1_run-01_simulator_pulses.jsonl"
    assert len(sim_log.read_text().splitlines()) == 72
    # Spec: within one sample (0.2 ms at 5 kHz). The artifact is drawn when
    # the simulator read the pulse's bytes, one pty hop after the marker's
    # write: 0.06-0.15 ms median (benchmarks/pulse_timing.py), but the
    # simulator is software on the same two cores, and with a second test
    # worker loading them its reads were seen 5-21 ms late for up to 3 of 72
    # pulses (its own pulse log, not the host, was late). So only generous
    # bounds that a marker stamped at the wrong moment or a clock error would
    # still break: the typical pulse within two samples, nine in ten within
    # 2 ms, and at most four drawn beyond the search window (trigger pulses).
    assert len(missing) <= 4 and all(m["via"] == "trigger" for m in missing), missing
    offsets = np.abs(offsets)
    assert np.median(offsets) <= 2, offsets
    assert np.mean(offsets <= 10) >= 0.9, offsets


def test_pulse_markers_are_stamped_at_the_write(demo_session):
    """Tight: the marker against the unit's own stamp, the artifact against it.

    The simulated unit stamps each pulse on the same LSL clock when its bytes
    arrive, one pseudo-terminal hop after the host's write (0.06-0.15 ms
    median, benchmarks/pulse_timing.py), and the simulated EEG draws the
    artifact at exactly that stamp. So each marker must come just *before*
    the unit's stamp: a marker stamped at the report's arrival, a few samples
    (0.4 ms and more) after the write, would come after it and fail here. The
    artifact must start within one sample (0.2 ms) of the unit's stamp.
    """
    folder, _ = demo_session
    eeg, times, markers = _streams(folder)
    pulse_times = np.array(
        [t for t, m in zip(times, markers, strict=True) if m["event"] == "pulse"]
    )
    log = folder / "sub-e2e_ses-1_run-01_simulator_pulses.jsonl"
    unit = np.array([json.loads(line)["time"] for line in log.read_text().splitlines()])
    assert len(unit) == len(pulse_times) == 72
    hop = unit - pulse_times
    # The unit never stamps a pulse before the host wrote it (a small margin
    # for the two processes' clock reads), and typically a fraction of a
    # millisecond after. When the simulator itself is slow to read (a busy
    # machine), its own stamp is late, never the marker.
    assert np.mean(hop > -0.00005) >= 0.97, np.sort(hop)[:5]
    assert 0 <= np.median(hop) < 0.0005, np.median(hop)
    # The artifact begins at the unit's stamp, to the sample.
    channels = eeg["info"]["desc"][0]["channels"][0]["channel"]
    is_eeg = np.array([c["type"][0].lower() == "eeg" for c in channels])
    data = np.asarray(eeg["time_series"], dtype=float)[:, is_eeg]
    ts = eeg["time_stamps"]
    step = np.abs(np.diff(data, axis=0)).mean(axis=1)
    offsets = []
    for t in unit:
        i = int(np.argmin(np.abs(ts - t)))
        window = np.arange(i - 5, i + 6)
        jumps = window[step[window - 1] > 1000]
        offsets.append(int(jumps[0] - i) if len(jumps) else 99)
    # The simulated EEG holds samples back 50 ms for a pulse read late; one
    # read later than that (a starved simulator, not the host) is drawn
    # where its samples remain: at most two such of 72.
    assert sum(abs(o) > 1 for o in offsets) <= 2, offsets


def test_task_onsets_for_every_trial(demo_session):
    folder, _ = demo_session
    _, times, markers = _streams(folder)
    onsets = [m for m in markers if m["event"] == "stim_onset"]
    assert [m["trial"] for m in onsets] == list(range(16))
    tsv = (folder / "sub-e2e_ses-1_run-01_block-05_task-flanker_trials.tsv").read_text()
    assert len(tsv.strip().splitlines()) == 1 + 16
    events = [m["event"] for m in markers]
    assert events[0] == "session_start" and events[-1] == "session_end"
    assert events.count("block_start") == events.count("block_end") == 6


def test_report(demo_session):
    folder, _ = demo_session
    proc = subprocess.run(
        [sys.executable, "-m", "stimtrain.cli", "analyze", str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = proc.stdout.strip().splitlines()[-1]
    assert report.endswith(".html")
    html = open(report, encoding="utf-8").read()
    assert "pulse" in html.lower() and len(html) > 10_000
