"""Load, compile and judge in one step: what validate, plan and run share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..language.errors import ProtocolError
from ..language.protocol import Protocol, load_protocol
from ..language.rig import Rig, load_rig
from ..language.thresholds import Thresholds
from .limits import Limits, load_limits
from .plan import Plan
from .rules import SafetyReport, check_protocol


@dataclass(frozen=True)
class CheckedProtocol:
    """A protocol that passed every check, with its safety report and plan."""

    protocol: Protocol
    rig: Rig
    thresholds: Thresholds
    limits: Limits
    report: SafetyReport
    plan: Plan


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
    report = check_protocol(
        protocol,
        thresholds=thresholds,
        rig=rig_obj,
        limits=limits_obj,
        require_power=require_power,
        delivered_today=delivered_today,
        skip_blocks=skip_blocks,
        delivered_session=delivered_session,
    )
    if not report.ok:
        raise ProtocolError(report.problems)
    return CheckedProtocol(
        protocol, rig_obj, thresholds, limits_obj, report, report.plan
    )
