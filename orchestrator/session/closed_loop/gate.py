"""The amplitude gate: pulses only while the rhythm's power is high.

Phase is only meaningful when there is a rhythm: each estimate's band power
is compared with the percentile of the band powers seen over the last
minute (a running threshold that follows slow changes of the recording, as
bossdevice's power criterion does).
"""

from __future__ import annotations

from collections import deque

import numpy as np


class AmplitudeGate:
    """Band power above its running percentile over a recent span.

    Parameters
    ----------
    percentile : float
        The percentile (0-100) of recent powers that the current one must
        reach; 0 lets everything through once warmed up.
    span_s : float
        How far back the history reaches, s.
    warmup_s : float
        The gate stays shut until its history covers this long, s.
    """

    def __init__(
        self, percentile: float = 50.0, span_s: float = 60.0, warmup_s: float = 5.0
    ) -> None:
        if not 0 <= percentile <= 100:
            raise ValueError(f"percentile must be within 0-100, got {percentile}")
        if not span_s > 0 or not 0 <= warmup_s <= span_s:
            raise ValueError("need span_s > 0 and 0 <= warmup_s <= span_s")
        self.percentile = float(percentile)
        self.span_s = float(span_s)
        self.warmup_s = float(warmup_s)
        self._history: deque[tuple[float, float]] = deque()

    def update(self, time: float, power: float) -> tuple[bool, float]:
        """Add one estimate's power; say whether it passes.

        Parameters
        ----------
        time : float
            The estimate's time, s (any clock, increasing).
        power : float
            Its band power.

        Returns
        -------
        passed : bool
            Whether ``power`` reaches the percentile of the history (the
            history includes it); False while warming up.
        threshold : float
            The percentile's value (nan while warming up).
        """
        self._history.append((time, power))
        while self._history and self._history[0][0] < time - self.span_s:
            self._history.popleft()
        if time - self._history[0][0] < self.warmup_s:
            return False, float("nan")
        threshold = float(np.percentile([p for _, p in self._history], self.percentile))
        return power >= threshold, threshold

    @property
    def warmed_up(self) -> bool:
        """Whether the history covers the warm-up span."""
        return bool(self._history) and (
            self._history[-1][0] - self._history[0][0] >= self.warmup_s
        )
