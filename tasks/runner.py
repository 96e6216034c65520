"""Run a block of a task in a PsychoPy window, frame by frame, on the LSL clock.

A trial is: fixation for N frames, an optional cue for N frames (the
trial's ``cue_s``), the stimulus drawn every frame (for ``stimulus_s`` or
until the response) with an optional signal drawn over it from ``signal_s``
after onset, until the response or the deadline (or always to the deadline,
for a paced task), optional feedback for N frames, a blank inter-trial
interval for N frames. The onsets of cue, stimulus and signal are stamped
with the LSL clock in the flip callback
(:meth:`psychopy.visual.Window.callOnFlip`), i.e. right after the flip that
showed them, and their markers are emitted from there, after the
``on_event`` hook that lets the session runner lock TMS pulses to them.
Responses come from PsychoPy's Psychtoolbox keyboard
(:mod:`~stimtrain.tasks.keyboard`, which says how its key-down times are put
on the LSL clock), or from a
:class:`~stimtrain.tasks.participant.SimulatedParticipant`. What is not
presentation (trials, staircase, scoring, measures) is
:class:`~stimtrain.tasks.block.BlockState`, shared with the window-free
:func:`~stimtrain.tasks.simulate.simulate_block`.

Frame pacing, the screens and the trials file are their own modules
(``frames``, ``screens``, ``trials_tsv``); their public names are
re-exported here, where the session imports them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pylsl

from .api import TSV_COLUMNS, Task, Trial, TrialResult, TrialTiming
from .block import BlockState, TaskBlockResult
from .frames import _Flipper, frame_info
from .keyboard import _RealKeys
from .participant import SimulatedParticipant
from .screens import _text_stim, show_fixation, show_text
from .trials_tsv import NA, _TrialsTSV

if TYPE_CHECKING:  # pragma: no cover
    from psychopy.visual import Window

__all__ = [
    "NA",
    "TSV_COLUMNS",
    "OnEvent",
    "frame_info",
    "run_task_block",
    "show_fixation",
    "show_text",
]

logger = logging.getLogger("stimtrain.tasks")


# -- the block -------------------------------------------------------------------
#: ``on_event(event, t, trial)``: the task's events as they happen, for
#: locking TMS pulses to them.
OnEvent = Callable[[str, float, Trial], None]


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
    start_level: float | None = None,
    on_event: OnEvent | None = None,
    instructions_s: float = 0.0,
    practice_trials: int = 0,
    break_every: int = 0,
    break_s: float = 10.0,
    frame_times: list[float] | None = None,
    between_trials: Callable[[int], bool] | None = None,
) -> TaskBlockResult:
    """Run one block of a task.

    Parameters
    ----------
    win : psychopy.visual.Window
        The window (see :func:`~stimtrain.tasks.display.open_window`).
    task : Task | str
        The task, or its name (see :func:`~stimtrain.tasks.api.get_task`).
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
        ``task_start`` and ``task_end``; ``cue``, ``stim_onset`` and
        ``stop_signal`` (from the flip callback of the frame that showed
        them); ``response`` (timestamp = key-down time) and ``feedback``
        (from its flip callback).
    block : int
        Block number, put in every marker.
    participant : SimulatedParticipant | None
        Who responds; ``None`` means the real keyboard (escape stops).
    clock : callable
        The clock of every timestamp (the LSL clock).
    should_stop : callable
        Checked between trials; ``True`` stops the block (operator abort).
    start_level : float | None
        Level of an adaptive task to start at (e.g. the level the
        participant reached last session); default: the task's own start.
    on_event : callable | None
        ``on_event(event, t, trial)``, called with ``"cue"``,
        ``"stim_onset"``, ``"stop_signal"``, ``"response"`` and
        ``"feedback"`` and the event's clock time, at the moment the runner
        learns of it: from the flip callback for what is shown (so ``t`` is
        the flip time), right after the key-down is seen for a response. It
        runs in the frame loop, so it must return quickly (e.g. schedule a
        pulse at ``t + soa`` with the device process, not wait for it).
    instructions_s : float
        Show :meth:`Task.instructions` this long before the first trial.
    practice_trials : int
        Practice trials before the block, with feedback: not in the TSV, the
        markers, the hook, the measures or the level.
    break_every : int
        A break after every this many trials (0: none).
    break_s : float
        Length of a break.
    frame_times : list | None
        If given, the CPU time of every stimulus frame (draw and
        bookkeeping between the return of one flip and the next flip call,
        seconds) is appended to it, for benchmarks.
    between_trials : callable | None
        ``between_trials(trials_done)``, called after each trial's
        inter-trial interval (not after the last): the safe point where the
        session runner holds a pause, drawing on ``win`` meanwhile. It
        returns False to stop the block.

    Returns
    -------
    result : TaskBlockResult
        With the measures and, for an adaptive task, the level reached.

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
    state = BlockState(
        task, params, n_trials=n_trials, seed=seed, start_level=start_level
    )
    task = state.task
    name = task.name
    keys = task.keys(state.params)

    task.build_stimuli(win, state.block_params)
    flipper = _Flipper(win)
    run = _BlockRun(
        win=win,
        task=task,
        keys=keys,
        flipper=flipper,
        fixation=_text_stim(win, "+", 0.08),
        feedback=_text_stim(win, "", 0.06),
        real=_RealKeys(keys) if participant is None else None,
        participant=participant,
        clock=clock,
        emit=emit,
        on_event=on_event,
        block=block,
        frame_times=frame_times,
    )
    adaptive = state.adaptation is not None
    extra_columns: list[str] = ["level"] if adaptive else []
    if state.trials:
        probe = TrialResult(state.trials[0], math.nan, None, None, False)
        extra_columns += [
            c for c in task.tsv_fields(probe) if c not in (*TSV_COLUMNS, "level")
        ]
    tsv = _TrialsTSV(Path(tsv_path), extra_columns)
    logger.info(
        "Block %d: %s, %d trials, %s, TSV %s",
        block,
        name,
        n_trials,
        "simulated participant" if participant else "keyboard",
        tsv_path,
    )
    if instructions_s > 0:
        show_text(
            win,
            task.instructions(state.block_params),
            instructions_s,
            clock=clock,
            should_stop=run.stop_requested(should_stop),
        )
    stopped = practice_trials > 0 and not _practice(
        run, state, practice_trials, seed, start_level
    )
    emit(
        "task_start",
        clock(),
        block=block,
        task=name,
        n_trials=n_trials,
        seed=seed,
        level=state.level,
    )
    started = time.perf_counter()
    try:
        for i, planned in enumerate(state.trials):
            if stopped:
                break
            if should_stop():
                stopped = True
                break
            trial, timing, _ = state.begin(planned)
            outcome = run.trial(trial, timing)
            if outcome is None:  # escape
                stopped = True
                break
            result = state.finish(trial, *outcome)
            run.feedback_for(result, timing)
            extras = {"level": result.extra.get("level")} if adaptive else {}
            tsv.row(result, {**extras, **task.tsv_fields(result)})
            if not run.iti(timing):
                stopped = True
                break
            last = i + 1 == len(state.trials)
            if between_trials is not None and not last and not between_trials(i + 1):
                stopped = True
                break
            if break_every and (i + 1) % break_every == 0 and i + 1 < len(state.trials):
                text = f"Break\n\n{i + 1} of {len(state.trials)} trials done"
                if not show_text(
                    win,
                    text,
                    break_s,
                    clock=clock,
                    should_stop=run.stop_requested(should_stop),
                ):
                    stopped = True
                    break
    finally:
        tsv.close()
        win.flip()  # leave the screen blank
    block_result = state.result(stopped=stopped, tsv_path=Path(tsv_path))
    emit(
        "task_end",
        clock(),
        block=block,
        task=name,
        trials_done=len(block_result.results),
        stopped=stopped,
        level=block_result.level,
    )
    logger.info(
        "Block %d %s after %d of %d trials (%.1f s)",
        block,
        "stopped" if stopped else "finished",
        len(block_result.results),
        n_trials,
        time.perf_counter() - started,
    )
    return block_result


def _practice(
    run: _BlockRun, state: BlockState, n: int, seed: int, start_level: float | None
) -> bool:
    """Run practice trials; ``False`` if escape was pressed.

    Practice is not data: its own trials (another seed), feedback on, nothing
    sent or written, and the block's staircase untouched.
    """
    params = dict(state.params)
    if "feedback" in params:
        params["feedback"] = True
    practice = BlockState(
        state.task, params, n_trials=n, seed=seed + 1, start_level=start_level
    )
    quiet = dataclasses.replace(run, emit=lambda *a, **k: None, on_event=None)
    for planned in practice.trials:
        trial, timing, _ = practice.begin(planned)
        outcome = quiet.trial(trial, timing)
        if outcome is None:
            return False
        quiet.feedback_for(practice.finish(trial, *outcome), timing)
        if not quiet.iti(timing):
            return False
    return True


@dataclass
class _BlockRun:
    """Presentation of a block's trials: frames, keys, markers."""

    win: Any
    task: Task
    keys: list[str]
    flipper: _Flipper
    fixation: Any
    feedback: Any
    real: _RealKeys | None
    participant: SimulatedParticipant | None
    clock: Callable[[], float]
    emit: Callable[..., None]
    on_event: OnEvent | None
    block: int
    frame_times: list[float] | None = None

    def stop_requested(self, should_stop: Callable[[], bool]) -> Callable[[], bool]:
        """``should_stop``, or the escape key on the real keyboard."""
        if self.real is None:
            return should_stop
        real = self.real
        return lambda: should_stop() or real.escape()

    def _escaped(self) -> bool:
        return self.real is not None and self.real.escape()

    def _announce(self, event: str, t: float, trial: Trial, **fields: Any) -> None:
        """Tell the TMS hook first (latency matters there), then send the marker."""
        if self.on_event is not None:
            self.on_event(event, t, trial)
        self.emit(
            event,
            t,
            block=self.block,
            task=self.task.name,
            trial=trial.index,
            **fields,
        )

    def _flip(self) -> None:
        if self.frame_times is None:
            self.flipper.flip()
            return
        self.frame_times.append(time.perf_counter() - self.flipper.last_return)
        self.flipper.flip()

    def trial(
        self, trial: Trial, timing: TrialTiming
    ) -> tuple[float, str | None, float | None, dict[str, Any]] | None:
        """Run one trial's frames; ``None`` if escape was pressed.

        Returns
        -------
        outcome : tuple
            ``(onset, key, rt, extra)`` for :meth:`BlockState.finish`.
        """
        name = self.task.name
        frames = self.flipper.frames
        if self.real is not None:
            self.real.clear()
        self._prerender(trial)
        for _ in range(frames(timing.fixation_s)):
            self.fixation.draw()
            self.flipper.flip()
            if self._escaped():
                return None

        if self.participant is not None:
            sim_key, sim_rt = self.participant.respond(name, trial, self.keys)
            if sim_rt is None or sim_rt > timing.deadline_s:
                sim_key, sim_rt = None, None
        extra: dict[str, Any] = {}

        if trial.cue_s > 0:

            def on_cue() -> None:
                extra["cue_onset"] = t = self.clock()
                self._announce("cue", t, trial, condition=trial.condition)

            self.win.callOnFlip(on_cue)
            for _ in range(max(1, frames(trial.cue_s))):
                self.task.draw_cue(trial)
                self.flipper.flip()
                if self._escaped():
                    return None

        onset_box: list[float] = []

        def on_onset() -> None:
            onset = self.clock()
            if self.real is not None:
                self.real.sync(onset)  # right after the LSL read: see keyboard.py
            onset_box.append(onset)
            self._announce("stim_onset", onset, trial, condition=trial.condition)

        def on_signal() -> None:
            extra["signal_onset"] = t = self.clock()
            self._announce("stop_signal", t, trial, ssd=t - onset_box[0])

        n_stim = None if timing.stimulus_s is None else frames(timing.stimulus_s)
        n_signal = None if trial.signal_s is None else frames(trial.signal_s)
        key: str | None = None
        key_time: float | None = None
        k = 0
        self.flipper.last_return = time.perf_counter()
        while True:
            if k == 0:
                self.win.callOnFlip(on_onset)
            if n_stim is None or k < n_stim:
                self.task.draw_stimulus(trial)
            if n_signal is not None and k >= n_signal:
                self.task.draw_signal(trial)
                if k == n_signal:
                    self.win.callOnFlip(on_signal)
            self._flip()
            k += 1
            onset = onset_box[0]
            now = self.clock()
            if key is None:
                if self.participant is not None:
                    if sim_rt is not None and now >= onset + sim_rt:
                        key, key_time = sim_key, onset + sim_rt
                else:
                    k_name, t, esc = self.real.poll(timing.deadline_s)
                    if esc:
                        return None
                    key, key_time = k_name, t
                if key is not None:
                    self._response(trial, key, key_time, onset)
                    if not timing.fixed_duration:
                        break
            elif self._escaped():
                return None
            if now >= onset + timing.deadline_s:
                if self.real is not None and key is None:
                    # A key may have gone down since the last poll.
                    key, key_time, esc = self.real.poll(timing.deadline_s)
                    if esc:
                        return None
                    if key is not None:
                        self._response(trial, key, key_time, onset)
                break

        rt = None if key_time is None else key_time - onset
        return onset, key, rt, extra

    def _prerender(self, trial: Trial) -> None:
        """Draw the trial's stimuli once off-screen, then discard the pixels.

        A TextStim lays out its text on the first draw after a change (about
        1 ms, tens of ms for glyphs not rendered before); doing it here, before
        the fixation, keeps that work off the onset frame.
        """
        if trial.cue_s > 0:
            self.task.draw_cue(trial)
        self.task.draw_stimulus(trial)
        if trial.signal_s is not None:
            self.task.draw_signal(trial)
        self.win.clearBuffer()

    def _response(self, trial: Trial, key: str, key_time: float, onset: float) -> None:
        self._announce(
            "response",
            key_time,
            trial,
            key=key,
            rt=key_time - onset,
            correct=self.task.score(trial, key),
        )

    def feedback_for(self, result: TrialResult, timing: TrialTiming) -> None:
        """Show the trial's feedback, if the task gives any."""
        n = self.flipper.frames(timing.feedback_s)
        if not n:
            return
        trial = result.trial
        self.feedback.text = self.task.feedback_text(result)
        self.win.callOnFlip(
            lambda: self._announce(
                "feedback", self.clock(), trial, correct=result.correct
            )
        )
        for _ in range(n):
            self.feedback.draw()
            self.flipper.flip()

    def iti(self, timing: TrialTiming) -> bool:
        """Blank frames between trials; ``False`` if escape was pressed."""
        for _ in range(self.flipper.frames(timing.iti_s)):
            self.flipper.flip()
            if self._escaped():
                return False
        return True
