"""The live view's process on its own: real LSL markers in, a real browser out.

No session: a marker outlet and a console state stand in for the runner's
(they are the real classes), so the server's rules can be checked in seconds:
the address, the token, the actions it passes on and the ones it refuses,
a page that follows the state and the markers, and the phase panel that
appears with the first phase-locked pulse.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request

import pylsl
import pytest

from stimtrain.orchestrator.session.console import ConsoleState
from stimtrain.orchestrator.session.view.live import LiveView
from stimtrain.vocabulary import MARKER_STREAM_TYPE, encode_marker


def _request(url: str, body: dict | None = None) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _until(check, what: str, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


@pytest.fixture
def view(tmp_path):
    name = f"stimtrain-markers-viewtest-{os.getpid()}"
    outlet = pylsl.StreamOutlet(
        pylsl.StreamInfo(name, MARKER_STREAM_TYPE, 1, 0, "string", name)
    )
    state = ConsoleState(protocol="view test", participant="p1", session="1", run=1)
    asked: list[tuple] = []

    def act(action, origin, block):
        asked.append((action, origin, block))
        return action

    journal = tmp_path / "journal.jsonl"
    journal.write_text(json.dumps({"event": "run_created", "wall": 0}) + "\n")
    live = LiveView(
        state,
        act,
        marker_stream=name,
        data_stream=None,
        emg_channel=None,
        journal=str(journal),
    )
    url = live.start()
    yield url, live, state, outlet, asked
    live.close()


def test_the_address_the_token_and_the_actions(view):
    url, live, state, outlet, asked = view
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/[A-Za-z0-9_-]{24}/", url)
    base, token = url.rstrip("/").rsplit("/", 1)
    assert _request(url)[0] == 200
    for path in ("/", "/index.html", f"/{token[:-1]}/", f"/{token}x/view.js"):
        assert _request(base + path)[0] == 403, path
    assert _request(f"{base}/nottoken/control", {"action": "abort"})[0] == 403
    assert _request(url + "control", {"action": "fire"})[0] == 400
    assert _request(url + "control", {"action": "skip", "block": "2"})[0] == 400
    time.sleep(0.5)
    assert asked == []
    assert _request(url + "control", {"action": "pause"}) == (200, '{"sent": "pause"}')
    assert _request(url + "control", {"action": "skip", "block": 2})[0] == 200
    _until(lambda: len(asked) == 2, "two actions handed to the runner")
    assert asked == [("pause", "view", None), ("skip", "view", 2)]


def test_the_page_follows_the_state_and_the_markers(view, browser):
    url, live, state, outlet, asked = view
    browser.get(url)
    status = lambda: browser.find_element("id", "status").text  # noqa: E731
    _until(lambda: status() == "running", "the page's first state")
    state.update(status="paused")
    _until(lambda: status() == "paused", "the page shows the pause")
    outlet.push_sample(
        [
            encode_marker(
                "task_start", block=0, task="flanker", n_trials=4, seed=1, level=None
            )
        ]
    )
    outlet.push_sample(
        [
            encode_marker(
                "stim_onset", block=0, task="flanker", trial=1, condition="congruent"
            )
        ]
    )
    progress = lambda: browser.find_element("id", "task-progress").text  # noqa: E731
    _until(lambda: progress() == "flanker: trial 1 of 4", "the task's progress")
    journal = browser.find_element("id", "journal").text
    assert "run_created" in journal
    browser.find_element("id", "resume").click()
    _until(lambda: asked == [("resume", "view", None)], "the page's resume")


def test_the_phase_panel_appears_with_the_first_phase_locked_pulse(view, browser):
    url, live, state, outlet, asked = view
    browser.get(url)
    panel = lambda: browser.find_element("id", "phase-panel")  # noqa: E731
    _until(lambda: browser.find_element("id", "status").text == "running", "state")
    common = dict(pattern="single", intensity=110, unit="%RMT", power=55)

    def pulse(block: int, n: int, **fields) -> None:
        fields.update(common, block=block, pulse=n, scheduled=pylsl.local_clock())
        outlet.push_sample([encode_marker("pulse", **fields)])

    pulse(0, 0)  # not phase-locked: no panel
    time.sleep(0.6)
    assert not panel().is_displayed()
    for n, online in enumerate([350.0, 10.0, 5.0, 355.0]):
        pulse(1, n, target_phase=0.0, online_phase=online)
    for n, online in enumerate([170.0, 190.0]):
        pulse(2, n, target_phase=180.0, online_phase=online)
    count = lambda: browser.find_element("id", "phase-count").get_attribute(  # noqa: E731
        "data-count"
    )
    _until(lambda: count() == "6", "six phase-locked pulses on the page")
    assert panel().is_displayed()
    rows = browser.find_elements("css selector", "#phase-table tbody tr")
    cells = [[c.text for c in r.find_elements("tag name", "td")] for r in rows]
    assert [c[:2] for c in cells] == [["0°", "4"], ["180°", "2"]]
    assert cells[0][2] == "0°" and cells[1][2] == "180°"
    # Circular SD sqrt(-2 ln R): about 0, two pulses 5 and two 10 degrees off,
    # R = (cos 5 + cos 10) / 2, 7.9 degrees; about 180, R = cos 10, 10.0.
    assert cells[0][3] == "8°" and cells[1][3] == "10°"
    polars = browser.find_elements("css selector", "#phase-plot .polarlayer > g")
    assert len(polars) == 2
    bars = browser.find_elements("css selector", "#phase-plot .trace.bars path")
    assert len(bars) == 2 * 18  # a path per bin of each target (empty ones flat)
    # A reload gets the panel again.
    browser.refresh()
    _until(lambda: count() == "6", "the reloaded page's phase panel")
