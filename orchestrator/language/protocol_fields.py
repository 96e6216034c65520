"""Field tables of protocol files: one row per field, for the loader and the schema.

Each :class:`~stimtrain.orchestrator.language.spec.RecordSpec` lists a mapping's fields
with type, unit pattern, default and description; the loader reads through
them and :mod:`~stimtrain.orchestrator.language.schema` turns them into JSON Schema.

Longer than most because it is one table: every field of every block type,
read together when the language changes.
"""

from __future__ import annotations

import re
from typing import Any

from . import spec as s
from . import trigger as _trigger
from .blocks import (
    ORDERS,
    PAIRED_PARADIGMS,
    TASK_EVENTS,
    TBS_VARIANTS,
    THRESHOLD_KINDS,
    THRESHOLD_METHODS,
)
from .fields import UnitError
from .units import Intensity

#: A Builder component's start or stop (``word.started``), for Builder blocks.
COMPONENT_EVENT = r"[A-Za-z_][A-Za-z0-9_]*\.(?:started|stopped)"


def _event_offset(value: Any) -> tuple[str, float]:
    text = s.TEXT.parse(value)
    m = re.fullmatch(rf"\s*([a-z_]+|{COMPONENT_EVENT})\s*(?:\+\s*(.+?))?\s*", text)
    if m is None:
        raise UnitError("must be an event plus a delay, e.g. 'stim_onset + 150 ms'")
    if "." not in m.group(1) and m.group(1) not in TASK_EVENTS:
        raise UnitError(f"event must be one of {', '.join(TASK_EVENTS)}")
    return m.group(1), s.TIME.parse(m.group(2)) if m.group(2) else 0.0


def _selection(value: Any) -> tuple[str, float]:
    text = str(value).strip() if isinstance(value, (str, int)) else None
    if text == "all":
        return "all", 1.0
    m = re.fullmatch(r"every\s+(\d{1,9})(?:st|nd|rd|th)?(?:\s+trial)?", text or "")
    if m and int(m.group(1)) >= 1:
        return "every", float(m.group(1))
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", text or "")
    if m and 0 < float(m.group(1)) <= 100:
        return "fraction", float(m.group(1)) / 100
    raise UnitError("must be 'all', 'every N' (e.g. 'every 2nd') or a percentage")


EVENT_OFFSET = s.Kind(
    "event offset",
    _event_offset,
    {
        "type": "string",
        "pattern": rf"^\s*({'|'.join(TASK_EVENTS)}|{COMPONENT_EVENT})\s*(\+.*)?$",
        "examples": ["stim_onset + 150 ms", "word.started + 150 ms"],
    },
)
SELECTION = s.Kind(
    "trial selection",
    _selection,
    {
        "type": "string",
        "pattern": (
            r"^\s*(all|every\s+\d+(st|nd|rd|th)?(\s+trial)?|\d+(\.\d+)?\s*%)\s*$"
        ),
        "examples": ["all", "every 2nd", "30 %"],
    },
)

_LABEL = s.FieldSpec("label", s.TEXT, "Name shown to the operator and in markers.")


def _above_zero(value: Intensity) -> str | None:
    return None if value.value > 0 else "must be greater than zero"


_INTENSITY = s.FieldSpec(
    "intensity",
    s.INTENSITY,
    "Stimulation intensity in %MSO, %RMT or %AMT (the test pulse for paired).",
    required=True,
    check=_above_zero,
)
PATTERN_KIND = s.choice(("single", "paired", "rtms", "theta_burst", "list"))
_JITTER = s.FieldSpec(
    "jitter",
    s.TIME,
    "Uniform jitter of each interval, ± this much.",
    default="0 s",
    check=s.non_negative,
)

BLOCK_SPECS: dict[str, s.RecordSpec] = {
    "rest": s.RecordSpec(
        "a rest block",
        "Rest with a fixation cross (e.g. resting EEG).",
        (
            _LABEL,
            s.FieldSpec(
                "duration", s.TIME, "How long.", required=True, check=s.positive
            ),
            s.FieldSpec(
                "eyes", s.choice(("open", "closed")), "Eyes open or closed.", "open"
            ),
        ),
        extra_keys=("type",),
    ),
    "instructions": s.RecordSpec(
        "an instructions block",
        "A text shown to the participant for a fixed time.",
        (
            _LABEL,
            s.FieldSpec("text", s.TEXT, "The text.", required=True),
            s.FieldSpec(
                "duration", s.TIME, "How long it is shown.", "5 s", check=s.positive
            ),
        ),
        extra_keys=("type",),
    ),
    "wait_for_operator": s.RecordSpec(
        "a wait_for_operator block",
        "Hold until the operator confirms; the participant sees a short text.",
        (
            _LABEL,
            s.FieldSpec("text", s.TEXT, "What the operator is asked.", required=True),
            s.FieldSpec(
                "participant_text", s.TEXT, "What the participant sees meanwhile."
            ),
        ),
        extra_keys=("type",),
    ),
    "task": s.RecordSpec(
        "a task block",
        "A block of a training task, optionally with online TMS.",
        (
            _LABEL,
            s.FieldSpec("task", s.TEXT, "Task name (e.g. flanker); or give builder."),
            s.FieldSpec(
                "builder",
                s.TEXT,
                "A PsychoPy Builder experiment (.psyexp) instead of a task, "
                "relative to the protocol file; its bytes are in the protocol hash.",
            ),
            s.FieldSpec(
                "trials",
                s.INTEGER,
                "Trials (required with task); with builder, the most loop "
                "iterations to run (default: all the loops give).",
                check=s.at_least_one,
            ),
            s.FieldSpec(
                "params",
                s.ANY_MAPPING,
                "Task parameters (see docs); with builder, the experiment's "
                "Experiment info fields.",
            ),
        ),
        extra_keys=("type", "tms"),
    ),
}


def _mso_only(value: Intensity) -> str | None:
    if value.unit != "%MSO":
        return "must be in %MSO (the threshold is not known yet)"
    if not 1 <= value.value <= 100:
        return "must be within the device's range, 1-100 %MSO"
    return None


def _window(value: list) -> str | None:
    if len(value) != 2 or not 0 <= value[0] < value[1] <= 0.2:
        return "must be [start, end] after the pulse, 0 <= start < end <= 200 ms"
    return None


_MEP_FIELDS = (
    s.FieldSpec(
        "window",
        s.list_of(s.TIME, min_items=2),
        "Where the MEP is measured, after the pulse.",
        ["15 ms", "50 ms"],
        check=_window,
    ),
    s.FieldSpec(
        "preactivation_max",
        s.VOLTAGE,
        "Reject (and replace) a trial whose EMG in -50..-5 ms exceeds this "
        "peak-to-peak (default: 200 uV at rest, 1000 uV active).",
        check=s.positive,
    ),
    s.FieldSpec(
        "interval",
        s.TIME,
        "Interval between pulses (at least 2 s apart with the jitter).",
        "5 s",
        check=s.positive,
    ),
    s.FieldSpec(
        "jitter",
        s.TIME,
        "Uniform jitter of each interval, ± this much.",
        "1 s",
        check=s.non_negative,
    ),
)
HUNTING_SPECS: dict[str, s.RecordSpec] = {
    "threshold": s.RecordSpec(
        "a threshold block",
        "Find the resting or active motor threshold on the live EMG.",
        (
            _LABEL,
            s.FieldSpec(
                "kind",
                s.choice(tuple(THRESHOLD_KINDS)),
                "resting (RMT) or active (AMT).",
                "resting",
            ),
            s.FieldSpec(
                "method",
                s.choice(THRESHOLD_METHODS),
                "How the next intensity is chosen.",
                THRESHOLD_METHODS[0],
            ),
            s.FieldSpec(
                "start",
                s.INTENSITY,
                "Intensity of the first pulse, %MSO.",
                "45 %MSO",
                check=_mso_only,
            ),
            s.FieldSpec(
                "max_intensity",
                s.INTENSITY,
                "The hunt never goes above this, %MSO (judged by the safety check).",
                "100 %MSO",
                check=_mso_only,
            ),
            s.FieldSpec(
                "max_pulses",
                s.INTEGER,
                "Most pulses, rejected trials included.",
                60,
                check=s.at_least_one,
            ),
            s.FieldSpec(
                "criterion",
                s.VOLTAGE,
                "MEP peak-to-peak that counts as a response (default: 50 uV at "
                "rest, 200 uV active).",
                check=s.positive,
            ),
            s.FieldSpec(
                "preactivation_min",
                s.VOLTAGE,
                "Active only: the held contraction, EMG peak-to-peak in -50..-5 ms "
                "at least this (default 50 uV).",
                check=s.non_negative,
            ),
            *_MEP_FIELDS,
        ),
        extra_keys=("type",),
    ),
    "hotspot": s.RecordSpec(
        "a hotspot block",
        "Find the motor hotspot: the operator moves the coil and labels sites.",
        (
            _LABEL,
            s.FieldSpec(
                "intensity",
                s.INTENSITY,
                "Intensity of every pulse (%MSO, or %RMT once known).",
                required=True,
                check=_above_zero,
            ),
            s.FieldSpec(
                "max_pulses",
                s.INTEGER,
                "Most pulses before the block ends.",
                60,
                check=s.at_least_one,
            ),
            s.FieldSpec(
                "pulses_per_site",
                s.INTEGER,
                "MEPs a site needs before it is ranked.",
                5,
                check=s.at_least_one,
            ),
            *_MEP_FIELDS,
        ),
        extra_keys=("type",),
    ),
}

ONLINE_TMS_SPEC = s.RecordSpec(
    "online TMS",
    "Pulses locked to task events.",
    (
        s.FieldSpec(
            "at",
            EVENT_OFFSET,
            "Task event plus delay, e.g. 'stim_onset + 150 ms'.",
            required=True,
        ),
        s.FieldSpec(
            "intensity",
            s.INTENSITY,
            "Intensity in %MSO, %RMT or %AMT.",
            required=True,
            check=_above_zero,
        ),
        s.FieldSpec(
            "trials", SELECTION, "Which trials: all, 'every 2nd', '30 %'.", "all"
        ),
        s.FieldSpec(
            "conditions",
            s.list_of(s.TEXT),
            "Only trials of these conditions (default: all).",
        ),
    ),
)

_STIM_COMMON = (
    _LABEL,
    s.FieldSpec(
        "pattern",
        PATTERN_KIND,
        "Stimulation pattern.",
        required=True,
    ),
    _INTENSITY,
)
PATTERN_SPECS: dict[str, s.RecordSpec] = {
    "single": s.RecordSpec(
        "a single stimulate block",
        "Single pulses at a fixed, optionally jittered interval.",
        (
            *_STIM_COMMON,
            s.FieldSpec(
                "pulses", s.INTEGER, "Pulses.", required=True, check=s.at_least_one
            ),
            s.FieldSpec(
                "interval",
                s.TIME,
                "Interval between pulses.",
                required=True,
                check=s.positive,
            ),
            _JITTER,
        ),
        extra_keys=("type",),
    ),
    "paired": s.RecordSpec(
        "a paired stimulate block",
        "Paired pulses (SICI, ICF, LICI): conditioning, then test after the ISI.",
        (
            *_STIM_COMMON,
            s.FieldSpec(
                "paradigm",
                s.choice(PAIRED_PARADIGMS),
                "SICI, ICF, LICI (ISI ranges checked) or custom.",
                "custom",
            ),
            s.FieldSpec(
                "conditioning",
                s.INTENSITY,
                "Intensity of the conditioning (first) pulse.",
                required=True,
                check=_above_zero,
            ),
            s.FieldSpec(
                "isi",
                s.TIME,
                "Inter-stimulus interval.",
                required=True,
                check=s.positive,
            ),
            s.FieldSpec(
                "pairs", s.INTEGER, "Pairs.", required=True, check=s.at_least_one
            ),
            s.FieldSpec(
                "interval",
                s.TIME,
                "Interval between pairs.",
                required=True,
                check=s.positive,
            ),
            _JITTER,
        ),
        extra_keys=("type",),
    ),
    "rtms": s.RecordSpec(
        "an rtms stimulate block",
        "Conventional rTMS trains.",
        (
            *_STIM_COMMON,
            s.FieldSpec(
                "frequency",
                s.FREQUENCY,
                "Pulse rate within a train.",
                required=True,
                check=s.positive,
            ),
            s.FieldSpec(
                "pulses_per_train",
                s.INTEGER,
                "Pulses in each train (or give train_duration).",
                check=s.at_least_one,
            ),
            s.FieldSpec(
                "train_duration",
                s.TIME,
                "Duration of each train (or give pulses_per_train).",
                check=s.positive,
            ),
            s.FieldSpec("trains", s.INTEGER, "Trains.", 1, check=s.at_least_one),
            s.FieldSpec(
                "inter_train_interval",
                s.TIME,
                "Pause between trains (required with more than one train).",
                check=s.positive,
            ),
        ),
        extra_keys=("type",),
    ),
    "theta_burst": s.RecordSpec(
        "a theta_burst stimulate block",
        "Theta burst: iTBS, cTBS or custom bursts.",
        (
            *_STIM_COMMON,
            s.FieldSpec(
                "variant",
                s.choice(TBS_VARIANTS),
                "iTBS, cTBS or custom.",
                required=True,
            ),
            s.FieldSpec("pulses", s.INTEGER, "Pulses.", 600, check=s.at_least_one),
            s.FieldSpec(
                "pulses_per_burst",
                s.INTEGER,
                "Pulses per burst.",
                3,
                check=s.at_least_one,
            ),
            s.FieldSpec(
                "burst_frequency",
                s.FREQUENCY,
                "Pulse rate within a burst.",
                "50 Hz",
                check=s.positive,
            ),
            s.FieldSpec(
                "burst_rate",
                s.FREQUENCY,
                "Rate of bursts.",
                "5 Hz",
                check=s.positive,
            ),
            s.FieldSpec(
                "train_duration",
                s.TIME,
                "On-time of each train (iTBS: 2 s; required for custom).",
                check=s.positive,
            ),
            s.FieldSpec(
                "inter_train_interval",
                s.TIME,
                "Off-time between trains (iTBS: 8 s).",
                check=s.non_negative,
            ),
        ),
        extra_keys=("type",),
    ),
    "list": s.RecordSpec(
        "a list stimulate block",
        "Pulses at explicit times from the first pulse.",
        (
            *_STIM_COMMON,
            s.FieldSpec(
                "times",
                s.list_of(s.TIME),
                "Times of the pulses from the first, increasing (first is 0 s).",
                required=True,
            ),
        ),
        extra_keys=("type",),
    ),
}

_NUMBER_SCHEMA = {"type": "number"}
PHASE = s.Kind(
    "phase",
    _trigger.parse_phase,
    {"anyOf": [{"enum": list(_trigger.PHASE_NAMES)}, _NUMBER_SCHEMA]},
)
BAND = s.Kind(
    "band",
    _trigger.parse_band,
    {
        "anyOf": [
            {
                "type": "string",
                "pattern": r"^\s*[0-9.]+\s*(-|–|to)\s*[0-9.]+\s*[Hh][Zz]\s*$",
            },
            {
                "type": "array",
                "items": s.FREQUENCY.schema,
                "minItems": 2,
                "maxItems": 2,
            },
        ],
        "examples": ["8-13 Hz"],
    },
)
MONTAGE = s.Kind(
    "montage",
    _trigger.parse_montage,
    {
        "anyOf": [
            {"enum": list(_trigger.MONTAGE_PRESETS)},
            {"type": "object", "additionalProperties": _NUMBER_SCHEMA},
        ]
    },
)
GATE_SPEC = s.RecordSpec(
    "the amplitude gate",
    "Pulses only while the band power reaches a percentile of its recent history.",
    (
        s.FieldSpec(
            "percentile",
            s.number_range(0, 100),
            "The percentile of recent band powers the current one must reach.",
            50,
        ),
        s.FieldSpec(
            "span",
            s.TIME,
            "How far back the history reaches.",
            "60 s",
            check=s.positive,
        ),
    ),
)
TRIGGER_SPEC = s.RecordSpec(
    "a trigger",
    "Pulses at a phase of an EEG rhythm, read live from the rig's EEG stream.",
    (
        s.FieldSpec(
            "target",
            PHASE,
            "Target phase: peak, trough or degrees (0: peak, 180: trough).",
            required=True,
        ),
        s.FieldSpec("band", BAND, "The rhythm's band.", "8-13 Hz"),
        s.FieldSpec(
            "montage",
            MONTAGE,
            "A preset (c3_hjorth, c4_hjorth) or channel: weight.",
            "c3_hjorth",
        ),
        s.FieldSpec(
            "estimator",
            s.Kind(
                "estimator",
                _trigger.parse_estimator,
                {"enum": list(_trigger.ESTIMATORS)},
            ),
            "How the phase is predicted: ar (autoregressive forward prediction).",
            "ar",
        ),
        s.FieldSpec(
            "window",
            s.TIME,
            "Recent signal each estimate reads (at least two cycles of the band's "
            "lower edge).",
            "500 ms",
            check=s.positive,
        ),
        s.FieldSpec(
            "gate",
            s.Kind(
                "gate",
                _trigger.parse_gate,
                {"anyOf": [{"const": "none"}, GATE_SPEC.json_schema()]},
            ),
            "Amplitude gate (percentile, span; default 50 and 60 s), or none.",
        ),
        s.FieldSpec(
            "min_interval",
            s.TIME,
            "No pulse sooner than this after the last (the safety worst case).",
            "2 s",
            check=s.positive,
        ),
        s.FieldSpec(
            "max_interval",
            s.TIME,
            "After this long without a pulse, the next crossing is taken whatever "
            "the band power.",
            check=s.positive,
        ),
        s.FieldSpec(
            "phase_offset",
            s.Kind(
                "phase offset",
                _trigger.parse_offset,
                {"anyOf": [_NUMBER_SCHEMA, {"const": "calibrated"}]},
            ),
            "Degrees added to the target, or calibrated: the offset the last "
            "phase_calibration block before it measured, else the participant's "
            "thresholds file's phase_offset (same estimator, band and montage).",
            0,
        ),
    ),
)
TRIGGERED_SPEC = s.RecordSpec(
    "a triggered stimulate block",
    "Single pulses at a phase of an EEG rhythm, until pulses or duration.",
    (
        *_STIM_COMMON,
        s.FieldSpec("pulses", s.INTEGER, "The most pulses.", check=s.at_least_one),
        s.FieldSpec(
            "duration", s.TIME, "The longest the block runs.", check=s.positive
        ),
    ),
    extra_keys=("type", "trigger"),
)

PHASE_CALIBRATION_SPEC = s.RecordSpec(
    "a phase_calibration block",
    "Resting EEG, on which the phase estimator is replayed against a "
    "non-causal estimate: the participant's phase offset for later triggered "
    "blocks (phase_offset: calibrated).",
    (
        _LABEL,
        s.FieldSpec(
            "duration",
            s.TIME,
            "How long the resting EEG is recorded.",
            "60 s",
            check=s.positive,
        ),
        # The estimator's settings, as the triggered blocks write them.
        *(
            fs
            for fs in TRIGGER_SPEC.fields
            if fs.name in ("band", "montage", "estimator", "window")
        ),
    ),
    extra_keys=("type",),
)
BLOCK_SPECS["phase_calibration"] = PHASE_CALIBRATION_SPEC

REPEAT_SPEC = s.RecordSpec(
    "a repeat block",
    "Blocks run several times, in a fixed, random or counterbalanced order.",
    (
        _LABEL,
        s.FieldSpec("times", s.INTEGER, "Repetitions.", 1, check=s.at_least_one),
        s.FieldSpec(
            "order",
            s.choice(ORDERS),
            "Order of the blocks in each repetition: fixed, random (seeded) or "
            "counterbalanced across participants (balanced Latin square).",
            "fixed",
        ),
    ),
    extra_keys=("type", "blocks"),
)

PROTOCOL_SPEC = s.RecordSpec(
    "a protocol",
    "A stimtrain protocol file.",
    (
        s.FieldSpec("stimtrain", s.INTEGER, "Format version (1).", required=True),
        s.FieldSpec("name", s.TEXT, "Protocol name.", required=True),
        s.FieldSpec("description", s.TEXT, "What the protocol is for."),
        s.FieldSpec(
            "rig",
            s.TEXT,
            "The rig it is written for: sim, sim-<model> or a rig file (relative "
            "to the protocol); used when no --rig is given.",
        ),
        s.FieldSpec(
            "seed",
            s.INTEGER,
            "Seed of every random choice, recorded with the run.",
            0,
            check=s.non_negative,
        ),
        s.FieldSpec(
            "expected_rmt",
            s.THRESHOLD_RANGE,
            "Resting thresholds a threshold block may measure (e.g. '30-80 %MSO'): "
            "the blocks after it are judged for each.",
        ),
        s.FieldSpec(
            "expected_amt",
            s.THRESHOLD_RANGE,
            "Active thresholds a threshold block may measure.",
        ),
    ),
    extra_keys=("safety", "variables", "blocks"),
)
SAFETY_OPTIONS_SPEC = s.RecordSpec(
    "the safety options",
    "Per-protocol safety options (only ever stricter than the lab's).",
    (
        s.FieldSpec(
            "stricter_margin",
            s.BOOLEAN,
            "Shorten rTMS train-duration limits by the Chen 1997 25 % margin.",
            False,
        ),
    ),
)
FRAGMENT_SPEC = s.RecordSpec(
    "a fragment",
    "Blocks to include in protocols (`- include: file.yaml`).",
    (s.FieldSpec("stimtrain", s.INTEGER, "Format version (1).", required=True),),
    extra_keys=("description", "variables", "blocks"),
)

#: Every block type, in the order messages list them.
BLOCK_TYPES = (
    "rest",
    "instructions",
    "wait_for_operator",
    "stimulate",
    "task",
    "threshold",
    "hotspot",
    "phase_calibration",
    "repeat",
)
TYPE_KIND = s.choice(BLOCK_TYPES)
