"""Threshold-hunting methods on simulated participants with known thresholds.

Generous bounds only: benchmarks/threshold_methods.py measures the methods
on 1000 participants (docs/benchmarks.md).
"""

import numpy as np
import pytest

from stimtrain.devices.sim_mep import MotorSystem
from stimtrain.orchestrator.language.blocks import THRESHOLD_METHODS
from stimtrain.orchestrator.session.threshold_methods import METHODS, make_method


def _hunt(name, motor, start, seed=0, **kw):
    rng = np.random.default_rng(seed)
    m = make_method(name, start=start, **kw)
    powers = []
    while not m.done:
        power = m.next_power()
        powers.append(power)
        noise = rng.normal(11.0, 1.5)
        m.update(power, max(motor.mep(power, rng) + rng.normal(0, 2), noise))
    return m, powers


def test_protocols_name_exactly_the_methods_there_are():
    assert set(THRESHOLD_METHODS) == set(METHODS)
    assert THRESHOLD_METHODS[0] == "bayes"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_method_finds_the_threshold(name):
    rng = np.random.default_rng(7)
    errors = []
    for _ in range(12):
        motor = MotorSystem.draw(rng)
        m, _ = _hunt(name, motor, start=int(motor.rmt) + 6, max_pulses=150)
        errors.append(abs(m.estimate - motor.rmt) / motor.rmt)
        low, high = m.ci
        assert low <= m.estimate <= high
    assert np.median(errors) < 0.04, errors


@pytest.mark.parametrize("name", sorted(METHODS))
def test_bounds_and_pulse_cap_hold(name):
    # A participant whose threshold is above the hunt's ceiling: every pulse
    # stays within the bounds, and the hunt stops at its pulse cap.
    motor = MotorSystem.with_rmt(90.0)
    m, powers = _hunt(name, motor, start=55, max_power=60, max_pulses=15)
    assert all(1 <= p <= 60 for p in powers)
    assert len(powers) <= 15 and m.done


def test_the_default_converges_in_few_pulses_and_is_deterministic():
    rng = np.random.default_rng(11)
    used = []
    for seed in range(12):
        motor = MotorSystem.draw(rng)
        m, _ = _hunt(
            "bayes", motor, start=int(motor.rmt) + 5, seed=seed, max_pulses=150
        )
        assert m.converged
        used.append(m.pulses)
    assert np.median(used) <= 30, used
    motor = MotorSystem.with_rmt(47.0)
    first, powers = _hunt("bayes", motor, start=52, seed=3, max_pulses=60)
    again, powers_again = _hunt("bayes", motor, start=52, seed=3, max_pulses=60)
    assert powers == powers_again and first.estimate == again.estimate


def test_an_unknown_method_is_named():
    with pytest.raises(ValueError, match="unknown threshold method 'psi'"):
        make_method("psi", start=50)
