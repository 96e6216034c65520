"""A whole simulated rig: stimulator, trigger box wired to it, optional EEG.

Also the ``serve`` entry point behind ``stimtrain sim NAME``, which runs one
simulator in the foreground and prints the port(s) to open.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from typing import IO

from pylsl import local_clock

from .faults import FaultPlan
from .magstim.simulator import MagstimSimulator, Pulse
from .realtime import tune_simulated_hardware
from .sim_triggerbox import TriggerBoxSimulator

logger = logging.getLogger("stimtrain.devices.sim_rig")

#: Device names accepted by :func:`serve`, and the Magstim model each means.
SERVE_DEVICES: dict[str, str | None] = {
    "magstim-rapid2": "rapid2",
    "magstim-200": "200",
    "magstim-bistim": "bistim",
    "magstim-super-rapid2": "super_rapid2",
    "magstim-super-rapid2-plus": "super_rapid2_plus",
    "magventure-r30": "magpro_r30",
    "magventure-r30-magoption": "magpro_r30_magoption",
    "magventure-x100": "magpro_x100",
    "magventure-x100-magoption": "magpro_x100_magoption",
    "triggerbox": None,
    # A Super Rapid² runs theta burst at usual intensities; a Rapid² only at
    # or below 30 % power (50 Hz column), so the default rig is the former.
    "rig": "super_rapid2",
}


def make_stimulator_simulator(model: str, **kwargs: object):
    """The simulator of a registered model key (Magstim or MagVenture)."""
    if model.startswith("magpro"):
        from .magventure.simulator import MagVentureSimulator

        return MagVentureSimulator(model, **kwargs)
    return MagstimSimulator(model, **kwargs)


class SimulatedRig:
    """A simulated stimulator whose trigger input is driven by a trigger box.

    Line 0 of the simulated trigger box is wired to the stimulator's trigger
    input. With ``eeg=True`` a :class:`~stimtrain.devices.sim_eeg.SimulatedEEG`
    LSL stream also runs and receives every delivered pulse.

    Parameters
    ----------
    model : str
        Magstim model name.
    eeg : bool
        Also start the simulated EEG amplifier.
    charge_time : float
        Seconds from arming to ready.
    eeg_name : str
        LSL name of the simulated EEG stream.
    faults : FaultPlan | None
        Faults the stimulator simulator injects.
    participant : dict | None
        The simulated participant's motor system
        (:func:`~stimtrain.devices.sim_mep.simulated_participant` arguments:
        ``rmt``, ``seed``); None draws MEPs from a fixed curve.
    activity : tuple of float | None
        ``(every, duration, uv)``: the participant does not relax now and then.
    mu : dict | None
        A mu rhythm and amplifier delay for the EEG
        (:func:`~stimtrain.devices.sim_eeg_process.mu_options`).
    eeg_process : bool
        Run the EEG in a process of its own
        (:class:`~stimtrain.devices.sim_eeg_process.EEGProcess`), as a served
        rig does; False keeps it in this process, where :attr:`eeg` can be
        inspected.
    **stimulator_kwargs
        Passed on to :class:`MagstimSimulator`.
    """

    def __init__(
        self,
        model: str = "rapid2",
        *,
        eeg: bool = True,
        charge_time: float = 0.3,
        eeg_name: str = "stimtrain-sim-eeg",
        faults: FaultPlan | None = None,
        eeg_process: bool = False,
        participant: dict | None = None,
        activity: tuple[float, float, float] | None = None,
        mu: dict | None = None,
        **stimulator_kwargs: object,
    ) -> None:
        self.eeg_name = eeg_name
        self._mu = mu
        self._participant = participant
        self._activity = activity
        self.stimulator = make_stimulator_simulator(
            model, charge_time=charge_time, faults=faults, **stimulator_kwargs
        )
        self.triggerbox = TriggerBoxSimulator(self._on_edge)
        self._want_eeg = eeg
        self._eeg_process = eeg_process
        self.eeg = None

    def _on_edge(self, rising: int, t: float) -> None:
        if rising & 0x01:
            if isinstance(self.stimulator, MagstimSimulator):
                # An edge read late has no exact time: the stimulator must not
                # judge its spacing (nor the next edge's) by it.
                self.stimulator.trigger(t, late_read=self.triggerbox.edge_read_late)
            else:
                self.stimulator.trigger(t)

    @property
    def stimulator_port(self) -> str | None:
        """Serial port of the stimulator."""
        return self.stimulator.port

    @property
    def trigger_port(self) -> str | None:
        """Serial port of the trigger box."""
        return self.triggerbox.port

    @property
    def pulses(self) -> list[Pulse]:
        """Every pulse the stimulator delivered."""
        return self.stimulator.pulses

    def start_eeg(self) -> None:
        """Start the EEG (if wanted and not yet started).

        Separate from :meth:`start` so that a served rig starts its EEG
        process before it raises its own priority (which children inherit).
        """
        if not self._want_eeg or self.eeg is not None:
            return
        # An FDI channel carries MEPs, so a simulated session also exercises
        # the MEP analysis. Imported lazily: the EEG pulls in numpy and LSL.
        if self._eeg_process:
            from .sim_eeg_process import EEGProcess

            self.eeg = EEGProcess(
                self.eeg_name,
                emg_channels=["FDI"],
                participant=self._participant,
                activity=self._activity,
                mu=self._mu,
            ).start()
        else:
            from .sim_eeg import SimulatedEEG
            from .sim_eeg_process import _schedule_activity

            motor = None
            if self._participant is not None:
                from .sim_mep import simulated_participant

                motor = simulated_participant(**self._participant)
            self.eeg = SimulatedEEG(
                name=self.eeg_name,
                emg_channels=["FDI"],
                motor=motor,
                **(self._mu or {}),
            ).start()
            if self._activity is not None:
                _schedule_activity(self.eeg, *self._activity)
        eeg = self.eeg
        self.stimulator.add_pulse_listener(
            lambda p: eeg.add_pulse(p.time, p.power, late_read=p.late_read)
        )

    def move_coil(self, distance_mm: float) -> None:
        """The operator moved the coil: ``distance_mm`` from the hotspot."""
        if self.eeg is not None:
            self.eeg.move_coil(distance_mm)

    def start(self) -> SimulatedRig:
        """Start every simulator; return self."""
        self.start_eeg()
        self.stimulator.start()
        self.triggerbox.start()
        return self

    def stop(self) -> None:
        """Stop every simulator (idempotent)."""
        self.triggerbox.stop()
        self.stimulator.stop()
        if self.eeg is not None:
            self.eeg.stop()
            self.eeg = None

    def __enter__(self) -> SimulatedRig:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _check_stream(name: str, timeout: float = 10.0) -> None:
    """Announce the rig only once its EEG stream can be found; say if not."""
    from pylsl import resolve_byprop

    if not resolve_byprop("name", name, 1, timeout):
        logger.error("simulated EEG stream %r cannot be found over LSL", name)


def _read_commands(commands: IO[str], rig: SimulatedRig) -> None:
    """Apply ``coil <mm>`` lines to the rig; anything else is logged and ignored."""
    for line in commands:
        word, _, value = line.strip().partition(" ")
        try:
            if word == "coil":
                rig.move_coil(float(value))
                continue
        except ValueError:
            pass
        if line.strip():
            logger.warning("simulated rig: unknown command %r", line.strip())


def _hardware_priority() -> None:
    # A short switch interval keeps a serial reader from waiting up to 5 ms
    # for the interpreter lock (the pulse log's writes, the main thread).
    sys.setswitchinterval(1e-4)
    tune_simulated_hardware()


def serve(
    device: str,
    out: IO[str] = sys.stdout,
    pulse_log: str | None = None,
    *,
    model: str | None = None,
    faults: FaultPlan | str | None = None,
    eeg_name: str | None = None,
    stop_event: threading.Event | None = None,
    eeg_dropout: tuple[float, float] | None = None,
    participant: dict | None = None,
    activity: tuple[float, float, float] | None = None,
    commands: IO[str] | None = None,
    mu: dict | None = None,
) -> None:
    """Run one simulated device until interrupted.

    Prints ``port: <path>`` as the first line (for ``"rig"``, the
    stimulator's port, then ``trigger_port: <path>``) and flushes, then
    serves until KeyboardInterrupt, SIGTERM or ``stop_event``.

    Parameters
    ----------
    device : str
        One of :data:`SERVE_DEVICES`.
    out : file
        Where the port lines go.
    pulse_log : str | None
        If given, every delivered pulse is appended to this file as a JSON
        line ``{"time": …, "power": …, "source": …}``, flushed per line.
    model : str | None
        Magstim model key (``"200"``, ``"bistim"``, ``"rapid2"``,
        ``"super_rapid2"``, ``"super_rapid2_plus"``) of the ``"rig"``
        (default: a Super Rapid²); for a ``"magstim-…"`` device it must agree
        with the device name.
    faults : FaultPlan | str | None
        Faults the stimulator simulator injects, as a plan or as the
        ``--faults`` text (``"drop_every=5,late_s=0.3"``).
    eeg_name : str | None
        For ``"rig"``: also stream the simulated EEG under this LSL name.
    stop_event : threading.Event | None
        Serve until this is set (for embedding and tests).
    eeg_dropout : tuple of float | None
        For ``"rig"``: ``(start, duration)`` in seconds after start, a window
        in which the simulated EEG sends nothing (a stream-loss rehearsal).
    participant : dict | None
        For ``"rig"``: the simulated participant's motor system (``rmt``,
        ``seed``), see :class:`SimulatedRig`.
    activity : tuple of float | None
        For ``"rig"``: voluntary EMG bursts ``(every, duration, uv)``.
    commands : file | None
        For ``"rig"``: lines ``coil <mm>`` move the coil (the simulated
        operator's hand), read until the file ends.
    mu : dict | None
        For ``"rig"``: a mu rhythm with known phase and an amplifier delay
        (:func:`~stimtrain.devices.sim_eeg_process.mu_options`).
    """
    if device not in SERVE_DEVICES:
        raise ValueError(
            f"unknown device {device!r}; expected one of {list(SERVE_DEVICES)}"
        )
    default_model = SERVE_DEVICES[device]
    if model is not None and device not in ("rig", "triggerbox"):
        if model != default_model:
            raise ValueError(
                f"model {model!r} contradicts device {device!r} "
                f"(which is a {default_model!r})"
            )
    if model is not None:
        from .stimulator import get_capabilities

        get_capabilities(model)  # a clear error for an unknown key, before starting
    if isinstance(faults, str):
        faults = FaultPlan.parse(faults)
    stop = stop_event or threading.Event()
    if pulse_log and os.path.exists(pulse_log) and not os.path.isfile(pulse_log):
        # A FIFO would block the open until a reader came.
        raise ValueError(f"{pulse_log}: the pulse log must be a regular file")
    log_file = open(pulse_log, "a", encoding="utf-8") if pulse_log else None  # noqa: SIM115
    log_lock = threading.Lock()

    def record(pulse: Pulse) -> None:
        row = {"time": pulse.time, "power": pulse.power, "source": pulse.source}
        if pulse.late_read:
            # Its time is an upper bound: the trigger edge was read late.
            row["late_read"] = True
        line = json.dumps(row)
        with log_lock:
            log_file.write(line + "\n")
            log_file.flush()

    if device == "triggerbox":
        server = TriggerBoxSimulator(
            lambda mask, t: logger.info("edge %#04x at %.6f", mask, t)
        )
        stimulator = None
    elif device == "rig":
        server = SimulatedRig(
            model or default_model,
            eeg=eeg_name is not None,
            eeg_name=eeg_name or "stimtrain-sim-eeg",
            faults=faults,
            eeg_process=True,
            participant=participant,
            activity=activity,
            mu=mu,
        )
        stimulator = server.stimulator
        # Before this process raises its priority, which children inherit.
        server.start_eeg()
        if eeg_name is not None:
            _check_stream(eeg_name)
    else:
        server = make_stimulator_simulator(default_model, faults=faults)
        stimulator = server
    _hardware_priority()
    port = server.start()
    if device == "rig":
        if eeg_dropout is not None and server.eeg is not None:
            start, duration = eeg_dropout
            server.eeg.add_dropout(local_clock() + start, duration)
        lines = [
            f"port: {server.stimulator_port}",
            f"trigger_port: {server.trigger_port}",
        ]
    else:
        lines = [f"port: {port}"]
    if stimulator is not None and log_file is not None:
        stimulator.add_pulse_listener(record)
    if device == "rig" and commands is not None:
        threading.Thread(
            target=_read_commands, args=(commands, server), daemon=True
        ).start()

    # The handler only appends to a list: setting ``stop`` there could deadlock
    # with the main thread inside ``stop.wait`` holding the event's lock (a rig
    # once stayed up after its runner was killed).
    terminated: list[int] = []
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: terminated.append(1))
    try:
        out.write("\n".join(lines) + "\n")
        out.flush()
        while not terminated and not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if log_file is not None:
            log_file.close()
