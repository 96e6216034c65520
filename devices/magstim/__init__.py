"""Magstim 200², BiStim² and Rapid² family: protocol, limits, driver, simulator.

Importing the package registers every model with
:func:`stimtrain.devices.stimulator.register`, so
``open_stimulator("super_rapid2", port)`` returns a :class:`Magstim` driver.
"""

import functools

from ..stimulator import register
from .capabilities import (
    MODELS,
    MagstimModel,
    max_frequency_hz,
    stimulator_capabilities,
)
from .driver import Magstim
from .protocol import InstrumentStatus, RapidStatus
from .simulator import MagstimSimulator, Pulse

for _key in MODELS:
    register(stimulator_capabilities(_key), functools.partial(Magstim, model=_key))
del _key

__all__ = [
    "MODELS",
    "InstrumentStatus",
    "Magstim",
    "MagstimModel",
    "MagstimSimulator",
    "Pulse",
    "RapidStatus",
    "max_frequency_hz",
    "stimulator_capabilities",
]
