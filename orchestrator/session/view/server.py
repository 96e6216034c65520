"""The live view's process: reads the session's streams, serves the page.

It runs apart from the runner and the device process, so that nothing it does
(a slow browser, a large frame, a crash) can move a pulse. It reads the
session's marker stream and the EEG/EMG stream over LSL with its own inlets,
tails the journal file, and gets the runner's console state from a queue; it
sends operator actions back on another queue, which the runner journals and
acts on at its own safe points.

Every path is under ``/<token>/``: a request without the token gets 403 and
reaches nothing. The server listens on the loopback address only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import secrets
import socket as socket_module
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ....vocabulary import decode_marker
from .model import Channels, ViewModel

logger = logging.getLogger("stimtrain.orchestrator.session.view.server")

STATIC = Path(__file__).parent / "static"
#: Frames per second a page gets at most (the issue asks for within 1 s).
FRAME_S = 0.2
#: Operator actions a page may ask for.
ACTIONS = ("pause", "resume", "skip", "abort")


@dataclass(frozen=True)
class ViewConfig:
    """What the view process needs: all of it picklable (spawned process)."""

    token: str
    marker_stream: str
    data_stream: str | None
    emg_channel: str | None
    journal: str
    host: str = "127.0.0.1"
    port: int = 0
    stream_timeout_s: float = 10.0


def plotly_js() -> Path:
    """The plotting library's browser bundle, as installed with its package."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def serve(config: ViewConfig, states, controls, ready, stop) -> None:
    """The view process's main function.

    Parameters
    ----------
    config : ViewConfig
        Streams, journal, token, address.
    states : multiprocessing.Queue
        The runner's console state dicts (newest wins).
    controls : multiprocessing.Queue
        Where page actions go: ``{"action": …, "block": …}``.
    ready : multiprocessing.connection.Connection
        Gets ``("ready", port)`` once the inlets are open and the server
        listens, or ``("failed", reason)``.
    stop : multiprocessing.Event
        Set by the runner when the view must end.
    """
    try:
        source = _Source(config)
    except Exception as exc:  # noqa: BLE001 - reported to the runner, not raised
        ready.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    lock = threading.Lock()
    model = ViewModel(source.channels)
    reader = threading.Thread(
        target=source.run, args=(model, lock, states, stop), daemon=True
    )
    reader.start()
    try:
        asyncio.run(_serve_pages(config, model, lock, controls, ready, stop))
    except Exception as exc:  # noqa: BLE001 - the session goes on without a view
        logger.exception("live view server")
        try:
            ready.send(("failed", f"{type(exc).__name__}: {exc}"))
        except OSError:
            pass
    finally:
        stop.set()
        reader.join(timeout=2)


class _Source:
    """The view's inputs: LSL inlets, the journal file and the state queue."""

    def __init__(self, config: ViewConfig) -> None:
        import pylsl

        self.pylsl = pylsl
        self.journal = Path(config.journal)
        self.parent = os.getppid()
        flags = pylsl.proc_clocksync | pylsl.proc_monotonize
        self.markers = self._inlet(config.marker_stream, config, flags)
        self.data = None
        self.channels = None
        if config.data_stream:
            self.data = self._inlet(config.data_stream, config, flags)
            self.channels = _channels(self.data.info(), config.emg_channel)

    def _inlet(self, name: str, config: ViewConfig, flags: int):
        found = self.pylsl.resolve_byprop("name", name, 1, config.stream_timeout_s)
        if not found:
            raise RuntimeError(f"LSL stream {name!r} not found")
        inlet = self.pylsl.StreamInlet(found[0], max_buflen=30, processing_flags=flags)
        # Open now: the runner's first marker must not come before the view
        # listens (an inlet gets only what is pushed after it connects).
        inlet.open_stream(timeout=config.stream_timeout_s)
        return inlet

    def run(self, model: ViewModel, lock: threading.Lock, states, stop) -> None:
        position, next_journal = 0, 0.0
        while not stop.is_set():
            if os.getppid() != self.parent:
                stop.set()  # the runner is gone
                break
            markers, marker_times = self.markers.pull_chunk(timeout=0.0)
            samples = times = None
            if self.data is not None:
                samples, times = self.data.pull_chunk(timeout=0.02, max_samples=4096)
            else:
                time.sleep(0.02)
            state = _newest(states)
            lines = []
            if time.monotonic() >= next_journal:
                next_journal = time.monotonic() + 0.25
                lines, position = _tail(self.journal, position)
            with lock:
                for (text, *_), stamp in zip(markers, marker_times, strict=False):
                    model.on_marker(decode_marker(text), stamp)
                if times:
                    model.on_samples(np.asarray(samples, np.float32), np.asarray(times))
                if state is not None:
                    model.on_state(state)
                for line in lines:
                    model.on_journal(line)


def _channels(info, emg_channel: str | None) -> Channels:
    labels, types = [], []
    channel = info.desc().child("channels").child("channel")
    while not channel.empty() and len(labels) < info.channel_count():
        labels.append(channel.child_value("label"))
        types.append(channel.child_value("type"))
        channel = channel.next_sibling()
    if len(labels) != info.channel_count():
        labels = [f"ch{i + 1}" for i in range(info.channel_count())]
        types = ["EEG"] * info.channel_count()
    emg = labels.index(emg_channel) if emg_channel in labels else None
    return Channels(labels, types, info.nominal_srate(), emg)


def _newest(states):
    state = None
    while True:
        try:
            state = states.get_nowait()
        except queue.Empty:
            return state


def _tail(path: Path, position: int) -> tuple[list[str], int]:
    """Whole new lines of ``path`` after byte ``position``."""
    try:
        with open(path, "rb") as f:
            f.seek(position)
            data = f.read(1 << 20)
    except OSError:
        return [], position
    end = data.rfind(b"\n") + 1
    lines = data[:end].decode("utf-8", "replace").splitlines()
    return lines, position + end


async def _serve_pages(config, model, lock, controls, ready, stop) -> None:
    from aiohttp import WSMsgType, web

    token = config.token
    pages = {
        "": (STATIC / "index.html", "text/html"),
        "view.js": (STATIC / "view.js", "text/javascript"),
        "view.css": (STATIC / "view.css", "text/css"),
        "plotly.min.js": (plotly_js(), "text/javascript"),
    }

    @web.middleware
    async def need_token(request, handler):
        given = request.match_info.get("token", "")
        if not secrets.compare_digest(given.encode(), token.encode()):
            return web.Response(status=403, text="forbidden\n")
        return await handler(request)

    async def page(request):
        name = request.match_info.get("name", "")
        if name not in pages:
            return web.Response(status=404, text="not found\n")
        path, kind = pages[name]
        return web.FileResponse(path, headers={"Content-Type": kind})

    async def socket(request):
        ws = web.WebSocketResponse(heartbeat=5.0)
        await ws.prepare(request)
        seen: dict = {}
        reader = asyncio.create_task(_drain(ws, WSMsgType))
        try:
            while not ws.closed and not stop.is_set():
                with lock:
                    changed = model.changed_since(seen)
                    text = _json(changed) if changed else None
                if text is not None:
                    await ws.send_str(text)
                await asyncio.sleep(FRAME_S)
        except (ConnectionError, RuntimeError):
            pass  # the page went away
        finally:
            reader.cancel()
        return ws

    async def control(request):
        try:
            body = await request.json()
            action = body["action"]
            block = body.get("block")
            if action not in ACTIONS or not (block is None or isinstance(block, int)):
                raise ValueError(action)
        except (ValueError, KeyError, TypeError, json.JSONDecodeError):
            return web.json_response(
                {"error": f"action must be one of {list(ACTIONS)}"}, status=400
            )
        controls.put({"action": action, "block": block})
        return web.json_response({"sent": action})

    app = web.Application(middlewares=[need_token])
    app.router.add_get("/{token}/ws", socket)
    app.router.add_post("/{token}/control", control)
    app.router.add_get("/{token}/{name:.*}", page)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    # Our own socket: its port is known before the first page asks for it.
    sock = socket_module.socket(socket_module.AF_INET, socket_module.SOCK_STREAM)
    sock.bind((config.host, config.port))
    await web.SockSite(runner, sock).start()
    ready.send(("ready", sock.getsockname()[1]))
    while not stop.is_set():
        await asyncio.sleep(0.1)
    await runner.cleanup()


def _json(value) -> str:
    """JSON a browser can parse: a NaN or infinity anywhere becomes null."""
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), allow_nan=False)


def _finite(value):
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


async def _drain(ws, kinds) -> None:
    """Read (and drop) what a page sends, so pings and closes are handled."""
    async for message in ws:
        if message.type in (kinds.ERROR, kinds.CLOSE):
            break
