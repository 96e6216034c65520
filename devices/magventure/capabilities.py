"""MagPro models, their value grids and protection limits, as plain data.

Numbers come from docs/specs/magventure.md. The driver (which refuses off-grid
values before sending) and the simulator (which rounds to the grid, as the
device does) both read them here.

Assumptions where the spec gives no number (conservative on purpose):

- Maximum pulse rate by output: the full rate (100 Hz X100, 30 Hz R30) up to
  50 % output; above that it falls with the pulse energy (∝ output²), so
  ``f_max(p) = f_max · (50 / p)²``, rounded down to the rate grid (X100 at
  100 %: 25 Hz; R30 at 100 %: 7 Hz).
- Recharge time after a pulse: ``1 / f_max(p)``.
- Serial single pulses (command 0x03): at most 5 Hz. The device answers in
  20–80 ms, so one fire and its pulse frame fit well inside 200 ms.
- Modes Power, Twin and Dual, and the monophasic waveform, need MagOption;
  Biphasic Burst (device theta burst) is offered by the X100 models only.
- Trigger delays: trigger-in 0–100 ms and trigger-out −100…100 ms in 0.1 ms
  steps; charge delay 0–12000 ms in 1 ms steps.
- Coil temperature limit 40 °C (as for Magstim coils): above it the device
  refuses to enable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import DeviceLimitError
from ..stimulator import Capabilities
from .protocol import BA_RATIOS, BURST_IPI_MS, TWIN_IPI_MS, ipi_table

AMPLITUDE_RANGE: tuple[int, int] = (0, 100)
PULSES_RANGE: tuple[int, int] = (1, 1000)
TRAINS_RANGE: tuple[int, int] = (1, 500)
ITI_RANGE_S: tuple[float, float] = (0.1, 120.0)
BURST_PULSES_RANGE: tuple[int, int] = (2, 5)
TRIGGER_IN_RANGE_MS: tuple[float, float] = (0.0, 100.0)
TRIGGER_OUT_RANGE_MS: tuple[float, float] = (-100.0, 100.0)
CHARGE_DELAY_RANGE_MS: tuple[int, int] = (0, 12000)
SERIAL_MAX_RATE_HZ = 5.0
MAX_COIL_TEMPERATURE_C = 40.0
#: Output (%) up to which the full repetition rate is available (assumption).
FULL_RATE_UP_TO = 50.0


@dataclass(frozen=True)
class MagProModel:
    """One MagPro model.

    Attributes
    ----------
    key : str
        Registry key (``"magpro_x100"``, …).
    label : str
        Human-readable name.
    model_code : str
        Name in the mode byte (:data:`~.protocol.MODELS`).
    max_rate_hz : float
        Highest repetition rate (Standard mode).
    magoption : bool
        MagOption fitted: paired pulses (Twin/Dual), Power mode, monophasic.
    bursts : bool
        Biphasic Burst waveform (theta burst run by the device).
    """

    key: str
    label: str
    model_code: str
    max_rate_hz: float
    magoption: bool = False
    bursts: bool = False

    @property
    def modes(self) -> tuple[str, ...]:
        """Modes the model accepts."""
        if self.magoption:
            return ("standard", "power", "twin", "dual")
        return ("standard",)

    @property
    def waveforms(self) -> tuple[str, ...]:
        """Waveforms the model accepts."""
        waves = ("monophasic", "biphasic") if self.magoption else ("biphasic",)
        if self.model_code.startswith("X100"):
            waves += ("halfsine",)
        return waves + (("biphasic_burst",) if self.bursts else ())

    @property
    def rate_grid(self) -> tuple[float, ...]:
        """Repetition rates (Hz): 0.1–1.0 by 0.1, then 1 Hz steps to the maximum."""
        low = tuple(round(0.1 * i, 1) for i in range(1, 10))
        return low + tuple(float(r) for r in range(1, int(self.max_rate_hz) + 1))

    def max_frequency(self, power: float) -> float:
        """Highest pulse rate (Hz) at ``power`` % (see the module assumptions)."""
        _check_range("output", power, AMPLITUDE_RANGE, "%")
        if power <= FULL_RATE_UP_TO:
            return self.max_rate_hz
        limit = self.max_rate_hz * (FULL_RATE_UP_TO / power) ** 2
        return max(r for r in self.rate_grid if r <= limit + 1e-9)

    def recharge_time(self, power: float) -> float:
        """Shortest interval (s) between two pulses at ``power`` %."""
        return 1.0 / self.max_frequency(power)

    def capabilities(self) -> Capabilities:
        """The common :class:`~stimtrain.devices.stimulator.Capabilities`."""
        return Capabilities(
            key=self.key,
            label=self.label,
            manufacturer="magventure",
            intensity_range=AMPLITUDE_RANGE,
            intensity_resolution=1.0,
            paired_pulse=self.magoption,
            device_trains=True,
            device_bursts=self.bursts,
            trigger_inputs=("serial", "ttl"),
            serial_max_rate_hz=SERIAL_MAX_RATE_HZ,
            max_train_frequency_hz=self.max_rate_hz,
            max_train_pulses=PULSES_RANGE[1],
            max_frequency=self.max_frequency,
            recharge_time=self.recharge_time,
        )


MODELS: dict[str, MagProModel] = {
    m.key: m
    for m in (
        MagProModel("magpro_r30", "MagVenture MagPro R30", "R30", 30.0),
        MagProModel(
            "magpro_r30_magoption",
            "MagVenture MagPro R30 with MagOption",
            "R30+Option",
            30.0,
            magoption=True,
        ),
        MagProModel(
            "magpro_x100", "MagVenture MagPro X100", "X100", 100.0, bursts=True
        ),
        MagProModel(
            "magpro_x100_magoption",
            "MagVenture MagPro X100 with MagOption",
            "X100+Option",
            100.0,
            magoption=True,
            bursts=True,
        ),
    )
}


def get_model(model: str | MagProModel) -> MagProModel:
    """Look up a model by key (or pass a :class:`MagProModel` through)."""
    if isinstance(model, MagProModel):
        return model
    try:
        return MODELS[model]
    except KeyError:
        raise ValueError(
            f"unknown MagPro model {model!r}; expected one of {sorted(MODELS)}"
        ) from None


# ------------------------------------------------------------------ grid checks
def _check_range(name: str, value: float, bounds: tuple, unit: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DeviceLimitError(f"MagVenture {name}: expected a number, got {value!r}")
    if not math.isfinite(value) or not bounds[0] <= value <= bounds[1]:
        raise DeviceLimitError(
            f"MagVenture {name}: must be within {bounds[0]:g}–{bounds[1]:g}{unit}, "
            f"got {value!r}"
        )


def _check_step(name: str, value: float, step: float, unit: str = "") -> None:
    if abs(value / step - round(value / step)) > 1e-6:
        raise DeviceLimitError(
            f"MagVenture {name}: must be a multiple of {step:g}{unit}, got {value!r}"
        )


def check_integer(name: str, value: object, bounds: tuple[int, int]) -> int:
    """Return ``value`` as int if it is an integer within ``bounds``.

    Raises
    ------
    DeviceLimitError
        Naming the parameter, the rule and the value.
    """
    _check_range(name, value, bounds)
    if int(value) != value:
        raise DeviceLimitError(f"MagVenture {name}: must be an integer, got {value!r}")
    return int(value)


def check_on_table(name: str, value: float, table: tuple[float, ...]) -> float:
    """Return ``value`` if it is an entry of ``table``, else raise DeviceLimitError."""
    _check_range(name, value, (min(table), max(table)))
    for entry in table:
        if abs(entry - value) < 1e-6:
            return entry
    raise DeviceLimitError(
        f"MagVenture {name}: {value!r} is not on the device grid ({_describe(table)})"
    )


def _describe(table: tuple[float, ...]) -> str:
    if table is BA_RATIOS:
        return "0.2–5.0 in steps of 0.05"
    if table is BURST_IPI_MS:
        return "0.5–10 ms by 0.1, 10–20 ms by 0.5, 20–100 ms by 1"
    if table is TWIN_IPI_MS:
        return (
            "1–10 ms by 0.1, 10–20 by 0.5, 20–100 by 1, 100–500 by 10, "
            "500–1000 by 50, 1000–3000 ms by 100"
        )
    return f"{len(table)} values, {min(table):g}–{max(table):g}"


def check_train(
    model: MagProModel, rate_hz: float, pulses: int, trains: int, iti_s: float
) -> tuple[float, int, int, float]:
    """Refuse train settings off the device grid; return them normalised."""
    rate = check_on_table("repetition rate (Hz)", rate_hz, model.rate_grid)
    pulses = check_integer("pulses in train", pulses, PULSES_RANGE)
    trains = check_integer("number of trains", trains, TRAINS_RANGE)
    _check_range("inter-train interval", iti_s, ITI_RANGE_S, " s")
    _check_step("inter-train interval", iti_s, 0.1, " s")
    return rate, pulses, trains, round(iti_s, 1)


def check_delays(
    trigger_in_ms: float, trigger_out_ms: float, charge_delay_ms: int
) -> tuple[float, float, int]:
    """Refuse trigger/charge delays off the grid; return them normalised."""
    _check_range("trigger-in delay", trigger_in_ms, TRIGGER_IN_RANGE_MS, " ms")
    _check_step("trigger-in delay", trigger_in_ms, 0.1, " ms")
    _check_range("trigger-out delay", trigger_out_ms, TRIGGER_OUT_RANGE_MS, " ms")
    _check_step("trigger-out delay", trigger_out_ms, 0.1, " ms")
    charge = check_integer("charge delay (ms)", charge_delay_ms, CHARGE_DELAY_RANGE_MS)
    return round(trigger_in_ms, 1), round(trigger_out_ms, 1), charge


def check_mode(
    model: MagProModel,
    mode: str,
    direction: str,
    waveform: str,
    burst_pulses: int,
    ipi_ms: float | None,
    ba_ratio: float,
) -> None:
    """Refuse a mode/waveform/burst/IPI/ratio combination the model can't do."""
    if mode not in model.modes:
        raise DeviceLimitError(
            f"MagVenture mode: {model.label} offers {list(model.modes)}, got {mode!r}"
        )
    if waveform not in model.waveforms:
        raise DeviceLimitError(
            f"MagVenture waveform: {model.label} offers {list(model.waveforms)}, "
            f"got {waveform!r}"
        )
    if direction not in ("normal", "reverse"):
        raise DeviceLimitError(
            f"MagVenture current direction: must be 'normal' or 'reverse', "
            f"got {direction!r}"
        )
    check_integer("burst pulses", burst_pulses, BURST_PULSES_RANGE)
    check_on_table("B/A ratio", ba_ratio, BA_RATIOS)
    table = ipi_table(mode, waveform)
    if table is None:
        if ipi_ms is not None:
            raise DeviceLimitError(
                f"MagVenture IPI: only Twin/Dual mode or Biphasic Burst have an "
                f"IPI; got {ipi_ms!r} ms in {mode}/{waveform}"
            )
    elif ipi_ms is None:
        raise DeviceLimitError(f"MagVenture IPI: {mode}/{waveform} needs an IPI in ms")
    else:
        check_on_table("IPI (ms)", ipi_ms, table)
