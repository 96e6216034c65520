"""Run a block of a task in a PsychoPy window, frame by frame, on the LSL clock.

A trial is: fixation for N frames, the stimulus drawn every frame until the
response or the deadline, optional feedback for N frames, a blank
inter-trial interval for N frames. The stimulus onset is stamped with the
LSL clock in the flip callback (:meth:`psychopy.visual.Window.callOnFlip`),
i.e. right after the flip that showed it, and a ``stim_onset`` marker is
emitted from there. Responses come from PsychoPy's Psychtoolbox keyboard, or
from a :class:`~stimtrain.tasks.participant.SimulatedParticipant`.

Keyboard time to LSL time
-------------------------
The Psychtoolbox keyboard stamps key-downs on Psychtoolbox's clock
(``GetSecs``), which is not the LSL clock (``pylsl.local_clock``, a monotonic
clock). At stimulus onset the flip callback reads the LSL clock and, right
after, resets the keyboard's clock, so both clocks are read at the same
instant (a few microseconds apart). A key's ``rt`` is then its key-down time
minus that reset, on Psychtoolbox's clock, and its LSL time is
``onset + rt``. Only the drift between the two clocks over one response
window (under 2 s, i.e. well under a microsecond) is ignored.

Without a display refresh (Xvfb) ``flip()`` returns at once; the runner
detects this once per window and then paces flips on a fixed grid of the
nominal frame period itself, sleeping in between, so blocks take their
nominal time without spinning the CPU.
"""

from __future__ import annotations

import logging
import math
import os
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pylsl

from .api import Task, Trial, TrialResult, TrialTiming, get_task
from .participant import SimulatedParticipant

if TYPE_CHECKING:  # pragma: no cover
    from psychopy.visual import Window

logger = logging.getLogger("stimtrain.tasks")

#: Columns every trials TSV starts with; task extras follow.
TSV_COLUMNS = (
    "trial",
    "condition",
    "stimulus",
    "correct_key",
    "onset",
    "key",
    "rt",
    "correct",
)
#: Written for a missing value (BIDS convention).
NA = "n/a"
#: Frames flipped once per window to measure the refresh.
_N_PROBE_FLIPS = 12


@dataclass
class TaskBlockResult:
    """The outcome of :func:`run_task_block`.

    Attributes
    ----------
    task : str
        Task name.
    n_trials : int
        Trials planned.
    results : list of TrialResult
        Trials run (fewer than ``n_trials`` if stopped).
    measures : dict
        The task's measures over ``results``.
    stopped : bool
        Whether the block ended early (escape key or ``should_stop``).
    tsv_path : Path | None
        The trials TSV written.
    params : dict
        The validated parameters used.
    """

    task: str
    n_trials: int
    results: list[TrialResult]
    measures: dict[str, Any]
    stopped: bool
    tsv_path: Path | None = None
    params: dict[str, Any] = field(default_factory=dict)


# -- frame pacing ---------------------------------------------------------------
@dataclass
class _FrameInfo:
    period: float  # seconds per frame
    paced: bool  # True: flip() does not wait for a refresh, pace it ourselves


_frame_info: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def frame_info(win: Window) -> tuple[float, bool]:
    """Return a window's frame period and whether its flips are paced by software.

    Parameters
    ----------
    win : psychopy.visual.Window
        The window.

    Returns
    -------
    period : float
        Seconds per frame: the measured refresh when flips wait for it,
        else the window's nominal ``monitorFramePeriod`` (1/60 s by default).
    paced : bool
        ``True`` when ``flip()`` returns without waiting for a refresh (e.g.
        under Xvfb), so the runner sleeps to the next frame itself.

    Notes
    -----
    Measured once per window with a few blank flips, then cached.
    """
    info = _frame_info.get(win)
    if info is None:
        nominal = float(getattr(win, "monitorFramePeriod", None) or 1 / 60)
        stamps = []
        for _ in range(_N_PROBE_FLIPS):
            win.flip()
            stamps.append(time.perf_counter())
        interval = float(np.median(np.diff(stamps)))
        if interval < 0.25 * nominal:
            info = _FrameInfo(period=nominal, paced=True)
        else:
            info = _FrameInfo(period=interval, paced=False)
        logger.info(
            "Frame period %.3f ms (%s)",
            info.period * 1e3,
            "paced in software: flips do not wait for a refresh"
            if info.paced
            else "measured; flips wait for the refresh",
        )
        _frame_info[win] = info
    return info.period, info.paced


class _Flipper:
    """Flip a window, pacing flips on a fixed frame grid when needed.

    With a real refresh ``flip()`` blocks until the vertical blank and this
    adds nothing. Without one, it sleeps until the next slot of a grid of
    the frame period before flipping, so a frame lasts one period and the
    flip callback runs at the slot; a late frame skips to the following slot
    (like a dropped frame), so no delay accumulates.
    """

    def __init__(self, win: Window) -> None:
        self.win = win
        self.period, self.paced = frame_info(win)
        self._next: float | None = None

    def frames(self, duration_s: float) -> int:
        """Number of frames closest to ``duration_s``."""
        return max(0, int(round(duration_s / self.period)))

    def flip(self) -> None:
        if self.paced:
            now = time.perf_counter()
            if self._next is None:
                self._next = now
            elif now > self._next:
                missed = math.ceil((now - self._next) / self.period)
                self._next += missed * self.period
            delay = self._next - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self._next += self.period
        self.win.flip()


# -- keyboard --------------------------------------------------------------------
class _RealKeys:
    """Key-downs from PsychoPy's Psychtoolbox keyboard, mapped to the LSL clock."""

    def __init__(self, keys: list[str]) -> None:
        from psychopy.hardware import keyboard

        self.kb = keyboard.Keyboard()
        backend = self.kb.getBackend()
        if backend != "ptb":
            # The event backend stamps keys when polled, i.e. up to a frame
            # late; RTs are then only frame-accurate.
            logger.warning(
                "PsychoPy keyboard uses the %r backend, not Psychtoolbox; "
                "response times are polling times, not key-down times",
                backend,
            )
        self.keys = list(keys)
        self.onset: float | None = None

    def clear(self) -> None:
        self.kb.clearEvents()

    def sync(self, onset: float) -> None:
        """Called in the flip callback right after reading the LSL clock."""
        self.kb.clock.reset()
        self.onset = onset

    def escape(self) -> bool:
        return bool(self.kb.getKeys(keyList=["escape"], waitRelease=False))

    def poll(self, deadline_s: float) -> tuple[str | None, float | None, bool]:
        """Return (key, LSL key-down time, escape pressed)."""
        pressed = self.kb.getKeys(keyList=[*self.keys, "escape"], waitRelease=False)
        for k in pressed:
            if k.name == "escape":
                return None, None, True
        for k in pressed:
            # rt < 0: pressed before the stimulus appeared (anticipation).
            if 0 <= k.rt <= deadline_s:
                return k.name, self.onset + float(k.rt), False
        return None, None, False


# -- helpers -----------------------------------------------------------------
def _fmt(value: Any) -> str:
    """Format a TSV cell: floats round-trip exactly, None is n/a."""
    if value is None:
        return NA
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return NA if math.isnan(value) else repr(value)
    return str(value).replace("\t", " ").replace("\n", " ").replace("\r", " ")


class _TrialsTSV:
    """The block's trials TSV, each row flushed and fsynced as it is written."""

    def __init__(self, path: Path, extra_columns: list[str]) -> None:
        self.path = Path(path)
        self.columns = [*TSV_COLUMNS, *extra_columns]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # "x": never overwrite a recorded block.
        self._f = open(self.path, "x", encoding="utf-8", newline="")
        self._write(self.columns)

    def _write(self, cells: list[str]) -> None:
        self._f.write("\t".join(cells) + "\n")
        self._f.flush()
        # A crash must not lose the trials already run.
        os.fsync(self._f.fileno())

    def row(self, result: TrialResult, extras: Mapping[str, Any]) -> None:
        t = result.trial
        base = {
            "trial": t.index,
            "condition": t.condition,
            "stimulus": t.stimulus.get("text", ""),
            "correct_key": t.correct_key,
            "onset": result.onset,
            "key": result.key,
            "rt": result.rt,
            "correct": result.correct,
        }
        values = {**base, **extras}
        self._write([_fmt(values.get(c)) for c in self.columns])

    def close(self) -> None:
        self._f.close()


def _text_stim(win: Window, text: str, height: float = 0.05):
    from psychopy import visual

    return visual.TextStim(
        win, text=text, height=height, color="white", wrapWidth=1.2, autoLog=False
    )


# -- public helpers -----------------------------------------------------------
def show_text(
    win: Window,
    text: str,
    duration_s: float,
    *,
    clock: Callable[[], float] = pylsl.local_clock,
    should_stop: Callable[[], bool] = lambda: False,
    on_onset: Callable[[float], None] | None = None,
    height: float = 0.05,
) -> bool:
    """Show text (e.g. instructions) for a duration, frame by frame.

    Parameters
    ----------
    win : psychopy.visual.Window
        The window.
    text : str
        What to show.
    duration_s : float
        How long, in seconds, measured on ``clock`` from the first frame, so
        long screens do not drift with frame-rate jitter.
    clock : callable
        The clock (the LSL clock).
    should_stop : callable
        Checked every frame; ``True`` ends the screen early.
    on_onset : callable | None
        Called from the flip callback with the clock time of the first frame.
    height : float
        Letter height in window heights.

    Returns
    -------
    completed : bool
        ``False`` if ``should_stop`` ended it early.
    """
    stim = _text_stim(win, text, height)
    return _show(win, stim.draw, duration_s, clock, should_stop, on_onset)


def show_fixation(
    win: Window,
    duration_s: float,
    *,
    clock: Callable[[], float] = pylsl.local_clock,
    should_stop: Callable[[], bool] = lambda: False,
    on_onset: Callable[[float], None] | None = None,
) -> bool:
    """Show a fixation cross for a duration (e.g. a rest block), frame by frame.

    Parameters
    ----------
    win : psychopy.visual.Window
        The window.
    duration_s : float
        How long, in seconds, on ``clock`` from the first frame.
    clock : callable
        The clock (the LSL clock).
    should_stop : callable
        Checked every frame; ``True`` ends the fixation early.
    on_onset : callable | None
        Called from the flip callback with the clock time of the first frame.

    Returns
    -------
    completed : bool
        ``False`` if ``should_stop`` ended it early.
    """
    stim = _text_stim(win, "+", 0.08)
    return _show(win, stim.draw, duration_s, clock, should_stop, on_onset)


def _show(win, draw, duration_s, clock, should_stop, on_onset) -> bool:
    flipper = _Flipper(win)
    onset: list[float] = []

    def stamp() -> None:
        onset.append(clock())
        if on_onset is not None:
            on_onset(onset[0])

    win.callOnFlip(stamp)
    completed = True
    while True:
        draw()
        flipper.flip()
        # End on the frame that would be shown past the end, less half a frame.
        if clock() + flipper.period / 2 >= onset[0] + duration_s:
            break
        if should_stop():
            completed = False
            break
    flipper.flip()  # clear the screen
    return completed


# -- the block -------------------------------------------------------------------
def run_task_block(
    win: Window,
    task: Task | str,
    params: Mapping[str, Any] | None,
    *,
    n_trials: int,
    seed: int,
    tsv_path: Path | str,
    emit: Callable[..., None],
    block: int = 0,
    participant: SimulatedParticipant | None = None,
    clock: Callable[[], float] = pylsl.local_clock,
    should_stop: Callable[[], bool] = lambda: False,
) -> TaskBlockResult:
    """Run one block of a task.

    Parameters
    ----------
    win : psychopy.visual.Window
        The window (see :func:`~stimtrain.tasks.display.open_window`).
    task : Task | str
        The task, or its name in :data:`~stimtrain.tasks.api.TASKS`.
    params : mapping | None
        Task parameters; validated and merged with the task's defaults.
    n_trials : int
        Trials in the block.
    seed : int
        Seed of the trial order (``numpy.random.default_rng(seed)``).
    tsv_path : path-like
        The trials TSV to create; an existing file is never overwritten.
    emit : callable
        ``emit(event, timestamp, **fields)``: sends a marker. Called with
        ``stim_onset`` (from the flip callback), ``response`` (timestamp =
        key-down time) and ``feedback`` (from its flip callback).
    block : int
        Block number, put in every marker.
    participant : SimulatedParticipant | None
        Who responds; ``None`` means the real keyboard (escape stops).
    clock : callable
        The clock of every timestamp (the LSL clock).
    should_stop : callable
        Checked between trials; ``True`` stops the block (operator abort).

    Returns
    -------
    result : TaskBlockResult

    Raises
    ------
    TaskParamError
        If ``params`` are invalid (before anything is shown).
    FileExistsError
        If ``tsv_path`` exists.

    Notes
    -----
    With a simulated participant the response happens at ``onset + rt``:
    the stimulus stays up, frame after frame, until the clock passes that
    time, then the response is recorded with that key-down time. An RT past
    the deadline counts as no response.
    """
    if isinstance(task, str):
        task = get_task(task)
    params = task.validate_params(params)
    if n_trials < 0:
        raise ValueError(f"n_trials must be >= 0, got {n_trials}")
    name = task.name
    timing = task.timing(params)
    keys = task.keys(params)
    trials = task.make_trials(n_trials, np.random.default_rng(seed), params)

    task.build_stimuli(win, params)
    flipper = _Flipper(win)
    run = _BlockRun(
        win=win,
        task=task,
        timing=timing,
        keys=keys,
        flipper=flipper,
        n_fix=flipper.frames(timing.fixation_s),
        n_feedback=flipper.frames(timing.feedback_s),
        fixation=_text_stim(win, "+", 0.08),
        feedback=_text_stim(win, "", 0.06),
        real=_RealKeys(keys) if participant is None else None,
        participant=participant,
        clock=clock,
        emit=emit,
        block=block,
    )
    n_iti = flipper.frames(timing.iti_s)

    extra_columns: list[str] = []
    if trials:
        probe = TrialResult(trials[0], math.nan, None, None, False)
        extra_columns = [c for c in task.tsv_fields(probe) if c not in TSV_COLUMNS]
    tsv = _TrialsTSV(Path(tsv_path), extra_columns)
    logger.info(
        "Block %d: %s, %d trials, %s, TSV %s",
        block,
        name,
        n_trials,
        "simulated participant" if participant else "keyboard",
        tsv_path,
    )

    results: list[TrialResult] = []
    stopped = False
    started = time.perf_counter()
    try:
        for trial in trials:
            if should_stop():
                stopped = True
                break
            result = run.trial(trial)
            if result is None:  # escape
                stopped = True
                break
            results.append(result)
            tsv.row(result, task.tsv_fields(result))
            for _ in range(n_iti):
                flipper.flip()
                if run.real is not None and run.real.escape():
                    stopped = True
                    break
            if stopped:
                break
    finally:
        tsv.close()
        win.flip()  # leave the screen blank
    logger.info(
        "Block %d %s after %d of %d trials (%.1f s)",
        block,
        "stopped" if stopped else "finished",
        len(results),
        n_trials,
        time.perf_counter() - started,
    )
    return TaskBlockResult(
        task=name,
        n_trials=n_trials,
        results=results,
        measures=task.measures(results),
        stopped=stopped,
        tsv_path=Path(tsv_path),
        params=params,
    )


@dataclass
class _BlockRun:
    """What every trial of a block needs."""

    win: Any
    task: Task
    timing: TrialTiming
    keys: list[str]
    flipper: _Flipper
    n_fix: int
    n_feedback: int
    fixation: Any
    feedback: Any
    real: _RealKeys | None
    participant: SimulatedParticipant | None
    clock: Callable[[], float]
    emit: Callable[..., None]
    block: int

    def trial(self, trial: Trial) -> TrialResult | None:
        """Run one trial; ``None`` if escape was pressed."""
        name = self.task.name
        if self.real is not None:
            self.real.clear()
        for _ in range(self.n_fix):
            self.fixation.draw()
            self.flipper.flip()
            if self.real is not None and self.real.escape():
                return None

        if self.participant is not None:
            sim_key, sim_rt = self.participant.respond(name, trial, self.keys)
            if sim_rt is None or sim_rt > self.timing.deadline_s:
                sim_key, sim_rt = None, None
        onset_box: list[float] = []

        def on_onset() -> None:
            onset = self.clock()
            if self.real is not None:
                self.real.sync(onset)  # right after the LSL read: see module docstring
            onset_box.append(onset)
            self.emit(
                "stim_onset",
                onset,
                block=self.block,
                task=name,
                trial=trial.index,
                condition=trial.condition,
            )

        self.win.callOnFlip(on_onset)
        key: str | None = None
        key_time: float | None = None
        while True:
            self.task.draw_stimulus(trial)
            self.flipper.flip()
            onset = onset_box[0]
            now = self.clock()
            if self.participant is not None:
                if sim_rt is not None and now >= onset + sim_rt:
                    key, key_time = sim_key, onset + sim_rt
                    break
            else:
                k, t, esc = self.real.poll(self.timing.deadline_s)
                if esc:
                    return None
                if k is not None:
                    key, key_time = k, t
                    break
            if now >= onset + self.timing.deadline_s:
                if self.real is not None:
                    # A key may have gone down since the last poll.
                    k, t, esc = self.real.poll(self.timing.deadline_s)
                    if esc:
                        return None
                    key, key_time = k, t
                break

        rt = None if key_time is None else key_time - onset
        correct = self.task.score(trial, key)
        result = TrialResult(trial=trial, onset=onset, key=key, rt=rt, correct=correct)
        if key is not None:
            self.emit(
                "response",
                key_time,
                block=self.block,
                task=name,
                trial=trial.index,
                key=key,
                rt=rt,
                correct=correct,
            )

        if self.n_feedback:
            self.feedback.text = self.task.feedback_text(result)
            self.win.callOnFlip(
                lambda: self.emit(
                    "feedback",
                    self.clock(),
                    block=self.block,
                    task=name,
                    trial=trial.index,
                    correct=correct,
                )
            )
            for _ in range(self.n_feedback):
                self.feedback.draw()
                self.flipper.flip()
        return result
