"""The operator console: a live terminal view of a session, and its keys.

The runner writes what is happening into a :class:`ConsoleState`; an
:class:`OperatorConsole` draws it with rich beside the participant's window
and turns the operator's key presses into actions (pause, resume, abort, skip)
that it hands to the runner, which journals every one of them.

Longer than most because the console's state, its drawing and its keys are
one screen.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import select
import sys
import termios
import threading
import tty
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pylsl
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ...circular import circular_mean_deg, circular_sd_deg, wrap_deg
from ..safety.plan import Plan, PlannedBlock

logger = logging.getLogger("stimtrain.orchestrator.session.console")

RUNNING = "running"
PAUSED = "paused"
PAUSING = "pausing at next safe point"
ABORTING = "aborting"
FINISHED = "finished"
STATUSES = (RUNNING, PAUSED, PAUSING, ABORTING, FINISHED)
#: What a key press did; ``on_key(key, action)`` receives one of these.
ACTIONS = (
    "pause",
    "resume",
    "abort",
    "skip_requested",
    "skip",
    "skip_cancelled",
    "confirmed",
    "declined",
    "ignored",
    *(f"site {n}" for n in range(1, 10)),
    "accept_site",
)
#: The coil limit of docs/specs/safety.md; the console warns a few degrees before it.
COIL_LIMIT_C = 40.0
COIL_WARN_C = 35.0
_ROW = "{:<9} {:>3}  {:<40} {:<10} {:>9} {:>6}"
#: Most timeline rows shown at once (long plans scroll with the current block).
TIMELINE_ROWS = 12
_STATUS_STYLE = {
    RUNNING: "bold green",
    PAUSED: "bold yellow",
    PAUSING: "bold yellow",
    ABORTING: "bold white on red",
    FINISHED: "bold cyan",
}


@dataclass
class StreamHealth:
    """Health of one LSL stream as the runner measured it."""

    name: str
    nominal_rate: float
    measured_rate: float | None = None
    age_s: float | None = None
    ok: bool = True


@dataclass
class TaskProgress:
    """The running task block: trial ``trial`` of ``n_trials`` (1-based)."""

    task: str
    trial: int = 0
    n_trials: int = 0
    accuracy: float | None = None


@dataclass
class PhaseProgress:
    """A triggered block's phase-locked pulses, as the console shows them.

    Phases are degrees; ``online_deg`` maps each target phase to the online
    phase the estimator saw at each of its pulses; ``refused`` maps a refusal's
    kind (``too soon``, ``slow decision`` …) to how many this block had.
    """

    given: int = 0
    planned: int = 0
    offset_deg: float = 0.0
    #: Where the offset came from: ``protocol``, ``calibration``,
    #: ``thresholds file`` or ``command line``.
    offset_source: str = "protocol"
    last_target_deg: float | None = None
    last_online_deg: float | None = None
    online_deg: dict[float, list[float]] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)


@dataclass
class ConsoleState:
    """Everything the console shows; the runner updates it, the console reads it.

    Update from any thread with :meth:`update`, :meth:`warn`,
    :meth:`start_block` and :meth:`finish_block`; they hold ``self.lock``,
    which the console holds while it copies the state to draw it.
    Times are on the LSL clock. ``next_event`` is a clock time or a callable
    returning one (``None``: the current block's planned end).
    """

    protocol: str
    participant: str
    session: str
    run: int | None = None
    blocks: list[PlannedBlock] = field(default_factory=list)
    current_block: int | None = None
    block_started: float | None = None
    next_event: float | Callable[[], float | None] | None = None
    next_event_label: str = "next pulse"
    completed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    pulses_delivered: int = 0
    pulses_planned: int = 0
    device: dict = field(default_factory=dict)
    streams: list[StreamHealth] = field(default_factory=list)
    markers_sent: int = 0
    task: TaskProgress | None = None
    #: A threshold or hotspot block's live numbers (estimate, sites ranked).
    hunt: str | None = None
    #: A triggered block's pulses, phases and refusals.
    phase: PhaseProgress | None = None
    warnings: list[str] = field(default_factory=list)
    status: str = RUNNING
    pending_confirmation: str | None = None

    def __post_init__(self) -> None:
        # Not a field: asdict() and comparisons see only the data.
        self.lock = threading.RLock()

    @classmethod
    def from_plan(
        cls, plan: Plan, participant: str, session: str, run: int | None = None
    ) -> ConsoleState:
        """A state for a compiled plan, before its first block."""
        return cls(
            protocol=plan.protocol,
            participant=participant,
            session=session,
            run=run,
            blocks=list(plan.blocks),
            pulses_planned=plan.total_pulses,
        )

    def update(self, **changes) -> None:
        """Set fields by name, checking the names and the status."""
        names = {f.name for f in dataclasses.fields(self)}
        for name in changes:
            if name not in names:
                raise ValueError(
                    f"console state has no field {name!r}; fields: {sorted(names)}"
                )
        status = changes.get("status", self.status)
        if status not in STATUSES:
            raise ValueError(
                f"console status must be one of {list(STATUSES)}, got {status!r}"
            )
        with self.lock:
            for name, value in changes.items():
                setattr(self, name, value)

    def warn(self, text: str) -> None:
        """Add a warning (shown newest last)."""
        with self.lock:
            self.warnings.append(str(text))

    def start_block(self, index: int, started: float) -> None:
        """Make block ``index`` current; ``started`` is its LSL clock start."""
        with self.lock:
            self.current_block = index
            self.block_started = started
            self.next_event = None
            self.task = None
            self.hunt = None
            self.phase = None

    def finish_block(self, index: int, *, skipped: bool = False) -> None:
        """Mark block ``index`` done (or skipped)."""
        with self.lock:
            (self.skipped if skipped else self.completed).append(index)

    def snapshot(self) -> ConsoleState:
        """A consistent copy to draw from while the runner goes on."""
        with self.lock:
            snap = copy.copy(self)
            for name in ("blocks", "completed", "skipped", "streams", "warnings"):
                setattr(snap, name, list(getattr(self, name)))
            snap.device = dict(self.device)
            snap.task = copy.copy(self.task)
            if self.phase is not None:
                snap.phase = copy.copy(self.phase)
                snap.phase.online_deg = {
                    k: list(v) for k, v in self.phase.online_deg.items()
                }
                snap.phase.refused = dict(self.phase.refused)
        return snap


# -- drawing ------------------------------------------------------------------
def render(state: ConsoleState, now: float | None = None) -> RenderableType:
    """Draw the whole console for ``state`` at LSL clock time ``now``.

    Parameters
    ----------
    state : ConsoleState
        What to show.
    now : float | None
        LSL clock time (default: :func:`pylsl.local_clock`).

    Returns
    -------
    renderable : rich renderable
        Header, timeline, progress, device/streams/task panels, warnings, keys.
    """
    s = state.snapshot()
    now = pylsl.local_clock() if now is None else now
    run = f" run {s.run}" if s.run is not None else ""
    header = Text.assemble(
        (s.protocol, "bold"),
        f"   sub-{s.participant} ses-{s.session}{run}   ",
        (s.status.upper(), _STATUS_STYLE.get(s.status, "")),
    )
    panels = Table.grid(expand=True, padding=(0, 1))
    # A triggered block's phase lines need more room than a task's.
    for ratio in (2, 4, 2) if s.phase is None else (2, 3, 3):
        panels.add_column(ratio=ratio)
    panels.add_row(
        _device_panel(s.device),
        _streams_panel(s),
        _phase_panel(s.phase) if s.phase is not None else _task_panel(s.task, s.hunt),
    )
    shown = s.warnings[-6:]
    warnings = Panel(
        Text("\n".join(shown) if shown else "none", style="yellow" if shown else "dim"),
        title=f"warnings ({len(s.warnings)})",
        border_style="yellow" if shown else "dim",
    )
    if s.pending_confirmation:
        footer = Text(f" {s.pending_confirmation} ", style="bold black on yellow")
    else:
        footer = Text(
            "keys: p pause   r resume   s skip block   1-9 coil site   "
            "k keep best site   a ABORT",
            style="dim",
        )
    # Keys and questions go right under the header: a short terminal cuts the
    # view off at the bottom, and a pending question must stay visible.
    return Group(
        Panel(header), footer, _timeline(s), _progress(s, now), panels, warnings
    )


def _block_state(s: ConsoleState, index: int) -> tuple[str, str]:
    if index in s.completed:
        return "✓ done", "dim"
    if index in s.skipped:
        return "» skipped", "dim yellow"
    if index == s.current_block:
        return "▶ now", "bold"
    return "· next", ""


def _timeline(s: ConsoleState) -> Panel:
    # Fixed-width lines of one Text, not a rich Table: a table of 12 rows takes
    # ~5 ms to lay out, holding the GIL the participant's window needs.
    lines = Text(no_wrap=True, overflow="ellipsis")
    lines.append(_ROW.format("", "#", "block", "type", "planned", "pulses") + "\n")
    positions = [i for i, b in enumerate(s.blocks) if b.index == s.current_block]
    here = positions[0] if positions else len(s.completed) + len(s.skipped)
    first = max(0, min(here - 3, len(s.blocks) - TIMELINE_ROWS))
    rows = s.blocks[first : first + TIMELINE_ROWS]
    if first:
        lines.append(f"  … {first} earlier blocks\n", style="dim")
    for b in rows:
        mark, style = _block_state(s, b.index)
        label = _fit(b.label, 40)
        planned = "operator" if b.waits_for_operator else f"{b.duration_s:.1f} s"
        row = _ROW.format(mark, b.index + 1, label, b.type, planned, b.pulses or "")
        lines.append(row + "\n", style=style)
    rest = len(s.blocks) - first - len(rows)
    if rest > 0:
        lines.append(f"  … {rest} more blocks\n", style="dim")
    lines.rstrip()
    return Panel(lines, title="timeline", title_align="left", border_style="blue")


def _progress(s: ConsoleState, now: float) -> Table:
    grid = Table.grid(padding=(0, 2))
    pulses = Text.assemble(
        "pulses ", (f"{s.pulses_delivered}/{s.pulses_planned}", "bold")
    )
    block = next((b for b in s.blocks if b.index == s.current_block), None)
    if block is None or s.block_started is None:
        grid.add_row(Text("no block running", style="dim"), pulses)
        return grid
    elapsed = max(0.0, now - s.block_started)
    end = s.block_started + block.duration_s
    if block.waits_for_operator:
        bar = Text("waiting for the operator", style="bold yellow")
    else:
        total = max(block.duration_s, 1e-9)
        bar = ProgressBar(total=total, completed=min(elapsed, total), width=40)
    label, at = s.next_event_label, s.next_event
    if callable(at):
        try:
            at = at()
        except Exception:  # noqa: BLE001 - a broken callback must not stop drawing
            logger.debug("next_event callback failed", exc_info=True)
            at = None
    if at is None and not block.waits_for_operator:
        label, at = "block end", end
    nxt = (
        Text("")
        if at is None
        else Text(f"{label} in {max(0.0, at - now):.1f} s", style="bold")
    )
    grid.add_row(
        Text(f"block {block.index + 1}", style="bold"),
        bar,
        f"{elapsed:.1f} / {block.duration_s:.1f} s",
        nxt,
        pulses,
    )
    return grid


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _yes_no(value) -> Text:
    if value is None:
        return Text("—", style="dim")
    return Text("yes", style="green") if value else Text("no", style="red")


def _value(text: str | None, style: str = "") -> Text:
    return Text("—", style="dim") if text is None else Text(text, style=style)


def _pairs(rows: list[tuple[str, Text]]) -> Text:
    # One Text of "label  value" lines: cheap to lay out (see _timeline).
    out = Text(no_wrap=True, overflow="ellipsis")
    for i, (label, value) in enumerate(rows):
        out.append(f"{'' if i == 0 else chr(10)}{label:<15}")
        out.append(value)
    return out


def _device_panel(device: dict) -> Panel:
    if not device:
        return Panel(Text("no state yet", style="dim"), title="stimulator")
    armed = bool(device.get("armed"))
    power = device.get("intensity")
    if power is not None:
        second = device.get("intensity_b")
        power = f"{power:g}" + ("" if second is None else f" / {second:g}") + " %MSO"
    temp = device.get("coil_temperature")
    heat = "" if temp is None or temp < COIL_WARN_C else "yellow"
    if temp is not None and temp >= COIL_LIMIT_C:
        heat = "bold red"
    rows = [
        ("remote control", _yes_no(device.get("remote_control"))),
        ("armed", Text("ARMED", "bold red") if armed else Text("disarmed", "green")),
        ("ready", _yes_no(device.get("ready"))),
        ("intensity", _value(power)),
        ("coil", _value(None if temp is None else f"{temp:.1f} °C", heat)),
    ]
    if device.get("errors"):
        rows.append(("errors", Text(", ".join(map(str, device["errors"])), "bold red")))
    border = "red" if armed else "blue"
    return Panel(_pairs(rows), title="stimulator", border_style=border)


def _streams_panel(s: ConsoleState) -> Panel:
    out = Text(no_wrap=True, overflow="ellipsis")
    for st in s.streams:
        name = _fit(st.name, 22)
        rate = "—" if st.measured_rate is None else f"{st.measured_rate:.0f}"
        age = "—" if st.age_s is None else f"{st.age_s:.2f} s"
        rate = f"{rate}/{st.nominal_rate:g} Hz"
        out.append(f"{name:<22} {rate:>12}  age {age:<7} ", "" if st.ok else "red")
        out.append("ok\n" if st.ok else "STALE\n", "green" if st.ok else "bold red")
    if not s.streams:
        out.append("no streams\n", style="dim")
    out.append(f"{'markers sent':<22} {s.markers_sent:>12}")
    stale = any(not st.ok for st in s.streams)
    return Panel(out, title="streams", border_style="red" if stale else "blue")


def _task_panel(task: TaskProgress | None, hunt: str | None = None) -> Panel:
    if hunt is not None:
        return Panel(Text(hunt, style="bold"), title="MEPs", border_style="blue")
    if task is None:
        return Panel(Text("no task running", style="dim"), title="task")
    acc = None if task.accuracy is None else f"{100 * task.accuracy:.0f} %"
    rows = [
        ("task", Text(task.task, style="bold")),
        ("trial", Text(f"{task.trial} of {task.n_trials}")),
        ("accuracy", _value(acc)),
    ]
    return Panel(_pairs(rows), title="task", border_style="blue")


def _deg(value: float, signed: bool = False, digits: int = 0) -> str:
    return f"{value:+.{digits}f}°" if signed else f"{value:.{digits}f}°"


#: Target phases by name in the phase panel (0 degrees: the rhythm's peak).
_PHASE_NAMES = {0.0: "peak", 180.0: "trough"}


def _phase_panel(p: PhaseProgress) -> Panel:
    """Pulses given, the offset, the last pulse, each target's online phases,
    the refusals: a triggered block in a few short lines."""
    out = Text(no_wrap=True, overflow="ellipsis")

    def row(label: str, value: str, style: str = "") -> None:
        out.append(f"{'' if not out.plain else chr(10)}{label:<9}")
        out.append(value, style)

    row("pulses", f"{p.given} of {p.planned}", "bold")
    row("offset", f"{_deg(p.offset_deg, True, 1)} {p.offset_source}")
    if p.last_target_deg is None or p.last_online_deg is None:
        row("last", "no pulse yet", "dim")
    else:
        last = float(wrap_deg(p.last_online_deg))
        row("last", f"{_deg(p.last_target_deg)} → {_deg(last, True)}")
    for target in sorted(p.online_deg):
        phases = np.asarray(p.online_deg[target], float)
        if not phases.size:
            continue
        mean, sd = circular_mean_deg(phases), circular_sd_deg(phases)
        row(
            _PHASE_NAMES.get(target, f"{target:g}°"),
            f"online mean {_deg(mean, True)} sd {sd:.0f}° n {phases.size}",
        )
    refused = sorted(p.refused.items(), key=lambda kv: (-kv[1], kv[0]))
    if not refused:
        row("refused", "none", "dim")
    for i, (kind, n) in enumerate(refused):
        row("refused" if i == 0 else "", f"{n} {kind}", "yellow")
    return Panel(out, title="phase", border_style="blue")


# -- the console ----------------------------------------------------------------
class OperatorConsole:
    """The live view of a :class:`ConsoleState` and the operator's keys.

    Parameters
    ----------
    state : ConsoleState
        What to show; the runner keeps updating it.
    on_key : callable
        ``on_key(key, action)`` for every key press, ``action`` one of
        :data:`ACTIONS`. Called from the key thread: it must be thread-safe
        and quick (an ``"abort"`` must disarm at once).
    console : rich.console.Console | None
        Where to draw (default: standard error, where progress lines go).
    refresh_hz : float
        Redraws per second.
    keys : bool
        Read keys at all.
    keys_fd : int | None
        The terminal to read keys from (default: standard input when it is a
        terminal and the view is live). Tests pass a pseudo-terminal.

    Notes
    -----
    Keys: ``p`` pauses at the next safe point, ``r`` resumes, ``a`` aborts at
    once (it overrides any question), ``s`` asks "press y to skip block N" and
    any other key cancels; keys that do nothing in the current status are
    reported as ``"ignored"``.

    Without a terminal (the console is not one, e.g. in CI) there is no live
    view and no keys: :meth:`say` prints plain lines. Keys are read in cbreak
    mode, not raw, so Ctrl+C still reaches the runner as SIGINT.
    The terminal's mode is restored by :meth:`stop`, whatever happened.
    """

    def __init__(
        self,
        state: ConsoleState,
        on_key: Callable[[str, str], None],
        *,
        console: Console | None = None,
        refresh_hz: float = 4,
        keys: bool = True,
        keys_fd: int | None = None,
    ):
        if not refresh_hz > 0:
            raise ValueError(f"refresh_hz must be > 0, got {refresh_hz!r}")
        if keys_fd is not None and not os.isatty(keys_fd):
            raise ValueError(f"keys_fd must be a terminal (a tty), got fd {keys_fd}")
        self.state = state
        self.on_key = on_key
        self.console = console or Console(stderr=True)
        self.refresh_hz = refresh_hz
        self.live_active = self.console.is_terminal
        if not keys:
            keys_fd = None
        elif keys_fd is None and self.live_active and _stdin_is_tty():
            keys_fd = sys.stdin.fileno()
        self.keys_fd = keys_fd
        self._live: Live | None = None
        self._thread: threading.Thread | None = None
        self._wake: tuple[int, int] | None = None
        self._saved_mode: list | None = None
        self._mode_lock = threading.Lock()
        self._skip_block: int | None = None
        self._question: str | None = None
        self._answer: bool | None = None
        self._answered = threading.Event()
        self._started = False

    @property
    def keys_active(self) -> bool:
        """Whether key presses are being read."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> OperatorConsole:
        """Start the live view and the key reader."""
        if self._started:
            raise RuntimeError("the operator console was already started")
        self._started = True
        try:
            if self.live_active:
                self._live = Live(
                    console=self.console,
                    refresh_per_second=self.refresh_hz,
                    get_renderable=lambda: render(self.state),
                )
                self._live.start()
            if self.keys_fd is not None:
                self._saved_mode = termios.tcgetattr(self.keys_fd)
                tty.setcbreak(self.keys_fd, termios.TCSANOW)
                self._wake = os.pipe()
                self._thread = threading.Thread(
                    target=self._read_keys, name="stimtrain-console-keys", daemon=True
                )
                self._thread.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop reading keys, restore the terminal, draw the last frame."""
        try:
            if self._thread is not None:
                os.write(self._wake[1], b"x")
                self._thread.join(timeout=2.0)
                self._thread = None
        finally:
            self._restore_terminal()
            if self._wake is not None:
                for fd in self._wake:
                    os.close(fd)
                self._wake = None
            if self._live is not None:
                self._live.stop()
                self._live = None

    def __enter__(self) -> OperatorConsole:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def say(self, text: str) -> None:
        """Print a progress line (above the live view when there is one)."""
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def refresh(self) -> None:
        """Redraw now (after a change the operator should see at once)."""
        if self._live is not None:
            self._live.refresh()

    def confirm(self, question: str, timeout: float | None = None) -> bool:
        """Ask the operator a yes/no question through the key reader.

        ``y`` or Enter answers yes, ``n`` no, ``a`` aborts (no); other keys are
        ignored. Returns False on timeout. Use this instead of ``input()``
        while keys are read, as both would read the same terminal.
        """
        if not self.keys_active:
            raise RuntimeError("confirm() needs the key reader, which is not running")
        with self.state.lock:
            self._skip_block = None
            self._question = question
            self._answer = None
            self._answered.clear()
            self.state.pending_confirmation = f"{question}  [y/Enter: yes, n: no]"
        self.refresh()
        answered = self._answered.wait(timeout)
        with self.state.lock:
            self._question = None
            self.state.pending_confirmation = None
        self.refresh()
        return bool(answered and self._answer)

    def handle_key(self, key: str) -> str:
        """Act on one key press, tell ``on_key``, and return the action."""
        s = self.state
        k = key.lower()
        with s.lock:
            action = "ignored"
            if k == "a" and s.status not in (ABORTING, FINISHED):
                # Abort overrides any question: it must never wait.
                action = "abort"
                s.status = ABORTING
                self._answer_question(False)
            elif self._question is not None:
                if k in ("y", "\n", "\r"):
                    action = "confirmed"
                    self._answer_question(True)
                elif k == "n":
                    action = "declined"
                    self._answer_question(False)
            elif self._skip_block is not None:
                # A skip is only for the block it was asked about.
                action = (
                    "skip"
                    if k == "y" and s.current_block == self._skip_block
                    else "skip_cancelled"
                )
                self._skip_block = None
                s.pending_confirmation = None
            elif s.status in (ABORTING, FINISHED):
                pass
            elif k in "123456789" and len(k) == 1 and s.current_block is not None:
                # The hotspot block counts the MEPs after it for this site.
                action = f"site {k}"
            elif k == "k" and s.current_block is not None:
                action = "accept_site"
            elif k == "p" and s.status == RUNNING:
                action = "pause"
                s.status = PAUSING
            elif k == "r" and s.status in (PAUSED, PAUSING):
                action = "resume"
                s.status = RUNNING
            elif k == "s" and s.current_block is not None:
                action = "skip_requested"
                self._skip_block = s.current_block
                label = next(
                    (f" ('{b.label}')" for b in s.blocks if b.index == s.current_block),
                    "",
                )
                s.pending_confirmation = (
                    f"press y to skip block {s.current_block + 1}{label}; "
                    "any other key cancels"
                )
        try:
            self.on_key(key, action)
        except Exception as exc:  # noqa: BLE001 - the operator must see it
            logger.exception("on_key(%r, %r) failed", key, action)
            s.warn(f"key {key!r} ({action}) was not handled: {exc}")
        self.refresh()
        return action

    def act(self, action: str, origin: str, block: int | None = None) -> str:
        """Take an action asked for elsewhere than the keyboard (the live view).

        The same rules as the keys: ``"pause"`` only while running,
        ``"resume"`` only while paused or pausing, ``"abort"`` whenever the
        session is not already ending, ``"skip"`` only of ``block`` and only
        while it is the current block (the asker confirmed it). Anything else
        is ``"ignored"``. Every request reaches ``on_key`` with its origin, so
        the journal holds it whether it acted or not.
        """
        s = self.state
        with s.lock:
            done = "ignored"
            if action == "abort" and s.status not in (ABORTING, FINISHED):
                done = "abort"
                s.status = ABORTING
                self._answer_question(False)
            elif s.status in (ABORTING, FINISHED):
                pass
            elif action == "pause" and s.status == RUNNING:
                done, s.status = "pause", PAUSING
            elif action == "resume" and s.status in (PAUSED, PAUSING):
                done, s.status = "resume", RUNNING
            elif action == "skip" and block is not None and s.current_block == block:
                done = "skip"
        try:
            self.on_key(None, done, origin=origin, asked=action)
        except Exception as exc:  # noqa: BLE001 - the operator must see it
            logger.exception("act(%r from %s) failed", action, origin)
            s.warn(f"{action} from the {origin} was not handled: {exc}")
        self.refresh()
        return done

    def _answer_question(self, answer: bool) -> None:
        if self._question is not None:
            self._answer = answer
            self._question = None
            self.state.pending_confirmation = None
            self._answered.set()
        elif self._skip_block is not None:
            self._skip_block = None
            self.state.pending_confirmation = None

    def _read_keys(self) -> None:
        fd, wake = self.keys_fd, self._wake[0]
        try:
            while True:
                ready, _, _ = select.select([fd, wake], [], [])
                if wake in ready:
                    return
                data = os.read(fd, 64)
                if not data:
                    return
                for key in data.decode("utf-8", "replace"):
                    self.handle_key(key)
        except OSError as exc:
            logger.warning("stopped reading keys: %s", exc)
            self.state.warn(f"keys are off: the terminal failed ({exc})")
        finally:
            self._restore_terminal()

    def _restore_terminal(self) -> None:
        with self._mode_lock:
            if self._saved_mode is not None:
                try:
                    termios.tcsetattr(self.keys_fd, termios.TCSADRAIN, self._saved_mode)
                except termios.error as exc:
                    logger.warning("terminal mode not restored: %s", exc)
                self._saved_mode = None


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):  # closed or detached stdin
        return False
