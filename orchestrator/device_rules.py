"""The rig's device limits in the safety check, and the delivery path of each block.

Read from the stimulator's capabilities (never from one hard-coded model):
power range, serial firing rate, recharge, maximum frequency by power, the
Rapid energy limits, paired-pulse capability and the trigger line. Each rule
is reported through the safety checker with its limit, value and margin.
"""

from __future__ import annotations

from .blocks import (
    PairedPulses,
    PulseList,
    RTMSTrains,
    SinglePulses,
    StimulateBlock,
    ThetaBurst,
)
from .dose import Dose
from .rig import Rig

#: A unit fired a hair before it has recharged refuses the pulse: plans keep
#: this much more than the recharge time between pulses.
RECHARGE_MARGIN_S = 0.1


def max_serial_rate(caps, dose: Dose) -> float:
    # A unit without a serial rate limit of its own is limited by recharge.
    if caps.serial_max_rate_hz is not None:
        return caps.serial_max_rate_hz
    power = dose.power if dose.power is not None else caps.intensity_range[1]
    recharge = caps.recharge_time(power)
    return 1.0 / recharge if recharge > 0 else caps.max_frequency(power)


def check_power_range(c, block, key: str, dose: Dose, caps) -> None:
    lo, hi = caps.intensity_range
    if dose.power is not None and dose.power < lo:
        c.rule(block, key, f"{caps.label} lowest power", lo, dose.power, "%MSO", "min")


def _shortest_interval(pattern) -> float | None:
    if isinstance(pattern, (SinglePulses, PairedPulses)):
        return pattern.interval_s - pattern.jitter_s
    if isinstance(pattern, PulseList):
        return pattern.shortest_interval_s
    return None


def _device_can_run(caps, pattern: RTMSTrains) -> bool:
    """Whether the unit can run each train of the pattern by itself."""
    return (
        caps.device_trains
        and (
            caps.max_train_frequency_hz is None
            or pattern.frequency_hz <= caps.max_train_frequency_hz
        )
        and (
            caps.max_train_pulses is None
            or pattern.pulses_per_train <= caps.max_train_pulses
        )
    )


def check_device(c, block: StimulateBlock, dose: Dose, rig: Rig, caps) -> None:
    """Device limits of the rig's stimulator and trigger path; sets the delivery.

    ``c`` is the safety checker (its ``rule`` and ``refuse`` record each rule)
    and ``caps`` the stimulator's :class:`~stimtrain.devices.stimulator.Capabilities`.
    """
    pattern = block.pattern
    raw = block.raw
    check_power_range(c, block, "intensity", dose, caps)
    # Power-dependent device limits need the power; without a threshold the
    # check is repeated at run time, where the power is required.
    power = dose.power
    has_trigger = rig.trigger is not None and "ttl" in caps.trigger_inputs
    shortest = _shortest_interval(pattern)
    if shortest is not None and power is not None:
        recharge = caps.recharge_time(power)
        if recharge > 0:
            c.rule(
                block,
                "interval" if "interval" in raw else "times",
                f"{caps.label} recharge time at {power} %MSO "
                f"(+{RECHARGE_MARGIN_S * 1e3:g} ms margin)",
                recharge + RECHARGE_MARGIN_S,
                shortest,
                "s",
                kind="min",
            )
    if isinstance(pattern, PairedPulses):
        _check_paired_device(c, block, dose, caps, has_trigger)
        return
    if shortest is not None:
        serial_rate = max_serial_rate(caps, dose)
        if shortest >= 1.0 / serial_rate - 1e-9:
            c.report.delivery[block.index] = "serial"
        elif has_trigger:
            c.report.delivery[block.index] = "trigger"
            if isinstance(pattern, PulseList) and power is not None:
                c.rule(
                    block,
                    "times",
                    f"{caps.label} maximum frequency at {power} %MSO",
                    caps.max_frequency(power),
                    1.0 / shortest,
                    "Hz",
                )
        else:
            key = "interval" if "interval" in raw else "times"
            c.rule(
                block,
                key,
                f"{caps.label} fires by serial command at most {serial_rate:g} Hz "
                "(this rig has no trigger line); shortest interval",
                1.0 / serial_rate,
                shortest,
                "s",
                kind="min",
                written=raw.get(key),
            )
        return
    what = "theta burst" if isinstance(pattern, ThetaBurst) else "rTMS"
    if has_trigger:
        # Host-timed triggers when the rig has a line: every pulse is then
        # timed and stamped by the host (one marker per pulse, measured).
        c.report.delivery[block.index] = "trigger"
    elif isinstance(pattern, RTMSTrains) and _device_can_run(caps, pattern):
        # Otherwise the unit runs each train by itself; the host starts it.
        c.report.delivery[block.index] = "device_train"
    else:
        why = (
            f"the {caps.label} runs no theta bursts by itself"
            if isinstance(pattern, ThetaBurst)
            else f"the {caps.label} cannot run this train by itself"
        )
        c.refuse(
            block,
            "pattern",
            f"{what} needs a trigger line on this rig: {why} and fires at most "
            f"{max_serial_rate(caps, dose):.3g} Hz by serial command",
            raw.get("pattern"),
        )
        return
    if isinstance(pattern, ThetaBurst):
        rate, key = pattern.burst_frequency_hz, "burst_frequency"
        mean_rate = pattern.burst_rate_hz * pattern.pulses_per_burst
        n_burst = pattern.pulses // pattern.pulses_per_burst
        on_time = pattern.train_duration_s or n_burst / pattern.burst_rate_hz
    else:
        rate, key = pattern.frequency_hz, "frequency"
        mean_rate, on_time = rate, pattern.train_duration_s
    if power is not None:
        c.rule(
            block,
            key,
            f"{caps.label} maximum frequency at {power} %MSO",
            caps.max_frequency(power),
            rate,
            "Hz",
            written=raw.get(key, f"{rate:g} Hz"),
        )
    if caps.max_on_time is not None and dose.power is not None:
        limit = caps.max_on_time(mean_rate, dose.power)
        if limit is not None and limit != float("inf"):
            c.rule(
                block,
                "train_duration" if "train_duration" in raw else "pulses",
                f"{caps.label} maximum on-time at {mean_rate:g} Hz, {power} %MSO",
                round(limit, 3),
                on_time,
                "s",
            )
    if (
        isinstance(pattern, RTMSTrains)
        and pattern.trains > 1
        and caps.min_wait_after_train is not None
        and dose.power is not None
    ):
        wait = caps.min_wait_after_train(
            pattern.pulses_per_train, pattern.frequency_hz, dose.power
        )
        c.rule(
            block,
            "inter_train_interval",
            f"{caps.label} minimum wait after a train (energy limit)",
            round(wait, 3),
            pattern.inter_train_interval_s,
            "s",
            kind="min",
        )


def _check_paired_device(c, block, dose: Dose, caps, has_trigger: bool) -> None:
    pattern: PairedPulses = block.pattern
    cond = c.report.conditioning[block.index]
    if caps.paired_pulse:
        c.report.delivery[block.index] = "paired"
        return
    same = dose.power is not None and dose.power == cond.power
    power = dose.power if dose.power is not None else caps.intensity_range[1]
    if same and has_trigger and 1.0 / pattern.isi_s <= caps.max_frequency(power):
        # Two equal pulses far enough apart (e.g. LICI) are two triggers.
        c.report.delivery[block.index] = "trigger"
        return
    c.refuse(
        block,
        "pattern",
        f"paired pulses at {pattern.isi_s * 1e3:g} ms with these intensities need a "
        f"paired-pulse stimulator (BiStim², MagPro with MagOption); this rig has "
        f"a {caps.label}",
        block.raw.get("pattern"),
    )
