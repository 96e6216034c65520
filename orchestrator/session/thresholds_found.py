"""A threshold measured in the session: kept, checked, and used by the blocks after it.

A phase calibration's offset is kept the same way (:func:`keep_phase_offset`),
for the participant's later sessions.

The value goes into the session folder as a thresholds file (the format
``--thresholds`` reads), then the blocks after the threshold block are planned
and judged again with it, exactly as a run is judged before it starts. The
session stops before the next block, with the reason, when the hunt did not
converge and a later block needs the value, when the value is outside the
range the protocol declared (its later blocks were judged only for that
range), or when the new plan breaks a rule for this rig.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from ..language.blocks import THRESHOLD_UNITS, PhaseCalibrationBlock, ThresholdBlock
from ..language.thresholds import Thresholds
from ..safety.plan import Plan
from ..safety.rules import check_protocol
from .session_folder import write_new

if TYPE_CHECKING:
    from ..safety.checking import CheckedProtocol
    from .context import BlockContext


def use_measured_threshold(
    checked: CheckedProtocol,
    plan: Plan,
    block: ThresholdBlock,
    result: dict,
    ctx: BlockContext,
    *,
    done: frozenset[int],
    participant: str,
    resumed: int = 0,
) -> Plan:
    """Keep a measured threshold and re-plan the blocks after its block.

    Parameters
    ----------
    checked : CheckedProtocol
        What the run was checked as before it started.
    plan : Plan
        The plan the run follows now.
    block : ThresholdBlock
        The block that measured.
    result : dict
        Its ``threshold`` outcome (:func:`~.hunting.run_threshold`).
    ctx : BlockContext
        The session's open parts.
    done : frozenset of int
        Blocks finished in this run.
    participant : str
        Whose threshold it is (written to the thresholds file).
    resumed : int
        Pulses delivered in earlier runs of this session.

    Returns
    -------
    Plan
        The new plan, or ``plan`` when the session stops (``ctx.control``'s
        stop is then set with the reason).
    """
    kind, value = result["measures"], result["value"]
    _write_thresholds_file(ctx, block, result, participant)
    protocol = checked.protocol
    unit = THRESHOLD_UNITS[block.kind]
    later = [
        b
        for b in protocol.blocks[block.index + 1 :]
        if unit in {getattr(getattr(b, "intensity", None), "unit", None)}
        or (getattr(b, "tms", None) is not None and b.tms.intensity.unit == unit)
    ]
    why = None
    expected = protocol.expected.get(kind)
    if not result["converged"] and later:
        why = (
            f"the {kind.upper()} hunt of block {block.index + 1} did not converge "
            f"in {result['pulses']} pulses; block {later[0].index + 1} needs it"
        )
    elif expected is not None and not expected[0] <= value <= expected[1]:
        why = (
            f"the measured {kind.upper()} {value:.1f} %MSO is outside the "
            f"protocol's expected_{kind} {expected[0]:g}-{expected[1]:g} %MSO: "
            "the blocks after it were judged only for that range"
        )
    if why is None:
        try:
            measured = Thresholds(**{kind: value})
            report = check_protocol(
                protocol,
                thresholds=checked.thresholds,
                rig=checked.rig,
                limits=checked.limits,
                require_power=True,
                delivered_today=plan.delivered_today,
                skip_blocks=done | {block.index},
                delivered_session=resumed + ctx.ledger.delivered,
                measured=measured,
            )
        except ValueError as exc:
            why = f"the measured {kind.upper()} {value:.1f} %MSO: {exc}"
        else:
            if not report.ok:
                why = (
                    f"with the measured {kind.upper()} {value:.1f} %MSO the blocks "
                    "after it break a rule: "
                    + "; ".join(str(p) for p in report.problems)
                )
    if why is not None:
        ctx.journal.write("replan_refused", after_block=block.index, reason=why)
        ctx.say(f"  STOP: {why}")
        ctx.control.stop.set(why)
        return plan
    new = report.plan
    name = f"plan-after-block-{block.index + 1:02d}.json"
    write_new(ctx.run_file(name), new.to_json())
    thresholds = {kind: value}
    ctx.markers.push("replanned", after_block=block.index, thresholds=thresholds)
    ctx.journal.write(
        "replanned",
        after_block=block.index,
        thresholds=thresholds,
        plan_file=name,
        powers={b.index: b.power for b in new.blocks if b.index > block.index},
    )
    ctx.say(
        f"  blocks after block {block.index + 1} re-planned with "
        f"{kind.upper()} {value:.1f} %MSO ({name})"
    )
    return new


def _write_thresholds_file(
    ctx: BlockContext, block: ThresholdBlock, result: dict, participant: str
) -> None:
    """The measurement as a thresholds file (``--thresholds`` reads it).

    It keeps the phase offset a calibration of this run measured.
    """
    low, high = result["ci"]
    measured = {
        result["measures"]: round(result["value"], 1),
        "measured": datetime.date.today().isoformat(),
        "method": (
            f"{result['method']}, {result['pulses']} pulses "
            f"({result['rejected']} rejected), 95 % CI {low:.1f}-{high:.1f} "
            f"%MSO, {'converged' if result['converged'] else 'NOT converged'}, "
            f"block {block.index + 1} '{block.label}' at {result['measured']}"
        ),
    }
    write_thresholds_file(
        ctx, block.index, participant, {**measured, **ctx.phase_carried}
    )
    if result["converged"]:
        ctx.thresholds_carried = measured


def write_thresholds_file(
    ctx: BlockContext, block: int, participant: str, values: dict
) -> Path:
    """Write a thresholds file into the run's folder; nothing is overwritten.

    The first of the run is ``thresholds.yaml``; a later one (an AMT after
    the RMT, a phase calibration after a threshold block) is
    ``thresholds-block-NN.yaml`` after its block, and holds everything known
    then: the newest file is the one to give the participant's next session.

    Parameters
    ----------
    ctx : BlockContext
        The session's open parts.
    block : int
        The writing block's index.
    participant : str
        Whose values they are.
    values : dict
        The file's fields after ``stimtrain`` and ``participant``.

    Returns
    -------
    Path
        The file written.
    """
    text = yaml.safe_dump(
        {"stimtrain": 1, "participant": participant, **values},
        sort_keys=False,
        allow_unicode=True,
    )
    path = ctx.run_file("thresholds.yaml")
    if path.exists():
        path = ctx.run_file(f"thresholds-block-{block + 1:02d}.yaml")
    write_new(path, text)
    return path


def keep_phase_offset(
    ctx: BlockContext, block: PhaseCalibrationBlock, result: dict, participant: str
) -> Path | None:
    """A calibration's phase offset into a thresholds file, for later sessions.

    The file keeps the motor thresholds known in this run
    (``ctx.thresholds_carried``) and says what the offset was measured with
    (estimator, montage, band, crossings, circular SD), so that a later
    session's ``phase_offset: calibrated`` blocks can use it, and are refused
    when they use another setup.

    Parameters
    ----------
    ctx : BlockContext
        The session's open parts.
    block : PhaseCalibrationBlock
        The calibration block.
    result : dict
        What it measured (:func:`~.closed_loop.calibration.run_calibration`).
    participant : str
        Whose offset it is.

    Returns
    -------
    Path | None
        The file written; None when the calibration measured nothing (too
        few crossings: no offset is carried to another session).
    """
    from .closed_loop.calibration import MIN_CROSSINGS

    if result.get("skipped") or result["crossings"] < MIN_CROSSINGS:
        ctx.say(
            "  no phase offset written to the thresholds file (the calibration "
            "measured nothing)"
        )
        return None
    trig = block.calibration
    band = f"{trig.band_hz[0]:g}-{trig.band_hz[1]:g} Hz"
    ctx.phase_carried = {
        "phase_offset": round(float(result["offset_deg"]), 1),
        "phase_calibration": {
            "estimator": trig.estimator,
            "montage": trig.montage_name or {ch: w for ch, w in trig.montage},
            "band": band,
            "crossings": int(result["crossings"]),
            "sd": round(float(result["sd_deg"]), 1),
            "measured": datetime.datetime.now().isoformat(timespec="seconds"),
            "method": (
                f"phase_calibration block {block.index + 1} '{block.label}', "
                f"{block.duration_s:g} s of resting EEG, window "
                f"{trig.window_s * 1e3:g} ms, mean error "
                f"{float(result['bias_deg']):+.1f} deg"
            ),
        },
    }
    path = write_thresholds_file(
        ctx, block.index, participant, {**ctx.thresholds_carried, **ctx.phase_carried}
    )
    ctx.journal.write(
        "phase_offset_kept", block=block.index, file=path.name, **ctx.phase_carried
    )
    ctx.say(f"  phase offset kept for later sessions in {path.name}")
    return path
