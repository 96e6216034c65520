"""Frame timing: a window's frame period, and flips paced on a fixed frame grid.

:func:`frame_info` measures once per window whether ``flip()`` waits for a
display refresh. Without a refresh (Xvfb) ``flip()`` returns at once;
:class:`_Flipper` then paces flips on a fixed grid of the nominal frame
period itself, sleeping in between, so blocks and screens take their nominal
time without spinning the CPU.
"""

from __future__ import annotations

import logging
import math
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from psychopy.visual import Window

logger = logging.getLogger("stimtrain.tasks")

#: Frames flipped once per window to measure the refresh.
_N_PROBE_FLIPS = 12


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
        #: perf_counter() when the last flip returned (for frame CPU times).
        self.last_return = time.perf_counter()

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
        self.last_return = time.perf_counter()
