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


class Traffic(list):
    """A traffic log that keeps ``(direction, bytes)`` in memory."""

    def __call__(self, direction, data, t):
        self.append((direction, bytes(data)))

    def sent(self):
        """Every frame written, in order."""
        return [data for d, data in self if d == "tx"]


@pytest.fixture
def make_traffic():
    """Factory for in-memory traffic logs (see :class:`Traffic`)."""
    return Traffic


@pytest.fixture
def make_driver(make_sim):
    """Factory: a simulator of ``model`` and an open driver on it.

    Returns ``(sim, driver, traffic)``; the driver is closed after the test.
    """
    opened = []

    def make(model="rapid2", *, remote=True, driver_kwargs=None, **sim_kwargs):
        sim = make_sim(model, **sim_kwargs)
        traffic = Traffic()
        driver = Magstim(sim.port, model, traffic_log=traffic, **(driver_kwargs or {}))
        driver.open()
        opened.append(driver)
        if remote:
            driver.remote_control()
        return sim, driver, traffic

    yield make
    for driver in opened:
        driver.close()


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
