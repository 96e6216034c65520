"""Analysis of recorded stimtrain sessions: XDF to MNE, TEPs, MEPs, reports, BIDS.

Reads only files and the marker vocabulary
(:mod:`stimtrain.vocabulary`). See ``docs/analysis.md``.
"""

from .behaviour import (
    behaviour_table,
    join_pulses,
    learning_curves,
    read_trials,
    recorded_measures,
    session_measures,
    task_measures,
    tms_comparison,
    trial_pulses,
)
from .bids import validate_bids, write_bids, write_bids_run
from .mep import mep_epochs, mep_table
from .peaks import find_peak, peak_table
from .recruitment import RecruitmentFit, boltzmann, fit_recruitment, motor_threshold
from .report import SessionAnalysis, analyze_session, pulse_table, session_analysis
from .session import find_run, find_runs, run_prefix, session_labels
from .study import StudyAnalysis, analyze_study, find_sessions
from .tep import (
    TEP_WINDOWS,
    artifact_alignment,
    detect_artifacts,
    gmfp,
    interpolate_artifact,
    pulse_epochs,
    pulse_events,
    realign_pulses,
    tep,
)
from .tesa import TesaResult, run_tesa
from .xdf import (
    first_lsl_time,
    load_streams,
    read_markers,
    read_raw_xdf,
    timing_diagnostics,
)

__all__ = [
    "TEP_WINDOWS",
    "RecruitmentFit",
    "SessionAnalysis",
    "StudyAnalysis",
    "TesaResult",
    "analyze_session",
    "analyze_study",
    "artifact_alignment",
    "behaviour_table",
    "boltzmann",
    "detect_artifacts",
    "find_peak",
    "find_run",
    "find_runs",
    "find_sessions",
    "first_lsl_time",
    "fit_recruitment",
    "gmfp",
    "interpolate_artifact",
    "join_pulses",
    "learning_curves",
    "load_streams",
    "mep_epochs",
    "mep_table",
    "motor_threshold",
    "peak_table",
    "pulse_epochs",
    "pulse_events",
    "pulse_table",
    "read_markers",
    "read_raw_xdf",
    "read_trials",
    "realign_pulses",
    "run_prefix",
    "run_tesa",
    "session_analysis",
    "session_labels",
    "recorded_measures",
    "session_measures",
    "task_measures",
    "tep",
    "timing_diagnostics",
    "tms_comparison",
    "trial_pulses",
    "validate_bids",
    "write_bids",
    "write_bids_run",
]
