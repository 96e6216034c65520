"""Analysis of recorded stimtrain sessions: XDF to MNE, TEPs, reports.

Reads only files and the marker vocabulary
(:mod:`stimtrain.orchestrator.vocabulary`).
"""

from .report import analyze_session, behaviour_table, find_run, pulse_table
from .tep import (
    TEP_WINDOWS,
    artifact_alignment,
    gmfp,
    interpolate_artifact,
    pulse_epochs,
    pulse_events,
    tep,
)
from .xdf import (
    first_lsl_time,
    load_streams,
    read_markers,
    read_raw_xdf,
    timing_diagnostics,
)

__all__ = [
    "TEP_WINDOWS",
    "analyze_session",
    "artifact_alignment",
    "behaviour_table",
    "find_run",
    "first_lsl_time",
    "gmfp",
    "interpolate_artifact",
    "load_streams",
    "pulse_epochs",
    "pulse_events",
    "pulse_table",
    "read_markers",
    "read_raw_xdf",
    "tep",
    "timing_diagnostics",
]
