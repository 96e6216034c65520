"""A trigger-box simulator: reads output bytes on a pty and reports rising edges."""

from __future__ import annotations

import logging
from collections.abc import Callable

from pylsl import local_clock

from .pty import PtyServer

logger = logging.getLogger("stimtrain.devices.sim_triggerbox")


class TriggerBoxSimulator(PtyServer):
    """Simulated serial TTL trigger box.

    Parameters
    ----------
    on_edge : callable
        ``on_edge(rising_lines_mask, t)`` for every byte that raises at least
        one line (0 → 1), with ``t`` the clock time when the byte was read.
        It runs on the simulator's thread; while it runs,
        :attr:`edge_read_late` tells whether that edge's ``t`` is exact.
    clock : callable
        Clock (default :func:`pylsl.local_clock`).

    Notes
    -----
    Every byte of one read gets the read's time stamp, but only the last
    byte is known to have arrived shortly before it: had the reader been
    late, the next byte (the host lowers the lines one pulse width later)
    would have been read with it. A rising byte followed by more bytes in the
    same read arrived an unknown time earlier; :attr:`edge_read_late` says so.
    """

    def __init__(
        self,
        on_edge: Callable[[int, float], None],
        *,
        clock: Callable[[], float] = local_clock,
    ) -> None:
        super().__init__(name="triggerbox-sim", clock=clock)
        self._on_edge = on_edge
        self._lines = 0
        self.n_edges = 0
        self.n_late_edges = 0
        self.edge_read_late = False

    @property
    def lines(self) -> int:
        """Current output byte."""
        return self._lines

    def _on_data(self, data: bytes, t: float) -> None:
        last = len(data) - 1
        for i, value in enumerate(data):
            rising = value & ~self._lines & 0xFF
            self._lines = value
            if rising:
                self.n_edges += 1
                self.edge_read_late = i < last
                if self.edge_read_late:
                    self.n_late_edges += 1
                    logger.debug(
                        "edge %#04x read late (%d bytes in one read)", rising, len(data)
                    )
                self._on_edge(rising, t)
        self.edge_read_late = False
