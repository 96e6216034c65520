"""Fixtures: simulators on real pseudo-terminals, drivers on real pyserial."""

import pytest
import serial

from stimtrain.devices.magstim.driver import Magstim
from stimtrain.devices.magstim.simulator import MagstimSimulator


@pytest.fixture
def make_sim():
    """Factory for started simulators, stopped after the test."""
    started = []

    def make(model="rapid2", **kwargs):
        kwargs.setdefault("charge_time", 0.05)
        sim = MagstimSimulator(model, **kwargs)
        sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(make_sim):
    """A Rapid² simulator that charges in 50 ms."""
    return make_sim()


@pytest.fixture
def magstim(sim):
    """An open Rapid² driver on ``sim``."""
    with Magstim(sim.port, "rapid2") as driver:
        yield driver


@pytest.fixture
def raw(sim):
    """A bare serial port on ``sim``, for byte-level checks."""
    with serial.Serial(sim.port, 9600, timeout=0.5) as port:
        yield port
