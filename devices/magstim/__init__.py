"""Magstim 200², BiStim² and Rapid² family: protocol, limits, driver, simulator."""

from .capabilities import MODELS, MagstimModel, max_frequency_hz
from .driver import Magstim
from .protocol import InstrumentStatus, RapidStatus
from .simulator import MagstimSimulator, Pulse

__all__ = [
    "MODELS",
    "InstrumentStatus",
    "Magstim",
    "MagstimModel",
    "MagstimSimulator",
    "Pulse",
    "RapidStatus",
    "max_frequency_hz",
]
