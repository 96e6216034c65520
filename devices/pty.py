"""Pseudo-terminals for device simulators.

A simulator serves a device's byte protocol on the master side of a pty; the
driver opens the slave path with pyserial exactly as it would open a real
serial port. A pty has no modem-control lines: setting RTS or DTR on it fails
with ENOTTY, so drivers must not rely on them.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import threading
import time
import tty
from collections.abc import Callable

from pylsl import local_clock

logger = logging.getLogger("stimtrain.devices.pty")


def open_pty() -> tuple[int, str]:
    """Open a pseudo-terminal in raw mode.

    Returns
    -------
    master_fd : int
        File descriptor of the master side (the simulator's end).
    slave_path : str
        Path of the slave side (e.g. ``/dev/pts/3``), to be opened by a driver.

    Notes
    -----
    Raw mode means no echo and no line-discipline translation (no CR/LF
    mapping, no signals, no flow control), so every byte arrives as sent.
    """
    master_fd, slave_fd = os.openpty()
    try:
        tty.setraw(slave_fd)
        slave_path = os.ttyname(slave_fd)
    finally:
        os.close(slave_fd)
    return master_fd, slave_path


class PtyServer:
    """Base class: serve bytes on a pty's master side from a background thread.

    Subclasses implement :meth:`_on_data` (called with every chunk read and
    the clock time right after the read returned) and optionally
    :meth:`_on_tick` (called at least every ``tick`` seconds).

    Parameters
    ----------
    name : str
        Thread name, for logs.
    clock : callable
        Clock returning seconds; defaults to :func:`pylsl.local_clock`.
    tick : float
        Longest time between two calls of :meth:`_on_tick`, in seconds.
    """

    def __init__(
        self,
        *,
        name: str = "pty-server",
        clock: Callable[[], float] = local_clock,
        tick: float = 0.01,
    ) -> None:
        self._name = name
        self._clock = clock
        self._tick = tick
        self._master: int | None = None
        self._keeper: int | None = None
        self._wake_r: int | None = None
        self._wake_w: int | None = None
        self._port: str | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def port(self) -> str | None:
        """Slave path the driver opens, or None when not serving."""
        return self._port

    def start(self) -> str:
        """Open the pty, start serving and return the slave path."""
        if self._thread is not None:
            raise RuntimeError(f"{self._name} is already running on {self._port}")
        self._master, self._port = open_pty()
        # Holding the slave open ourselves keeps the master readable (no
        # POLLHUP/EIO storm) while no driver has the port open.
        self._keeper = os.open(self._port, os.O_RDWR | os.O_NOCTTY)
        # Non-blocking writes: replies nobody reads must never stall the loop.
        os.set_blocking(self._master, False)
        self._wake_r, self._wake_w = os.pipe()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        logger.debug("%s serving on %s", self._name, self._port)
        return self._port

    def stop(self) -> None:
        """Stop serving and close the pty (idempotent)."""
        if self._thread is None:
            return
        self._stopping.set()
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=2.0)
        self._thread = None
        for fd in (self._master, self._keeper, self._wake_r, self._wake_w):
            if fd is not None:
                os.close(fd)
        self._master = self._keeper = self._wake_r = self._wake_w = None
        self._port = None

    def __enter__(self) -> PtyServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _write(self, data: bytes) -> None:
        """Send bytes to the driver; drop them if nobody drains the pty."""
        if self._master is None or not data:
            return
        try:
            os.write(self._master, data)
        except BlockingIOError:
            logger.warning("%s: output buffer full, dropped %r", self._name, data)

    def _on_data(self, data: bytes, t: float) -> None:
        raise NotImplementedError

    def _on_tick(self, now: float) -> None:
        """Time-driven work; the default does nothing."""

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._master, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        tick_ms = max(1, int(self._tick * 1000))
        while not self._stopping.is_set():
            events = poller.poll(tick_ms)
            for fd, _ in events:
                if fd != self._master:
                    continue
                try:
                    data = os.read(self._master, 4096)
                except BlockingIOError:
                    continue
                except OSError as err:  # EIO: no slave open (should not happen)
                    if err.errno != errno.EIO:
                        raise
                    time.sleep(self._tick)
                    continue
                # Stamp first: this is the arrival time that pulses are measured by.
                t = self._clock()
                if data:
                    self._guarded(self._on_data, data, t)
            self._guarded(self._on_tick, self._clock())

    def _guarded(self, func: Callable, *args: object) -> None:
        # A bug in one handler must not silently kill the serving thread.
        try:
            func(*args)
        except Exception:
            logger.exception("%s: error in %s", self._name, func.__name__)
