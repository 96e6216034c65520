"""The protocol model: patterns, blocks and the protocol, as plain data classes.

Built only by :mod:`~stimtrain.orchestrator.language.protocol` from a checked file;
everything downstream (safety check, plan, runner) reads these.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import Problem
from .trigger import PhaseTrigger, TriggeredPulses
from .units import Intensity
from .yamlpos import LocatedDocument

FORMAT_VERSION = 1
ORDERS = ("fixed", "random", "counterbalanced")
TBS_VARIANTS = ("iTBS", "cTBS", "custom")
PAIRED_PARADIGMS = ("SICI", "ICF", "LICI", "custom")
#: Task events a pulse can be locked to (a task may announce fewer).
TASK_EVENTS = ("stim_onset", "cue", "stop_signal", "response")
#: Inter-stimulus intervals that define each paired-pulse paradigm
#: (Kujirai 1993; Valls-Solé 1992; Rossini 2015), and whether the
#: conditioning pulse must be below the resting motor threshold.
PAIRED_ISI_S = {"SICI": (0.001, 0.006), "ICF": (0.007, 0.020), "LICI": (0.050, 0.200)}


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


Pattern = (
    SinglePulses | PairedPulses | RTMSTrains | ThetaBurst | PulseList | TriggeredPulses
)
PATTERN_NAMES: dict[type, str] = {
    SinglePulses: "single",
    PairedPulses: "paired",
    RTMSTrains: "rtms",
    ThetaBurst: "theta_burst",
    PulseList: "list",
    # Written as ``pattern: single`` with a ``trigger`` section.
    TriggeredPulses: "single",
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
class PhaseCalibrationBlock(Block):
    """Resting EEG, recorded to measure the phase estimator's bias.

    For ``duration_s`` the participant rests while the rig's EEG is
    recorded; the estimator (``calibration``: band, montage, window) is then
    replayed on it against a non-causal estimate of the phase, and the
    opposite of its mean error is the offset later triggered blocks with
    ``phase_offset: calibrated`` add to their target.
    """

    duration_s: float
    calibration: PhaseTrigger


#: What a threshold block measures, and each one's defaults (Rossini et al.
#: 2015, docs/specs/analysis.md): the MEP criterion, and the pre-activation
#: (peak-to-peak EMG in -50..-5 ms) a trial must stay under (at rest) or
#: reach (active, a contraction held).
THRESHOLD_KINDS = {
    "resting": {"criterion_uv": 50.0, "preactivation_min_uv": 0.0,
                "preactivation_max_uv": 200.0},
    "active": {"criterion_uv": 200.0, "preactivation_min_uv": 50.0,
               "preactivation_max_uv": 1000.0},
}  # fmt: skip
#: Threshold-hunting methods (:mod:`~stimtrain.orchestrator.session.
#: threshold_methods`); the first is the default.
THRESHOLD_METHODS = ("bayes", "samt", "ml-pest", "relative-frequency")
#: The threshold a kind measures, as intensities name it.
THRESHOLD_UNITS = {"resting": "%RMT", "active": "%AMT"}


@dataclass(frozen=True, kw_only=True)
class MEPRule:
    """How a pulse's MEP is measured online, and which trials count.

    ``window_s`` is where the peak-to-peak amplitude is taken (after removing
    the pre-pulse baseline's mean); a trial whose pre-pulse EMG (peak-to-peak
    in -50..-5 ms) is outside ``preactivation_min_uv``..``preactivation_max_uv``
    is rejected and replaced.
    """

    window_s: tuple[float, float] = (0.015, 0.050)
    criterion_uv: float = 50.0
    preactivation_min_uv: float = 0.0
    preactivation_max_uv: float = 200.0


@dataclass(frozen=True, kw_only=True)
class ThresholdBlock(Block):
    """Find a motor threshold on the live EMG: one pulse at a time.

    Every pulse's power is chosen by ``method`` from the MEPs before it,
    starting at ``start`` (%MSO), never above ``max_power``; a trial with
    pre-activation is rejected and replaced. At most ``max_pulses`` pulses
    (replacements included), at least ``interval_s - jitter_s`` apart.
    """

    kind: str
    method: str
    start: Intensity
    max_power: int
    max_pulses: int
    interval_s: float
    jitter_s: float
    rule: MEPRule

    @property
    def measures(self) -> str:
        """The threshold this block measures: ``rmt`` or ``amt``."""
        return "rmt" if self.kind == "resting" else "amt"

    @property
    def n_pulses(self) -> int:
        """The most pulses the block can deliver."""
        return self.max_pulses


@dataclass(frozen=True, kw_only=True)
class HotspotBlock(Block):
    """The motor hotspot: pulses at one intensity while the operator moves the coil.

    The operator labels the coil's current site with a key; every MEP counts
    for the site labelled last. Sites are ranked by their mean MEP; the block
    ends when the operator accepts one (or after ``max_pulses``).
    """

    intensity: Intensity
    max_pulses: int
    interval_s: float
    jitter_s: float
    min_pulses_per_site: int
    rule: MEPRule

    @property
    def n_pulses(self) -> int:
        """The most pulses the block can deliver."""
        return self.max_pulses


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
class BuilderFacts:
    """What the loader learnt from a block's PsychoPy Builder experiment.

    ``path`` is the ``.psyexp`` (absolute; ``shown`` as messages name it),
    ``sha256`` its bytes' digest (in the protocol hash; the run refuses a file
    that changed since), ``max_trials`` the block's ``trials`` cap (``None``:
    the loops' own count), ``estimated_s`` a rough duration for the timeline.
    With online TMS, ``onsets`` bounds how often the locked component starts
    (the run never schedules more pulses) and ``onset_gap_s`` is the shortest
    time between two of its starts (the run drops a pulse due sooner).
    """

    path: str
    shown: str
    sha256: str
    max_trials: int | None
    estimated_s: float
    onsets: int | None = None
    onset_gap_s: float | None = None


@dataclass(frozen=True, kw_only=True)
class TaskBlock(Block):
    """A training task block: a task name, trials, parameters, optional online TMS.

    A Builder block (``builder`` set) names its experiment as ``task``, its
    ``trials`` are the most loop iterations it runs (0 when only the run
    knows) and its ``params`` are the experiment's *Experiment info* fields.
    """

    task: str
    trials: int
    params: dict[str, Any] = field(default_factory=dict)
    tms: OnlineTMS | None = None
    builder: BuilderFacts | None = None

    @property
    def n_pulses(self) -> int:
        """Most pulses the block's online TMS can deliver."""
        if self.tms is None:
            return 0
        if self.builder is not None:
            return self.tms.max_pulses(self.builder.onsets or 0)
        return self.tms.max_pulses(self.trials)


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
    rig : str | None
        The rig the protocol is written for (``sim``, ``sim-<model>`` or a rig
        file's path), used when no other rig is named.
    expected : dict
        ``rmt``/``amt`` → (low, high) %MSO a threshold block may measure.
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
    rig: str | None = None
    #: Thresholds a threshold block may measure (``expected_rmt: 30-80 %MSO``):
    #: the blocks after it are judged for every one of them.
    expected: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def file(self) -> str:
        """The file the protocol was read from."""
        return self.document.file

    @property
    def sha256(self) -> str:
        """SHA-256 of the exact protocol text, every included fragment and every
        Builder experiment's file."""
        h = hashlib.sha256(self.document.text.encode("utf-8"))
        for doc in self.includes:
            h.update(doc.text.encode("utf-8"))
        # Builder experiments, by their bytes' digests (each file once).
        seen: set[str] = set()
        for block in self.blocks:
            facts = getattr(block, "builder", None)
            if facts is not None and facts.path not in seen:
                seen.add(facts.path)
                h.update(bytes.fromhex(facts.sha256))
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
