"""The protocol model: typed blocks read from a YAML protocol file.

A protocol file lists blocks (``rest``, ``instructions``, ``wait_for_operator``,
``stimulate``, ``task``) and structure (``repeat`` with a block order, and
``include`` of fragment files), with named ``variables``. Loading collects
every problem of every file at once and raises
:class:`~stimtrain.orchestrator.language.errors.ProtocolError`; nothing else in
stimtrain sees an unchecked protocol. The field tables (:data:`BLOCK_SPECS`,
:data:`PATTERN_SPECS`, …) also generate the shipped JSON Schema.

Longer than most because the loader is one pass over one document: blocks,
patterns, online TMS, includes and variables with their located problems.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import spec as s
from .blocks import (  # noqa: F401 - the model is part of this module's API
    FORMAT_VERSION,
    ORDERS,
    PAIRED_ISI_S,
    PAIRED_PARADIGMS,
    PATTERN_NAMES,
    TASK_EVENTS,
    TBS_VARIANTS,
    THRESHOLD_KINDS,
    Block,
    HotspotBlock,
    InstructionsBlock,
    MEPRule,
    OnlineTMS,
    PairedPulses,
    Pattern,
    PhaseCalibrationBlock,
    Protocol,
    PulseList,
    RestBlock,
    RTMSTrains,
    SinglePulses,
    StimulateBlock,
    TaskBlock,
    ThetaBurst,
    ThresholdBlock,
    WaitBlock,
    block_pulses,
)
from .bounds import MAX_PULSES_PER_BLOCK, count_text
from .errors import Problem, ProtocolError
from .fields import FieldReader
from .protocol_fields import (  # noqa: F401 - the tables are part of the API
    BLOCK_SPECS,
    BLOCK_TYPES,
    FRAGMENT_SPEC,
    HUNTING_SPECS,
    ONLINE_TMS_SPEC,
    PATTERN_KIND,
    PATTERN_SPECS,
    PROTOCOL_SPEC,
    REPEAT_SPEC,
    SAFETY_OPTIONS_SPEC,
    TRIGGER_SPEC,
    TRIGGERED_SPEC,
    TYPE_KIND,
)
from .structure import (
    RepeatTemplate,
    expand_blocks,
    number_blocks,
    read_variables,
    substitute,
)
from .trigger import PhaseTrigger, read_triggered
from .yamlpos import LocatedDocument, load_yaml_file, load_yaml_text


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
        _check_count(r, m, path, count, v[count], 1 if name == "single" else 2)
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
        if times is not None and len(times) > MAX_PULSES_PER_BLOCK:
            r.fail(
                (*path, "times"),
                f"must list at most {MAX_PULSES_PER_BLOCK} pulses "
                "(the most in one block)",
                m["times"],
            )
        elif times is not None:
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


def _check_count(
    r: FieldReader, m: dict, path: tuple, key: str, n: int | None, per: int
) -> bool:
    """Refuse a count of ``per``-pulse units above the pulses one block may have.

    Checked as the block is read, before any pulse is computed (a count is
    one line, the pulses it asks for could fill the memory). Returns whether
    the count is within the bound (or not known).
    """
    most = MAX_PULSES_PER_BLOCK // per
    if n is None or n <= most:
        return True
    why = (
        "the most pulses in one block"
        if per == 1
        else f"{per} pulses each; one block may have at most {MAX_PULSES_PER_BLOCK}"
    )
    r.fail((*path, key), f"must be at most {most} ({why})", m.get(key, n))
    return False


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
    most = MAX_PULSES_PER_BLOCK
    if ("pulses_per_train" in m) == ("train_duration" in m):
        r.fail(
            (*path, "pulses_per_train"),
            "give exactly one of pulses_per_train and train_duration",
            "both" if "train_duration" in m else "neither",
        )
    elif dur is not None and freq is not None and not dur * freq <= most:
        # ``not <=`` also catches a product that overflowed to inf.
        r.fail(
            (*path, "train_duration"),
            f"holds more than {MAX_PULSES_PER_BLOCK} pulses at {freq:g} Hz "
            "(the most in one block)",
            m["train_duration"],
        )
    elif dur is not None and freq is not None:
        ppt = round(dur * freq)
        if abs(ppt - dur * freq) > 1e-6 or ppt < 1:
            r.fail(
                (*path, "train_duration"),
                f"must hold a whole number of pulses at {freq:g} Hz",
                m["train_duration"],
            )
    if "pulses_per_train" in m:
        _check_count(r, m, path, "pulses_per_train", ppt, 1)
    if ppt is not None and trains is not None and ppt <= most < ppt * trains:
        r.fail(
            (*path, "trains"),
            f"make {count_text(ppt * trains)} pulses with {ppt} per train; "
            f"one block may have at most {most}",
            m.get("trains", trains),
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
    # A partial burst among a trillion pulses is beside the point.
    within = _check_count(r, m, path, "pulses", pulses, 1)
    if within and pulses is not None and ppb is not None and pulses % ppb:
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


def _validate_task(
    r: FieldReader, path: tuple, name: str | None, params: dict
) -> tuple[object | None, dict]:
    """Let the task check its own parameters, so typos fail before the session.

    The one check of a protocol's task parameters: the block keeps the
    complete, checked parameters (defaults filled in) it returns, and the
    plan and the session read them from the block.
    """
    if name is None:
        return None, params
    from stimtrain.tasks import get_task

    try:
        task = get_task(name)
    except KeyError as exc:
        r.fail((*path, "task"), str(exc.args[0]) if exc.args else "unknown task", name)
        return None, params
    try:
        return task, task.validate_params(params)
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
    return task, params


def _read_online_tms(r: FieldReader, raw: Any, path: tuple, task) -> OnlineTMS | None:
    m = r.mapping(raw, path)
    if m is None:
        return None
    n_problems = len(r.problems)
    v = ONLINE_TMS_SPEC.read(r, m, path)
    if task is not None and v["at"] is not None and "." in v["at"][0]:
        r.fail(
            (*path, "at"),
            "only a Builder block locks pulses to a component; the "
            f"{task.name} task announces {', '.join(TASK_EVENTS)}",
            m["at"],
        )
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


#: Pulses of a threshold or hotspot block must be single pulses: further
#: apart than the longest interval a train can have (docs/specs/safety.md),
#: and long enough apart for the MEP not to condition the next (Rossini 2015).
MIN_HUNTING_INTERVAL_S = 2.0


def _read_hunting(r: FieldReader, m: dict, path: tuple, btype: str, common) -> list:
    """A threshold or hotspot block: pulses one at a time, MEPs read live."""
    n_problems = len(r.problems)
    v = HUNTING_SPECS[btype].read(r, m, path)
    if v["max_pulses"] is not None and v["max_pulses"] > MAX_PULSES_PER_BLOCK:
        r.fail(
            (*path, "max_pulses"),
            f"must be at most {MAX_PULSES_PER_BLOCK}",
            v["max_pulses"],
        )
    if v["interval"] is not None and v["jitter"] is not None:
        if v["interval"] - v["jitter"] < MIN_HUNTING_INTERVAL_S:
            r.fail(
                (*path, "interval"),
                f"minus the jitter must be at least {MIN_HUNTING_INTERVAL_S:g} s "
                "(single pulses, each MEP unconditioned by the last)",
                m.get("interval", "5 s"),
            )
    kind = v.get("kind") or "resting"
    defaults = THRESHOLD_KINDS[kind]
    rule = MEPRule(
        window_s=tuple(v["window"] or (0.015, 0.050)),
        criterion_uv=v.get("criterion") or defaults["criterion_uv"],
        preactivation_min_uv=(
            v["preactivation_min"]
            if v.get("preactivation_min") is not None
            else defaults["preactivation_min_uv"]
        ),
        preactivation_max_uv=v["preactivation_max"] or defaults["preactivation_max_uv"],
    )
    if rule.preactivation_min_uv >= rule.preactivation_max_uv:
        r.fail(
            (*path, "preactivation_min"),
            "must be below preactivation_max",
            rule.preactivation_min_uv,
        )
    if btype == "threshold" and None not in (v["start"], v["max_intensity"]):
        if v["start"].value > v["max_intensity"].value:
            r.fail((*path, "start"), "must not be above max_intensity", m["start"])
    if len(r.problems) > n_problems:
        return []
    hunt = dict(
        **common,
        label=v["label"],
        max_pulses=v["max_pulses"],
        interval_s=v["interval"],
        jitter_s=v["jitter"],
        rule=rule,
    )
    if btype == "hotspot":
        return [
            HotspotBlock(
                **hunt,
                intensity=v["intensity"],
                min_pulses_per_site=v["pulses_per_site"],
            )
        ]
    return [
        ThresholdBlock(
            **hunt,
            kind=kind,
            method=v["method"],
            start=v["start"],
            max_power=int(v["max_intensity"].value),
        )
    ]


def _read_block(
    r: FieldReader, state: _Reader, raw: Any, path: tuple, variables: dict
) -> list:
    """Read one item of a ``blocks`` list into templates (Block or RepeatTemplate)."""
    m = r.mapping(raw, path)
    if m is None:
        return []
    if "include" in m:
        return _read_include(r, state, m, path, variables)
    n_problems = len(r.problems)
    m = substitute(r, m, path, variables)
    if len(r.problems) > n_problems:
        return []  # the value as written can't be read further
    btype = r.get(m, path, "type", TYPE_KIND.parse, required=True)
    if btype is None:
        return []
    n_problems = len(r.problems)
    common = {"index": -1, "type": btype, "doc": r.doc, "src": path, "raw": m}
    if btype == "repeat":
        v = REPEAT_SPEC.read(r, m, path)
        children = _read_blocks(r, state, m, path, variables, "blocks")
        if len(r.problems) > n_problems:
            return []
        return [
            RepeatTemplate(v["times"], v["order"], v["label"], children, path, r.doc)
        ]
    if btype == "stimulate":
        pattern = r.get(m, path, "pattern", PATTERN_KIND.parse, required=True)
        if pattern is None:
            return []
        if "trigger" in m:
            # Pulses at an EEG phase: bounded by a count and/or a duration.
            got = read_triggered(r, m, path, pattern)
            v, pat = got if got is not None else (None, None)
        else:
            v = PATTERN_SPECS[pattern].read(r, m, path)
            pat = _read_pattern(r, m, path, pattern, v)
        if pat is None or len(r.problems) > n_problems:
            return []
        return [
            StimulateBlock(
                **common, label=v["label"], intensity=v["intensity"], pattern=pat
            )
        ]
    if btype in HUNTING_SPECS:
        return _read_hunting(r, m, path, btype, common)
    v = BLOCK_SPECS[btype].read(r, m, path)
    if btype == "task":
        params = v["params"] if v["params"] is not None else {}
        if "params" in m and r.mapping(m["params"], (*path, "params")) is None:
            return []
        if "builder" in m:
            from .builder_block import read_builder_block

            return read_builder_block(r, m, path, v, common, _read_online_tms)
        for key in ("task", "trials"):
            if v[key] is None and key not in m:
                r.fail((*path, key), "is required", "nothing")
        task, params = _validate_task(r, path, v["task"], params)
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
    if btype == "phase_calibration":
        band, window = v["band"], v["window"]
        if band is not None and window is not None and window < 2 / band[0] - 1e-12:
            r.fail(
                (*path, "window"),
                f"must hold at least two cycles of the band's lower edge "
                f"({2e3 / band[0]:g} ms at {band[0]:g} Hz)",
                m.get("window", "500 ms"),
            )
            return []
        name, weights = v["montage"]
        estimator = dict(
            band_hz=band, montage=weights, montage_name=name, window_s=window
        )
        return [
            PhaseCalibrationBlock(
                **common,
                label=v["label"],
                duration_s=v["duration"],
                calibration=PhaseTrigger(
                    target_deg=0.0, estimator=v["estimator"], **estimator
                ),
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
    fvars = read_variables(fr, top, variables)
    state.stack.append(target)
    try:
        return _read_blocks(fr, state, top, (), fvars, "blocks")
    finally:
        state.stack.pop()


def protocol_from_document(
    doc: LocatedDocument, *, participant: str | None = None
) -> Protocol:
    """Build a :class:`Protocol` from a located YAML document.

    Parameters
    ----------
    doc : LocatedDocument
        The protocol file as loaded by :mod:`~stimtrain.orchestrator.language.yamlpos`.
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
    variables = read_variables(r, top, {})
    if doc.file != "<string>":
        state.stack.append(Path(doc.file).resolve())
    templates = _read_blocks(r, state, top, (), variables, "blocks")
    if state.problems:
        raise ProtocolError(state.problems)
    order: list[str] = []
    blocks = number_blocks(expand_blocks(templates, v["seed"], participant, order, [0]))
    rig = v["rig"]
    if rig is not None and not rig.startswith("sim") and doc.file != "<string>":
        # A rig file is named relative to the protocol, like an include.
        rig = os.path.normpath(os.path.join(os.path.dirname(doc.file), rig))
    return Protocol(
        rig=rig,
        name=v["name"],
        description=v["description"] or "",
        seed=v["seed"],
        blocks=blocks,
        stricter_margin=bool(stricter),
        document=doc,
        order=tuple(order),
        includes=tuple(state.includes),
        participant=participant,
        expected={
            kind: v[f"expected_{kind}"]
            for kind in ("rmt", "amt")
            if v[f"expected_{kind}"] is not None
        },
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
        (:func:`stimtrain.orchestrator.safety.rules.check_protocol`).

    Raises
    ------
    ProtocolError
        With one :class:`~stimtrain.orchestrator.language.errors.Problem` per problem.
    """
    return protocol_from_document(load_yaml_file(path), participant=participant)


def load_protocol_text(
    text: str, file: str = "<string>", *, participant: str | None = None
) -> Protocol:
    """Load a protocol from YAML text (see :func:`load_protocol`)."""
    return protocol_from_document(load_yaml_text(text, file), participant=participant)
