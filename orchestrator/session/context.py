"""What a block executor is given: the session's open parts, in one record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from psychopy.visual import Window

    from ..language.rig import EegSource
    from .console import ConsoleState
    from .control import SessionControl
    from .device_process import DeviceProcess
    from .emg_reader import EMGReader
    from .journal import Journal
    from .ledger import PulseLedger
    from .markers import MarkerOutlet
    from .simoperator import SimulatedOperator


@dataclass(kw_only=True)
class BlockContext:
    """The open parts of a running session that every block executor uses.

    Attributes
    ----------
    win : psychopy.visual.Window
        The participant's window.
    control : SessionControl
        Stop, pause, skip and hold (:mod:`.control`).
    device : DeviceProcess
        The process that owns the stimulator's port.
    ledger : PulseLedger
        What the threads share about delivered pulses.
    journal : Journal
        The run's journal.
    markers : MarkerOutlet
        The run's LSL marker outlet.
    state : ConsoleState
        What the operator console shows.
    say : callable
        Progress lines for the operator.
    confirm : callable
        ``confirm(question) -> bool`` asks the operator.
    simulated_rig : bool
        Nobody sits at a simulated rig: operator waits confirm themselves.
    simulated_participant : bool
        The simulated participant plays the tasks.
    levels_path : Path
        The participant's task levels, carried over between sessions.
    trials_file : callable
        ``trials_file(block, task) -> Path`` of a task block's trials TSV.
    n_blocks : int
        Blocks in the plan (for progress lines).
    run_file : callable
        ``run_file(name) -> Path`` of one of this run's files.
    emg : EMGReader | None
        The rig's EMG channel, read live (protocols with threshold or
        hotspot blocks).
    operator : SimulatedOperator | None
        On the simulated rig: who moves the coil and labels sites.
    task_levels : dict
        Task → level reached in this run (filled by the task blocks).
    eeg : EegSource | None
        The rig's EEG as this run reads it (its stream's actual name on the
        simulated rig), for triggered blocks.
    phase_offset : dict
        What the last ``phase_calibration`` block measured (``offset_deg``
        …), for triggered blocks with ``phase_offset: calibrated``.
    thresholds_carried : dict
        The motor thresholds a thresholds file written in this run keeps
        besides what its block measured (``rmt``, ``amt``, ``measured``,
        ``method``): those in use at the start, then the last measured.
    phase_carried : dict
        The ``phase_offset`` and ``phase_calibration`` a thresholds file
        written in this run keeps (from this run's calibration).
    """

    win: Window
    control: SessionControl
    device: DeviceProcess
    ledger: PulseLedger
    journal: Journal
    markers: MarkerOutlet
    state: ConsoleState
    say: Callable[[str], None]
    confirm: Callable[[str], bool]
    simulated_rig: bool
    simulated_participant: bool
    levels_path: Path
    trials_file: Callable[[int, str], Path]
    n_blocks: int
    run_file: Callable[[str], Path]
    emg: EMGReader | None = None
    operator: SimulatedOperator | None = None
    task_levels: dict[str, float] = field(default_factory=dict)
    eeg: EegSource | None = None
    phase_offset: dict | None = None
    thresholds_carried: dict = field(default_factory=dict)
    phase_carried: dict = field(default_factory=dict)
