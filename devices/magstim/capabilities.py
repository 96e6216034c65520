"""Magstim model capabilities and Rapid energy limits, as plain data.

Numbers come from docs/specs/magstim.md. The protocol validator and the simulator
both read them here, so a device limit is written down exactly once.
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass

from ..stimulator import Capabilities

#: Power columns of the maximum-frequency table (≤30 uses the first column).
FREQUENCY_TABLE_POWERS: tuple[int, ...] = (30, 40, 50, 60, 70, 80, 90, 100)

#: Energy per pulse (J) at power (%), from the spec.
ENERGY_TABLE: tuple[tuple[int, float], ...] = (
    (10, 2.5),
    (20, 10.1),
    (30, 22.7),
    (40, 40.3),
    (50, 63.0),
    (60, 90.7),
    (70, 123.4),
    (80, 161.2),
    (90, 204.0),
    (100, 252.0),
)

#: Continuous power the Rapid can dissipate (J/s), and energy per minute (J).
CONTINUOUS_POWER_W = 1050.0
ENERGY_PER_MINUTE_J = 63000.0


@dataclass(frozen=True)
class MagstimModel:
    """What one Magstim model can do.

    Attributes
    ----------
    name : str
        Key in :data:`MODELS` (``"200"``, ``"bistim"``, ``"rapid2"``, …).
    label : str
        Human-readable name.
    family : str
        Protocol family: ``"200"``, ``"bistim"`` or ``"rapid"``.
    min_power, max_power : int
        Power range in % of maximum output.
    enhanced_max_power : int | None
        Highest power with enhanced power on (Rapid family only).
    serial_max_rate_hz : float | None
        Highest single-pulse rate when firing over serial (Rapid family).
    serial_max_rate_enhanced_hz : float | None
        The same with enhanced power on.
    recharge_s : tuple of (int, float)
        ``(highest power, seconds)`` steps of the recharge time after a
        pulse, for units without a Rapid power supply; empty for Rapid.
    has_trains : bool
        Whether the unit can run trains by itself.
    max_frequency_table : tuple of float | None
        Maximum frequency (Hz) at the powers of
        :data:`FREQUENCY_TABLE_POWERS` (Rapid family, 240 V units).
    max_train_frequency_hz : float | None
        Highest programmable train frequency.
    max_train_pulses : int | None
        Most pulses in one train.
    min_train_wait_s : float
        Shortest wait after a train.
    """

    name: str
    label: str
    family: str
    min_power: int = 0
    max_power: int = 100
    enhanced_max_power: int | None = None
    serial_max_rate_hz: float | None = None
    serial_max_rate_enhanced_hz: float | None = None
    recharge_s: tuple[tuple[int, float], ...] = ()
    has_trains: bool = False
    max_frequency_table: tuple[float, ...] | None = None
    max_train_frequency_hz: float | None = None
    max_train_pulses: int | None = None
    min_train_wait_s: float = 0.5


def _rapid(name: str, label: str, table: tuple[float, ...]) -> MagstimModel:
    return MagstimModel(
        name=name,
        label=label,
        family="rapid",
        enhanced_max_power=110,
        serial_max_rate_hz=1.0,
        serial_max_rate_enhanced_hz=0.5,
        has_trains=True,
        max_frequency_table=table,
        max_train_frequency_hz=100.0,
        max_train_pulses=6000,
    )


MODELS: dict[str, MagstimModel] = {
    "200": MagstimModel(
        name="200",
        label="Magstim 200²",
        family="200",
        recharge_s=((49, 2.0), (79, 3.0), (100, 4.0)),
    ),
    "bistim": MagstimModel(
        name="bistim",
        label="Magstim BiStim²",
        family="bistim",
        recharge_s=((100, 4.0),),
    ),
    "rapid2": _rapid("rapid2", "Magstim Rapid²", (50, 37, 30, 25, 20, 18, 17, 15)),
    "super_rapid2": _rapid(
        "super_rapid2", "Magstim Super Rapid²", (100, 75, 50, 45, 40, 35, 30, 25)
    ),
    "super_rapid2_plus": _rapid(
        "super_rapid2_plus",
        "Magstim Super Rapid² Plus",
        (100, 100, 97, 80, 68, 57, 49, 41),
    ),
}


def get_model(model: str | MagstimModel) -> MagstimModel:
    """Look up a model by name (or pass a :class:`MagstimModel` through)."""
    if isinstance(model, MagstimModel):
        return model
    try:
        return MODELS[model]
    except KeyError:
        raise ValueError(
            f"unknown Magstim model {model!r}; expected one of {sorted(MODELS)}"
        ) from None


def _check_power(power: float) -> None:
    if not 0 <= power <= 110:
        raise ValueError(f"power must be within 0–110 %, got {power}")


def energy_per_pulse(power: float) -> float:
    """Energy (J) stored for one pulse at ``power`` % (Rapid family).

    The spec's table is close to ``E = 0.0252·p²`` (stored energy grows with
    the square of the voltage), so we interpolate the coefficient ``E/p²``
    linearly between table points and multiply back by ``p²``. Interpolating
    ``E`` itself linearly would overestimate it between points (73 % gives
    134.7 J instead of the spec's 134.2 J). Below 10 % and above 100 % the
    nearest coefficient is used.

    Parameters
    ----------
    power : float
        Power in % of maximum output (0–110).

    Returns
    -------
    float
        Energy in joules.
    """
    _check_power(power)
    if power == 0:
        return 0.0
    powers = [p for p, _ in ENERGY_TABLE]
    coefs = [e / p**2 for p, e in ENERGY_TABLE]
    if power <= powers[0]:
        coef = coefs[0]
    elif power >= powers[-1]:
        coef = coefs[-1]
    else:
        i = bisect.bisect_right(powers, power)
        p0, p1 = powers[i - 1], powers[i]
        coef = coefs[i - 1] + (coefs[i] - coefs[i - 1]) * (power - p0) / (p1 - p0)
    return coef * power**2


def recharge_time(model: str | MagstimModel, power: float) -> float:
    """Seconds until a non-Rapid unit is ready again after a pulse at ``power``.

    Rapid units recharge within a train's pulse interval: 0 is returned and
    the frequency limits apply instead (see :func:`max_frequency_hz`).
    """
    m = get_model(model)
    _check_power(power)
    for highest, seconds in m.recharge_s:
        if power <= highest:
            return seconds
    return m.recharge_s[-1][1] if m.recharge_s else 0.0


def max_frequency_hz(model: str | MagstimModel, power: float) -> float:
    """Highest pulse frequency (Hz) at ``power`` for ``model``.

    Rapid family: the spec's table for 240 V units. Power ≤ 30 % uses the
    ≤30 column; between columns the next *higher* power's column is used
    (more conservative; never interpolated upward). Above 100 % (enhanced
    power) the 100 % value is scaled down by the energy ratio
    ``E(100)/E(p)``, since the table has no column there.
    Other models: one pulse per recharge time.

    Parameters
    ----------
    model : str | MagstimModel
        Model name or object.
    power : float
        Power in %.

    Returns
    -------
    float
        Frequency in Hz.
    """
    m = get_model(model)
    _check_power(power)
    if m.max_frequency_table is None:
        return 1.0 / recharge_time(m, power)
    if power > 100:
        return (
            m.max_frequency_table[-1] * energy_per_pulse(100) / energy_per_pulse(power)
        )
    col = bisect.bisect_left(FREQUENCY_TABLE_POWERS, power)
    return float(m.max_frequency_table[col])


def min_wait_after_train(n_pulses: int, frequency: float, power: float) -> float:
    """Shortest wait (s) after a Rapid train: ``max(0.5, N(fE − 1050)/(1050 f))``.

    Parameters
    ----------
    n_pulses : int
        Pulses in the train.
    frequency : float
        Train frequency in Hz.
    power : float
        Power in %.

    Returns
    -------
    float
        Seconds.
    """
    if frequency <= 0:
        raise ValueError(f"frequency must be positive, got {frequency}")
    energy = energy_per_pulse(power)
    wait = (
        n_pulses
        * (frequency * energy - CONTINUOUS_POWER_W)
        / (CONTINUOUS_POWER_W * frequency)
    )
    return max(0.5, wait)


def max_on_time(frequency: float, power: float) -> float:
    """Longest Rapid train (s) at ``frequency`` and ``power``: ``63000/(f·E)``.

    The limit applies only above the continuous-running rate ``1050/E``: at
    or below it the unit runs without an on-time limit (``inf``; its train
    length is then bounded by its pulse limit).
    """
    if frequency <= 0:
        raise ValueError(f"frequency must be positive, got {frequency}")
    if frequency <= max_continuous_frequency(power) + 1e-9:
        return float("inf")
    energy = energy_per_pulse(power)
    return ENERGY_PER_MINUTE_J / (frequency * energy)


def max_continuous_frequency(power: float) -> float:
    """Highest frequency (Hz) a Rapid can run continuously: ``1050/E``."""
    energy = energy_per_pulse(power)
    return float("inf") if energy == 0 else CONTINUOUS_POWER_W / energy


def stimulator_capabilities(model: str | MagstimModel) -> Capabilities:
    """The common :class:`~stimtrain.devices.stimulator.Capabilities` of a model.

    The limit callables are bound to this module's functions, so the safety
    check, the planner and the driver read the same numbers.
    """
    m = get_model(model)
    rapid = m.family == "rapid"
    return Capabilities(
        key=m.name,
        label=m.label,
        manufacturer="magstim",
        intensity_range=(m.min_power, m.max_power),
        intensity_resolution=1.0,
        paired_pulse=m.family == "bistim",
        device_trains=m.has_trains,
        device_bursts=False,
        trigger_inputs=("serial", "ttl"),
        serial_max_rate_hz=m.serial_max_rate_hz,
        max_train_frequency_hz=m.max_train_frequency_hz,
        max_train_pulses=m.max_train_pulses,
        max_frequency=functools.partial(max_frequency_hz, m),
        recharge_time=functools.partial(recharge_time, m),
        min_wait_after_train=min_wait_after_train if rapid else None,
        max_on_time=max_on_time if rapid else None,
    )
