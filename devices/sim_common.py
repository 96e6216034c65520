"""What every stimulator simulator shares, whatever its byte protocol.

:class:`SimulatedStimulator` holds the pulse log and its listeners, the coil
temperature model (heating per pulse, exponential cooling towards ambient,
a maximum), the fault-plan counters of commands and replies, and the ordered
reply queue. The Magstim and MagVenture simulators build their own protocol
on top of it.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pylsl import local_clock

from .faults import FaultPlan
from .pty import PtyServer

logger = logging.getLogger("stimtrain.devices.sim_common")

__all__ = ["Pulse", "SimulatedStimulator"]


@dataclass(frozen=True)
class Pulse:
    """One delivered pulse.

    Attributes
    ----------
    time : float
        Clock time (s) when the complete fire command was read, when the
        trigger edge arrived, or when the unit's own train timer fired it.
    power : int
        Power (%) at that moment.
    source : str
        ``"serial"``, ``"trigger"`` or ``"train"`` (a pulse of a train the
        unit ran by itself after a fire command or trigger in train mode).
    unit : str
        ``"A"``, or ``"B"`` for the second stimulator of a BiStim².
    late_read : bool
        The trigger edge was read together with later bytes, so the
        simulator's reader was late and ``time`` is only an upper bound.
    """

    time: float
    power: int
    source: str
    unit: str = "A"
    late_read: bool = False


class SimulatedStimulator(PtyServer):
    """Base class of the stimulator simulators served on a pty.

    Subclasses implement the protocol (:meth:`_on_data`, :meth:`_on_tick`)
    and call the helpers here with ``self._lock`` held.

    Parameters
    ----------
    name : str
        Serving thread name, for logs.
    clock : callable
        Clock for every time stamp.
    tick : float
        Longest time between two calls of :meth:`_on_tick` (s).
    faults : FaultPlan | None
        What to get wrong (see :class:`~stimtrain.devices.faults.FaultPlan`).
    ambient_temperature : float
        Coil temperature (°C) at start and what it cools towards.
    heating : float
        Coil temperature rise per pulse, in the subclass's unit.
    cooling_time_constant : float
        Seconds for the coil's excess temperature to fall by a factor e.
    max_coil_temperature : float
        Above this (°C) the coil counts as too hot.
    """

    def __init__(
        self,
        *,
        name: str,
        clock: Callable[[], float] = local_clock,
        tick: float = 0.01,
        faults: FaultPlan | None = None,
        ambient_temperature: float = 25.0,
        heating: float = 0.0,
        cooling_time_constant: float = 300.0,
        max_coil_temperature: float = 40.0,
    ) -> None:
        super().__init__(name=name, clock=clock, tick=tick)
        self.faults = faults if faults is not None else FaultPlan()
        self.ambient_temperature = ambient_temperature
        self.heating = heating
        self.cooling_time_constant = cooling_time_constant
        self.max_coil_temperature = max_coil_temperature
        # Reentrant: listeners and properties may be used from a handler.
        self._lock = threading.RLock()
        self._listeners: list[Callable[[Pulse], None]] = []
        now = clock()
        self._temperature = ambient_temperature
        self._temperature_time = now
        self._pulses: list[Pulse] = []
        self._missed = 0
        self._n_commands = 0
        self._n_replies = 0
        # (due time, bytes) in sending order; due times never decrease.
        self._outbox: deque[tuple[float, bytes]] = deque()

    # ------------------------------------------------------------------ public
    @property
    def pulses(self) -> list[Pulse]:
        """Copy of every pulse delivered so far."""
        with self._lock:
            return list(self._pulses)

    @property
    def missed(self) -> int:
        """Fire commands or trigger edges that did not produce a pulse."""
        with self._lock:
            return self._missed

    @property
    def commands_received(self) -> int:
        """Commands received so far (what the fault plan counts)."""
        with self._lock:
            return self._n_commands

    @property
    def coil_temperature(self) -> float:
        """Coil temperature (°C) now."""
        with self._lock:
            self._advance(self._clock())
            return self._temperature

    @coil_temperature.setter
    def coil_temperature(self, value: float) -> None:
        with self._lock:
            now = self._clock()
            self._advance(now)
            self._temperature = float(value)
            self._temperature_time = now
            self._temperature_changed(now)

    def add_pulse_listener(self, callback: Callable[[Pulse], None]) -> None:
        """Call ``callback(pulse)`` for every delivered pulse.

        It runs on the thread that delivered the pulse (the serial thread for
        fire commands and device-timed trains, the caller of ``trigger`` for
        edges), outside any lock; keep it short.
        """
        with self._lock:
            self._listeners.append(callback)

    def remove_pulse_listener(self, callback: Callable[[Pulse], None]) -> None:
        """Stop calling ``callback``."""
        with self._lock:
            self._listeners.remove(callback)

    # ------------------------------------------------------------- for bases
    def _advance(self, now: float) -> None:
        """Apply what time does to the unit; the default only cools the coil."""
        self._cool(now)

    def _temperature_changed(self, now: float) -> None:
        """React to a coil temperature set from outside (default: advance)."""
        self._advance(now)

    def _notify(self, pulses: Iterable[Pulse]) -> None:
        """Call the listeners for ``pulses``; call without the lock held."""
        pulses = list(pulses)
        if not pulses:
            return
        with self._lock:
            listeners = list(self._listeners)
        for pulse in pulses:
            for callback in listeners:
                try:
                    callback(pulse)
                except Exception:
                    logger.exception("pulse listener %r failed", callback)

    # -------------------------------------------------------------- coil model
    def _cool(self, now: float) -> None:
        """Let the coil's excess over ambient decay exponentially until ``now``."""
        dt = now - self._temperature_time
        if dt > 0:
            excess = self._temperature - self.ambient_temperature
            decay = math.exp(-dt / self.cooling_time_constant)
            self._temperature = self.ambient_temperature + excess * decay
            self._temperature_time = now

    def _too_hot(self) -> bool:
        return self._temperature > self.max_coil_temperature

    def _record_pulse(self, pulse: Pulse, rise: float) -> bool:
        """Log ``pulse``, heat the coil by ``rise`` °C.

        Returns
        -------
        bool
            Whether the fault plan says the coil is over temperature now.
        """
        self._pulses.append(pulse)
        self._temperature += rise
        return self.faults.overheated(len(self._pulses))

    # ---------------------------------------------------------- fault counters
    def _count_command(self) -> str | None:
        """Count one received command against the fault plan.

        Returns
        -------
        str | None
            ``"disconnect"`` or ``"silent"`` when the plan says so from this
            command on, else None.
        """
        self._n_commands += 1
        if self.faults.disconnected(self._n_commands):
            return "disconnect"
        if self.faults.silent(self._n_commands):
            return "silent"
        return None

    def _queue_reply(
        self, reply: bytes, t: float, *, checksum_at: int, flip: int, delay: float = 0.0
    ) -> float:
        """Apply the fault plan to one reply and queue it; return its due time.

        Parameters
        ----------
        reply : bytes
            The reply as the unit means to send it.
        t : float
            Clock time from which ``delay`` and a planned late reply count.
        checksum_at : int
            Index (negative from the end) of the checksum byte to corrupt.
        flip : int
            Bit mask XORed into that byte when the plan corrupts the reply.
        delay : float
            The unit's own answer time (s).
        """
        self._n_replies += 1
        n = self._n_replies
        if self.faults.corrupt(n):
            i = len(reply) + checksum_at if checksum_at < 0 else checksum_at
            reply = reply[:i] + bytes([reply[i] ^ flip]) + reply[i + 1 :]
        if self.faults.drop(n):
            reply = reply[:-1]
        due = t + delay + self.faults.delay(n)
        # Replies leave in order: a late one holds back those after it.
        if self._outbox:
            due = max(due, self._outbox[-1][0])
        self._outbox.append((due, reply))
        return due

    def _flush(self, now: float) -> None:
        """Write every queued reply that is due at ``now``."""
        while self._outbox and self._outbox[0][0] <= now:
            self._write(self._outbox.popleft()[1])
