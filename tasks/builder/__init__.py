"""PsychoPy Builder experiments (``.psyexp``) as stimtrain task blocks.

:func:`read_experiment` loads and checks an experiment with PsychoPy's own
Builder model; :func:`run_builder_block` runs it with PsychoPy's
:class:`~psychopy.session.Session` in the session's window, with flip-stamped
component markers, key responses, a trials TSV written as it runs, the
operator's pause and stop between loop iterations, and the simulated
participant at its keyboard. PsychoPy is imported only when an experiment is
read or run.
"""

from .experiment import BuilderError, BuilderExperiment, Component, read_experiment
from .hooks import ComponentEvent
from .run import BuilderBlockResult, check_runnable, run_builder_block

__all__ = [
    "BuilderBlockResult",
    "BuilderError",
    "BuilderExperiment",
    "Component",
    "ComponentEvent",
    "check_runnable",
    "read_experiment",
    "run_builder_block",
]
