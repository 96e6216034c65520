"""Displays for the tasks: a virtual X display for headless machines, and windows.

PsychoPy is imported inside the functions that need it, so that importing
:mod:`stimtrain.tasks` stays cheap and works on a machine without a display.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from stimtrain.lifetime import die_with_parent

if TYPE_CHECKING:  # pragma: no cover
    from psychopy.visual import Window

logger = logging.getLogger("stimtrain.tasks")

#: How long to wait for Xvfb to report its display number.
XVFB_START_TIMEOUT_S = 10.0


class DisplayError(RuntimeError):
    """A display could not be provided (Xvfb missing or failed to start)."""


@contextlib.contextmanager
def virtual_display(
    size: tuple[int, int] = (1280, 1024), *, force: bool = False
) -> Iterator[str | None]:
    """Provide an X display, starting Xvfb if there is none.

    Parameters
    ----------
    size : tuple of int
        Width and height of the virtual screen, in pixels.
    force : bool
        Start a virtual display even if ``DISPLAY`` is already set.

    Yields
    ------
    display : str | None
        The value ``DISPLAY`` was set to (e.g. ``":3"``), or ``None`` when an
        existing display was used and nothing was started.

    Raises
    ------
    DisplayError
        If Xvfb is not installed, or does not start.

    Notes
    -----
    The display number is chosen by Xvfb itself (``-displayfd``), which
    avoids the race of guessing a free number when several sessions start at
    once. ``DISPLAY`` is restored on exit and the server is terminated.
    """
    if os.environ.get("DISPLAY") and not force:
        logger.debug("Using the existing display %s", os.environ["DISPLAY"])
        yield None
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        raise DisplayError(
            "no X display (DISPLAY is unset) and Xvfb is not installed; "
            "install the Debian package xvfb (apt-get install xvfb)"
        )
    width, height = (int(v) for v in size)
    read_fd, write_fd = os.pipe()
    cmd = [
        xvfb,
        "-displayfd",
        str(write_fd),
        "-screen",
        "0",
        f"{width}x{height}x24",
        "-nolisten",
        "tcp",
    ]
    try:
        proc = subprocess.Popen(
            cmd,
            pass_fds=(write_fd,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # If this process dies without cleaning up, Xvfb goes with it.
            preexec_fn=die_with_parent,
        )
    finally:
        # Only Xvfb writes to the pipe; closing our copy gives us EOF if it dies.
        os.close(write_fd)
    try:
        number = _read_display_number(read_fd, proc)
    except BaseException:
        os.close(read_fd)
        _terminate(proc)
        raise
    os.close(read_fd)
    display = f":{number}"
    previous = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = display
    logger.info("Started Xvfb on %s (%dx%d, pid %d)", display, width, height, proc.pid)
    try:
        yield display
    finally:
        if previous is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = previous
        if _psychtoolbox_keyboard_in_use():
            # Psychtoolbox's keyboard queue keeps its own X connection open for
            # the life of the process, and Xlib exits the whole process when
            # that server goes away. So the server outlives us instead: it
            # gets SIGTERM from the kernel when this process exits.
            logger.info("Leaving Xvfb on %s running until this process exits", display)
        else:
            _terminate(proc)
            logger.info("Stopped Xvfb on %s", display)


def _read_display_number(fd: int, proc: subprocess.Popen) -> int:
    """Read the display number Xvfb writes to ``-displayfd`` once it is ready."""
    deadline = time.monotonic() + XVFB_START_TIMEOUT_S
    data = b""
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DisplayError(
                f"Xvfb did not report a display within {XVFB_START_TIMEOUT_S} s"
            )
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 64)
        if not chunk:  # EOF: Xvfb exited before it was ready
            proc.wait(timeout=5)
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise DisplayError(
                f"Xvfb exited with status {proc.returncode}: {err.strip()[-500:]}"
            )
        data += chunk
    return int(data.strip())


def _psychtoolbox_keyboard_in_use() -> bool:
    """Whether Psychtoolbox's HID module (keyboard queues) may hold an X connection.

    Conservative: PsychoPy's keyboard imports ``psychtoolbox.hid`` and the
    first keyboard query opens the connection, so the import is the sign.
    """
    return "psychtoolbox.hid" in sys.modules


def _terminate(proc: subprocess.Popen) -> None:
    """Stop an Xvfb process, killing it if it does not exit promptly."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    if proc.stderr is not None:
        proc.stderr.close()


def quiet_psychopy() -> None:
    """Send only PsychoPy warnings and errors to the console."""
    from psychopy import logging as plogging

    plogging.console.setLevel(plogging.WARNING)


def _monitor(size: tuple[int, int]):
    """An in-memory monitor description, made without a console warning.

    The tasks size everything in "height" units, which need no physical
    monitor; PsychoPy warns "Monitor specification not found" whenever it
    makes one that was never saved, on the operator's console. Its log is
    flushed (and filtered) in batches, so the warning is flushed while the
    console takes errors only.
    """
    from psychopy import logging as plogging
    from psychopy import monitors

    plogging.flush()
    level = plogging.console.level
    plogging.console.setLevel(plogging.ERROR)
    try:
        monitor = monitors.Monitor("stimtrain", autoLog=False)
        plogging.flush()
    finally:
        plogging.console.setLevel(level)
    monitor.setSizePix(list(size))
    return monitor


def open_window(
    size: tuple[int, int] = (1024, 768),
    fullscr: bool = False,
    screen: int = 0,
    color: str | tuple = "grey",
) -> Window:
    """Open a PsychoPy window for the tasks.

    Parameters
    ----------
    size : tuple of int
        Window size in pixels (ignored in full-screen mode, which uses the
        screen's size).
    fullscr : bool
        Full screen (what a participant should see).
    screen : int
        Which screen to open the window on.
    color : str | tuple
        Background colour, in PsychoPy's colour spaces.

    Returns
    -------
    win : psychopy.visual.Window
        A pyglet window in ``"height"`` units.

    Notes
    -----
    ``waitBlanking=True`` makes ``flip()`` block until the vertical blank on a
    real display, so the flip callback marks the moment the frame appeared.
    Under Xvfb there is no refresh and ``flip()`` returns at once; the task
    runner paces its frame loop itself then. ``checkTiming=False`` skips
    PsychoPy's refresh-rate measurement, which is slow and meaningless under
    Xvfb; the window's nominal frame period is 1/60 s in that case, or the
    measured rate when a real monitor reports it.
    """
    quiet_psychopy()
    from psychopy import visual

    monitor = _monitor(size)
    win = visual.Window(
        size=list(size),
        monitor=monitor,
        fullscr=fullscr,
        screen=screen,
        color=color,
        units="height",
        winType="pyglet",
        waitBlanking=True,
        checkTiming=False,
        # No window decorations; PsychoPy opens no dialogs unless asked to.
        allowGUI=False,
    )
    win.mouseVisible = False  # no pointer over the stimuli
    logger.debug("Opened window %s (fullscr=%s)", tuple(win.size), fullscr)
    return win
