"""Threshold and hotspot blocks: one pulse at a time, each MEP read live.

Both give single pulses at the block's interval (± jitter) and measure each
pulse's MEP on the rig's EMG channel as soon as its samples have arrived
(:func:`stimtrain.emg.measure_mep`, the rule the analysis uses). A trial
whose pre-pulse EMG is outside the block's pre-activation limits is rejected
and replaced. A threshold block asks its method for the next power after
every counted MEP and ends when the method has converged (or at
``max_pulses``); a hotspot block counts each MEP for the site the operator
labelled last and ends when the operator accepts one. Every MEP and every
decision is a marker and a journal line. A stalled stream or the operator's
pause holds the block between two pulses, disarmed.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pylsl

from stimtrain.emg import BASELINE_S, measure_mep

from ..language.protocol import HotspotBlock, MEPRule, ThresholdBlock
from ..safety.delivery import Delivery
from ..safety.plan import PlannedBlock
from .control import SessionAborted
from .device_process import DeviceFault
from .threshold_methods import make_method

if TYPE_CHECKING:
    from .context import BlockContext

#: The first pulse comes this long after the unit is armed and ready.
FIRST_PULSE_S = 0.5
#: How long after its due time a pulse's report may take before it is lost.
REPORT_TIMEOUT_S = 2.0


@dataclass
class _Pulses:
    """The block's pulses so far: given, counted, rejected."""

    given: int = 0
    next_at: float = 0.0
    meps: list[dict] = field(default_factory=list)


def run_threshold(ctx: BlockContext, block: ThresholdBlock, planned) -> dict:
    """Hunt a motor threshold; returns the block's outcome with ``threshold``.

    Parameters
    ----------
    ctx : BlockContext
        The session's open parts (its ``emg`` reader among them).
    block : ThresholdBlock
        The block as written.
    planned : PlannedBlock
        Its plan (seed, the most power the hunt may give).

    Returns
    -------
    dict
        ``threshold``: ``measures``, ``value`` (%MSO), ``method``, ``pulses``,
        ``rejected``, ``converged``, ``ci``, ``measured`` (ISO time).
    """
    method = make_method(
        block.method,
        start=int(round(block.start.value)),
        max_power=block.max_power,
        max_pulses=block.max_pulses,
        criterion_uv=block.rule.criterion_uv,
    )
    rng = np.random.default_rng([planned.seed or 0, 7])
    pulses = _Pulses()
    ctx.ledger.set_block_fields(block.index, pattern="threshold", unit="%MSO")
    power = method.next_power()
    _arm(ctx, block, power)
    pulses.next_at = pylsl.local_clock() + FIRST_PULSE_S
    while pulses.given < block.max_pulses and not method.done:
        if ctx.control.ending():
            break
        mep = _one_pulse(ctx, block, planned, pulses, power, rng)
        if mep is None:
            continue  # withdrawn (a stall or a pause): the same power again
        if mep["rejected"]:
            continue
        method.update(power, mep["amplitude_uv"])
        power = None if method.done else method.next_power()
        _say_estimate(ctx, block, method, pulses, power)
        if power is None:
            break
    _disarm(ctx, block)
    if ctx.control.stop():
        raise SessionAborted(ctx.control.stop.reason)
    low, high = method.ci
    result = {
        "measures": block.measures,
        "value": float(method.estimate),
        "method": block.method,
        "pulses": pulses.given,
        "rejected": sum(m["rejected"] for m in pulses.meps),
        "converged": bool(method.converged),
        "ci": [float(low), float(high)],
        "measured": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    ctx.markers.push("threshold_result", block=block.index, **result)
    ctx.journal.write("threshold_result", block=block.index, **result)
    ctx.say(
        f"  {block.measures.upper()}: {result['value']:.1f} %MSO "
        f"({block.method}, {result['pulses']} pulses, 95 % CI "
        f"{low:.1f}-{high:.1f})" + ("" if result["converged"] else " NOT CONVERGED")
    )
    return {"threshold": result}


def run_hotspot(ctx: BlockContext, block: HotspotBlock, planned: PlannedBlock) -> dict:
    """Pulses at one power while the operator moves the coil and labels sites.

    Returns
    -------
    dict
        ``hotspot``: the chosen ``site`` (None when no site has
        ``pulses_per_site`` MEPs), its ``mean_uv`` and ``pulses``, and the
        ``ranking`` of every site.
    """
    control = ctx.control
    rng = np.random.default_rng([planned.seed or 0, 8])
    pulses = _Pulses()
    ctx.ledger.set_block_fields(
        block.index,
        pattern="hotspot",
        intensity=planned.intensity_value,
        unit=planned.unit,
        power=planned.power,
    )
    sites: dict[int, list[float]] = {}
    control.site = None
    control.accept_site.clear()
    _arm(ctx, block, planned.power)
    pulses.next_at = pylsl.local_clock() + FIRST_PULSE_S
    while pulses.given < block.max_pulses:
        if control.ending():
            break
        if ctx.operator is not None:
            ctx.operator.before_pulse(control, sites, block.min_pulses_per_site)
        ranked = _ranking(sites, block.min_pulses_per_site)
        if control.accept_site.is_set() and ranked:
            break
        control.accept_site.clear()
        site = control.site
        mep = _one_pulse(ctx, block, planned, pulses, planned.power, rng, site=site)
        if mep is None or mep["rejected"] or site is None:
            continue
        sites.setdefault(site, []).append(mep["amplitude_uv"])
        ranked = _ranking(sites, block.min_pulses_per_site)
        ctx.state.update(
            hunt=" | ".join(
                f"site {s}: {mean:.0f} uV (n={n})" for s, mean, n in ranked[:4]
            )
        )
    _disarm(ctx, block)
    if control.stop():
        raise SessionAborted(control.stop.reason)
    ranked = _ranking(sites, block.min_pulses_per_site)
    best = ranked[0] if ranked else (None, float("nan"), 0)
    result = {
        "site": best[0],
        "mean_uv": None if best[0] is None else round(best[1], 1),
        "pulses": best[2],
        "ranking": [[s, round(mean, 1), n] for s, mean, n in ranked],
    }
    ctx.markers.push("hotspot_result", block=block.index, **result)
    ctx.journal.write("hotspot_result", block=block.index, **result)
    ctx.say(
        "  hotspot: no site had enough MEPs"
        if best[0] is None
        else f"  hotspot: site {best[0]} ({best[1]:.0f} uV mean of {best[2]})"
    )
    return {"hotspot": result}


def _ranking(sites: dict[int, list[float]], least: int) -> list[tuple[int, float, int]]:
    """Sites with at least ``least`` MEPs, by mean MEP, largest first."""
    ranked = [
        (site, float(np.mean(amps)), len(amps))
        for site, amps in sites.items()
        if len(amps) >= least
    ]
    return sorted(ranked, key=lambda r: -r[1])


def _arm(ctx: BlockContext, block, power: int) -> None:
    ctx.device.set_power(power)
    ctx.state.update(device=ctx.device.arm(3.0))
    ctx.journal.write("armed", block=block.index, power=power)


def _disarm(ctx: BlockContext, block) -> None:
    if ctx.device.fault is None:
        ctx.state.update(device=ctx.device.disarm(), next_event=None)
        ctx.journal.write("disarmed", block=block.index)


def _hold_point(ctx: BlockContext, block) -> None:
    """Between two pulses: while a stream is stalled or the operator paused,
    wait disarmed (a Magstim left armed without firing disarms itself)."""
    control = ctx.control
    if not (control.stalled.is_set() or control.pause.is_set()):
        return
    reason = "stream stalled" if control.stalled.is_set() else "operator pause"
    ctx.state.update(device=ctx.device.disarm())
    ctx.journal.write("stimulation_paused", block=block.index, reason=reason)
    ctx.say(f"  {reason}: hunting paused")
    while (control.stalled.is_set() or control.pause.is_set()) and not (
        control.ending()
    ):
        time.sleep(0.05)
    if control.ending():
        return
    ctx.state.update(device=ctx.device.arm(3.0), status="running")
    ctx.journal.write("stimulation_resumed", block=block.index)


def _one_pulse(
    ctx: BlockContext,
    block,
    planned,
    pulses: _Pulses,
    power: int,
    rng: np.random.Generator,
    site: int | None = None,
) -> dict | None:
    """Give one pulse at ``power``, wait for its MEP, mark and journal it.

    Returns the MEP's fields, or None when the pulse was withdrawn before it
    was given (a stream stalled, the operator paused).

    Raises
    ------
    SessionAborted
        When the session stops.
    """
    control, device = ctx.control, ctx.device
    _hold_point(ctx, block)
    if control.ending():
        return None
    index = pulses.given
    ctx.ledger.update_block_fields(block.index, power=power, intensity=power)
    device.set_power(power)
    # A power change takes the unit up to a few seconds (100 ms per % down
    # on a Magstim): the pulse waits for it, never the other way round.
    device.wait_ready(timeout=12.0)
    due = max(pulses.next_at, pylsl.local_clock() + 0.1)
    with control.schedule_lock:
        if control.stalled.is_set():
            return None
        device.schedule(block.index, [(due, index, Delivery.SERIAL)])
    ctx.state.update(next_event=lambda: due)
    fired = _wait_fired(ctx, block, index, due)
    if fired is None:
        return None
    pulses.given += 1
    interval = block.interval_s + rng.uniform(-block.jitter_s, block.jitter_s)
    pulses.next_at = fired + interval
    rule: MEPRule = block.rule
    times, values = ctx.emg.around(
        fired, -BASELINE_S[0] + 0.01, rule.window_s[1] + 0.01, timeout=3.0
    )
    mep = measure_mep(times, values, window=rule.window_s)
    pre = mep.preactivation_uv
    rejected = not rule.preactivation_min_uv <= pre <= rule.preactivation_max_uv
    fields = {
        "pulse": index,
        "power": power,
        "amplitude_uv": round(mep.amplitude_uv, 1),
        "latency_ms": None if mep.latency_s is None else round(mep.latency_s * 1e3, 2),
        "preactivation_uv": round(pre, 1),
        "rejected": rejected,
        # The block's rule (peak-to-peak at or above its criterion), as the
        # yes/no threshold methods count it; None for a rejected trial.
        "hit": None if rejected else mep.amplitude_uv >= rule.criterion_uv,
    }
    if site is not None:
        fields["site"] = site
    if rejected:
        fields["reason"] = (
            "pre-activation above the limit"
            if pre > rule.preactivation_max_uv
            else "contraction below the limit"
        )
    ctx.markers.push("mep", fired, block=block.index, **fields)
    ctx.journal.write("mep", block=block.index, **fields)
    pulses.meps.append(fields)
    return fields


def _wait_fired(ctx: BlockContext, block, index: int, due: float) -> float | None:
    """The pulse's time once the device process reported it; None if dropped."""
    control = ctx.control
    while True:
        fired = ctx.ledger.fired_at(block.index, index)
        if fired is not None:
            return fired
        now = pylsl.local_clock()
        if control.stalled.is_set() and now > due + 0.05:
            return None  # the stall's hold dropped it
        if control.stop():
            raise SessionAborted(control.stop.reason)
        if now > due + REPORT_TIMEOUT_S:
            raise DeviceFault(
                ctx.device.fault or f"pulse {index} of block {block.index} not given"
            )
        time.sleep(0.005)


def _say_estimate(ctx: BlockContext, block, method, pulses: _Pulses, power) -> None:
    low, high = method.ci
    fields = {
        "pulses": pulses.given,
        "estimate": round(float(method.estimate), 2),
        "next_power": power,
        "ci": [round(float(low), 2), round(float(high), 2)],
    }
    ctx.markers.push("threshold_estimate", block=block.index, **fields)
    ctx.journal.write("threshold_estimate", block=block.index, **fields)
    ctx.state.update(
        hunt=f"{block.measures.upper()} ~ {fields['estimate']:.1f} %MSO "
        f"[{fields['ci'][0]:.1f}, {fields['ci'][1]:.1f}] after {pulses.given} pulses"
        + ("" if power is None else f"; next {power} %MSO")
    )
