"""The protocol model: typed blocks read from a YAML protocol file.

A protocol file lists blocks (``rest``, ``instructions``, ``stimulate``,
``task``) run in order. Loading collects every problem in the file at once and
raises :class:`~stimtrain.orchestrator.errors.ProtocolError`; nothing else in
stimtrain sees an unchecked protocol.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import Problem, ProtocolError
from .fields import (
    FieldReader,
    at_least_one,
    boolean,
    choice,
    integer,
    non_negative,
    positive,
)
from .fields import (
    text as text_field,
)
from .units import Intensity, parse_frequency, parse_intensity, parse_time
from .yamlpos import LocatedDocument, load_yaml_file, load_yaml_text

FORMAT_VERSION = 1
BLOCK_TYPES = ("rest", "instructions", "stimulate", "task")
PATTERNS = ("single", "rtms", "theta_burst")
TBS_VARIANTS = ("iTBS", "cTBS", "custom")


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


Pattern = SinglePulses | RTMSTrains | ThetaBurst


@dataclass(frozen=True, kw_only=True)
class Block:
    """What every block has: its position in the file, type and label."""

    index: int
    type: str
    label: str

    @property
    def path(self) -> tuple:
        """Path of this block in the protocol document, for messages."""
        return ("blocks", self.index)


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
class StimulateBlock(Block):
    """TMS delivered in a pattern at one intensity."""

    intensity: Intensity
    pattern: Pattern

    @property
    def pattern_name(self) -> str:
        """The pattern's name as written in protocol files."""
        return {SinglePulses: "single", RTMSTrains: "rtms", ThetaBurst: "theta_burst"}[
            type(self.pattern)
        ]


@dataclass(frozen=True, kw_only=True)
class TaskBlock(Block):
    """A training task block: a task name, a number of trials and parameters."""

    task: str
    trials: int
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Protocol:
    """A checked protocol file.

    Attributes
    ----------
    name, description : str
        What the protocol is, for people.
    seed : int
        Seed of every random choice (jitter, trial order), recorded with the run.
    blocks : tuple of Block
        The blocks in run order.
    stricter_margin : bool
        Shorten the rTMS train-duration limits by the Chen et al. 1997 margin.
    document : LocatedDocument
        The source text and value positions, for messages and copies.
    """

    name: str
    description: str
    seed: int
    blocks: tuple[Block, ...]
    stricter_margin: bool
    document: LocatedDocument

    @property
    def file(self) -> str:
        """The file the protocol was read from."""
        return self.document.file

    @property
    def sha256(self) -> str:
        """SHA-256 of the exact protocol text."""
        return hashlib.sha256(self.document.text.encode("utf-8")).hexdigest()


_COMMON = ("type", "label")
_FIELDS = {
    "rest": (*_COMMON, "duration", "eyes"),
    "instructions": (*_COMMON, "text", "duration"),
    "task": (*_COMMON, "task", "trials", "params"),
}
_STIM_FIELDS = {
    "single": (*_COMMON, "pattern", "intensity", "pulses", "interval", "jitter"),
    "rtms": (
        *_COMMON,
        "pattern",
        "intensity",
        "frequency",
        "pulses_per_train",
        "train_duration",
        "trains",
        "inter_train_interval",
    ),
    "theta_burst": (
        *_COMMON,
        "pattern",
        "intensity",
        "variant",
        "pulses",
        "pulses_per_burst",
        "burst_frequency",
        "burst_rate",
        "train_duration",
        "inter_train_interval",
    ),
}


def _read_pattern(r: FieldReader, m: dict, path: tuple, name: str) -> Pattern | None:
    n_problems = len(r.problems)
    if name == "single":
        pulses = r.get(m, path, "pulses", integer, required=True, check=at_least_one)
        interval = r.get(m, path, "interval", parse_time, required=True, check=positive)
        jitter = r.get(m, path, "jitter", parse_time, default=0.0, check=non_negative)
        if interval is not None and jitter is not None and jitter >= interval:
            r.fail((*path, "jitter"), "must be shorter than the interval", m["jitter"])
        if len(r.problems) > n_problems:
            return None
        return SinglePulses(pulses=pulses, interval_s=interval, jitter_s=jitter)
    if name == "rtms":
        freq = r.get(
            m, path, "frequency", parse_frequency, required=True, check=positive
        )
        trains = r.get(m, path, "trains", integer, default=1, check=at_least_one)
        ppt = r.get(m, path, "pulses_per_train", integer, check=at_least_one)
        dur = r.get(m, path, "train_duration", parse_time, check=positive)
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
        iti = r.get(
            m,
            path,
            "inter_train_interval",
            parse_time,
            required=trains is not None and trains > 1,
            default=0.0,
            check=positive,
        )
        if len(r.problems) > n_problems:
            return None
        return RTMSTrains(
            frequency_hz=freq,
            pulses_per_train=ppt,
            trains=trains,
            inter_train_interval_s=iti,
        )
    variant = r.get(m, path, "variant", choice(TBS_VARIANTS), required=True)
    itbs = variant == "iTBS"
    ppb = r.get(m, path, "pulses_per_burst", integer, default=3, check=at_least_one)
    pulses = r.get(m, path, "pulses", integer, default=600, check=at_least_one)
    bf = r.get(
        m, path, "burst_frequency", parse_frequency, default=50.0, check=positive
    )
    br = r.get(m, path, "burst_rate", parse_frequency, default=5.0, check=positive)
    on = r.get(
        m,
        path,
        "train_duration",
        parse_time,
        default=2.0 if itbs else None,
        required=variant == "custom",
        check=positive,
    )
    off = r.get(
        m,
        path,
        "inter_train_interval",
        parse_time,
        default=8.0 if itbs else 0.0,
        check=non_negative,
    )
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
        inter_train_interval_s=off,
    )


def _validate_task(
    r: FieldReader, m: dict, path: tuple, name: str | None, params: dict
):
    """Let the task check its own parameters, so typos fail before the session."""
    if name is None:
        return
    from stimtrain.tasks import get_task

    try:
        task = get_task(name)
    except KeyError as exc:
        r.fail((*path, "task"), str(exc.args[0]) if exc.args else "unknown task", name)
        return
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


def _read_block(r: FieldReader, raw: Any, index: int) -> Block | None:
    path = ("blocks", index)
    m = r.mapping(raw, path)
    if m is None:
        return None
    btype = r.get(m, path, "type", choice(BLOCK_TYPES), required=True)
    if btype is None:
        return None
    label = r.get(m, path, "label", text_field, default=f"{btype}-{index + 1}")
    n_problems = len(r.problems)
    if btype == "stimulate":
        pattern = r.get(m, path, "pattern", choice(PATTERNS), required=True)
        if pattern is None:
            return None
        r.known(m, path, _STIM_FIELDS[pattern], f"a {pattern} stimulate block")
        intensity = r.get(m, path, "intensity", parse_intensity, required=True)
        if intensity is not None and intensity.value <= 0:
            r.fail((*path, "intensity"), "must be greater than zero", m["intensity"])
        pat = _read_pattern(r, m, path, pattern)
        if pat is None or len(r.problems) > n_problems:
            return None
        return StimulateBlock(
            index=index, type=btype, label=label, intensity=intensity, pattern=pat
        )
    r.known(m, path, _FIELDS[btype], f"a {btype} block")
    if btype == "rest":
        duration = r.get(m, path, "duration", parse_time, required=True, check=positive)
        eyes = r.get(m, path, "eyes", choice(("open", "closed")), default="open")
        if len(r.problems) > n_problems:
            return None
        return RestBlock(
            index=index, type=btype, label=label, duration_s=duration, eyes=eyes
        )
    if btype == "instructions":
        text = r.get(m, path, "text", text_field, required=True)
        duration = r.get(m, path, "duration", parse_time, default=5.0, check=positive)
        if len(r.problems) > n_problems:
            return None
        return InstructionsBlock(
            index=index, type=btype, label=label, text=text, duration_s=duration
        )
    task = r.get(m, path, "task", text_field, required=True)
    trials = r.get(m, path, "trials", integer, required=True, check=at_least_one)
    params = m.get("params", {})
    if params is None:
        params = {}
    if r.mapping(params, (*path, "params")) is None:
        return None
    _validate_task(r, m, path, task, params)
    if len(r.problems) > n_problems:
        return None
    return TaskBlock(
        index=index,
        type=btype,
        label=label,
        task=task,
        trials=trials,
        params=dict(params),
    )


def protocol_from_document(doc: LocatedDocument) -> Protocol:
    """Build a :class:`Protocol` from a located YAML document.

    Raises
    ------
    ProtocolError
        With every problem found.
    """
    problems: list[Problem] = []
    r = FieldReader(doc, problems)
    top = r.mapping(doc.data, ())
    if top is None:
        raise ProtocolError(problems)
    r.known(
        top,
        (),
        ("stimtrain", "name", "description", "seed", "safety", "blocks"),
        "a protocol",
    )
    version = r.get(top, (), "stimtrain", integer, required=True)
    if version is not None and version != FORMAT_VERSION:
        r.fail(
            ("stimtrain",), f"must be {FORMAT_VERSION} (the format version)", version
        )
    name = r.get(top, (), "name", text_field, required=True)
    description = top.get("description", "") or ""
    if not isinstance(description, str):
        r.fail(("description",), "must be text", description)
    seed = r.get(top, (), "seed", integer, default=0, check=non_negative)
    stricter = False
    if "safety" in top:
        safety = r.mapping(top["safety"], ("safety",))
        if safety is not None:
            r.known(safety, ("safety",), ("stricter_margin",), "the safety options")
            stricter = r.get(
                safety, ("safety",), "stricter_margin", boolean, default=False
            )
    blocks: list[Block] = []
    raw_blocks = top.get("blocks")
    if "blocks" not in top:
        r.fail(("blocks",), "is required", "nothing")
    elif not isinstance(raw_blocks, list) or not raw_blocks:
        r.fail(("blocks",), "must be a non-empty list of blocks", raw_blocks)
    else:
        for i, raw in enumerate(raw_blocks):
            block = _read_block(r, raw, i)
            if block is not None:
                blocks.append(block)
    if problems:
        raise ProtocolError(problems)
    return Protocol(
        name=name,
        description=description,
        seed=seed,
        blocks=tuple(blocks),
        stricter_margin=bool(stricter),
        document=doc,
    )


def load_protocol(path: str | Path) -> Protocol:
    """Load and check the structure of a protocol file.

    Parameters
    ----------
    path : str | Path
        The YAML protocol file.

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
    return protocol_from_document(load_yaml_file(path))


def load_protocol_text(text: str, file: str = "<string>") -> Protocol:
    """Load a protocol from YAML text (see :func:`load_protocol`)."""
    return protocol_from_document(load_yaml_text(text, file))
