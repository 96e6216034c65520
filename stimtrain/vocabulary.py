"""The marker vocabulary: the contract between the session runner and the analysis.

Every marker on a session's marker stream is one JSON object with an ``event``
field naming one of :data:`EVENTS`, plus the fields listed for it. Its LSL
timestamp is the clock time of the event itself (for a pulse, when the trigger
left the host; for a stimulus, the flip that showed it). This module holds only
data so that the analysis can import it without importing the runner.
"""

from __future__ import annotations

import json

MARKER_STREAM_TYPE = "Markers"
MARKER_STREAM_PREFIX = "stimtrain-markers"

#: event name -> (required fields, description)
EVENTS: dict[str, tuple[tuple[str, ...], str]] = {
    "session_start": (
        ("participant", "session", "run", "protocol", "protocol_sha256"),
        "the runner is about to start the first block",
    ),
    "block_start": (("block", "type", "label"), "a block begins"),
    "block_end": (("block", "type", "label"), "a block ended (completed or not)"),
    "pulse": (
        ("block", "pulse", "pattern", "intensity", "unit", "power", "scheduled"),
        "a TMS pulse; timestamp = when its trigger left the host; "
        "`scheduled` is the clock time it was planned for, `power` the %MSO sent",
    ),
    "stim_onset": (
        ("block", "task", "trial", "condition"),
        "a task stimulus; timestamp = the flip that showed it",
    ),
    "response": (
        ("block", "task", "trial", "key", "rt", "correct"),
        "a response; timestamp = key-down time, `rt` in seconds from onset",
    ),
    "feedback": (("block", "task", "trial", "correct"), "feedback shown"),
    "task_start": (
        ("block", "task", "n_trials", "seed", "level"),
        "a task block's trials start (after instructions and practice)",
    ),
    "task_end": (
        ("block", "task", "trials_done", "stopped", "level"),
        "a task block ended; `level` is the level reached (or null)",
    ),
    "cue": (
        ("block", "task", "trial", "condition"),
        "a task cue; timestamp = the flip that showed it",
    ),
    "stop_signal": (
        ("block", "task", "trial", "ssd"),
        "a stop signal; timestamp = its flip; `ssd` in seconds from the onset flip",
    ),
    "component_onset": (
        ("block", "task", "routine", "component", "loop", "iteration", "trial"),
        "a Builder experiment's component started; timestamp = the flip that "
        "showed it; `loop`, `iteration` and `trial` are null outside loops",
    ),
    "component_offset": (
        ("block", "task", "routine", "component", "loop", "iteration", "trial"),
        "a Builder experiment's component stopped; timestamp = the flip that "
        "removed it",
    ),
    "no_pulse": (
        ("block", "task", "trial", "condition", "scheduled"),
        "online TMS: an eligible trial that was not stimulated; timestamp = when "
        "its pulse would have been (the comparison trials)",
    ),
    "stream_stalled": (
        ("stream", "age_s"),
        "a required stream stopped delivering samples; stimulation is paused",
    ),
    "stream_recovered": (("stream",), "the stream delivers samples again"),
    "recording_failed": (
        ("reason",),
        "the recording's disk filled or the file stopped growing; the device "
        "was disarmed and the session stops",
    ),
    "journal_failed": (
        ("reason",),
        "the journal could not be written; the device was disarmed and the "
        "session stops",
    ),
    "mep": (
        ("block", "pulse", "power", "amplitude_uv", "preactivation_uv", "rejected"),
        "a threshold or hotspot pulse's MEP, measured live (stamped at the pulse)",
    ),
    "threshold_estimate": (
        ("block", "pulses", "estimate", "next_power"),
        "the threshold hunt's estimate after an MEP, and the power it gives next",
    ),
    "threshold_result": (
        ("block", "measures", "value", "method", "pulses", "converged"),
        "the threshold a threshold block measured (%MSO)",
    ),
    "hotspot_site": (
        ("block", "site"),
        "the operator labelled the coil's current site (the MEPs after it count "
        "for it)",
    ),
    "hotspot_result": (
        ("block", "site", "mean_uv", "pulses"),
        "the hotspot block's chosen site (None when none was ranked)",
    ),
    "replanned": (
        ("after_block", "thresholds"),
        "the blocks after a threshold block were planned and judged again with "
        "the measured threshold",
    ),
    "abort": (("reason",), "the session was stopped early; the device is disarmed"),
    "session_end": (("status", "pulses_delivered"), "the runner finished"),
}

#: event name -> {optional field: description}: fields some markers of the
#: event carry (the analysis reads them when present).
OPTIONAL_FIELDS: dict[str, dict[str, str]] = {
    "pulse": {
        "target_phase": "triggered blocks: the target phase of the EEG rhythm, "
        "degrees (0: peak, 180: trough)",
        "online_phase": "triggered blocks: the rhythm's phase the online "
        "estimator saw when it decided this pulse, degrees in [0, 360)",
    },
}


def encode_marker(event: str, **fields) -> str:
    """Encode a marker as the compact JSON string sent on the stream.

    Parameters
    ----------
    event : str
        One of :data:`EVENTS`.
    **fields
        The event's fields; the required ones must all be present.

    Returns
    -------
    str
        The JSON text.
    """
    if event not in EVENTS:
        raise ValueError(f"unknown marker event {event!r}; known: {sorted(EVENTS)}")
    missing = [f for f in EVENTS[event][0] if f not in fields]
    if missing:
        raise ValueError(f"marker {event!r} is missing fields {missing}")
    return json.dumps({"event": event, **fields}, separators=(",", ":"))


def decode_marker(text: str) -> dict:
    """Decode one marker string into a dict with at least an ``event`` key.

    Strings that are not stimtrain JSON markers (from another program on the
    same stream) are returned as ``{"event": "unknown", "text": text}``.
    """
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return {"event": "unknown", "text": text}
    if not isinstance(value, dict) or "event" not in value:
        return {"event": "unknown", "text": text}
    return value
