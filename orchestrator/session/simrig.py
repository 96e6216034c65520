"""Start the simulated rig in its own process, as a lab would power on its devices.

The simulators run in a separate process (``stimtrain sim rig``) so that the
runner talks to them exactly as to hardware: through serial ports and LSL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from stimtrain.lifetime import die_with_parent


@dataclass
class SimulatedRigProcess:
    """A running ``stimtrain sim rig`` process and the ports it announced."""

    proc: subprocess.Popen
    stimulator_port: str
    trigger_port: str
    eeg_stream: str

    def move_coil(self, distance_mm: float) -> None:
        """The simulated operator moved the coil: ``distance_mm`` from the hotspot."""
        if self.proc.poll() is None and self.proc.stdin is not None:
            self.proc.stdin.write(f"coil {distance_mm:g}\n")
            self.proc.stdin.flush()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the simulators (SIGTERM, then SIGKILL)."""
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(2)


def start_simulated_rig(
    *,
    pulse_log: Path | None = None,
    eeg_stream: str,
    model: str = "super_rapid2",
    faults: str | None = None,
    eeg_dropout: str | None = None,
    participant_rmt: float | None = None,
    participant_seed: int = 0,
    emg_activity: tuple[float, float, float] | None = None,
    mu_snr: str | float | None = None,
    eeg_delay: str | float | None = None,
    timeout: float = 20.0,
) -> SimulatedRigProcess:
    """Start the simulated rig and wait for it to announce its ports.

    Parameters
    ----------
    pulse_log : Path | None
        File where the simulator appends each delivered pulse (JSON lines).
    eeg_stream : str
        Name of the simulated EEG's LSL stream (unique per run).
    model : str
        Stimulator model of the rig (any registered model key).
    faults : str | None
        Faults the stimulator simulator injects (``stimtrain sim --faults``).
    eeg_dropout : str | None
        ``"START,SECONDS"``: the simulated EEG goes silent for a while.
    participant_rmt : float | None
        The simulated participant's true resting motor threshold (%MSO).
    participant_seed : int
        Seed of the simulated participant's variability.
    emg_activity : tuple of float | None
        ``(every, seconds, uv)``: voluntary EMG now and then.
    mu_snr : str | float | None
        A mu rhythm at C3 with this in-band SNR (dB, C3 Hjorth output); its
        true phase at every pulse goes to ``simulator_mu_phase.jsonl`` beside
        ``pulse_log`` (with the pulse log's run prefix). A string is accepted
        so that ``"0"`` survives a filter of empty options.
    eeg_delay : str | float | None
        The simulated amplifier's constant delay, s.
    timeout : float
        Seconds to wait for the ports.
    """
    cmd = [sys.executable, "-m", "stimtrain.cli", "sim", "rig"]
    cmd += ["--eeg-name", eeg_stream, "--model", model]
    if faults:
        cmd += ["--faults", faults]
    if eeg_dropout:
        cmd += ["--eeg-dropout", eeg_dropout]
    if pulse_log is not None:
        cmd += ["--pulse-log", str(pulse_log)]
    if participant_rmt is not None:
        cmd += ["--participant-rmt", f"{participant_rmt:g}"]
        cmd += ["--participant-seed", str(participant_seed)]
    if emg_activity is not None:
        cmd += ["--emg-activity", ",".join(f"{x:g}" for x in emg_activity)]
    if mu_snr is not None:
        cmd += ["--mu-snr", str(mu_snr)]
        if pulse_log is not None:
            # Named like the pulse log (a session's run prefix included), so
            # a second run never appends to the first run's log.
            name = Path(pulse_log).name.replace(
                "simulator_pulses", "simulator_mu_phase"
            )
            if name == Path(pulse_log).name:
                name = "simulator_mu_phase.jsonl"
            mu_log = Path(pulse_log).with_name(name)
            cmd += ["--mu-log", str(mu_log)]
    if eeg_delay is not None:
        cmd += ["--eeg-delay", str(eeg_delay)]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        # The simulated operator's hand: ``coil <mm>`` lines.
        stdin=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
        # A runner killed outright must not leave its simulated rig behind.
        preexec_fn=die_with_parent,
    )
    ports: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while len(ports) < 2 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        key, _, value = line.strip().partition(": ")
        if key in ("port", "trigger_port"):
            ports[key] = value
    if len(ports) < 2:
        proc.kill()
        raise RuntimeError(f"the simulated rig did not start (exit code {proc.poll()})")
    # Keep draining stdout so the simulator never blocks on a full pipe.
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return SimulatedRigProcess(proc, ports["port"], ports["trigger_port"], eeg_stream)
