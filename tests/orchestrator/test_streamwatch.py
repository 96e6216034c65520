"""Stream supervision on real LSL outlets: rates, ages, stalls and recovery."""

import threading
import time
import uuid

import numpy as np
import pylsl
import pytest

from stimtrain.devices.sim_eeg import SimulatedEEG
from stimtrain.orchestrator.session.recording import StreamsMissing
from stimtrain.orchestrator.session.streamwatch import StreamWatch


class Pusher:
    """A real outlet fed at ``srate`` from a thread; ``paused`` stops the data."""

    def __init__(self, srate: float, n_channels: int = 4, name: str = "sw-test"):
        self.name = f"{name}-{uuid.uuid4().hex[:8]}"
        self.srate = srate
        info = pylsl.StreamInfo(
            self.name, "EEG", n_channels, srate, "float32", self.name
        )
        self.outlet = pylsl.StreamOutlet(info)
        # As the runner gets it: resolved (an outlet's own info has no address).
        self.info = pylsl.resolve_byprop("source_id", self.name, 1, 5.0)[0]
        self.paused = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._n_channels = n_channels

    def _run(self) -> None:
        t0 = pylsl.local_clock()
        sent = 0
        while not self._stop.wait(0.01):
            due = int((pylsl.local_clock() - t0) * self.srate)
            if self.paused.is_set():
                sent = due  # an amplifier that stops sends nothing for the pause
                continue
            if due > sent:
                chunk = np.zeros((due - sent, self._n_channels), np.float32)
                self.outlet.push_chunk(chunk, t0 + (due - 1) / self.srate)
                sent = due

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _wait_for(events: list, n: int, timeout: float) -> float | None:
    """Wait until ``events`` holds ``n`` entries; return the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if len(events) >= n:
            return time.monotonic() - t0
        time.sleep(0.005)
    return None


def test_stall_recover_and_health():
    stall_s = 0.5
    stalls, recoveries = [], []
    with Pusher(500.0) as fast, Pusher(4.0, 1, "sw-slow") as slow:
        watch = StreamWatch(
            [fast.info, slow.name],  # an info and a name to resolve
            stall_s=stall_s,
            on_stall=lambda name, age: stalls.append((name, age)),
            on_recover=recoveries.append,
            window_s=1.5,
        )
        t_start = time.monotonic()
        with watch:
            time.sleep(2.0)
            health = {h["name"]: h for h in watch.health()}
            elapsed = time.monotonic() - t_start
            h = health[fast.name]
            assert h["ok"] and h["nominal_srate"] == 500.0 and h["type"] == "EEG"
            assert h["srate"] == pytest.approx(500.0, rel=0.1)
            assert 0 <= h["age_s"] < 0.3
            # Samples flow from the moment the inlet connects, inside start().
            assert 0.9 * 2.0 * 500 <= h["n_samples"] <= 1.05 * elapsed * 500
            # A 4 Hz stream is 250 ms between samples: not a stall at 0.5 s.
            assert health[slow.name]["ok"]
            assert health[slow.name]["srate"] == pytest.approx(4.0, rel=0.35)
            assert not stalls

            fast.paused.set()
            waited = _wait_for(stalls, 1, 3.0)
            assert waited is not None, "no stall reported"
            assert waited <= stall_s + 0.3
            name, age = stalls[0]
            assert name == fast.name and age > stall_s
            assert watch.stalled == [fast.name]
            h = {h["name"]: h for h in watch.health()}[fast.name]
            assert not h["ok"] and h["age_s"] > stall_s
            time.sleep(0.3)
            assert len(stalls) == 1, "a stall is reported once"

            fast.paused.clear()
            waited = _wait_for(recoveries, 1, 2.0)
            assert waited is not None and waited < 0.5
            assert recoveries == [fast.name]
            assert watch.stalled == []
            assert {h["name"]: h for h in watch.health()}[fast.name]["ok"]
        assert [s[0] for s in stalls] == [fast.name]


def test_lost_stream_stalls_and_stop_returns():
    stalls = []
    eeg = SimulatedEEG(4, 500.0, f"sw-lost-{uuid.uuid4().hex[:8]}", noise_uv=0)
    eeg.start()
    watch = StreamWatch(
        [eeg.info.name()],
        stall_s=0.3,
        on_stall=lambda name, age: stalls.append(name),
    ).start()
    try:
        time.sleep(0.5)
        assert watch.health()[0]["ok"]
        eeg.stop()  # the amplifier goes away: its outlet is destroyed
        assert _wait_for(stalls, 1, 2.0) is not None
        assert watch.stalled == [eeg.info.name()]
    finally:
        t0 = time.monotonic()
        watch.stop()
        eeg.stop()
    assert time.monotonic() - t0 < 2.0


def test_a_stream_that_never_sends_stalls():
    stalls = []
    with Pusher(500.0) as quiet:
        quiet.paused.set()
        with StreamWatch(
            [quiet.info], stall_s=0.3, on_stall=lambda n, a: stalls.append(a)
        ) as watch:
            assert _wait_for(stalls, 1, 2.0) is not None
            h = watch.health()[0]
            assert h["age_s"] is None and h["n_samples"] == 0 and not h["ok"]
        watch.stop()  # idempotent
        with pytest.raises(RuntimeError, match="started once"):
            watch.start()


def test_a_failing_callback_does_not_stop_supervision():
    recoveries = []

    def bad(name, age):
        raise RuntimeError("console gone")

    with (
        Pusher(500.0) as p,
        StreamWatch([p.info], stall_s=0.3, on_stall=bad, on_recover=recoveries.append),
    ):
        p.paused.set()
        time.sleep(0.6)
        p.paused.clear()
        assert _wait_for(recoveries, 1, 2.0) is not None


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="stall_s must be a positive number, got 0"):
        StreamWatch(["x"], stall_s=0)
    with pytest.raises(ValueError, match="non-empty list of streams"):
        StreamWatch([])
    with pytest.raises(TypeError, match="StreamInfo or names, got 3"):
        StreamWatch([3])
    with pytest.raises(StreamsMissing, match="sw-nobody-here"):
        StreamWatch(["sw-nobody-here"], resolve_timeout=0.5)
    with Pusher(100.0) as p:
        with pytest.raises(ValueError, match="unique names; repeated"):
            StreamWatch([p.info, p.info])
