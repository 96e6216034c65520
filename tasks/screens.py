"""Screens outside the trials: text and a fixation cross, shown frame by frame.

Used for a block's instructions and breaks, and by the session for waiting
and rest screens; durations run on the given clock (the LSL clock) from the
first frame's flip.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pylsl

from .frames import _Flipper

if TYPE_CHECKING:  # pragma: no cover
    from psychopy.visual import Window


def _text_stim(win: Window, text: str, height: float = 0.05):
    from psychopy import visual

    return visual.TextStim(
        win, text=text, height=height, color="white", wrapWidth=1.2, autoLog=False
    )


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
