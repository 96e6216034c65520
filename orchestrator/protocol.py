"""The protocol model: typed blocks read from a YAML protocol file.

A protocol file lists blocks (``rest``, ``instructions``, ``wait_for_operator``,
``stimulate``, ``task``) and structure (``repeat`` with a block order, and
``include`` of fragment files), with named ``variables``. Loading collects
every problem of every file at once and raises
:class:`~stimtrain.orchestrator.errors.ProtocolError`; nothing else in
stimtrain sees an unchecked protocol. The field tables (:data:`BLOCK_SPECS`,
:data:`PATTERN_SPECS`, …) also generate the shipped JSON Schema.
"""

from __future__ import annotations

import hashlib
import os
import re
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import spec as s
from .errors import Problem, ProtocolError
from .fields import FieldReader, UnitError
from .units import Intensity
from .yamlpos import LocatedDocument, load_yaml_file, load_yaml_text

FORMAT_VERSION = 1
ORDERS = ("fixed", "random", "counterbalanced")
TBS_VARIANTS = ("iTBS", "cTBS", "custom")
PAIRED_PARADIGMS = ("SICI", "ICF", "LICI", "custom")
#: Task events a pulse can be locked to (a task may announce fewer).
TASK_EVENTS = ("stim_onset", "cue_onset", "response")
#: Inter-stimulus intervals that define each paired-pulse paradigm
#: (Kujirai 1993; Valls-Solé 1992; Rossini 2015), and whether the
#: conditioning pulse must be below the resting motor threshold.
PAIRED_ISI_S = {"SICI": (0.001, 0.006), "ICF": (0.007, 0.020), "LICI": (0.050, 0.200)}


# ---------------------------------------------------------------- the model


@dataclass(frozen=True, kw_only=True)
class SinglePulses:
    """Single pulses at a fixed interval, optionally jittered uniformly by ±jitter."""

    pulses: int
    interval_s: float
    jitter_s: float = 0.0

    @property
    def n_pulses(self) -> int:
        """Pulses the pattern delivers."""
        return self.pulses


@dataclass(frozen=True, kw_only=True)
class PairedPulses:
    """Paired pulses: a conditioning pulse, then the test pulse ``isi_s`` later.

    The block's ``intensity`` is the test pulse's; ``conditioning`` the first.
    Pairs follow each other at ``interval_s`` (± ``jitter_s``).
    """

    paradigm: str
    pairs: int
    interval_s: float
    isi_s: float
    conditioning: Intensity
    jitter_s: float = 0.0

    @property
    def n_pulses(self) -> int:
        """Pulses the pattern delivers (two per pair)."""
        return 2 * self.pairs


@dataclass(frozen=True, kw_only=True)
class RTMSTrains:
    """Conventional rTMS: ``trains`` trains of ``pulses_per_train`` at a frequency."""

    frequency_hz: float
    pulses_per_train: int
    trains: int = 1
    inter_train_interval_s: float = 0.0

    @property
    def train_duration_s(self) -> float:
        """Duration of one train as the safety tables count it (pulses / rate)."""
        return self.pulses_per_train / self.frequency_hz

    @property
    def n_pulses(self) -> int:
        """Pulses the pattern delivers."""
        return self.pulses_per_train * self.trains


@dataclass(frozen=True, kw_only=True)
class ThetaBurst:
    """Theta burst: bursts of pulses at ``burst_frequency`` repeated at ``burst_rate``.

    ``train_duration_s`` is the on-time of one train (iTBS: 2 s) and
    ``inter_train_interval_s`` the pause between trains (iTBS: 8 s); cTBS runs
    as one continuous train (``train_duration_s`` is None).
    """

    variant: str
    pulses: int = 600
    pulses_per_burst: int = 3
    burst_frequency_hz: float = 50.0
    burst_rate_hz: float = 5.0
    train_duration_s: float | None = None
    inter_train_interval_s: float = 0.0

    @property
    def n_pulses(self) -> int:
        """Pulses the pattern delivers."""
        return self.pulses


@dataclass(frozen=True, kw_only=True)
class PulseList:
    """Pulses at explicit times (seconds from the first pulse)."""

    times_s: tuple[float, ...]

    @property
    def n_pulses(self) -> int:
        """Pulses the pattern delivers."""
        return len(self.times_s)

    @property
    def shortest_interval_s(self) -> float:
        """Shortest gap between two pulses (inf for one pulse)."""
        return float(np.min(np.diff(self.times_s))) if len(self.times_s) > 1 else np.inf


Pattern = SinglePulses | PairedPulses | RTMSTrains | ThetaBurst | PulseList
PATTERN_NAMES: dict[type, str] = {
    SinglePulses: "single",
    PairedPulses: "paired",
    RTMSTrains: "rtms",
    ThetaBurst: "theta_burst",
    PulseList: "list",
}


@dataclass(frozen=True, kw_only=True)
class Block:
    """What every block has: its run-order index, type, label and its source.

    ``doc`` and ``src`` locate the block's text (an included fragment has its
    own file), ``raw`` is the mapping as written (after variables), so that
    every later check can quote and point at what the author wrote.
    """

    index: int
    type: str
    label: str
    doc: LocatedDocument = field(repr=False, compare=False)
    src: tuple = field(compare=False)
    raw: dict = field(repr=False, compare=False, default_factory=dict)

    @property
    def path(self) -> tuple:
        """Path of this block in its document, for messages."""
        return self.src

    def problem(self, key: str | None, rule: str, value: object) -> Problem:
        """A problem located at one of this block's fields (or the block)."""
        path = self.src if key is None else (*self.src, *key.split("."))
        return self.doc.problem(path, rule, value)


@dataclass(frozen=True, kw_only=True)
class RestBlock(Block):
    """Rest (e.g. resting EEG) with a fixation cross on screen."""

    duration_s: float
    eyes: str = "open"


@dataclass(frozen=True, kw_only=True)
class InstructionsBlock(Block):
    """A text shown to the participant for a fixed time."""

    text: str
    duration_s: float = 5.0


@dataclass(frozen=True, kw_only=True)
class WaitBlock(Block):
    """Hold until the operator confirms (e.g. after placing the coil)."""

    text: str
    participant_text: str = ""


@dataclass(frozen=True, kw_only=True)
class StimulateBlock(Block):
    """TMS delivered in a pattern at one intensity."""

    intensity: Intensity
    pattern: Pattern

    @property
    def pattern_name(self) -> str:
        """The pattern's name as written in protocol files."""
        return PATTERN_NAMES[type(self.pattern)]


@dataclass(frozen=True, kw_only=True)
class OnlineTMS:
    """Pulses locked to task events inside a task block.

    A pulse is given ``delay_s`` after ``event`` on the selected trials;
    eligible trials that are not selected get a ``no_pulse`` marker at the
    same moment, so TMS and no-TMS trials can be compared.
    """

    event: str
    delay_s: float
    intensity: Intensity
    select: str = "all"
    every: int = 1
    fraction: float = 1.0
    conditions: tuple[str, ...] = ()

    def max_pulses(self, trials: int) -> int:
        """Most pulses this can deliver in ``trials`` trials (for the caps)."""
        if self.select == "every":
            return -(-trials // self.every)
        if self.select == "fraction":
            return round(self.fraction * trials)
        return trials

    def choose(self, eligible: list[int], rng: np.random.Generator) -> set[int]:
        """Pick the stimulated trials among the eligible ones (trial numbers)."""
        if self.select == "every":
            return set(eligible[self.every - 1 :: self.every])
        if self.select == "fraction":
            n = round(self.fraction * len(eligible))
            return set(rng.choice(eligible, size=n, replace=False).tolist())
        return set(eligible)


@dataclass(frozen=True, kw_only=True)
class TaskBlock(Block):
    """A training task block: a task name, trials, parameters, optional online TMS."""

    task: str
    trials: int
    params: dict[str, Any] = field(default_factory=dict)
    tms: OnlineTMS | None = None

    @property
    def n_pulses(self) -> int:
        """Most pulses the block's online TMS can deliver."""
        return 0 if self.tms is None else self.tms.max_pulses(self.trials)


@dataclass(frozen=True, kw_only=True)
class Protocol:
    """A checked protocol file, with its blocks in run order.

    Attributes
    ----------
    name, description : str
        What the protocol is, for people.
    seed : int
        Seed of every random choice (jitter, trial order, block order).
    blocks : tuple of Block
        The blocks in run order (repeats unrolled, includes spliced in,
        block orders drawn for ``participant``).
    stricter_margin : bool
        Shorten the rTMS train-duration limits by the Chen et al. 1997 margin.
    document : LocatedDocument
        The source text and value positions, for messages and copies.
    order : tuple of str
        How each ``repeat`` ordered its blocks, for the plan and the journal.
    includes : tuple of str
        Fragment files read, in order (their text is hashed with the protocol).
    participant : str | None
        The participant the block order was drawn for.
    """

    name: str
    description: str
    seed: int
    blocks: tuple[Block, ...]
    stricter_margin: bool
    document: LocatedDocument
    order: tuple[str, ...] = ()
    includes: tuple[LocatedDocument, ...] = field(default=(), repr=False)
    participant: str | None = None

    @property
    def file(self) -> str:
        """The file the protocol was read from."""
        return self.document.file

    @property
    def sha256(self) -> str:
        """SHA-256 of the exact protocol text and of every included fragment."""
        h = hashlib.sha256(self.document.text.encode("utf-8"))
        for doc in self.includes:
            h.update(doc.text.encode("utf-8"))
        return h.hexdigest()

    @property
    def n_pulses(self) -> int:
        """Most pulses the whole protocol can deliver."""
        return sum(block_pulses(b) for b in self.blocks)


def block_pulses(block: Block) -> int:
    """Most pulses a block can deliver."""
    if isinstance(block, StimulateBlock):
        return block.pattern.n_pulses
    if isinstance(block, TaskBlock):
        return block.n_pulses
    return 0


# ------------------------------------------------------------- field tables


def _event_offset(value: Any) -> tuple[str, float]:
    text = s.TEXT.parse(value)
    m = re.fullmatch(r"\s*([a-z_]+)\s*(?:\+\s*(.+?))?\s*", text)
    if m is None:
        raise UnitError("must be an event plus a delay, e.g. 'stim_onset + 150 ms'")
    if m.group(1) not in TASK_EVENTS:
        raise UnitError(f"event must be one of {', '.join(TASK_EVENTS)}")
    return m.group(1), s.TIME.parse(m.group(2)) if m.group(2) else 0.0


def _selection(value: Any) -> tuple[str, float]:
    text = str(value).strip() if isinstance(value, (str, int)) else None
    if text == "all":
        return "all", 1.0
    m = re.fullmatch(r"every\s+(\d+)(?:st|nd|rd|th)?(?:\s+trial)?", text or "")
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
        "pattern": rf"^\s*({'|'.join(TASK_EVENTS)})\s*(\+.*)?$",
        "examples": ["stim_onset + 150 ms"],
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
_PATTERN_KIND = s.choice(("single", "paired", "rtms", "theta_burst", "list"))
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
            s.FieldSpec("task", s.TEXT, "Task name (e.g. flanker).", required=True),
            s.FieldSpec(
                "trials", s.INTEGER, "Trials.", required=True, check=s.at_least_one
            ),
            s.FieldSpec("params", s.ANY_MAPPING, "Task parameters (see docs)."),
        ),
        extra_keys=("type", "tms"),
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
        _PATTERN_KIND,
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
            "seed",
            s.INTEGER,
            "Seed of every random choice, recorded with the run.",
            0,
            check=s.non_negative,
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


# ------------------------------------------------------------- variables

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _substitute(r: FieldReader, value: Any, path: tuple, variables: dict) -> Any:
    """Replace ``${name}`` in every string; a whole ``${name}`` keeps its type."""
    if isinstance(value, dict):
        return {k: _substitute(r, v, (*path, k), variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(r, v, (*path, i), variables) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    names = _VAR.findall(value)
    missing = [n for n in names if n not in variables]
    if missing:
        known = ", ".join(sorted(variables)) or "none defined"
        r.fail(path, f"uses undefined variable '{missing[0]}' (known: {known})", value)
        return value
    whole = _VAR.fullmatch(value)
    if whole:
        return variables[whole.group(1)]
    return _VAR.sub(lambda m: str(variables[m.group(1)]), value)


def _read_variables(r: FieldReader, top: dict, inherited: dict) -> dict:
    if "variables" not in top:
        return dict(inherited)
    m = r.mapping(top["variables"], ("variables",))
    out = {}
    for name, value in (m or {}).items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            r.fail(("variables", name), "must be a name (letters, digits, _)", name)
        elif isinstance(value, (dict, list)) or value is None:
            r.fail(("variables", name), "must be a number or text", value)
        else:
            out[name] = value
    # The including protocol's values win over a fragment's defaults.
    out.update(inherited)
    return out


# ----------------------------------------------------------------- reading


@dataclass
class _Repeat:
    times: int
    order: str
    label: str | None
    children: list
    src: tuple
    doc: LocatedDocument


@dataclass
class _Reader:
    """State of one load: problems, fragments read, the include stack."""

    problems: list[Problem] = field(default_factory=list)
    includes: list[LocatedDocument] = field(default_factory=list)
    stack: list[Path] = field(default_factory=list)


def _read_pattern(
    r: FieldReader, m: dict, path: tuple, name: str, v: dict
) -> Pattern | None:
    n_problems = len(r.problems)
    if name in ("single", "paired"):
        count = "pulses" if name == "single" else "pairs"
        if v["interval"] is not None and v["jitter"] is not None:
            if v["jitter"] >= v["interval"]:
                r.fail(
                    (*path, "jitter"), "must be shorter than the interval", m["jitter"]
                )
        if name == "paired":
            _check_paired(r, m, path, v)
        if len(r.problems) > n_problems:
            return None
        if name == "single":
            return SinglePulses(
                pulses=v[count], interval_s=v["interval"], jitter_s=v["jitter"]
            )
        return PairedPulses(
            paradigm=v["paradigm"],
            pairs=v["pairs"],
            interval_s=v["interval"],
            isi_s=v["isi"],
            conditioning=v["conditioning"],
            jitter_s=v["jitter"],
        )
    if name == "rtms":
        return _read_rtms(r, m, path, v, n_problems)
    if name == "list":
        times = v["times"]
        if times is not None:
            if times[0] != 0:
                r.fail(
                    (*path, "times", 0), "the first pulse must be at 0 s", m["times"][0]
                )
            for i in range(1, len(times)):
                if times[i] <= times[i - 1]:
                    r.fail(
                        (*path, "times", i),
                        "times must increase from pulse to pulse",
                        m["times"][i],
                    )
                    break
        if times is None or len(r.problems) > n_problems:
            return None
        return PulseList(times_s=tuple(times))
    return _read_theta_burst(r, m, path, v, n_problems)


def _check_paired(r: FieldReader, m: dict, path: tuple, v: dict) -> None:
    paradigm, isi = v["paradigm"], v["isi"]
    if paradigm in PAIRED_ISI_S and isi is not None:
        lo, hi = PAIRED_ISI_S[paradigm]
        if not lo - 1e-12 <= isi <= hi + 1e-12:
            r.fail(
                (*path, "isi"),
                f"{paradigm} uses an ISI of {lo * 1e3:g} to {hi * 1e3:g} ms",
                m["isi"],
            )
    cond = v["conditioning"]
    if cond is not None and cond.unit == "%RMT" and paradigm in ("SICI", "ICF"):
        if cond.value >= 100:
            r.fail(
                (*path, "conditioning"),
                f"{paradigm} needs a subthreshold conditioning pulse (below 100 %RMT)",
                m["conditioning"],
            )
    if cond is not None and cond.unit == "%RMT" and paradigm == "LICI":
        if cond.value < 100:
            r.fail(
                (*path, "conditioning"),
                "LICI needs a suprathreshold conditioning pulse (at least 100 %RMT)",
                m["conditioning"],
            )


def _read_rtms(r, m, path, v, n_problems) -> RTMSTrains | None:
    freq, trains, ppt, dur = (
        v["frequency"],
        v["trains"],
        v["pulses_per_train"],
        v["train_duration"],
    )
    if ("pulses_per_train" in m) == ("train_duration" in m):
        r.fail(
            (*path, "pulses_per_train"),
            "give exactly one of pulses_per_train and train_duration",
            "both" if "train_duration" in m else "neither",
        )
    elif dur is not None and freq is not None:
        ppt = round(dur * freq)
        if abs(ppt - dur * freq) > 1e-6 or ppt < 1:
            r.fail(
                (*path, "train_duration"),
                f"must hold a whole number of pulses at {freq:g} Hz",
                m["train_duration"],
            )
    iti = v["inter_train_interval"]
    if trains is not None and trains > 1 and "inter_train_interval" not in m:
        r.fail((*path, "inter_train_interval"), "is required", "nothing")
    if len(r.problems) > n_problems:
        return None
    return RTMSTrains(
        frequency_hz=freq,
        pulses_per_train=ppt,
        trains=trains,
        inter_train_interval_s=iti or 0.0,
    )


def _read_theta_burst(r, m, path, v, n_problems) -> ThetaBurst | None:
    variant = v["variant"]
    ppb, pulses, bf, br = (
        v["pulses_per_burst"],
        v["pulses"],
        v["burst_frequency"],
        v["burst_rate"],
    )
    on, off = v["train_duration"], v["inter_train_interval"]
    if variant == "iTBS":
        on = 2.0 if on is None else on
        off = 8.0 if off is None else off
    if variant == "custom" and "train_duration" not in m:
        r.fail((*path, "train_duration"), "is required", "nothing")
    if variant == "cTBS":
        for key in ("train_duration", "inter_train_interval"):
            if key in m:
                r.fail(
                    (*path, key),
                    "does not apply to cTBS (one continuous train)",
                    m[key],
                )
    if pulses is not None and ppb is not None and pulses % ppb:
        r.fail(
            (*path, "pulses"),
            f"must be a whole number of bursts of {ppb} pulses",
            m.get("pulses", pulses),
        )
    if bf is not None and br is not None and ppb is not None:
        if (ppb - 1) / bf >= 1 / br:
            r.fail(
                (*path, "burst_rate"),
                f"leaves no gap between bursts of {ppb} pulses at {bf:g} Hz",
                m.get("burst_rate", f"{br:g} Hz"),
            )
    if len(r.problems) > n_problems:
        return None
    return ThetaBurst(
        variant=variant,
        pulses=pulses,
        pulses_per_burst=ppb,
        burst_frequency_hz=bf,
        burst_rate_hz=br,
        train_duration_s=on,
        inter_train_interval_s=off or 0.0,
    )


def _validate_task(r: FieldReader, path: tuple, name: str | None, params: dict):
    """Let the task check its own parameters, so typos fail before the session."""
    if name is None:
        return None
    from stimtrain.tasks import get_task

    try:
        task = get_task(name)
    except KeyError as exc:
        r.fail((*path, "task"), str(exc.args[0]) if exc.args else "unknown task", name)
        return None
    try:
        task.validate_params(params)
    except Exception as exc:  # noqa: BLE001 - any task error is a protocol problem
        fld = getattr(exc, "field", None)
        if fld is None:
            r.fail((*path, "params"), str(exc), "params")
        else:
            r.fail(
                (*path, "params", fld),
                getattr(exc, "rule", str(exc)),
                getattr(exc, "value", params.get(fld)),
            )
    return task


def _read_online_tms(r: FieldReader, raw: Any, path: tuple, task) -> OnlineTMS | None:
    m = r.mapping(raw, path)
    if m is None:
        return None
    n_problems = len(r.problems)
    v = ONLINE_TMS_SPEC.read(r, m, path)
    events = getattr(task, "events", None)
    if v["at"] is not None and events is not None and v["at"][0] not in events:
        r.fail(
            (*path, "at"),
            f"the {task.name} task announces only {', '.join(events)}",
            m["at"],
        )
    conditions = tuple(v["conditions"] or ())
    known = getattr(task, "conditions", None)
    if known is not None:
        for i, c in enumerate(conditions):
            if c not in known:
                r.fail(
                    (*path, "conditions", i),
                    f"is not a condition of {task.name} (known: {', '.join(known)})",
                    c,
                )
    if len(r.problems) > n_problems:
        return None
    select, amount = v["trials"]
    return OnlineTMS(
        event=v["at"][0],
        delay_s=v["at"][1],
        intensity=v["intensity"],
        select=select,
        every=int(amount) if select == "every" else 1,
        fraction=amount if select == "fraction" else 1.0,
        conditions=conditions,
    )


_BLOCK_TYPES = (
    "rest",
    "instructions",
    "wait_for_operator",
    "stimulate",
    "task",
    "repeat",
)
_TYPE_KIND = s.choice(_BLOCK_TYPES)


def _read_block(
    r: FieldReader, state: _Reader, raw: Any, path: tuple, variables: dict
) -> list:
    """Read one item of a ``blocks`` list into templates (Block or _Repeat)."""
    m = r.mapping(raw, path)
    if m is None:
        return []
    if "include" in m:
        return _read_include(r, state, m, path, variables)
    n_problems = len(r.problems)
    m = _substitute(r, m, path, variables)
    if len(r.problems) > n_problems:
        return []  # the value as written can't be read further
    btype = r.get(m, path, "type", _TYPE_KIND.parse, required=True)
    if btype is None:
        return []
    n_problems = len(r.problems)
    common = {"index": -1, "type": btype, "doc": r.doc, "src": path, "raw": m}
    if btype == "repeat":
        v = REPEAT_SPEC.read(r, m, path)
        children = _read_blocks(r, state, m, path, variables, "blocks")
        if len(r.problems) > n_problems:
            return []
        return [_Repeat(v["times"], v["order"], v["label"], children, path, r.doc)]
    if btype == "stimulate":
        pattern = r.get(m, path, "pattern", _PATTERN_KIND.parse, required=True)
        if pattern is None:
            return []
        v = PATTERN_SPECS[pattern].read(r, m, path)
        pat = _read_pattern(r, m, path, pattern, v)
        if pat is None or len(r.problems) > n_problems:
            return []
        return [
            StimulateBlock(
                **common, label=v["label"], intensity=v["intensity"], pattern=pat
            )
        ]
    v = BLOCK_SPECS[btype].read(r, m, path)
    if btype == "task":
        params = v["params"] if v["params"] is not None else {}
        if "params" in m and r.mapping(m["params"], (*path, "params")) is None:
            return []
        task = _validate_task(r, path, v["task"], params)
        tms = None
        if "tms" in m:
            tms = _read_online_tms(r, m["tms"], (*path, "tms"), task)
        if len(r.problems) > n_problems:
            return []
        return [
            TaskBlock(
                **common,
                label=v["label"],
                task=v["task"],
                trials=v["trials"],
                params=dict(params),
                tms=tms,
            )
        ]
    if len(r.problems) > n_problems:
        return []
    if btype == "rest":
        return [
            RestBlock(
                **common, label=v["label"], duration_s=v["duration"], eyes=v["eyes"]
            )
        ]
    if btype == "instructions":
        return [
            InstructionsBlock(
                **common, label=v["label"], text=v["text"], duration_s=v["duration"]
            )
        ]
    return [
        WaitBlock(
            **common,
            label=v["label"],
            text=v["text"],
            participant_text=v["participant_text"] or "",
        )
    ]


def _read_blocks(
    r: FieldReader, state: _Reader, m: dict, path: tuple, variables: dict, key: str
) -> list:
    raw = m.get(key)
    if key not in m:
        r.fail((*path, key), "is required", "nothing")
        return []
    if not isinstance(raw, list) or not raw:
        r.fail((*path, key), "must be a non-empty list of blocks", raw)
        return []
    out: list = []
    for i, item in enumerate(raw):
        out.extend(_read_block(r, state, item, (*path, key, i), variables))
    return out


def _read_include(
    r: FieldReader, state: _Reader, m: dict, path: tuple, variables: dict
) -> list:
    r.known(m, path, ("include",), "an include")
    name = r.get(m, path, "include", s.TEXT.parse)
    if name is None:
        return []
    # Name the fragment as the user would reach it from where they work, so
    # messages about its lines open in their editor.
    here = "" if r.doc.file == "<string>" else os.path.dirname(r.doc.file)
    shown = os.path.normpath(os.path.join(here, name))
    target = Path(shown).resolve()
    if target in state.stack:
        chain = " -> ".join(p.name for p in (*state.stack, target))
        r.fail((*path, "include"), f"includes itself ({chain})", name)
        return []
    if not target.is_file():
        r.fail(
            (*path, "include"),
            f"must name an existing file (looked for {shown})",
            name,
        )
        return []
    try:
        doc = load_yaml_file(shown)
    except ProtocolError as exc:
        r.problems.extend(exc.problems)
        return []
    state.includes.append(doc)
    fr = FieldReader(doc, r.problems)
    top = fr.mapping(doc.data, ())
    if top is None:
        return []
    FRAGMENT_SPEC.read(fr, top, ())
    fvars = _read_variables(fr, top, variables)
    state.stack.append(target)
    try:
        return _read_blocks(fr, state, top, (), fvars, "blocks")
    finally:
        state.stack.pop()


# --------------------------------------------------------------- expanding


def participant_number(participant: str | None) -> int:
    """Number used to pick a participant's counterbalancing row.

    The digits in the ID (``P07`` → 7), or a stable hash when there are none,
    so that consecutive participants get consecutive rows.
    """
    if participant is None:
        return 0
    digits = re.sub(r"\D", "", participant)
    return int(digits) if digits else zlib.crc32(participant.encode())


def balanced_latin_square_row(n: int, row: int) -> list[int]:
    """Row ``row`` of a balanced Latin square of order ``n`` (Williams design).

    For even ``n`` every item precedes every other equally often across the
    ``n`` rows; for odd ``n`` the mirrored rows (``n .. 2n-1``) complete it.
    """
    first = [0]
    lo, hi = 1, n - 1
    for k in range(1, n):
        if k % 2:
            first.append(lo)
            lo += 1
        else:
            first.append(hi)
            hi -= 1
    period = n if n % 2 == 0 else 2 * n
    row %= period
    seq = [(x + row) % n for x in first]
    return seq[::-1] if row >= n else seq


def _expand(
    items: list,
    seed: int,
    participant: str | None,
    order: list[str],
    counter: list[int],
) -> list[Block]:
    out: list[Block] = []
    for item in items:
        if not isinstance(item, _Repeat):
            out.append(item)
            continue
        counter[0] += 1
        group = counter[0]
        name = item.label or f"repeat at {item.doc.file}:{item.doc.where(item.src)[0]}"
        for rep in range(item.times):
            idx = list(range(len(item.children)))
            if item.order == "random":
                rng = np.random.default_rng([seed, group, rep])
                idx = rng.permutation(len(idx)).tolist()
                how = f"random from seed {seed}"
            elif item.order == "counterbalanced":
                row = participant_number(participant) + rep
                idx = balanced_latin_square_row(len(idx), row)
                who = participant if participant is not None else "(no participant)"
                how = f"counterbalanced, Latin-square row {row} for {who}"
            else:
                how = "fixed"
            children = [item.children[i] for i in idx]
            if item.order != "fixed":
                labels = [_template_label(c) for c in children]
                order.append(
                    f"{name} {rep + 1}/{item.times}: {how}: {', '.join(labels)}"
                )
            for child in _expand(children, seed, participant, order, counter):
                if item.times > 1 and child.label is not None:
                    child = replace(
                        child, label=f"{child.label} ({rep + 1}/{item.times})"
                    )
                out.append(child)
    return out


def _template_label(item) -> str:
    if isinstance(item, _Repeat):
        return item.label or "repeat"
    return item.label or item.type


def _finalise(blocks: list[Block]) -> tuple[Block, ...]:
    return tuple(
        replace(b, index=i, label=b.label or f"{b.type}-{i + 1}")
        for i, b in enumerate(blocks)
    )


def protocol_from_document(
    doc: LocatedDocument, *, participant: str | None = None
) -> Protocol:
    """Build a :class:`Protocol` from a located YAML document.

    Parameters
    ----------
    doc : LocatedDocument
        The protocol file as loaded by :mod:`~stimtrain.orchestrator.yamlpos`.
    participant : str | None
        Participant the counterbalanced block orders are drawn for.

    Raises
    ------
    ProtocolError
        With every problem found, in every file read.
    """
    state = _Reader()
    r = FieldReader(doc, state.problems)
    top = r.mapping(doc.data, ())
    if top is None:
        raise ProtocolError(state.problems)
    v = PROTOCOL_SPEC.read(r, top, ())
    if v["stimtrain"] is not None and v["stimtrain"] != FORMAT_VERSION:
        r.fail(
            ("stimtrain",),
            f"must be {FORMAT_VERSION} (the format version)",
            v["stimtrain"],
        )
    stricter = False
    if "safety" in top:
        safety = r.mapping(top["safety"], ("safety",))
        if safety is not None:
            stricter = SAFETY_OPTIONS_SPEC.read(r, safety, ("safety",))[
                "stricter_margin"
            ]
    variables = _read_variables(r, top, {})
    if doc.file != "<string>":
        state.stack.append(Path(doc.file).resolve())
    templates = _read_blocks(r, state, top, (), variables, "blocks")
    if state.problems:
        raise ProtocolError(state.problems)
    order: list[str] = []
    blocks = _finalise(_expand(templates, v["seed"], participant, order, [0]))
    return Protocol(
        name=v["name"],
        description=v["description"] or "",
        seed=v["seed"],
        blocks=blocks,
        stricter_margin=bool(stricter),
        document=doc,
        order=tuple(order),
        includes=tuple(state.includes),
        participant=participant,
    )


def load_protocol(path: str | Path, *, participant: str | None = None) -> Protocol:
    """Load and check the structure of a protocol file.

    Parameters
    ----------
    path : str | Path
        The YAML protocol file.
    participant : str | None
        Participant whose counterbalanced block order to draw (None: row 0).

    Returns
    -------
    Protocol
        The typed protocol. Safety is checked separately
        (:func:`stimtrain.orchestrator.safety.check_protocol`).

    Raises
    ------
    ProtocolError
        With one :class:`~stimtrain.orchestrator.errors.Problem` per problem.
    """
    return protocol_from_document(load_yaml_file(path), participant=participant)


def load_protocol_text(
    text: str, file: str = "<string>", *, participant: str | None = None
) -> Protocol:
    """Load a protocol from YAML text (see :func:`load_protocol`)."""
    return protocol_from_document(load_yaml_text(text, file), participant=participant)
