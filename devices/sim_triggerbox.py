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
        It runs on the simulator's thread.
    clock : callable
        Clock (default :func:`pylsl.local_clock`).
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

    @property
    def lines(self) -> int:
        """Current output byte."""
        return self._lines

    def _on_data(self, data: bytes, t: float) -> None:
        # Bytes read together share one time stamp: the box saw them at once.
        for value in data:
            rising = value & ~self._lines & 0xFF
            self._lines = value
            if rising:
                self.n_edges += 1
                self._on_edge(rising, t)
