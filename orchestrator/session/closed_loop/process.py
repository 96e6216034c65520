"""The trigger process: reads the EEG over LSL, hands over pulse deadlines.

Phase estimation runs in a process of its own (spawned, not the PsychoPy
process, so rendering and its interpreter lock never delay it). It pulls
the rig's EEG stream with pylsl, combines the montage's channels, and after
every chunk asks :class:`~.trigger.PhaseTrigger` for a deadline. The latency
of each decision (the newest chunk pulled -> the deadline sent) is measured
every time; a deadline whose latency exceeds the rig's bound is not handed
over, and the reason goes back instead (after NeuroSimo, which refuses to
stimulate above 5 ms). The session side, :class:`TriggerProcess`, receives
the deadlines on a reader thread and passes them to a callback (which gives
them to the device process: it keeps owning the port and the timing).
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .montage import Montage
from .trigger import NOT_FINITE, PhaseTrigger, TriggerSettings

logger = logging.getLogger("stimtrain.orchestrator.session.closed_loop.process")

#: The interpreter's switch interval while a trigger process runs, s.
SWITCH_INTERVAL_S = 0.0005

#: A jump between two chunks' stamps longer than this is a gap in the data
#: (samples lost), not the jitter of a chunk's stamps, s.
GAP_S = 0.05


@dataclass(frozen=True)
class TriggerConfig:
    """What the trigger process needs.

    Parameters
    ----------
    stream : str
        LSL name of the rig's EEG stream.
    montage : Montage
        Channels and weights.
    settings : TriggerSettings
        The block's trigger section (and the rig's amplifier delay).
    latency_bound_s : float
        A decision slower than this gives no pulse, s (the rig's bound).
    resolve_timeout_s : float
        How long to look for the stream, s.
    """

    stream: str
    montage: Montage
    settings: TriggerSettings
    latency_bound_s: float = 0.005
    resolve_timeout_s: float = 10.0


class Handover(NamedTuple):
    """A deadline handed over, with how it was decided."""

    #: Absolute LSL-clock time of the pulse.
    deadline: float
    #: Clock time the chunk with the newest sample was pulled.
    pulled_at: float
    #: Clock time the deadline was sent.
    sent_at: float
    #: The target, degrees (with the participant's offset).
    target_deg: float
    #: The online phase estimate at the decision, degrees.
    online_deg: float
    #: The band power behind the gate.
    power: float


class Refusal(NamedTuple):
    """A pulse that was not given, and why."""

    reason: str
    #: The deadline that would have been handed over (None when none was due).
    deadline: float | None
    #: The decision's latency, s.
    latency: float


def _channel_names(info) -> list[str]:
    names = []
    ch = info.desc().child("channels").child("channel")
    while not ch.empty():
        names.append(ch.child_value("label"))
        ch = ch.next_sibling()
    return names or [f"ch{k + 1}" for k in range(info.channel_count())]


def trigger_main(config: TriggerConfig, conn) -> None:
    """Body of the trigger process (runs until told to stop or the stream ends)."""
    from stimtrain.devices.realtime import tune_trigger_process
    from stimtrain.lifetime import die_with_parent

    die_with_parent()
    tune_trigger_process()
    import pylsl
    from pylsl.util import LostError

    infos = pylsl.resolve_byprop("name", config.stream, 1, config.resolve_timeout_s)
    if not infos:
        conn.send(("error", f"EEG stream {config.stream!r} not found over LSL"))
        return
    inlet = pylsl.StreamInlet(infos[0], max_buflen=2, recover=False)
    # The channel labels are in the full description, which only the
    # inlet fetches (a resolved info has the header only).
    info = inlet.info(timeout=config.resolve_timeout_s)
    names = _channel_names(info)
    try:
        weights = config.montage.vector(names)
    except ValueError as exc:
        conn.send(("error", str(exc)))
        return
    sfreq = info.nominal_srate()
    try:
        trigger = PhaseTrigger(config.settings, sfreq)
    except ValueError as exc:
        conn.send(("error", f"{config.stream}: {exc}"))
        return
    inlet.open_stream(timeout=config.resolve_timeout_s)
    # Same machine: the correction is ~0, but a remote amplifier's is not.
    offset = inlet.time_correction(timeout=2.0)
    n_keep = trigger.n_samples
    buf = np.zeros(2 * n_keep)
    filled = 0
    last_stamp: float | None = None
    latencies: list[float] = []
    held = False
    chunk = np.zeros((int(sfreq) + 1, info.channel_count()), np.float32)
    conn.send(("ready", sfreq, names))
    clock = pylsl.local_clock
    while True:
        if conn.poll():
            msg = conn.recv()
            if msg[0] == "stop":
                break
        try:
            _, stamps = inlet.pull_chunk(
                timeout=0.05, max_samples=len(chunk), dest_obj=chunk
            )
        except LostError:
            conn.send(("error", f"EEG stream {config.stream!r} was lost"))
            break
        if not stamps:
            continue
        pulled_at = clock()
        n = len(stamps)
        new: int | None = n
        if last_stamp is not None and stamps[0] - last_stamp > GAP_S:
            # Samples went missing (a stalled amplifier): a window across
            # the gap would join two stretches as one, so it starts afresh.
            filled = 0
            new = None
        last_stamp = stamps[-1]
        x = chunk[:n].astype(float) @ weights
        if filled + n > len(buf):
            keep = min(filled, n_keep)
            buf[:keep] = buf[filled - keep : filled]
            filled = keep
        if n > len(buf) - filled:
            x = x[-(len(buf) - filled) :]
            n = len(x)
        buf[filled : filled + n] = x
        filled += n
        previous = trigger.last_pulse
        decision = trigger.decide(buf[:filled], stamps[-1] + offset, clock(), new)
        sent_at = clock()
        latency = sent_at - pulled_at
        latencies.append(latency)
        if len(latencies) >= 100:
            conn.send(("latency", latencies))
            latencies = []
        if decision.reason == NOT_FINITE and not held:
            # Once per stretch: the operator hears why no pulse comes.
            conn.send(
                (
                    "refused",
                    Refusal(
                        "EEG samples not finite (NaN) in the trigger's window: "
                        "no pulse until they have passed",
                        None,
                        latency,
                    ),
                )
            )
        held = decision.reason == NOT_FINITE
        if decision.deadline is None:
            continue
        if latency > config.latency_bound_s:
            # Not given: the decision took too long to trust its timing.
            trigger.last_pulse = previous
            conn.send(
                (
                    "refused",
                    Refusal(
                        f"decision latency {latency * 1e3:.1f} ms above the "
                        f"rig's bound of {config.latency_bound_s * 1e3:g} ms",
                        decision.deadline,
                        latency,
                    ),
                )
            )
            continue
        est = decision.estimate
        s = config.settings
        conn.send(
            (
                "deadline",
                Handover(
                    decision.deadline,
                    pulled_at,
                    clock(),
                    s.target_deg + s.phase_offset_deg,
                    math.degrees(est.phase),
                    est.power,
                ),
            )
        )
    if latencies:
        conn.send(("latency", latencies))
    conn.send(("stopped",))


class TriggerProcess:
    """Handle on the trigger process.

    Parameters
    ----------
    config : TriggerConfig
        The stream, montage and trigger settings.
    on_deadline : callable
        Called with each :class:`Handover`, from a reader thread.
    on_refusal : callable
        Called with each :class:`Refusal`, from the reader thread.
    """

    def __init__(
        self,
        config: TriggerConfig,
        *,
        on_deadline: Callable[[Handover], None],
        on_refusal: Callable[[Refusal], None] | None = None,
    ) -> None:
        self.config = config
        self.on_deadline = on_deadline
        self.on_refusal = on_refusal or (lambda refusal: None)
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=trigger_main,
            args=(config, child),
            name="stimtrain-trigger",
            daemon=True,
        )
        self._child = child
        #: Every decision's latency so far (newest chunk pulled -> sent), s.
        self.latencies: list[float] = []
        self.error: str | None = None
        self.sfreq: float | None = None
        self._reader: threading.Thread | None = None
        self._stopped = threading.Event()
        self._switch: float | None = None

    def start(self, timeout: float = 20.0) -> TriggerProcess:
        """Start the process; return once it reads the stream.

        Raises
        ------
        RuntimeError
            When the stream is not found, lacks the montage's channels or
            its rate does not suit the settings (the message says which).
        """
        self._proc.start()
        self._child.close()
        if not self._conn.poll(timeout):
            self._proc.kill()
            raise RuntimeError(f"trigger process did not start within {timeout:g} s")
        msg = self._conn.recv()
        if msg[0] == "error":
            self._proc.join(2)
            raise RuntimeError(msg[1])
        self.sfreq = msg[1]
        # A thread woken by a deadline waits for the interpreter lock until
        # the thread holding it (a task rendering, say) gives it up: at most
        # the switch interval, 5 ms by default, the whole latency bound.
        # While the process runs, it asks for the lock's hand-over within
        # 0.5 ms instead (restored by stop()).
        self._switch = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch, SWITCH_INTERVAL_S))
        self._reader = threading.Thread(
            target=self._read, name="trigger-reader", daemon=True
        )
        self._reader.start()
        return self

    def _read(self) -> None:
        from stimtrain.devices.realtime import tune_handover_thread

        tune_handover_thread()
        while True:
            try:
                msg = self._conn.recv()
            except (EOFError, OSError):
                break
            kind = msg[0]
            if kind == "deadline":
                try:
                    self.on_deadline(msg[1])
                except Exception:  # noqa: BLE001 - the reader must keep reading
                    logger.exception("deadline callback failed")
            elif kind == "refused":
                self.on_refusal(msg[1])
            elif kind == "latency":
                self.latencies.extend(msg[1])
            elif kind == "error":
                self.error = msg[1]
                logger.error("trigger process: %s", msg[1])
            elif kind == "stopped":
                break
        self._stopped.set()

    def stop(self, timeout: float = 3.0) -> None:
        """Stop deciding and end the process (idempotent)."""
        if self._proc.is_alive():
            try:
                self._conn.send(("stop",))
            except (OSError, BrokenPipeError):
                pass
            self._stopped.wait(timeout)
            self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(2)
        self._conn.close()
        if self._switch is not None:
            sys.setswitchinterval(self._switch)
            self._switch = None
