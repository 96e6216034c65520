"""What the session's threads share to control stimulation: stop, pause, hold.

The main thread runs the blocks; the stream watch, the disk watch, the
journal's failure path, the operator's keys and the signal handlers all act
on the same :class:`SessionControl`: they set its flags and, when pulses must
stop now, hold the device process's schedule from their own thread (a hold is
handled by the device process the moment it arrives). The block executors
read the flags between steps.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

from .device_process import DeviceFault

logger = logging.getLogger("stimtrain.orchestrator.session.control")


class SessionAborted(RuntimeError):
    """The session stopped before its end (signal, operator, fault)."""


class StopFlag:
    """A flag set by signals, the operator or a fault; checked between steps."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.event = threading.Event()

    def set(self, reason: str) -> None:
        """Stop, for ``reason`` (the first reason given is kept)."""
        if self.reason is None:
            self.reason = reason
        self.event.set()

    def note(self, reason: str) -> None:
        """Record a stop without taking a lock (for signal handlers).

        A handler runs in the main thread between two bytecodes, possibly
        while that thread holds the event's lock (inside :meth:`set`): setting
        the event there would deadlock. Whoever catches the handler's exception
        calls :meth:`set`.
        """
        if self.reason is None:
            self.reason = reason

    def __call__(self) -> bool:
        return self.reason is not None or self.event.is_set()


class SessionControl:
    """The flags and actions that stop, pause and hold stimulation.

    The session opens its parts one by one and hands each to the control as
    it opens (``journal`` first, then ``markers``, ``device``, ``state``,
    ``stalled_streams``); every action works with what is open so far.

    Parameters
    ----------
    journal : Journal
        The run's journal.
    """

    def __init__(self, journal) -> None:
        self.journal = journal
        self.markers = None
        self.device = None
        self.state = None
        #: ``() -> bool``: whether a required stream is still stalled.
        self.streams_stalled: Callable[[], bool] | None = None
        #: The online pulses of the task block running now, if any.
        self.online = None
        self.stop = StopFlag()
        #: Operator keys: pause at the next safe point, skip the current block.
        self.pause = threading.Event()
        self.skip = threading.Event()
        #: Set while a required stream has stopped: no pulse is given then.
        self.stalled = threading.Event()
        #: Set while a task block is paused between trials.
        self.task_paused = threading.Event()
        #: The coil site the operator labelled last (hotspot blocks), and
        #: their request to keep the best site ranked so far.
        self.site: int | None = None
        self.accept_site = threading.Event()
        #: Held while pulses are scheduled or dropped, so a stall never
        #: falls between checking the flag and scheduling.
        self.schedule_lock = threading.Lock()
        #: Set when the safe stop begins; later signals are ignored.
        self.closing = False
        #: Set once stimulation has been stopped because data can't be kept.
        self._data_fault = threading.Event()

    # -- what the blocks ask ----------------------------------------------------
    def ending(self) -> bool:
        """Whether the current block ends now (abort or skip).

        A stalled stream doesn't end a rest or a task block: the stimulation
        is held, the participant's block goes on.
        """
        return self.stop() or self.skip.is_set()

    def leave(self, pausable: bool) -> bool:
        """Whether a stimulation block must stop waiting for its pulses.

        It must on an abort or skip, a stalled stream, and the pause key while
        the block still has a safe point to pause at.
        """
        return (
            self.ending() or self.stalled.is_set() or (pausable and self.pause.is_set())
        )

    def warn(self, text: str) -> None:
        """Show a warning on the operator console, once it is open."""
        if self.state is not None:
            self.state.warn(text)

    # -- holding pulses ---------------------------------------------------------
    def hold(
        self, reason: str = "stream stalled", after: float | None = None, **extra
    ) -> None:
        """Drop the scheduled pulses in the device process, at once.

        Every pulse, or those due from clock time ``after`` on (a pause at a
        safe point). The unit stays armed; the block's own code disarms, waits
        and reschedules what was not given. Online pulses dropped here become
        ``no_pulse`` trials. A stall calls it with the schedule lock held.
        """
        if self.device is None or self.device.fault is not None:
            return
        try:
            held = self.device.hold(after)
        except DeviceFault as exc:
            # The device fault ends the session (and its safe stop disarms).
            logger.warning("hold (%s) failed: %s", reason, exc)
            return
        self.journal.write(
            "stimulation_held",
            held_at=held.held_at,
            pulses_dropped=len(held.dropped),
            reason=reason,
            **extra,
        )
        if self.online is not None:
            self.online.dropped(held.dropped, reason.replace(" ", "_"))

    def on_stream_stall(self, name: str, age_s: float) -> None:
        """A required stream stopped: no pulse from now (the watch's thread)."""
        # The pulses stop here and now, not when the main thread next looks (a
        # frame later, or a pulse later).
        with self.schedule_lock:
            self.stalled.set()
            self.journal.write("stream_stalled", stream=name, age_s=age_s)
            if self.markers is not None:
                self.markers.push("stream_stalled", stream=name, age_s=age_s)
            self.hold()
        self.warn(f"stream {name} stopped ({age_s:.1f} s): stimulation paused")

    def on_stream_recover(self, name: str) -> None:
        """A stalled stream is back; stimulation may go on once all are."""
        self.journal.write("stream_recovered", stream=name)
        if self.markers is not None:
            self.markers.push("stream_recovered", stream=name)
        if self.streams_stalled is not None and not self.streams_stalled():
            self.stalled.clear()
        self.warn(f"stream {name} is back")

    # -- data that can't be kept ------------------------------------------------
    def on_recording_failure(self, reason: str) -> None:
        """The recording can't be kept: hold and disarm now, then stop."""
        self.stop_for_data(f"recording: {reason}", "recording_failed")

    def on_journal_failure(self, error: OSError) -> None:
        """The journal can't be written (called on the writing thread)."""
        # That thread may be the device reader's, which can't wait for a
        # device reply: a thread of its own holds and disarms.
        threading.Thread(
            target=self.stop_for_data,
            args=(f"journal: {error}", "journal_failed"),
            daemon=True,
        ).start()

    def stop_for_data(self, reason: str, event: str) -> None:
        """Stop stimulating because data can no longer be kept: disarm first."""
        if self._data_fault.is_set():
            return
        self._data_fault.set()
        with self.schedule_lock:
            self.stalled.set()
            self.hold(reason=event)
            self.disarm_now(event)
        self.stop.set(reason)
        self.journal.write(event, reason=reason)
        if self.markers is not None:
            try:
                self.markers.push(event, reason=reason)
            except Exception:  # noqa: BLE001 - the stop matters, not the marker
                logger.exception("marker %s", event)
        self.warn(f"{reason}: stimulation stopped")

    def disarm_now(self, why: str) -> None:
        """Disarm from this thread; a failure is left to the safe stop."""
        if self.device is None or self.device.fault is not None:
            return
        try:
            self.device.disarm(timeout=2.0)
        except DeviceFault as exc:
            # The session's safe stop kills the device process then.
            logger.warning("disarm after %s failed: %s", why, exc)

    # -- the operator and signals -------------------------------------------------
    def on_key(
        self,
        key: str | None,
        action: str,
        origin: str = "keyboard",
        asked: str | None = None,
    ) -> None:
        """Every operator action goes into the journal, then takes effect.

        ``origin`` says where it came from (``"keyboard"``, ``"view"``);
        ``asked`` is what a view's button asked for when that differs from
        what was done (e.g. a pause asked while already paused: ``ignored``).
        """
        current = None if self.state is None else self.state.current_block
        extra = {} if origin == "keyboard" else {"origin": origin, "asked": asked}
        self.journal.write(
            "operator_key", key=key, action=action, block=current, **extra
        )
        if action == "abort":
            self.stop.set(
                "operator abort key"
                if origin == "keyboard"
                else f"operator abort ({origin})"
            )
            # At once, from this thread: a disarm also drops the schedule.
            self.disarm_now("abort key")
        elif action == "pause":
            self.pause.set()
        elif action == "resume":
            self.pause.clear()
        elif action == "skip":
            self.skip.set()
        elif action.startswith("site "):
            self.site = int(action.split()[1])
            if self.markers is not None:
                self.markers.push("hotspot_site", block=current, site=self.site)
        elif action == "accept_site":
            self.accept_site.set()

    def on_signal(self, signum, frame) -> None:
        """Ctrl+C or SIGTERM: stop the session (the main thread's safe stop)."""
        # Once the session is stopping, a second Ctrl+C or SIGTERM must not
        # cut the safe stop (disarm, recording close) short: it is ignored.
        if self.closing or self.stop():
            return
        if signum == signal.SIGINT:
            self.stop.note("interrupted (Ctrl+C)")
        else:
            self.stop.note(f"signal {signal.Signals(signum).name}")
        raise SessionAborted(self.stop.reason)

    def install_signal_handlers(self) -> Callable[[], None]:
        """Handle SIGINT and SIGTERM; returns what puts the old handlers back."""
        previous = {
            sig: signal.signal(sig, self.on_signal)
            for sig in (signal.SIGINT, signal.SIGTERM)
        }

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore
