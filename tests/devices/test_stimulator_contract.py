"""The Stimulator contract, the same for every registered model.

Every model answers the delivery-path hooks (device trains, paired pulses,
single-pulse mode): it does what it can, and refuses what it cannot with
DeviceLimitError before a byte is sent, so that the device process never asks
which model it holds and a refused value is never taken for a fault.
"""

from __future__ import annotations

import time

import pytest

from stimtrain.devices.errors import DeviceLimitError
from stimtrain.devices.magstim.simulator import MagstimSimulator
from stimtrain.devices.magventure.simulator import MagVentureSimulator
from stimtrain.devices.stimulator import REGISTRY, get_capabilities, open_stimulator


class _Sent(list):
    def __call__(self, direction, data, t):
        if direction == "tx":
            self.append(bytes(data))


@pytest.fixture(params=sorted(REGISTRY) or ["none"])
def unit(request):
    """A simulator of one registered model and an open driver on it."""
    get_capabilities(request.param)  # loads the registry
    key = request.param
    caps = get_capabilities(key)
    if caps.manufacturer == "magstim":
        sim = MagstimSimulator(key, charge_time=0.05)
    else:
        sim = MagVentureSimulator(key)
    sim.start()
    sent = _Sent()
    stim = open_stimulator(key, sim.port, traffic_log=sent)
    stim.open()
    stim.remote_control()
    try:
        yield key, caps, sim, stim, sent
    finally:
        stim.close()
        sim.stop()


def test_every_model_is_in_the_registry():
    get_capabilities("rapid2")
    assert {"200", "bistim", "rapid2", "magpro_x100_magoption"} <= set(REGISTRY)


def test_trains_run_or_are_refused_before_sending(unit):
    key, caps, sim, stim, sent = unit
    stim.set_intensity(40)
    before = len(sent)
    if not caps.device_trains:
        with pytest.raises(DeviceLimitError, match="runs no trains by itself"):
            stim.program_train(10.0, 5)
        with pytest.raises(DeviceLimitError):
            stim.start_train()
        assert len(sent) == before
        return
    stim.program_train(10.0, 5)
    stim.arm()
    stim.wait_ready(timeout=2.0)
    stim.start_train()
    # The unit times the train (0.5 s) and its wait; then it can leave train
    # mode. Armed, it needs its keep-alive meanwhile.
    for _ in range(5):
        time.sleep(0.3)
        stim.keep_alive()
    assert len(sim.pulses) == 5
    stim.disarm()
    stim.single_pulse_mode()


def test_paired_pulses_set_or_refused_before_sending(unit):
    key, caps, sim, stim, sent = unit
    before = len(sent)
    if not caps.paired_pulse:
        with pytest.raises(DeviceLimitError, match="no paired-pulse mode"):
            stim.set_paired(30, 50, 3.0)
        assert len(sent) == before
        return
    stim.set_paired(30, 50, 3.0)
    state = stim.state()
    assert state.intensity == 30 and state.intensity_b == 50


def test_a_value_off_the_grid_is_a_refusal_not_a_fault(unit):
    key, caps, sim, stim, sent = unit
    before = len(sent)
    with pytest.raises(DeviceLimitError):
        stim.set_intensity(101)
    assert len(sent) == before
