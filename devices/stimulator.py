"""One stimulator interface for every model: capabilities, state, driver contract.

The safety check and the planner read :class:`Capabilities`; the device
process drives any :class:`Stimulator`. Each manufacturer's package
(``devices.magstim``, ``devices.magventure``) registers its models in
:data:`REGISTRY` through :func:`register`, so the orchestrator never imports a
manufacturer module by name.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import DeviceLimitError

#: ``traffic_log(direction, data, clock_time)``: ``"tx"`` or ``"rx"``, raw bytes,
#: LSL clock time of the write or read.
TrafficLog = Callable[[str, bytes, float], None]


@dataclass(frozen=True, kw_only=True)
class Capabilities:
    """What one stimulator model can do, as the safety check and planner need it.

    Attributes
    ----------
    key : str
        Registry key used in rig files (``"super_rapid2"``, ``"magpro_x100"``, …).
    label : str
        Human-readable model name.
    manufacturer : str
        ``"magstim"`` or ``"magventure"``.
    intensity_range : tuple of int
        Lowest and highest output in %MSO.
    intensity_resolution : float
        Smallest intensity step in %MSO (1.0, or 0.1 in BiStim high-resolution mode).
    paired_pulse : bool
        Whether the model delivers paired pulses (BiStim, MagPro Twin/Dual).
    device_trains : bool
        Whether the unit runs repetitive trains by itself.
    device_bursts : bool
        Whether the unit runs theta-burst style bursts by itself.
    trigger_inputs : tuple of str
        Trigger paths the model accepts: ``"serial"`` (fire command),
        ``"ttl"`` (trigger input BNC, e.g. from a trigger box or RTS line).
    serial_max_rate_hz : float or None
        Highest single-pulse rate when firing by serial command.
    max_train_frequency_hz : float or None
        Highest train frequency the model accepts.
    max_train_pulses : int or None
        Most pulses in one device-run train.
    max_frequency : callable
        ``max_frequency(power) -> Hz``: highest pulse rate at a power.
    recharge_time : callable
        ``recharge_time(power) -> s``: shortest interval between two pulses.
    min_wait_after_train : callable or None
        ``min_wait_after_train(n_pulses, frequency, power) -> s`` (energy limit).
    max_on_time : callable or None
        ``max_on_time(frequency, power) -> s`` (energy limit).
    """

    key: str
    label: str
    manufacturer: str
    intensity_range: tuple[int, int] = (0, 100)
    intensity_resolution: float = 1.0
    paired_pulse: bool = False
    device_trains: bool = False
    device_bursts: bool = False
    trigger_inputs: tuple[str, ...] = ("serial", "ttl")
    serial_max_rate_hz: float | None = None
    max_train_frequency_hz: float | None = None
    max_train_pulses: int | None = None
    max_frequency: Callable[[float], float] = field(
        default=lambda power: 1.0, repr=False, compare=False
    )
    recharge_time: Callable[[float], float] = field(
        default=lambda power: 0.0, repr=False, compare=False
    )
    min_wait_after_train: Callable[[int, float, float], float] | None = field(
        default=None, repr=False, compare=False
    )
    max_on_time: Callable[[float, float], float] | None = field(
        default=None, repr=False, compare=False
    )


@dataclass(kw_only=True)
class StimulatorState:
    """Common state of any stimulator, as the operator console shows it.

    ``None`` means the model does not report that field.
    """

    remote_control: bool | None = None
    armed: bool = False
    ready: bool = False
    intensity: float | None = None
    intensity_b: float | None = None
    coil_temperature: float | None = None
    errors: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        """Return a JSON-serialisable dict (for the device process and journal)."""
        return {
            "remote_control": self.remote_control,
            "armed": self.armed,
            "ready": self.ready,
            "intensity": self.intensity,
            "intensity_b": self.intensity_b,
            "coil_temperature": self.coil_temperature,
            "errors": list(self.errors),
        }


class Stimulator(abc.ABC):
    """Driver contract shared by every model.

    A driver owns its serial port; every value it sends is read back and a
    mismatch raises :class:`~stimtrain.devices.errors.DeviceError`. Device
    protection limits are checked *before* a command is written. Drivers are
    used from the one process that owns the port (the device process), which
    also calls :meth:`keep_alive` on the schedule :attr:`keep_alive_interval_s`.
    """

    #: Capabilities of the connected model.
    capabilities: Capabilities
    #: Seconds between keep-alive calls; ``None`` if the model needs none.
    keep_alive_interval_s: float | None = None

    @abc.abstractmethod
    def open(self) -> None:
        """Open the port (no command is sent that changes the device)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Disarm (best effort) and close the port."""

    @abc.abstractmethod
    def remote_control(self, enable: bool = True) -> None:
        """Take or release remote control (a no-op where the model has none)."""

    @abc.abstractmethod
    def keep_alive(self) -> None:
        """Keep remote control alive and refresh :meth:`state`."""

    @abc.abstractmethod
    def set_intensity(self, value: float, value_b: float | None = None) -> None:
        """Set the output in %MSO (``value_b``: second channel), read it back."""

    @abc.abstractmethod
    def arm(self) -> None:
        """Arm (enable) the stimulator."""

    @abc.abstractmethod
    def disarm(self) -> None:
        """Disarm (disable) the stimulator; must be safe to call at any time."""

    @abc.abstractmethod
    def wait_ready(self, timeout: float = 3.0) -> None:
        """Block until the device reports it is ready to fire."""

    def prepare_fire(self, at: float) -> None:  # noqa: B027 - optional
        """Do beforehand what a :meth:`fire` at clock time ``at`` needs.

        Called by the device process just before it waits for a deadline, so
        that the fire call itself is little more than its write. Drivers that
        have checks or buffers to clear before a pulse override it; by
        default it does nothing.
        """

    @abc.abstractmethod
    def fire(self) -> float:
        """Fire one pulse by serial command; return the LSL time of the write."""

    @abc.abstractmethod
    def state(self) -> StimulatorState:
        """Query the device and return its common state."""

    # Hooks of the delivery paths a model may lack. The defaults refuse with
    # DeviceLimitError (nothing is sent), so a caller never asks which model
    # it holds: a refusal is a refused value, not a fault.
    def program_train(self, frequency_hz: float, pulses: int) -> None:
        """Program one train of ``pulses`` at ``frequency_hz`` that the unit runs
        by itself when :meth:`start_train` is called.

        Raises
        ------
        DeviceLimitError
            The model runs no trains by itself, or a value is off its grid.
        """
        raise DeviceLimitError(f"{self.capabilities.label} runs no trains by itself")

    def start_train(self) -> float:
        """Start the programmed train; return the LSL time of the command."""
        raise DeviceLimitError(f"{self.capabilities.label} runs no trains by itself")

    def single_pulse_mode(self) -> None:  # noqa: B027 - nothing to leave by default
        """Leave train mode, so that the next :meth:`fire` gives one pulse."""

    def set_paired(self, conditioning: float, test: float, isi_ms: float) -> None:
        """Set a paired pulse: ``conditioning`` %MSO, then ``test`` %MSO
        ``isi_ms`` later, both given by one :meth:`fire`.

        Raises
        ------
        DeviceLimitError
            The model has no paired-pulse mode, or a value is off its grid.
        """
        raise DeviceLimitError(f"{self.capabilities.label} has no paired-pulse mode")

    def __enter__(self) -> Stimulator:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class _Entry:
    capabilities: Capabilities
    factory: Callable[..., Stimulator]


#: Model key → capabilities and driver factory; filled by the manufacturer packages.
REGISTRY: dict[str, _Entry] = {}


def register(capabilities: Capabilities, factory: Callable[..., Stimulator]) -> None:
    """Register a model (called by the manufacturer packages at import)."""
    REGISTRY[capabilities.key] = _Entry(capabilities, factory)


def _load_builtin() -> None:
    # Importing the packages registers their models; done lazily so that a
    # caller asking for capabilities never pays for both unless needed.
    from . import magstim  # noqa: F401

    try:
        from . import magventure  # noqa: F401
    except ImportError:  # the MagVenture package is optional until it exists
        pass


def models() -> tuple[str, ...]:
    """Return every registered model key, sorted."""
    _load_builtin()
    return tuple(sorted(REGISTRY))


def get_capabilities(key: str) -> Capabilities:
    """Return the capabilities of model ``key``.

    Raises
    ------
    ValueError
        If ``key`` is not a registered model; the message lists the known keys.
    """
    _load_builtin()
    try:
        return REGISTRY[key].capabilities
    except KeyError:
        raise ValueError(
            f"unknown stimulator model {key!r}; expected one of {sorted(REGISTRY)}"
        ) from None


def open_stimulator(
    key: str, port: str, *, traffic_log: TrafficLog | None = None, **kwargs
) -> Stimulator:
    """Create (not yet open) the driver for model ``key`` on ``port``."""
    get_capabilities(key)
    return REGISTRY[key].factory(port, traffic_log=traffic_log, **kwargs)
