"""The end-of-session XDF check on a real LabRecorder file and a real journal.

One recording (module fixture) of a simulated EEG and a session marker
stream; its journals differ so that every outcome of the pulse matching is
seen. Pulse (3, 2) is journalled but its marker is never sent, as if lost.
"""

import json
import time
import uuid

import pylsl
import pytest

from stimtrain.devices.sim_eeg import SimulatedEEG
from stimtrain.orchestrator.session.journal import Journal
from stimtrain.orchestrator.session.markers import MarkerOutlet
from stimtrain.orchestrator.session.recording import (
    Recorder,
    StreamsMissing,
    wait_for_streams,
)
from stimtrain.orchestrator.session.xdfcheck import check_recording

# Its module fixtures are costly: every test of it runs on one worker.
pytestmark = pytest.mark.xdist_group("test_xdfcheck")

PULSES = [(1, p) for p in range(6)] + [(3, p) for p in range(4)]
DROPPED = (3, 2)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    root = tmp_path_factory.mktemp("xdfcheck")
    tag = uuid.uuid4().hex[:8]
    markers = MarkerOutlet(f"xc-{tag}")
    # Seen once in a full-suite run: the EEG outlet never became visible
    # (only the marker stream was); a fresh outlet under a new name was.
    for attempt in range(2):
        eeg = SimulatedEEG(4, 500.0, f"xc-eeg-{tag}-{attempt}").start()
        try:
            streams = wait_for_streams([eeg.info.name(), markers.name], 10.0)
            break
        except StreamsMissing:
            eeg.stop()
            if attempt:
                raise
    recorder = Recorder(root / "recording.xdf", streams, settle=1.0)
    markers.push(
        "session_start",
        participant="01",
        session="1",
        run=1,
        protocol="p",
        protocol_sha256="0" * 64,
    )
    pulses = []
    for block in (1, 3):
        markers.push("block_start", block=block, type="stimulate", label="b")
        for b, p in PULSES:
            if b != block:
                continue
            scheduled = pylsl.local_clock() + 0.001
            while pylsl.local_clock() < scheduled:
                pass
            actual = pylsl.local_clock()
            if (b, p) != DROPPED:
                markers.push(
                    "pulse",
                    actual,
                    block=b,
                    pulse=p,
                    pattern="single",
                    intensity=110,
                    unit="%RMT",
                    power=55,
                    scheduled=scheduled,
                )
            pulses.append(dict(block=b, pulse=p, scheduled=scheduled, actual=actual))
            time.sleep(0.02)
    markers.push("session_end", status="completed", pulses_delivered=len(pulses))
    recorder.stop()
    markers.close()
    eeg.stop()

    def journal(name, skip=()):
        j = Journal(root / name)
        j.write("run_created", participant="01", session="1", run=1)
        for entry in pulses:
            if (entry["block"], entry["pulse"]) not in skip:
                j.write("pulse", via="serial", **entry)
        j.write("session_end", status="completed")
        j.close()
        return root / name

    return dict(
        root=root,
        xdf=root / "recording.xdf",
        eeg=eeg.info.name(),
        markers=markers.name,
        full=journal("full.jsonl"),
        matched=journal("matched.jsonl", skip=[DROPPED]),
        short=journal("short.jsonl", skip=[DROPPED, (1, 5)]),
    )


def test_every_pulse_matched(session):
    check = check_recording(
        session["xdf"], session["matched"], required_streams=[session["eeg"]]
    )
    assert check.ok, check.reason
    assert check.reason is None
    assert check.footer and not check.truncated
    assert check.marker_stream == session["markers"]
    assert check.pulses_journal == check.pulses_matched == len(PULSES) - 1
    assert check.missing_in_xdf == check.extra_in_xdf == []
    # The runner stamps the marker with the journal's actual time.
    assert check.offset_max_ms < 1e-3 and check.offset_median_ms < 1e-3
    assert check.marker_counts == {
        "session_start": 1,
        "block_start": 2,
        "pulse": len(PULSES) - 1,
        "session_end": 1,
    }
    streams = {s.name: s for s in check.streams}
    eeg = streams[session["eeg"]]
    assert (eeg.type, eeg.channel_count, eeg.nominal_srate) == ("EEG", 4, 500.0)
    assert eeg.footer and eeg.n_samples > 500
    assert eeg.effective_srate == pytest.approx(500.0, rel=0.01)
    assert eeg.n_samples == pytest.approx(eeg.duration_s * 500 + 1, abs=2)
    mrk = streams[session["markers"]]
    assert mrk.n_samples == sum(check.marker_counts.values())
    assert mrk.effective_srate is None
    # Ready for summary.json.
    d = json.loads(json.dumps(check.as_dict()))
    assert d["ok"] is True and d["pulses_matched"] == len(PULSES) - 1
    assert d["streams"][0]["name"] in streams


def test_lost_marker_and_extra_marker_are_named(session):
    check = check_recording(session["xdf"], session["full"])
    assert not check.ok
    assert check.missing_in_xdf == [DROPPED]
    assert check.pulses_matched == len(PULSES) - 1
    assert "1 journal pulse(s) have no marker in the XDF: 3/2" in check.reason
    assert check.as_dict()["missing_in_xdf"] == [list(DROPPED)]

    check = check_recording(session["xdf"], session["short"])
    assert check.extra_in_xdf == [(1, 5)] and check.missing_in_xdf == []
    assert "1 pulse marker(s) are not in the journal: 1/5" in check.reason


def _first_footer(data: bytes) -> int:
    """Byte offset of the first StreamFooter chunk (tag 6) of an XDF file."""
    pos = 4
    while pos < len(data):
        width = data[pos]
        length = int.from_bytes(data[pos + 1 : pos + 1 + width], "little")
        body = pos + 1 + width
        if int.from_bytes(data[body : body + 2], "little") == 6:
            return pos
        pos = body + length
    raise AssertionError("no footer in the file")


def test_killed_recorder_file_is_still_checked(session, tmp_path):
    data = session["xdf"].read_bytes()
    cut = _first_footer(data)
    # Everything up to the footers: all data, no footer.
    (tmp_path / "nofooter.xdf").write_bytes(data[:cut])
    check = check_recording(tmp_path / "nofooter.xdf", session["matched"])
    assert not check.footer and not check.truncated
    assert check.ok, check.reason
    assert check.pulses_matched == len(PULSES) - 1
    assert any("footer" in note for note in check.notes)
    eeg = {s.name: s for s in check.streams}[session["eeg"]]
    assert not eeg.footer
    assert eeg.effective_srate == pytest.approx(500.0, rel=0.01)

    # Killed in the middle of a chunk: the check reports what is there.
    (tmp_path / "cut.xdf").write_bytes(data[: int(cut * 0.6) + 3])
    check = check_recording(tmp_path / "cut.xdf", session["matched"])
    assert not check.footer and check.truncated
    assert check.pulses_matched + len(check.missing_in_xdf) == len(PULSES) - 1
    assert check.extra_in_xdf == []
    assert {s.name for s in check.streams} >= {session["eeg"]}
    json.dumps(check.as_dict())


def test_unreadable_inputs_become_problems(session, tmp_path):
    check = check_recording(tmp_path / "none.xdf", session["matched"])
    assert not check.ok and "none.xdf unreadable" in check.reason
    assert check.missing_in_xdf == sorted(p for p in PULSES if p != DROPPED)

    (tmp_path / "text.xdf").write_text("not a recording")
    check = check_recording(tmp_path / "text.xdf", session["matched"])
    assert "is not an XDF file" in check.reason

    check = check_recording(session["xdf"], tmp_path / "nojournal.jsonl")
    assert not check.ok and "nojournal.jsonl unreadable" in check.reason
    assert check.streams and check.pulses_journal == 0

    check = check_recording(
        session["xdf"], session["matched"], required_streams=["xc-no-emg"]
    )
    assert check.reason == "required stream 'xc-no-emg' is not in the file"

    check = check_recording(session["xdf"], session["matched"], marker_stream="nope")
    assert "no 'nope' in recording.xdf; streams:" in check.reason
    assert session["eeg"] in check.reason


def test_marker_stream_by_name(session):
    check = check_recording(
        session["xdf"], session["matched"], marker_stream=session["markers"]
    )
    assert check.ok and check.marker_stream == session["markers"]
