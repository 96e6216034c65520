"""The rig's device limits, judged on the firings a plan will deliver.

Read from the stimulator's capabilities (never from one hard-coded model):
serial firing rate, recharge, maximum frequency by power, and the Rapid energy
limits (on-time above the continuous rate, wait after a train). Trains of
firings are found by their intervals, as the physiological rules find them,
so a train is judged alike however the protocol wrote it. Each rule is
reported through the safety checker with its limit, value and margin.
"""

from __future__ import annotations

import numpy as np

from .delivery import Delivery, has_trigger_line, max_serial_rate
from .plan import Plan, PlannedBlock
from .trains import find_trains

#: A unit that recharges for seconds between pulses (200², BiStim²) refuses a
#: pulse fired a hair early, and a host-timed pulse can be a few milliseconds
#: late while the next one is on time: plans keep this much more than such a
#: recharge time between firings. (A unit whose "recharge" is only its rate
#: limit, a MagPro, runs trains at that rate; no margin there.)
RECHARGE_MARGIN_S = 0.1
#: Recharge times from this long get the margin.
SLOW_RECHARGE_S = 1.0


def _in_range(caps, power) -> bool:
    lo, hi = caps.intensity_range
    return power is not None and not np.isnan(power) and lo <= power <= hi


def check_device(c, plan: Plan, caps) -> None:
    """Apply the device rules of ``caps`` to every firing of ``plan``.

    ``c`` is the safety checker (its ``rule`` records each rule, located).
    """
    firings = plan.pulses.grouped("firing")
    for pb in plan.blocks:
        if not pb.pulses or pb.skipped or pb.delivery is None:
            continue
        mine = firings.t_s[firings.block == pb.index]
        if len(mine) > 1:
            _check_firing_rate(c, pb, caps, float(np.min(np.diff(mine))))
    trains = [
        t
        for t in find_trains(
            firings.t_s,
            firings.block,
            firings.pct_rmt,
            firings.pct_amt,
            firings.power,
        )
        if plan.blocks[t.block].delivery in (Delivery.TRIGGER, Delivery.DEVICE_TRAIN)
    ]
    for train in trains:
        _check_train(c, plan.blocks[train.block], caps, train)
    if caps.min_wait_after_train is None:
        return
    for before, after in zip(trains[:-1], trains[1:], strict=True):
        if not _in_range(caps, before.power):
            continue
        wait = caps.min_wait_after_train(
            before.pulses, before.mean_rate_hz, before.power
        )
        pb = plan.blocks[after.block]
        block = c.block(pb.index)
        c.rule(
            block,
            pb.field("gap"),
            f"{caps.label} minimum wait after a train (energy limit)",
            round(wait, 3),
            round(after.start_s - before.end_s, 6),
            "s",
            kind="min",
            train=after,
        )


def _check_firing_rate(c, pb: PlannedBlock, caps, shortest: float) -> None:
    """Serial firing rate and recharge: the shortest interval between firings."""
    block = c.block(pb.index)
    key = pb.field("rate")
    power = (
        pb.power
        if pb.conditioning_power is None
        else max(p for p in (pb.power, pb.conditioning_power, 0) if p is not None)
    )
    if pb.delivery == Delivery.SERIAL:
        rate = max_serial_rate(caps, power)
        trigger = (
            "" if has_trigger_line_of(c, caps) else " (this rig has no trigger line)"
        )
        c.rule(
            block,
            key,
            f"{caps.label} fires by serial command at most {rate:g} Hz{trigger}; "
            "shortest interval",
            round(1.0 / rate, 9),
            round(shortest, 9),
            "s",
            kind="min",
            written=c.written(block, key),
        )
    if _in_range(caps, power):
        recharge = caps.recharge_time(power)
        margin = RECHARGE_MARGIN_S if recharge >= SLOW_RECHARGE_S else 0.0
        if recharge > 0:
            c.rule(
                block,
                key,
                f"{caps.label} recharge time at {power:g} %MSO"
                + (f" (+{margin * 1e3:g} ms margin)" if margin else ""),
                round(recharge + margin, 6),
                round(shortest, 9),
                "s",
                kind="min",
                written=c.written(block, key),
            )


def has_trigger_line_of(c, caps) -> bool:
    """Whether the checked rig has a trigger line into this unit."""
    return c.rig is not None and has_trigger_line(c.rig, caps)


def _check_train(c, pb: PlannedBlock, caps, train) -> None:
    """Maximum frequency at the train's power; on-time above the continuous rate."""
    if not _in_range(caps, train.power):
        return
    block = c.block(pb.index)
    power = train.power
    c.rule(
        block,
        pb.field("rate"),
        f"{caps.label} maximum frequency at {power:g} %MSO",
        caps.max_frequency(power),
        round(train.frequency_hz, 6),
        "Hz",
        written=c.written(block, pb.field("rate")),
        train=train,
    )
    if caps.max_on_time is None:
        return
    limit = caps.max_on_time(train.mean_rate_hz, power)
    if limit is None or limit == float("inf"):
        return
    c.rule(
        block,
        pb.field("length"),
        f"{caps.label} maximum on-time at {train.mean_rate_hz:.4g} Hz, {power:g} %MSO",
        round(limit, 3),
        round(train.duration_s, 6),
        "s",
        train=train,
    )
