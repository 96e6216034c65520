"""The operator console: what it draws, and its keys through a real pseudo-terminal."""

import dataclasses
import io
import os
import re
import select
import subprocess
import sys
import termios
import threading
import time

import pytest
from rich.console import Console

from stimtrain.orchestrator.safety.plan import PlannedBlock
from stimtrain.orchestrator.session.console import (
    ABORTING,
    PAUSING,
    RUNNING,
    ConsoleState,
    OperatorConsole,
    PhaseProgress,
    StreamHealth,
    TaskProgress,
    render,
)

NOW = 1000.0


def _blocks(n=3):
    kinds = [
        ("rest", "baseline rest", 60.0, 0),
        ("stimulate", "cTBS left M1", 41.5, 72),
    ]
    kinds.append(("task", "flanker training", 300.0, 0))
    out, start = [], 0.0
    for i in range(n):
        type_, label, dur, pulses = kinds[i % 3]
        label = label if n <= 3 else f"{label} {i}"
        out.append(PlannedBlock(i, type_, label, start, dur, pulses))
        start += dur
    return out


def _state(**kw):
    state = ConsoleState(
        protocol="ctbs-flanker",
        participant="07",
        session="2",
        run=1,
        blocks=_blocks(),
        pulses_planned=72,
    )
    state.update(**kw)
    return state


def _text(renderable, styles=False):
    console = Console(record=True, width=120, force_terminal=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text(styles=styles)


def _line(text, word):
    return next(line for line in text.splitlines() if word in line)


def test_render_shows_the_session():
    state = _state(
        current_block=1,
        block_started=NOW - 10.0,
        next_event=lambda: NOW + 2.5,
        next_event_label="pulse 13",
        pulses_delivered=12,
        device=dict(
            remote_control=True,
            armed=True,
            ready=True,
            intensity=65.0,
            coil_temperature=36.2,
            errors=[],
        ),
        streams=[
            StreamHealth("sim-eeg", 1000.0, measured_rate=999.7, age_s=0.02, ok=True),
            StreamHealth("sim-emg", 5000.0, measured_rate=0.0, age_s=3.4, ok=False),
        ],
        markers_sent=57,
        task=TaskProgress("flanker", trial=14, n_trials=80, accuracy=0.857),
    )
    state.finish_block(0)
    state.warn("coil temperature 36.2 °C")
    state.warn("late block start by 0.12 s")
    text = _text(render(state, now=NOW))
    for label in ("baseline rest", "cTBS left M1", "flanker training"):
        assert label in text
    assert "done" in _line(text, "baseline rest")
    assert "now" in _line(text, "cTBS left M1")
    assert "next" in _line(text, "flanker training")
    assert "12/72" in text
    assert "10.0 / 41.5 s" in text
    assert "pulse 13 in 2.5 s" in text
    assert "ARMED" in text and "65 %MSO" in text and "36.2 °C" in text
    assert "STALE" in _line(text, "sim-emg") and "ok" in _line(text, "sim-eeg")
    assert "age 3.40 s" in _line(text, "sim-emg")
    assert "markers sent 57" in re.sub(r"\s+", " ", text)
    assert "14 of 80" in text and "86 %" in text
    assert "warnings (2)" in text
    assert text.index("coil temperature 36.2") < text.index("late block start")
    assert "CTBS-FLANKER" not in text and "RUNNING" in _line(text, "ctbs-flanker")
    # The stale stream is red, the healthy one is not.
    styled = _text(render(state, now=NOW), styles=True)
    red = re.compile(r"\x1b\[[0-9;]*\b31m")
    for name, stale in (("sim-emg", True), ("sim-eeg", False)):
        # Only the stream's own row, not the (red: armed) device panel beside it.
        row = _line(styled, name).split(name, 1)[1].split("│", 1)[0]
        row = re.sub(r"\x1b\[[0-9;]*m$", "", row)  # the panel border's colour
        assert bool(red.search(row)) is stale


def test_render_block_end_and_idle_states():
    # Without a next event the block's end is the next thing.
    state = _state(current_block=0, block_started=NOW - 15.0)
    text = _text(render(state, now=NOW))
    assert "block end in 45.0 s" in text
    assert "no state yet" in text and "no streams" in text
    assert "no task running" in text and "warnings (0)" in text
    assert "no block running" in _text(render(_state(), now=NOW))
    # A broken next-event callback falls back to the block end.
    state.update(next_event=lambda: 1 / 0)
    assert "block end in 45.0 s" in _text(render(state, now=NOW))


def test_render_shows_a_triggered_block_phase():
    """Pulses given of planned, the offset and its source, the last pulse,
    each target's circular mean and SD of the online phase, the refusals."""
    phase = PhaseProgress(
        given=3,
        planned=20,
        offset_deg=-12.5,
        offset_source="thresholds file",
        last_target_deg=180.0,
        last_online_deg=190.0,
        # Around the trough, across 180 degrees: the circular mean is 180.
        online_deg={180.0: [170.0, 190.0, 180.0]},
        refused={"too soon": 2, "slow decision": 5},
    )
    state = _state(current_block=1, block_started=NOW - 10.0, phase=phase)
    text = _text(render(state, now=NOW))
    assert "phase" in text and "no task running" not in text
    assert "pulses   3 of 20" in text
    assert "-12.5° thresholds file" in _line(text, "offset")
    assert "180° → -170°" in _line(text, "last")
    row = _line(text, "trough")
    assert "online mean +180° sd 8° n 3" in row or "online mean -180° sd 8° n 3" in row
    # The commonest refusal first, each on its own line.
    assert "5 slow decision" in _line(text, "refused")
    assert text.index("5 slow decision") < text.index("2 too soon")
    # Before the first pulse, and with nothing refused.
    state.update(phase=PhaseProgress(planned=20))
    text = _text(render(state, now=NOW))
    assert "0 of 20" in text and "no pulse yet" in text
    assert "none" in _line(text, "refused")
    assert "+0.0° protocol" in _line(text, "offset")
    state.update(phase=PhaseProgress(planned=9, online_deg={90.0: [80.0, 100.0]}))
    assert "online mean +90° sd 10° n 2" in _line(_text(render(state, now=NOW)), "90°")
    # The snapshot is a copy: the reader thread may go on adding.
    state.phase.online_deg[0.0] = [1.0]
    snap = state.snapshot()
    state.phase.online_deg[0.0].append(2.0)
    assert snap.phase.online_deg[0.0] == [1.0]
    # A new block starts without the last one's phase.
    state.start_block(2, NOW)
    assert state.phase is None
    assert "no task running" in _text(render(state, now=NOW))


def test_long_plan_scrolls_with_the_current_block():
    state = _state(blocks=_blocks(30), current_block=20, block_started=NOW)
    state.update(completed=list(range(20)))
    text = _text(render(state, now=NOW))
    assert "17 earlier blocks" in text and "1 more blocks" in text
    assert "now" in _line(text, "flanker training 20")
    assert "baseline rest 0 " not in text


def test_update_checks_names_and_status():
    state = _state()
    with pytest.raises(ValueError, match=r"no field 'pulses'"):
        state.update(pulses=3)
    with pytest.raises(ValueError, match=r"status must be one of .*got 'stopped'"):
        state.update(status="stopped")
    assert state.status == RUNNING


def test_without_a_terminal_lines_are_printed_and_keys_are_off():
    out = io.StringIO()
    calls = []
    with OperatorConsole(
        _state(), lambda *a: calls.append(a), console=Console(file=out)
    ) as oc:
        assert not oc.live_active and not oc.keys_active
        oc.say("block 1/3: rest 'baseline [rest]' (60.0 s planned)")
    assert out.getvalue() == "block 1/3: rest 'baseline [rest]' (60.0 s planned)\n"
    with pytest.raises(RuntimeError, match="key reader"):
        oc.confirm("Coil placed?")


def test_keys_fd_must_be_a_terminal():
    r, w = os.pipe()
    try:
        with pytest.raises(ValueError, match=f"keys_fd must be a terminal.*fd {r}"):
            OperatorConsole(_state(), print, keys_fd=r)
        with pytest.raises(ValueError, match="refresh_hz must be > 0, got 0"):
            OperatorConsole(_state(), print, refresh_hz=0)
    finally:
        os.close(r)
        os.close(w)


@pytest.fixture
def pty():
    master, slave = os.openpty()
    yield master, slave
    os.close(master)
    os.close(slave)


def _wait(predicate, timeout=3.0):
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


def _live_console(state, calls, slave, out=None):
    console = Console(
        record=True, width=120, force_terminal=True, file=out or io.StringIO()
    )
    return OperatorConsole(
        state,
        lambda key, action: calls.append((key, action)),
        console=console,
        keys_fd=slave,
        refresh_hz=20,
    )


def _press(master, calls, key):
    n = len(calls)
    os.write(master, key)
    _wait(lambda: len(calls) > n)
    return calls[-1][1]


def test_keys_pause_skip_abort_through_a_pty(pty):
    master, slave = pty
    before = termios.tcgetattr(slave)
    state = _state(current_block=1, block_started=NOW)
    calls = []
    out = io.StringIO()
    with _live_console(state, calls, slave, out) as oc:
        assert oc.live_active and oc.keys_active
        mode = termios.tcgetattr(slave)
        assert not mode[3] & termios.ICANON and not mode[3] & termios.ECHO
        assert mode[3] & termios.ISIG  # Ctrl+C still interrupts the runner
        assert _press(master, calls, b"p") == "pause"
        assert state.status == PAUSING
        assert _press(master, calls, b"p") == "ignored"
        assert _press(master, calls, b"s") == "skip_requested"
        assert state.pending_confirmation.startswith(
            "press y to skip block 2 ('cTBS left M1')"
        )
        oc.refresh()
        assert _press(master, calls, b"y") == "skip"
        assert state.pending_confirmation is None
        assert _press(master, calls, b"a") == "abort"
        assert state.status == ABORTING
        assert _press(master, calls, b"r") == "ignored"
    assert [key + ":" + action for key, action in calls] == [
        "p:pause",
        "p:ignored",
        "s:skip_requested",
        "y:skip",
        "a:abort",
        "r:ignored",
    ]
    assert termios.tcgetattr(slave) == before
    drawn = out.getvalue()
    assert "press y to skip block 2" in drawn and "ABORTING" in drawn


def test_skip_is_cancelled_by_another_key_or_a_new_block(pty):
    master, slave = pty
    state = _state(current_block=0, block_started=NOW)
    calls = []
    with _live_console(state, calls, slave):
        assert _press(master, calls, b"p") == "pause"
        state.update(status="paused")
        assert _press(master, calls, b"r") == "resume"
        assert state.status == RUNNING
        assert _press(master, calls, b"s") == "skip_requested"
        assert _press(master, calls, b"x") == "skip_cancelled"
        assert state.pending_confirmation is None
        # The block the operator asked about ended before the "y".
        assert _press(master, calls, b"s") == "skip_requested"
        state.start_block(1, NOW + 60)
        assert _press(master, calls, b"y") == "skip_cancelled"
        # Abort overrides a pending skip question at once.
        assert _press(master, calls, b"s") == "skip_requested"
        assert _press(master, calls, b"A") == "abort"
        assert state.pending_confirmation is None and state.status == ABORTING


def test_confirm_question_through_the_pty(pty):
    master, slave = pty
    state = _state(current_block=2, block_started=NOW)
    calls, answers = [], []
    with _live_console(state, calls, slave) as oc:
        for key, expected in ((b"y", True), (b"n", False), (b"\r", True)):
            asking = threading.Thread(
                target=lambda: answers.append(oc.confirm("Coil placed?", timeout=3))
            )
            asking.start()
            _wait(lambda: state.pending_confirmation is not None)
            assert "Coil placed?" in state.pending_confirmation
            if key == b"\r":
                assert _press(master, calls, b"q") == "ignored"
            os.write(master, key)
            asking.join(timeout=3)
            assert answers[-1] is expected
            assert state.pending_confirmation is None
        assert oc.confirm("Nobody answers?", timeout=0.05) is False
    assert [a for _, a in calls] == ["confirmed", "declined", "ignored", "confirmed"]


def test_terminal_restored_after_errors(pty):
    master, slave = pty
    before = termios.tcgetattr(slave)
    state = _state(current_block=0, block_started=NOW)

    def failing(key, action):
        raise OSError("journal is closed")

    with pytest.raises(KeyError):
        with OperatorConsole(
            state, failing, console=Console(file=io.StringIO()), keys_fd=slave
        ) as oc:
            assert oc.keys_active and not oc.live_active
            os.write(master, b"a")
            _wait(lambda: state.warnings)
            # The key reader survives a failing callback and says so.
            assert (
                "key 'a' (abort) was not handled: journal is closed"
                in (state.warnings[-1])
            )
            assert state.status == ABORTING and oc.keys_active
            raise KeyError("runner crashed")
    assert termios.tcgetattr(slave) == before
    assert not oc.keys_active


CHILD = """
import sys, termios, time
import pylsl
from stimtrain.orchestrator.session.console import ConsoleState, OperatorConsole
from stimtrain.orchestrator.safety.plan import PlannedBlock

block = PlannedBlock(0, "stimulate", "single pulses", 0.0, 20.0, 20)
state = ConsoleState("demo", "01", "1", blocks=[block], pulses_planned=20)
state.start_block(0, pylsl.local_clock())
before = termios.tcgetattr(0)
calls = []
with OperatorConsole(state, lambda key, action: calls.append(action)) as oc:
    oc.say(f"live={oc.live_active} keys={oc.keys_active}")
    state.update(pulses_delivered=7)
    end = time.monotonic() + 10
    while "abort" not in calls and time.monotonic() < end:
        time.sleep(0.02)
print(f"restored={termios.tcgetattr(0) == before} calls={calls}", file=sys.stderr)
"""


def test_default_terminal_is_stdin_and_stderr(tmp_path):
    # A session in a real terminal: the console finds it without being told.
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    master, slave = os.openpty()
    child = subprocess.Popen(
        [sys.executable, str(script)], stdin=slave, stdout=slave, stderr=slave
    )
    os.close(slave)
    out, sent = b"", False
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 10)
            assert ready, f"child is silent; so far: {out[-500:]!r}"
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child has closed the terminal
                break
            out += data
            if not sent and b"keys=True" in out:
                os.write(master, b"pa")
                sent = True
    finally:
        os.close(master)
        assert child.wait(timeout=10) == 0
    text = out.decode("utf-8", "replace")
    assert "live=True keys=True" in text
    assert "single pulses" in text and "7/20" in text and "ABORTING" in text
    assert "restored=True calls=['pause', 'abort']" in text


def test_state_is_plain_data():
    # The runner may journal the state as JSON.
    state = _state(streams=[StreamHealth("eeg", 500.0, 499.0, 0.01)])
    data = dataclasses.asdict(state)
    assert data["streams"][0]["measured_rate"] == 499.0 and "lock" not in data
    snap = state.snapshot()
    state.warn("later")
    assert snap.warnings == [] and state.warnings == ["later"]
