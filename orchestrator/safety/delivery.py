"""How each block's pulses reach the stimulator: the delivery path, chosen once.

The plan chooses the path from the rig's capabilities (never from a named
model); the device process, the markers and the safety check read it from the
plan. A block the rig cannot deliver gets no path and a reason, which the
safety check turns into a located refusal.
"""

from __future__ import annotations

from enum import StrEnum


class Delivery(StrEnum):
    """A delivery path (its value is what the plan, journal and markers write)."""

    #: The host sends a fire command for each pulse.
    SERIAL = "serial"
    #: The host times each pulse and raises the rig's trigger line.
    TRIGGER = "trigger"
    #: The unit runs each train by itself; the host starts it.
    DEVICE_TRAIN = "device_train"
    #: One command to a paired-pulse stimulator fires conditioning and test pulse.
    PAIRED = "paired"


def capabilities(rig):
    """The :class:`~stimtrain.devices.stimulator.Capabilities` of a rig's unit."""
    from stimtrain.devices.stimulator import get_capabilities

    return get_capabilities(rig.stimulator_model)


def max_serial_rate(caps, power: float | None) -> float:
    """Highest rate (Hz) at which ``caps``'s unit fires by serial command.

    A unit without a serial rate limit of its own is limited by its recharge.
    """
    if caps.serial_max_rate_hz is not None:
        return caps.serial_max_rate_hz
    lo, hi = caps.intensity_range
    p = hi if power is None else min(max(power, lo), hi)
    recharge = caps.recharge_time(p)
    return 1.0 / recharge if recharge > 0 else caps.max_frequency(p)


def has_trigger_line(rig, caps) -> bool:
    """Whether host-timed triggers can reach this rig's stimulator."""
    return rig.trigger is not None and "ttl" in caps.trigger_inputs


def device_can_run(caps, frequency_hz: float, pulses_per_train: int) -> bool:
    """Whether the unit can run a regular train by itself."""
    return (
        caps.device_trains
        and (
            caps.max_train_frequency_hz is None
            or frequency_hz <= caps.max_train_frequency_hz
        )
        and (caps.max_train_pulses is None or pulses_per_train <= caps.max_train_pulses)
    )
