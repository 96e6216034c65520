"""Load, compile and judge in one step: what validate, plan and run share."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from pathlib import Path

from ..language.errors import ProtocolError
from ..language.protocol import Protocol, ThresholdBlock, load_protocol
from ..language.rig import Rig, load_rig
from ..language.thresholds import Thresholds
from .limits import Limits, load_limits
from .plan import Plan
from .rules import SafetyReport, check_protocol

#: At most this many possible thresholds are judged (every integer %MSO of
#: one expected range is 100 at most; two ranges share the budget).
MAX_CANDIDATES = 101


@dataclass(frozen=True)
class CheckedProtocol:
    """A protocol that passed every check, with its safety report and plan.

    With threshold blocks, ``candidates`` are the thresholds they may measure
    (every one was judged); the report and plan are those of the last, the
    highest.
    """

    protocol: Protocol
    rig: Rig
    thresholds: Thresholds
    limits: Limits
    report: SafetyReport
    plan: Plan
    candidates: tuple[Thresholds, ...] = ()


def candidate_thresholds(protocol: Protocol, known: Thresholds) -> list[Thresholds]:
    """The thresholds the protocol's threshold blocks may measure, to judge it for.

    Every integer %MSO of each declared range (``expected_rmt``,
    ``expected_amt``) and its ends, fewer when two ranges are measured (the
    budget is :data:`MAX_CANDIDATES`); pairs with an active threshold above
    the resting one are impossible and left out. Empty when the protocol
    measures nothing it declared a range for.
    """
    kinds = sorted(
        {b.measures for b in protocol.blocks if isinstance(b, ThresholdBlock)}
        & set(protocol.expected)
    )
    if not kinds:
        return []
    per_kind = max(2, int(MAX_CANDIDATES ** (1 / len(kinds))))
    grids = []
    for kind in kinds:
        low, high = protocol.expected[kind]
        values = set(range(math.ceil(low), math.floor(high) + 1)) | {low, high}
        values = sorted(values)
        if len(values) > per_kind:
            step = (len(values) - 1) / (per_kind - 1)
            values = sorted({values[round(i * step)] for i in range(per_kind)})
        grids.append(values)
    out = []
    for combo in itertools.product(*grids):
        try:
            out.append(replace(known, **dict(zip(kinds, combo, strict=True))))
        except ValueError:
            continue  # an active threshold above the resting one
    return out


def check_file(
    path: str | Path,
    *,
    rig: str | Path | Rig | None = None,
    thresholds: Thresholds | None = None,
    limits: str | Path | Limits | None = None,
    require_power: bool = False,
    participant: str | None = None,
    delivered_today: int = 0,
    skip_blocks: frozenset[int] = frozenset(),
    delivered_session: int = 0,
    measured: Thresholds | None = None,
) -> CheckedProtocol:
    """Load a protocol file, run the safety and device checks, compile the plan.

    Parameters
    ----------
    path : str | Path
        Protocol file.
    rig : str | Path | Rig | None
        ``"sim"``, ``"sim-<model>"``, a rig file, or a loaded rig; None: the
        rig the protocol names (``sim`` when it names none).
    thresholds : Thresholds | None
        The participant's motor thresholds (%MSO).
    limits : str | Path | Limits | None
        A lab limits file; the shipped defaults when None.
    require_power : bool
        Refuse intensities that can't be converted to device power (for runs).
    participant : str | None
        Participant the block order is drawn for (counterbalancing).
    delivered_today : int
        Pulses the participant already received today, for the per-day cap.
    skip_blocks : frozenset of int
        Blocks already finished in earlier runs of the session (resume).
    delivered_session : int
        Pulses delivered in earlier runs of the session (resume).
    measured : Thresholds | None
        What the protocol's threshold blocks measured in earlier runs of the
        session (resume): the blocks after them are judged with it alone. It
        must be within the protocol's expected range.

    Raises
    ------
    ProtocolError
        With every problem in the protocol, rig or limits file.
    """
    thresholds = thresholds or Thresholds()
    limits_obj = limits if isinstance(limits, Limits) else load_limits(limits)
    protocol = load_protocol(path, participant=participant)
    if rig is None:
        rig = protocol.rig or "sim"
    rig_obj = rig if isinstance(rig, Rig) else load_rig(rig)
    if measured is not None:
        _check_in_range(protocol, measured)
        candidates = [measured]
    else:
        candidates = candidate_thresholds(protocol, thresholds)
    for measured in candidates or [None]:
        report = check_protocol(
            protocol,
            thresholds=thresholds,
            rig=rig_obj,
            limits=limits_obj,
            require_power=require_power,
            delivered_today=delivered_today,
            skip_blocks=skip_blocks,
            delivered_session=delivered_session,
            measured=measured,
        )
        if not report.ok:
            raise ProtocolError(_for_candidate(report.problems, protocol, measured))
    return CheckedProtocol(
        protocol,
        rig_obj,
        thresholds,
        limits_obj,
        report,
        report.plan,
        tuple(candidates),
    )


def _check_in_range(protocol: Protocol, measured: Thresholds) -> None:
    """A threshold measured earlier must be one the protocol was judged for."""
    problems = []
    for kind, (low, high) in protocol.expected.items():
        value = getattr(measured, kind)
        if value is not None and not low <= value <= high:
            problems.append(
                protocol.document.problem(
                    (f"expected_{kind}",),
                    f"the {kind.upper()} measured in an earlier run, {value:.1f} "
                    f"%MSO, is outside this range: the blocks after it cannot run",
                    f"{low:g}-{high:g} %MSO",
                )
            )
    if problems:
        raise ProtocolError(problems)


def _for_candidate(problems, protocol: Protocol, measured: Thresholds | None):
    """Say for which possible threshold a problem arises."""
    if measured is None:
        return problems
    said = [
        f"{kind.upper()} {getattr(measured, kind):g} %MSO (expected_{kind} "
        f"{protocol.expected[kind][0]:g}-{protocol.expected[kind][1]:g} %MSO)"
        for kind in sorted(protocol.expected)
        if getattr(measured, kind) is not None
    ]
    return [
        replace(p, rule=f"{p.rule}, if the measured threshold is {' and '.join(said)}")
        for p in problems
    ]
