"""The live view in a real browser during a real session on the simulated rig.

One ``stimtrain run --view`` subprocess; headless chromium reads the page
while it runs: a request without the token is refused and changes nothing,
every pulse's MEP trace is on the page within 1 s, a reload and a second tab
restore the whole view, pause and resume from the page take effect at the
next safe point and are journaled with their origin, abort from the page
disarms. The screenshots in docs/operator.md are taken here.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from stimtrain.orchestrator.session.journal import read_journal
from stimtrain.orchestrator.session.session_folder import SessionFolder

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("rig")]

PROTOCOL = Path(__file__).parent / "fault_protocols" / "live_view.yaml"
DOCS_IMAGES = Path(__file__).parents[1] / "docs" / "images"


class Session:
    """``stimtrain run --view`` in the background, its output in a file."""

    def __init__(self, data: Path) -> None:
        self.out = data / "out.txt"
        data.mkdir(parents=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stimtrain.cli", "run", str(PROTOCOL)]
            + ["--participant", "view", "--session", "1", "--rmt", "50"]
            + ["--data", str(data), "--view"],
            stdout=self.out.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.journal = SessionFolder(data.resolve(), "view", "1", 1).file(
            "journal.jsonl"
        )

    def url(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.out.read_text()
            found = re.search(
                r"^view: (http://127\.0\.0\.1:\d+/\S+/)$", self.text, re.M
            )
            if found:
                return found.group(1)
            time.sleep(0.1)
        raise AssertionError(f"no view line within {timeout} s:\n{self.text}")

    @property
    def text(self) -> str:
        return self.out.read_text()

    def events(self, name: str) -> list[dict]:
        if not self.journal.exists():
            return []
        return [e for e in read_journal(self.journal) if e.get("event") == name]

    def wait_for(self, check, what: str, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            assert self.proc.poll() is None, f"the run ended:\n{self.text}"
            time.sleep(0.05)
        raise AssertionError(f"not within {timeout} s: {what}\n{self.text}")

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)


def _status(url: str, method: str = "GET", body: bytes | None = None) -> int:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _count(browser) -> int:
    return int(browser.find_element("id", "mep-count").get_attribute("data-count"))


def _pulses(session: Session, block: int) -> list[dict]:
    return [p for p in session.events("pulse") if p["block"] == block]


def test_live_view_during_a_session(tmp_path, browser):
    session = Session(tmp_path / "data")
    try:
        url = session.url()
        base = url.rsplit("/", 2)[0]
        # The line comes after the session folder's and before the first block.
        lines = session.text.splitlines()
        view_line = next(i for i, x in enumerate(lines) if x.startswith("view: "))
        assert lines[view_line - 1].startswith("simulated rig:") or any(
            x.startswith("session folder:") for x in lines[:view_line]
        )
        assert not any(x.startswith("block ") for x in lines[:view_line])

        # No token, a wrong token: nothing to read, nothing to change.
        token = url.rstrip("/").rsplit("/", 1)[1]
        wrong = "x" * len(token)
        for path in ("/", f"/{wrong}/", f"/{wrong}/ws", "/plotly.min.js"):
            assert _status(base + path) == 403, path
        abort = json.dumps({"action": "abort"}).encode()
        assert _status(f"{base}/{wrong}/control", "POST", abort) == 403
        assert _status(f"{base}/control", "POST", abort) == 403
        assert _status(url + "view.js") == 200

        # Every pulse of block 0 has its MEP trace on the page within 1 s.
        browser.get(url)
        checks = 0
        while len(_pulses(session, 0)) < 8 or _count(browser) < 8:
            shown = _count(browser)
            due = [p for p in _pulses(session, 0) if p["wall"] <= time.time() - 1.0]
            assert shown >= len(due), (shown, len(due))
            checks += 1
            assert session.proc.poll() is None, session.text
            assert checks < 600, "block 0's 8 MEPs not shown within 60 s"
            time.sleep(0.1)
        assert session.events("operator_key") == []  # the refused abort did nothing
        status = browser.find_element("id", "status").text
        assert status == "running"

        # A reload and a second tab show the whole view again.
        browser.refresh()
        session.wait_for(lambda: _count(browser) >= 8, "the reloaded page's MEPs")
        first = browser.current_window_handle
        browser.switch_to.new_window("tab")
        browser.get(url)
        session.wait_for(lambda: _count(browser) >= 8, "the second tab's MEPs")
        session.wait_for(
            lambda: browser.find_element("id", "evoked-title").text,
            "the second tab's evoked EEG",
        )
        second_blocks = browser.find_element("id", "blocks").text
        browser.close()
        browser.switch_to.window(first)
        assert browser.find_element("id", "blocks").text.count("\n") == (
            second_blocks.count("\n")
        )

        # The task block: its panel shows the trials, and the docs' picture.
        session.wait_for(
            lambda: len([p for p in session.events("pulse") if p["block"] == 1]) >= 5,
            "five online pulses in the task",
        )
        progress = browser.find_element("id", "task-progress").text
        assert re.match(r"flanker: trial \d of 8", progress), progress
        # No phase-locked block in this protocol: no phase panel.
        assert not browser.find_element("id", "phase-panel").is_displayed()
        DOCS_IMAGES.mkdir(exist_ok=True)
        browser.save_screenshot(str(DOCS_IMAGES / "live_view.png"))

        # Pause from the page: held at the next safe point, journaled as such.
        session.wait_for(lambda: len(_pulses(session, 2)) >= 2, "block 2's pulses")
        browser.find_element("id", "pause").click()
        paused = session.wait_for(
            lambda: session.events("stimulation_paused"), "the pause"
        )[0]
        session.wait_for(
            lambda: browser.find_element("id", "status").text == "paused",
            "the page shows the pause",
        )
        time.sleep(1.5)
        browser.find_element("id", "resume").click()
        resumed = session.wait_for(
            lambda: session.events("stimulation_resumed"), "the resume"
        )[0]
        assert resumed["clock"] - paused["clock"] > 1.4
        assert not [
            p
            for p in _pulses(session, 2)
            if paused["clock"] < p["clock"] < resumed["clock"]
        ]

        # Abort from the page: disarmed, the run ends aborted.
        session.wait_for(lambda: len(_pulses(session, 3)) >= 2, "block 3's pulses")
        browser.find_element("id", "abort").click()
        clicked = time.time()
        assert session.proc.wait(120) == 2, session.text
    finally:
        session.kill()

    actions = [
        (e["action"], e["origin"], e["block"]) for e in session.events("operator_key")
    ]
    assert actions == [
        ("pause", "view", 2),
        ("resume", "view", 2),
        ("abort", "view", 3),
    ]
    (abort,) = [e for e in session.events("operator_key") if e["action"] == "abort"]
    disarms = [e for e in session.events("disarmed") if e["clock"] >= abort["clock"]]
    assert disarms, "no disarm after the page's abort"
    assert abort["wall"] - clicked < 1.0
    late = [p for p in _pulses(session, 3) if p["clock"] > disarms[0]["clock"]]
    assert not late
    (end,) = session.events("session_end")
    assert end["status"] == "aborted" and "abort" in end["reason"]
