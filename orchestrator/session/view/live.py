"""The runner's side of the live view: start it, feed it, take its actions.

The view runs in a process of its own (:mod:`.server`). The runner hands it a
copy of the console state five times a second through a bounded queue that
never blocks (a full queue drops the copy: the next one carries everything),
and a thread of the runner takes the page's actions from another queue and
hands them to the console, which applies the keys' rules and journals each
with its origin.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import queue
import secrets
import threading
from collections.abc import Callable

import pylsl

from .server import ViewConfig, serve

logger = logging.getLogger("stimtrain.orchestrator.session.view.live")

#: Seconds between two state copies sent to the view.
STATE_S = 0.2


class ViewUnavailable(RuntimeError):
    """The live view could not start (the session goes on without it)."""


class LiveView:
    """A running live view of one session.

    Parameters
    ----------
    state : ConsoleState
        The console state the runner keeps up to date.
    act : callable
        ``act(action, origin, block)``: the console's action entry
        (:meth:`~..console.OperatorConsole.act`).
    marker_stream : str
        The session's marker stream.
    data_stream : str | None
        The EEG (and EMG) stream whose samples the MEP and evoked panels show.
    emg_channel : str | None
        The EMG channel in ``data_stream``.
    journal : str
        The run's journal file (the view shows its last lines).
    stream_timeout_s : float
        How long the view may look for the streams.
    """

    def __init__(
        self,
        state,
        act: Callable[[str, str, int | None], str],
        *,
        marker_stream: str,
        data_stream: str | None,
        emg_channel: str | None,
        journal: str,
        stream_timeout_s: float = 10.0,
    ) -> None:
        self.state = state
        self.act = act
        self.config = ViewConfig(
            token=secrets.token_urlsafe(18),
            marker_stream=marker_stream,
            data_stream=data_stream,
            emg_channel=emg_channel,
            journal=str(journal),
            stream_timeout_s=stream_timeout_s,
        )
        ctx = mp.get_context("spawn")
        self._states = ctx.Queue(maxsize=2)
        self._controls = ctx.Queue()
        self._stop = ctx.Event()
        self._ready, ready = ctx.Pipe(duplex=False)
        self._process = ctx.Process(
            target=serve,
            args=(self.config, self._states, self._controls, ready, self._stop),
            name="stimtrain-view",
            daemon=True,
        )
        self._threads: list[threading.Thread] = []
        self.url: str | None = None

    def start(self, timeout: float = 30.0) -> str:
        """Start the view process; returns the page's address with its token.

        Raises
        ------
        ViewUnavailable
            When the view could not open its streams or its port in time.
        """
        self._process.start()
        if not self._ready.poll(timeout):
            self.close()
            raise ViewUnavailable(f"the view did not start within {timeout:g} s")
        kind, value = self._ready.recv()
        if kind != "ready":
            self.close()
            raise ViewUnavailable(value)
        self.url = f"http://{self.config.host}:{value}/{self.config.token}/"
        for target, name in ((self._feed, "view-feed"), (self._take, "view-actions")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self.url

    def close(self) -> None:
        """Stop the threads and the view process (at most a few seconds)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=1.0)
        if self._process.pid is not None:
            self._process.join(timeout=3.0)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(timeout=2.0)
        for q in (self._states, self._controls):
            q.cancel_join_thread()
            q.close()

    def __enter__(self) -> LiveView:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _feed(self) -> None:
        while not self._stop.wait(STATE_S):
            try:
                self._states.put_nowait(state_dict(self.state))
            except queue.Full:
                pass  # the view is behind: this copy is dropped, not waited for
            except Exception:  # noqa: BLE001 - the view must never stop a session
                logger.exception("live view state")

    def _take(self) -> None:
        while not self._stop.is_set():
            try:
                asked = self._controls.get(timeout=0.2)
            except queue.Empty:
                continue
            except (OSError, EOFError, ValueError):
                return
            try:
                self.act(asked["action"], "view", asked.get("block"))
            except Exception:  # noqa: BLE001 - reported by the console's warn
                logger.exception("live view action %r", asked)


def open_live_view(
    stack, say, state, console, *, markers: str, data: str | None, emg, journal
) -> LiveView | None:
    """Start the live view for a session and print its address.

    Entered into ``stack`` (the session's parts), so it closes with them,
    after the safe stop has disarmed. A view that cannot start is reported in
    one line and the session goes on without it.
    """
    view = LiveView(
        state,
        console.act,
        marker_stream=markers,
        data_stream=data,
        emg_channel=None if emg is None else emg.channel,
        journal=journal,
    )
    try:
        url = view.start()
    except ViewUnavailable as exc:
        say(f"view: not available ({exc})")
        state.warn(f"live view not available: {exc}")
        return None
    stack.enter_context(view)
    say(f"view: {url}")
    return view


def state_dict(state) -> dict:
    """A plain, picklable copy of a console state, with its times resolved."""
    snap = state.snapshot()
    now = pylsl.local_clock()
    next_event, label = snap.next_event, snap.next_event_label
    if callable(next_event):
        next_event = next_event()
    if next_event is None and snap.current_block is not None and snap.block_started:
        block = next((b for b in snap.blocks if b.index == snap.current_block), None)
        if block is not None:
            next_event = snap.block_started + block.duration_s
            label = "block ends (planned)"
    return {
        "now": now,
        "protocol": snap.protocol,
        "participant": snap.participant,
        "session": snap.session,
        "run": snap.run,
        "status": snap.status,
        "blocks": [
            {
                "index": b.index,
                "type": b.type,
                "label": b.label,
                "duration_s": b.duration_s,
                "pulses": b.pulses,
            }
            for b in snap.blocks
        ],
        "current_block": snap.current_block,
        "block_started": snap.block_started,
        "next_event": next_event,
        "next_event_label": label,
        "completed": snap.completed,
        "skipped": snap.skipped,
        "pulses_delivered": snap.pulses_delivered,
        "pulses_planned": snap.pulses_planned,
        "markers_sent": snap.markers_sent,
        "device": dict(snap.device),
        "streams": [dataclasses.asdict(s) for s in snap.streams],
        "task": None if snap.task is None else dataclasses.asdict(snap.task),
        "hunt": snap.hunt,
        "warnings": snap.warnings[-10:],
        "pending_confirmation": snap.pending_confirmation,
    }
