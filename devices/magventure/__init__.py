"""MagVenture MagPro R30 / X100, with and without MagOption.

Protocol, capabilities, driver and simulator. Importing the package registers
every model with :func:`stimtrain.devices.stimulator.register`.
"""

from functools import partial

from ..stimulator import register
from .capabilities import MODELS, MagProModel
from .driver import MagPro, probe
from .protocol import FrameParser, ModeSettings, crc8, decode_frame, encode_frame
from .simulator import MagVentureSimulator, Pulse

for _model in MODELS.values():
    register(_model.capabilities(), partial(MagPro, model=_model.key))

__all__ = [
    "MODELS",
    "FrameParser",
    "MagPro",
    "MagProModel",
    "MagVentureSimulator",
    "ModeSettings",
    "Pulse",
    "crc8",
    "decode_frame",
    "encode_frame",
    "probe",
]
