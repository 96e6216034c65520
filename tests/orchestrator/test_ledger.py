"""The pulse ledger: each pulse marked at the device's write time, journaled once.

Real parts: a real LSL marker outlet read back by a real inlet on this
machine, and a real journal file.
"""

from __future__ import annotations

import json
import os
import threading
import time

import pylsl
import pytest

from stimtrain.orchestrator.session.device_process import PulseReport
from stimtrain.orchestrator.session.journal import Journal, read_journal
from stimtrain.orchestrator.session.ledger import PulseLedger
from stimtrain.orchestrator.session.markers import MarkerOutlet


@pytest.fixture
def wired(tmp_path):
    """A ledger on a real marker outlet (with an inlet on it) and a journal."""
    markers = MarkerOutlet(f"ledger-{os.getpid()}-{time.monotonic_ns()}")
    found = pylsl.resolve_byprop("name", markers.name, timeout=5.0)
    assert found, "marker stream not found"
    inlet = pylsl.StreamInlet(found[0], recover=False)
    inlet.open_stream(timeout=5.0)
    journal = Journal(tmp_path / "journal.jsonl")
    counts = []
    ledger = PulseLedger(markers, journal, on_change=counts.append)
    yield ledger, inlet, journal, counts
    journal.close()
    markers.close()


def _pull(inlet, n: int) -> list[tuple[dict, float]]:
    out, deadline = [], time.monotonic() + 5.0
    while len(out) < n and time.monotonic() < deadline:
        sample, ts = inlet.pull_sample(timeout=0.2)
        if sample is not None:
            out.append((json.loads(sample[0]), ts))
    assert len(out) == n, out
    return out


def test_a_pulse_is_marked_at_the_devices_write_time(wired):
    ledger, inlet, journal, counts = wired
    ledger.set_block_fields(2, pattern="single", intensity=110, unit="%RMT", power=55)
    # The report reaches the ledger well after the write: the marker must
    # still carry the write time.
    written = pylsl.local_clock() - 0.25
    report = PulseReport(
        block=2, index=0, scheduled=written - 0.001, actual=written, via="serial"
    )
    time.sleep(0.05)
    ledger.record(report)
    ((marker, ts),) = _pull(inlet, 1)
    assert ts == pytest.approx(written, abs=1e-6)
    assert marker == {
        "event": "pulse",
        "block": 2,
        "pulse": 0,
        "scheduled": pytest.approx(written - 0.001),
        "via": "serial",
        "pattern": "single",
        "intensity": 110,
        "unit": "%RMT",
        "power": 55,
    }
    (line,) = [e for e in read_journal(journal.path) if e["event"] == "pulse"]
    assert line["actual"] == written and line["confirmed"] is True
    assert ledger.delivered == 1 and counts == [1] and ledger.given(2) == {0}


def test_a_paired_firing_gives_two_pulses_and_a_device_train_many(wired):
    ledger, inlet, journal, counts = wired
    t = pylsl.local_clock()
    ledger.set_block_fields(0, pattern="paired", intensity=120, unit="%RMT", power=60)
    ledger.update_block_fields(0, conditioning_power=40, isi=0.003)
    ledger.record(PulseReport(0, 4, t, t, "paired"))
    ledger.set_block_fields(1, pattern="rtms", intensity=50, unit="%MSO", power=50)
    ledger.update_block_fields(1, train_pulses=5, frequency=10.0)
    ledger.record(PulseReport(1, 1, t + 1, t + 1, "device_train"))
    marks = _pull(inlet, 7)
    pair = [(m["pulse"], m.get("role"), m["power"], ts) for m, ts in marks[:2]]
    assert pair == [
        (8, "conditioning", 40, pytest.approx(t)),
        (9, "test", 60, pytest.approx(t + 0.003)),
    ]
    train = [(m["pulse"], ts) for m, ts in marks[2:]]
    assert train == [(5 + k, pytest.approx(t + 1 + k / 10)) for k in range(5)]
    assert ledger.delivered == 7 and ledger.block_pulses(1) == 5
    assert sum(e["event"] == "pulse" for e in read_journal(journal.path)) == 7


def test_reports_from_many_threads_are_all_counted(wired):
    ledger, inlet, journal, counts = wired
    ledger.set_block_fields(0, pattern="single", intensity=50, unit="%MSO", power=50)

    def fire(start: int) -> None:
        for i in range(start, start + 50):
            t = pylsl.local_clock()
            ledger.record(PulseReport(0, i, t, t, "trigger"))

    threads = [threading.Thread(target=fire, args=(k * 50,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert ledger.delivered == 200 and ledger.given(0) == set(range(200))
    assert max(counts) == 200
    lines = [e for e in read_journal(journal.path) if e["event"] == "pulse"]
    assert sorted(e["pulse"] for e in lines) == list(range(200))
