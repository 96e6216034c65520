"""PsychoPy training tasks on one small task API, and a simulated participant.

Importing this package is cheap and needs no display: PsychoPy is imported
only when a window is opened or stimuli are built, and the runner (which
imports pylsl) is loaded on first use of :func:`run_task_block`,
:func:`show_text` or :func:`show_fixation`.
"""

from .adaptive import Adaptation
from .api import Task, Trial, TrialResult, TrialTiming
from .block import TaskBlockResult
from .display import DisplayError, open_window, virtual_display
from .levels import load_levels, record_level, save_levels
from .params import TaskParamError
from .participant import SimulatedParticipant
from .registry import TASKS, get_task, import_task_modules, task_names
from .simulate import simulate_block

import_task_modules()

_RUNNER_NAMES = ("run_task_block", "show_text", "show_fixation")

__all__ = [
    "TASKS",
    "Adaptation",
    "DisplayError",
    "SimulatedParticipant",
    "Task",
    "TaskBlockResult",
    "TaskParamError",
    "Trial",
    "TrialResult",
    "TrialTiming",
    "get_task",
    "load_levels",
    "open_window",
    "record_level",
    "save_levels",
    "simulate_block",
    "task_names",
    "virtual_display",
    *_RUNNER_NAMES,
]


def __getattr__(name: str):
    # The runner imports pylsl, which should not load before the caller has
    # configured LSL (LSLAPICFG); so it is imported on first use.
    if name in _RUNNER_NAMES:
        from . import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
