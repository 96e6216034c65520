"""Magstim device protection: the checks made before a command is sent.

Pure functions of a model and the values asked for. Each returns the value
as the protocol encodes it (whole %, tenths of Hz, …) or raises
:class:`~stimtrain.devices.errors.DeviceLimitError` naming the model, the
thing, the rule and the value. The driver calls them before writing; the
simulator uses the same rules to refuse what a unit refuses; the safety check
can call them on a protocol before a session starts.
"""

from __future__ import annotations

from ..errors import DeviceLimitError
from .capabilities import (
    MagstimModel,
    get_model,
    max_frequency_hz,
    max_on_time,
    min_wait_after_train,
    recharge_time,
)

# Slack on comparisons of floats that come from 0.1-step settings.
_EPS = 1e-9


def whole(name: str, value: float) -> int:
    """Return ``value`` as an int, or refuse a fraction (or a bool)."""
    if isinstance(value, bool) or int(value) != value:
        raise DeviceLimitError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def tenths(name: str, value: float, unit: str) -> int:
    """Return ``value`` in tenths of ``unit``, or refuse a finer value."""
    result = round(value * 10)
    if isinstance(value, bool) or abs(result - value * 10) > 1e-6:
        raise DeviceLimitError(
            f"{name} has a resolution of 0.1 {unit}, got {value!r} {unit}"
        )
    return result


def check_power(
    model: str | MagstimModel,
    power: float,
    *,
    enhanced: bool = False,
    name: str = "power",
) -> int:
    """Power in whole % within the model's range (110 % with enhanced power)."""
    m = get_model(model)
    top = m.max_power
    if enhanced and m.enhanced_max_power is not None:
        top = m.enhanced_max_power
    value = whole(f"{m.label} {name}", power)
    if not m.min_power <= value <= top:
        raise DeviceLimitError(
            f"{m.label}: {name} {value} % outside {m.min_power}–{top} %"
        )
    return value


def check_frequency(model: str | MagstimModel, frequency_hz: float) -> int:
    """Rapid train frequency in tenths of Hz: 0.1 Hz up to the model's top."""
    m = get_model(model)
    value = tenths(f"{m.label} train frequency", frequency_hz, "Hz")
    top = m.max_train_frequency_hz or 0.0
    if not 1 <= value <= round(top * 10):
        raise DeviceLimitError(
            f"{m.label}: train frequency must be 0.1–{top:g} Hz, got "
            f"{frequency_hz!r} Hz"
        )
    return value


def check_pulses(model: str | MagstimModel, n_pulses: int) -> int:
    """Pulses per Rapid train: 1 up to the model's maximum."""
    m = get_model(model)
    value = whole(f"{m.label} pulses per train", n_pulses)
    top = m.max_train_pulses or 0
    if not 1 <= value <= top:
        raise DeviceLimitError(
            f"{m.label}: pulses per train must be 1–{top}, got {value}"
        )
    return value


def check_duration(model: str | MagstimModel, duration_s: float, version: int) -> int:
    """Rapid train duration in tenths of s (3 digits before v9, 4 from v9)."""
    m = get_model(model)
    value = tenths(f"{m.label} train duration", duration_s, "s")
    top = 9999 if version >= 9 else 999
    if not 0 <= value <= top:
        raise DeviceLimitError(
            f"{m.label}: train duration must be 0–{top / 10:g} s on software "
            f"v{version}, got {duration_s!r} s"
        )
    return value


def check_train(
    model: str | MagstimModel, frequency_hz: float, n_pulses: int, power: float
) -> None:
    """Refuse a train above the frequency table or the energy on-time limit."""
    m = get_model(model)
    limit = max_frequency_hz(m, power)
    if frequency_hz > limit + _EPS:
        raise DeviceLimitError(
            f"{m.label}: train frequency {frequency_hz:g} Hz is above the "
            f"{limit:g} Hz maximum at {power:g} %"
        )
    on_time = n_pulses / frequency_hz
    longest = max_on_time(frequency_hz, min(power, 100))
    if on_time > longest + _EPS:
        raise DeviceLimitError(
            f"{m.label}: train of {n_pulses} pulses at {frequency_hz:g} Hz lasts "
            f"{on_time:.3g} s, above the {longest:.3g} s maximum on-time at "
            f"{power:g} % (63 kJ per minute)"
        )


def train_busy_time(frequency_hz: float, n_pulses: int, power: float) -> float:
    """Seconds from a train's first pulse until the unit may fire again."""
    wait = min_wait_after_train(n_pulses, frequency_hz, min(power, 100))
    return (n_pulses - 1) / frequency_hz + wait


def check_ipi(ipi_ms: float, *, high_resolution: bool) -> int:
    """BiStim² IPI as sent: whole ms (0–999) or 0.1 ms steps (0–99.9 ms)."""
    if high_resolution:
        value = tenths("BiStim² IPI (high-resolution mode)", ipi_ms, "ms")
        rule = "0–99.9 ms in 0.1 ms steps in high-resolution mode"
    else:
        value = whole("BiStim² IPI (normal mode, whole ms)", ipi_ms)
        rule = "0–999 ms"
    if not 0 <= value <= 999:
        raise DeviceLimitError(f"BiStim² IPI must be {rule}, got {ipi_ms!r} ms")
    return value


def check_charge_delay(delay_ms: int, version: int) -> int:
    """Rapid charge delay in ms: up to 2000 on v9, 10000 from v10."""
    value = whole("Rapid charge delay", delay_ms)
    top = 10_000 if version >= 10 else 2000
    if not 0 <= value <= top:
        raise DeviceLimitError(
            f"Rapid charge delay must be 0–{top} ms on software v{version}, got {value}"
        )
    return value


def shortest_pulse_interval(
    model: str | MagstimModel, power: float, *, enhanced: bool = False
) -> tuple[float, str]:
    """Shortest interval between two serial single pulses, and the rule's name.

    Rapid family: 1 Hz over serial (0.5 Hz with enhanced power). 200² and
    BiStim²: the recharge time at ``power``.
    """
    m = get_model(model)
    if m.family == "rapid":
        rate = m.serial_max_rate_enhanced_hz if enhanced else m.serial_max_rate_hz
        return 1.0 / rate, f"serial single pulses at most {rate:g} Hz"
    seconds = recharge_time(m, power)
    return seconds, f"recharge takes {seconds:g} s at {power:g} %"
