"""Phase-locked pulses in a whole session on the simulated rig, against the truth.

protocols/mu_phase_single_pulses.yaml (more pulses, closer together, so the
circular means rest on about 20 pulses each; the run takes about 100 s)
runs on the simulated rig with a mu rhythm at 11 dB. Checked: every pulse
marker carries its target and online phase; the rhythm's true phase at the
delivered pulses (the rig's own log) and the phase the analysis estimates
offline from the XDF alone (read as ``stimtrain analyze`` reads it,
analysis.phase.phase_at_pulses) both have a circular mean within 15
degrees of each target (issue 18). A second session checks that triggered
blocks honour the operator's pause, skip and abort keys in a real
terminal, one that a lost EEG holds them disarmed until it is back, and one
that a phase calibration's offset reaches the calibrated block after it.
"""

# The sessions here are in their own xdist group, not "rig": they mostly
# wait (a decision costs 0.2-0.6 ms per 10 ms of EEG), so they run beside the
# rig group's on the other worker and the suite's longest chain stays short.

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import pyxdf
import yaml
from scipy.stats import circmean

from stimtrain.analysis.phase import phase_at_pulses
from stimtrain.analysis.pulse_windows import read_raw_windows
from stimtrain.analysis.report_phase import pulse_samples
from stimtrain.orchestrator.safety.checking import check_file
from stimtrain.orchestrator.session.runner import SessionRunner
from stimtrain.protocols import protocol_path

#: Tolerance of the circular mean around each target, degrees (issue 18).
TOLERANCE_DEG = 15.0


def _shortened(tmp_path):
    """The library protocol with up to 24 pulses a block, at least 1.1 s apart.

    The phase offset takes away the protocol's estimator's bias on this
    generator (docs/benchmarks.md: ssp, -3.2 degrees at 11 dB over 400
    pulses), as a participant's calibrated offset would: with about 20
    pulses a target and a circular SD near 20 degrees, the mean's own
    spread (about 5 degrees) is what the 15 degrees must hold. (The offset
    was 5, the previous ssp's bias; with the current one, four runs on a
    loaded machine gave trough means of +1.8 to +9.5, so by their spread
    about one run in fifty would have gone beyond 15.)
    """
    text = protocol_path("mu_phase_single_pulses.yaml").read_text()
    for old, new in (
        ("duration: 3 s", "duration: 1 s"),
        ("pulses: 12", "pulses: 24"),
        # Just above 1 s: single pulses still (a train's intervals are 1 s
        # or less), as fast as the trigger's window allows after a pulse.
        ("min_interval: 2 s", "min_interval: 1.1 s\n          phase_offset: 3"),
    ):
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "mu_phase_short.yaml"
    path.write_text(text)
    return path


def _circular_mean_error(phases_deg, target_deg: float) -> float:
    err = np.radians(np.asarray(phases_deg) - target_deg)
    return float(np.degrees(np.angle(np.exp(1j * circmean(err)))))


def test_runner_keeps_zero_valued_simulator_options(tmp_path):
    """``--sim-mu-snr 0`` is an option given, not an option left out."""
    checked = check_file(protocol_path("mu_phase_single_pulses.yaml"), rig="sim")
    runner = SessionRunner(
        checked,
        participant="p",
        session="1",
        data_root=tmp_path,
        sim_options={"mu_snr": 0.0, "participant_seed": 0, "faults": None},
    )
    assert runner.sim_options == {"mu_snr": 0.0, "participant_seed": 0}


@pytest.mark.slow
@pytest.mark.xdist_group("closed_loop")
def test_phase_locked_session_hits_its_targets(tmp_path):
    data = tmp_path / "data"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stimtrain.cli",
            "run",
            str(_shortened(tmp_path)),
            "--participant",
            "mu",
            "--session",
            "1",
            "--rig",
            "sim",
            "--sim-mu-snr",
            "11",
            "--data",
            str(data),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    folder = data / "sub-mu" / "ses-1"
    xdf = folder / "sub-mu_ses-1_run-01_recording.xdf"
    streams, _ = pyxdf.load_xdf(
        str(xdf),
        synchronize_clocks=False,
        dejitter_timestamps=False,
    )
    markers = next(s for s in streams if s["info"]["type"][0] == "Markers")
    pulses = [
        (t, json.loads(v[0]))
        for t, v in zip(markers["time_stamps"], markers["time_series"], strict=True)
        if json.loads(v[0])["event"] == "pulse"
    ]
    assert pulses
    for _, p in pulses:
        assert p["target_phase"] in (0.0, 180.0)
        assert 0.0 <= p["online_phase"] < 360.0
    # The true phase at each delivered pulse, from the simulated rig's log.
    log = folder / "sub-mu_ses-1_run-01_simulator_mu_phase.jsonl"
    truth = [json.loads(line) for line in log.read_text().splitlines()]
    truth_t = np.array([row["time"] for row in truth])
    # From the XDF alone, as a lab's analysis reads it: the EEG around the
    # pulses with the pulse markers as annotations, and the offline phase of
    # the C3 Hjorth 8-13 Hz rhythm the protocol's blocks aim at.
    raw = read_raw_windows(xdf, verbose="error")
    onsets = pulse_samples(raw)
    assert len(onsets) == len(pulses)
    offline = phase_at_pulses(raw, onsets, "c3_hjorth", (8.0, 13.0))
    assert np.isfinite(offline).all(), offline
    for target in (0.0, 180.0):
        mine = [k for k, (_, p) in enumerate(pulses) if p["target_phase"] == target]
        assert len(mine) >= 10, (target, len(mine))
        true = []
        for k in mine:
            j = int(np.argmin(np.abs(truth_t - pulses[k][0])))
            if truth[j].get("late_read"):
                # The simulator read this edge late (a busy machine): its
                # time, and the phase there, are only an upper bound.
                assert truth_t[j] >= pulses[k][0] - 0.001
                continue
            assert abs(truth_t[j] - pulses[k][0]) < 0.005, (k, truth[j])
            true.append(truth[j]["phase_deg"])
        assert len(true) >= 8, f"{len(mine) - len(true)} edges read late"
        true_err = _circular_mean_error(true, target)
        offline_err = _circular_mean_error(offline[mine], target)
        report = (
            f"target {target:g}, {len(mine)} pulses: circular mean error true "
            f"{true_err:+.1f}, offline {offline_err:+.1f} degrees"
        )
        print(report)  # shown with -rP: how much of the tolerance was used
        assert abs(true_err) <= TOLERANCE_DEG, report
        assert abs(offline_err) <= TOLERANCE_DEG, report


def _triggered_protocol(labels: tuple[str, ...], pulses: int) -> str:
    """Triggered blocks at the mu peak, one per label, at most ``pulses`` each."""
    blocks = "".join(
        f"""\
  - type: stimulate
    label: {label}
    pattern: single
    intensity: 40 %MSO
    pulses: {pulses}
    duration: 40 s
    trigger:
      target: peak
      min_interval: 1.1 s
"""
        for label in labels
    )
    return f"stimtrain: 1\nname: triggered blocks\nblocks:\n{blocks}"


@pytest.mark.slow
@pytest.mark.xdist_group("closed_loop")
def test_triggered_blocks_honour_pause_skip_and_abort(tmp_path):
    """The keys in a real terminal: pause then resume, skip, abort."""
    from test_faults import (
        _folder,
        _kill_group,
        _pause_then_resume,
        _read_run,
        _run_args,
        _Terminal,
        _wait_for_pulses,
    )

    data = tmp_path / "data"
    protocol = tmp_path / "keys.yaml"
    protocol.write_text(_triggered_protocol(("paused", "skipped", "aborted"), 6))
    term = _Terminal(_run_args(data, "--sim-mu-snr", "11", protocol=protocol))
    journal = _folder(data, 1).file("journal.jsonl")
    try:
        _wait_for_pulses(journal, 0, 2, term)
        _pause_then_resume(term, journal, "stimulation_paused", 2.5)
        _wait_for_pulses(journal, 1, 2, term)
        term.press("s")
        time.sleep(0.3)
        skipped = term.press("y")
        _wait_for_pulses(journal, 2, 2, term)
        aborted = term.press("a")
        finished = term.finish()
    finally:
        _kill_group(term.proc)
    assert finished.returncode == 2, str(finished)
    run = _read_run(data, 1)
    sim = run.sim_pulses
    pulses = {
        b: [e for e in run.journal if e["event"] == "pulse" and e["block"] == b]
        for b in range(3)
    }
    ends = {e["block"]: e for e in run.journal if e["event"] == "block_end"}
    assert [ends[b]["completed"] for b in range(3)] == [True, False, False]
    # Pause: the unit disarmed, no pulse until the resume, then the rest.
    (paused,) = [e for e in run.journal if e["event"] == "stimulation_paused"]
    (resumed,) = [e for e in run.journal if e["event"] == "stimulation_resumed"]
    assert resumed["clock"] - paused["clock"] > 2.0
    assert not np.any((sim > paused["clock"]) & (sim < resumed["clock"])), sim
    assert len(pulses[0]) == 6 and ends[0]["ended_by"] == "pulses"
    # Skip: nothing after the confirmation; disarmed.
    assert 2 <= len(pulses[1]) < 6 and ends[1]["ended_by"] == "skipped"
    assert all(p["actual"] < skipped + 0.05 for p in pulses[1])
    # Abort: disarmed within a pulse interval of the key, nothing after it.
    assert 2 <= len(pulses[2]) < 6
    disarms = [e for e in run.journal if e["event"] == "disarmed"]
    assert 0 < disarms[-1]["clock"] - aborted < 1.1
    assert not np.any(sim > aborted + 0.05), (sim, aborted)
    assert len(sim) == sum(len(p) for p in pulses.values())


@pytest.mark.slow
@pytest.mark.xdist_group("closed_loop")
def test_eeg_loss_holds_a_triggered_block(tmp_path):
    """The EEG goes silent for 3 s mid-block: held disarmed, then resumed."""
    from test_faults import _read_run, _run, _run_args

    data = tmp_path / "data"
    protocol = tmp_path / "one.yaml"
    # The block's pulses start about 12 s after the simulated rig (streams,
    # the trigger process, the gate's warm-up); the EEG stops at 16 s.
    protocol.write_text(_triggered_protocol(("held",), 10))
    args = _run_args(
        data, "--sim-mu-snr", "11", "--sim-eeg-dropout", "16,3", protocol=protocol
    )
    finished = _run(args, tmp_path / "run")
    assert finished.returncode == 0, str(finished)
    run = _read_run(data, 1)
    wanted = (
        "stream_stalled",
        "stimulation_paused",
        "stream_recovered",
        "stimulation_resumed",
    )
    order = [e for e in run.journal if e["event"] in wanted]
    assert [e["event"] for e in order] == list(wanted), order
    stalled, _, _, resumed = order
    sim = run.sim_pulses
    # None while the EEG was gone (a pulse being written as the stall was
    # noticed may land 2 ms on), and some after it came back.
    assert not np.any((sim > stalled["clock"] + 0.002) & (sim < resumed["clock"]))
    assert np.any(sim > resumed["clock"])
    (end,) = [e for e in run.journal if e["event"] == "block_end"]
    assert end["completed"] and end["pulses_delivered"] == len(sim)


@pytest.mark.slow
@pytest.mark.xdist_group("closed_loop")
def test_calibrated_offset_is_measured_then_used(tmp_path):
    """A phase_calibration block's offset goes to the calibrated block after it."""
    from test_faults import _read_run, _run, _run_args

    data = tmp_path / "data"
    protocol = tmp_path / "calibrated.yaml"
    protocol.write_text(
        _triggered_protocol(("calibrated",), 4)
        .replace("blocks:\n", "blocks:\n  - type: phase_calibration\n    duration: 20 s\n")
        .replace("min_interval: 1.1 s", "min_interval: 1.1 s\n      phase_offset: calibrated")
    )  # fmt: skip
    finished = _run(_run_args(data, protocol=protocol), tmp_path / "run")
    assert finished.returncode == 0, str(finished)
    run = _read_run(data, 1)
    (measured,) = [e for e in run.journal if e["event"] == "phase_calibrated"]
    (used,) = [e for e in run.journal if e["event"] == "phase_offset_used"]
    assert measured["crossings"] >= 10 and abs(measured["offset_deg"]) < 45
    assert used["offset_deg"] == measured["offset_deg"]
    assert used["source"] == "this run" and used["block"] == 1
    stored = json.loads(run.folder.file("phase_calibration.json").read_text())
    assert stored["offset_deg"] == measured["offset_deg"]
    assert len(run.sim_pulses) >= 1
    # The offset is kept for the participant's next session, in the thresholds
    # file of the session folder, with the RMT in use and how it was measured.
    kept = yaml.safe_load(run.folder.file("thresholds.yaml").read_text())
    assert kept["rmt"] == 50 and kept["method"] == "given on the command line"
    assert kept["phase_offset"] == round(measured["offset_deg"], 1)
    how = kept["phase_calibration"]
    assert (how["estimator"], how["montage"], how["band"]) == (
        "ar",
        "c3_hjorth",
        "8-13 Hz",
    )
    assert how["crossings"] == measured["crossings"]
    # The next session: no calibration block, that file given.
    later = tmp_path / "later.yaml"
    later.write_text(
        _triggered_protocol(("calibrated",), 2)
        .replace("min_interval: 1.1 s", "min_interval: 1.1 s\n      phase_offset: calibrated")
    )  # fmt: skip
    file = str(run.folder.file("thresholds.yaml"))
    data2 = tmp_path / "data2"
    finished = _run(
        _run_args(data2, "--thresholds", file, protocol=later), tmp_path / "run2"
    )
    assert finished.returncode == 0, str(finished)
    run2 = _read_run(data2, 1)
    (used,) = [e for e in run2.journal if e["event"] == "phase_offset_used"]
    assert used["offset_deg"] == kept["phase_offset"]
    assert used["source"] == f"thresholds file {file}"
    assert run2.plan["thresholds"]["phase_offset"]["offset_deg"] == used["offset_deg"]
    assert "phase offset" in run2.plan["blocks"][0]["trigger"]
