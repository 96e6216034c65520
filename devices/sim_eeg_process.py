"""The simulated EEG amplifier in a process of its own.

A simulated rig's serial readers stamp each pulse the moment its bytes arrive;
in one process with the EEG's rendering thread they would wait for the
interpreter lock whenever a chunk is being rendered (measured on two cores
with a task rendering: pulses stamped up to 1.5 ms late). Here the amplifier
renders in its own process with normal scheduling, and the readers pass each
pulse to it through a pipe. The amplifier holds its samples back by its
latency (50 ms), so a pulse that arrives a little after it happened is still
drawn at its own time.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
from multiprocessing.connection import wait

from stimtrain.lifetime import die_with_parent

from .realtime import normal_scheduling

logger = logging.getLogger("stimtrain.devices.sim_eeg_process")


def _amplifier_main(
    name: str,
    emg_channels: list[str],
    conn,
    participant: dict | None = None,
    activity: tuple[float, float, float] | None = None,
    mu: dict | None = None,
) -> None:
    normal_scheduling()
    # The rig killed outright must not leave an EEG stream behind.
    die_with_parent()
    from .sim_eeg import SimulatedEEG

    motor = None
    if participant is not None:
        from .sim_mep import simulated_participant

        motor = simulated_participant(**participant)
    eeg = SimulatedEEG(
        name=name, emg_channels=emg_channels, motor=motor, **(mu or {})
    ).start()
    if activity is not None:
        _schedule_activity(eeg, *activity)
    conn.send(("ready",))
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            if msg[0] == "pulse":
                eeg.add_pulse(msg[1], msg[2], late_read=msg[3])
            elif msg[0] == "dropout":
                eeg.add_dropout(msg[1], msg[2])
            elif msg[0] == "coil":
                eeg.move_coil(msg[1])
            else:
                break
    finally:
        eeg.stop()


def _schedule_activity(eeg, every: float, duration: float, uv: float) -> None:
    """A participant who does not relax: ``duration`` s of EMG every ``every`` s
    for the next hour, the first half a period from now."""
    import pylsl

    now = pylsl.local_clock()
    for k in range(int(3600 / every)):
        eeg.add_activity(now + (k + 0.5) * every, duration, uv)


def mu_options(
    snr_db: float | None, delay: float = 0.0, log: str | None = None
) -> dict | None:
    """The simulated EEG's settings for a mu rhythm and an amplifier delay.

    Parameters
    ----------
    snr_db : float | None
        In-band SNR of the mu rhythm at the C3 Hjorth output; None: no rhythm.
    delay : float
        How old the samples are when they arrive (stamped on arrival), s.
        It is also the hold-back, so below the time a pulse takes to reach
        the simulated amplifier (a few ms) its artifact is drawn only from
        where it arrived.
    log : str | None
        File for each pulse's true mu phase (JSON lines).

    Returns
    -------
    dict | None
        Keyword arguments of :class:`~stimtrain.devices.sim_eeg.SimulatedEEG`;
        None when there is neither a rhythm nor a delay.
    """
    if snr_db is None and not delay:
        return None
    if not 0 <= delay <= 1:
        raise ValueError(f"the EEG delay must be within 0-1 s, got {delay}")
    return {
        "mu_snr_db": snr_db,
        "stamp_delay": delay,
        "latency": delay if snr_db is not None else max(delay, 0.05),
        "mu_log": log,
    }


class EEGProcess:
    """A :class:`~stimtrain.devices.sim_eeg.SimulatedEEG` in a child process.

    Parameters
    ----------
    name : str
        LSL name of the stream.
    emg_channels : list of str
        EMG channels after the EEG channels (MEPs are drawn into them).
    participant : dict | None
        Keyword arguments of
        :func:`~stimtrain.devices.sim_mep.simulated_participant` (``rmt``,
        ``seed``): the motor system MEPs are drawn from.
    activity : tuple of float | None
        ``(every, duration, uv)``: voluntary EMG bursts (pre-activation).
    mu : dict | None
        A mu rhythm with known phase: keyword arguments of
        :class:`~stimtrain.devices.sim_eeg.SimulatedEEG` (``mu_snr_db``,
        ``stamp_delay``, ``latency``, ``mu_log``); see :func:`mu_options`.
    """

    def __init__(
        self,
        name: str,
        emg_channels: list[str] | None = None,
        *,
        participant: dict | None = None,
        activity: tuple[float, float, float] | None = None,
        mu: dict | None = None,
    ) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_amplifier_main,
            args=(name, list(emg_channels or []), child, participant, activity, mu),
            name="stimtrain-sim-eeg",
            daemon=True,
        )
        self._child = child
        self._stopping = False

    def start(self, timeout: float = 30.0) -> EEGProcess:
        """Start the process; return once its stream is open."""
        self._proc.start()
        self._child.close()
        if not self._conn.poll(timeout):
            self._proc.kill()
            raise RuntimeError(f"simulated EEG did not start within {timeout:g} s")
        self._conn.recv()
        threading.Thread(target=self._watch, name="sim-eeg-watch", daemon=True).start()
        return self

    def _watch(self) -> None:
        # An amplifier that dies is a rig fault to rehearse, but the simulated
        # one must not die unnoticed: say so where the rig's output goes. The
        # sentinel is waited on, not the process: only stop() reaps it.
        wait([self._proc.sentinel])
        if not self._stopping:
            logger.error(
                "simulated EEG process ended (exit code %s); its stream is gone",
                self._proc.exitcode,
            )

    def add_pulse(self, time: float, power: int, *, late_read: bool = False) -> None:
        """Draw a pulse at clock time ``time`` with ``power`` (%MSO).

        ``late_read``: the edge was read late, ``time`` is an upper bound.
        """
        self._send(("pulse", time, power, late_read))

    def move_coil(self, distance_mm: float) -> None:
        """Put the coil ``distance_mm`` from the simulated hotspot."""
        self._send(("coil", float(distance_mm)))

    def add_dropout(self, start: float, duration: float) -> None:
        """Send nothing from clock time ``start`` for ``duration`` seconds."""
        self._send(("dropout", start, duration))

    def _send(self, msg: tuple) -> None:
        try:
            self._conn.send(msg)
        except (OSError, BrokenPipeError):
            logger.warning("simulated EEG process is gone; %s not drawn", msg[0])

    def stop(self, timeout: float = 2.0) -> None:
        """End the stream and the process (idempotent).

        The amplifier is simply switched off (SIGTERM): its stream vanishes,
        and a rig that is shutting down never waits for it to finish a chunk.
        """
        self._stopping = True
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(timeout)
        self._conn.close()
