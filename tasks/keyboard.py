"""The real keyboard: PsychoPy's Psychtoolbox keyboard, its key-downs on the LSL clock.

Keyboard time to LSL time
-------------------------
The Psychtoolbox keyboard stamps key-downs on Psychtoolbox's clock
(``GetSecs``), which is not the LSL clock (``pylsl.local_clock``, a monotonic
clock). At stimulus onset the runner's flip callback reads the LSL clock and,
right after, resets the keyboard's clock (:meth:`_RealKeys.sync`), so both
clocks are read at the same instant (a few microseconds apart). A key's
``rt`` is then its key-down time minus that reset, on Psychtoolbox's clock,
and its LSL time is ``onset + rt``. Only the drift between the two clocks over
one response window (under 2 s, i.e. well under a microsecond) is ignored.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("stimtrain.tasks")


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
