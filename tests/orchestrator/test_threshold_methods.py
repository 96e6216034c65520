"""Threshold-hunting methods on simulated participants with known thresholds.

Generous bounds only: benchmarks/threshold_methods.py measures the methods
on 1000 participants (docs/benchmarks.md).
"""

import numpy as np
import pytest

from stimtrain.devices.sim_mep import _SHAPE, MotorSystem
from stimtrain.orchestrator.language.blocks import THRESHOLD_METHODS
from stimtrain.orchestrator.session import threshold_methods as tm
from stimtrain.orchestrator.session.threshold_methods import METHODS, make_method

#: Every method, and SAMT's analog variant.
VARIANTS = [(name, {}) for name in sorted(METHODS)] + [("samt", {"control": "analog"})]


def _hunt(name, motor, start, seed=0, **kw):
    rng = np.random.default_rng(seed)
    m = make_method(name, start=start, **kw)
    powers = []
    while not m.done:
        power = m.next_power()
        powers.append(power)
        m.update(power, motor.measured(power, rng))
    return m, powers


def test_protocols_name_exactly_the_methods_there_are():
    assert set(THRESHOLD_METHODS) == set(METHODS)
    assert THRESHOLD_METHODS[0] == "bayes"


@pytest.mark.parametrize(("name", "options"), VARIANTS)
def test_each_method_finds_the_threshold(name, options):
    rng = np.random.default_rng(7)
    errors = []
    for _ in range(12):
        motor = MotorSystem.draw(rng)
        m, _ = _hunt(name, motor, start=int(motor.rmt) + 6, max_pulses=150, **options)
        errors.append(abs(m.estimate - motor.rmt) / motor.rmt)
        low, high = m.ci
        assert low <= m.estimate <= high
    assert np.median(errors) < 0.04, errors


@pytest.mark.parametrize(("name", "options"), VARIANTS)
def test_bounds_and_pulse_cap_hold(name, options):
    # A participant whose threshold is above the hunt's ceiling: every pulse
    # stays within the bounds, and the hunt stops at its pulse cap without
    # saying it converged.
    motor = MotorSystem.with_rmt(90.0)
    m, powers = _hunt(name, motor, start=55, max_power=60, max_pulses=15, **options)
    assert all(1 <= p <= 60 for p in powers)
    assert len(powers) == 15 and m.done and not m.converged
    # And one below the floor: nothing under min_power.
    motor = MotorSystem.with_rmt(12.0)
    m, powers = _hunt(name, motor, start=30, min_power=25, max_pulses=15, **options)
    assert all(25 <= p <= 100 for p in powers) and len(powers) <= 15


@pytest.mark.parametrize(("name", "options"), VARIANTS)
def test_a_threshold_beyond_a_bound_is_not_found(name, options):
    # Given pulses enough, each method ends on its own, and says the
    # threshold was not found rather than report the bound as one.
    for rmt, bounds in ((90.0, {"max_power": 60}), (12.0, {"min_power": 25})):
        motor = MotorSystem.with_rmt(rmt)
        m, _ = _hunt(name, motor, start=40, max_pulses=60, **bounds, **options)
        assert m.done and not m.converged, (rmt, m.pulses, m.estimate)


@pytest.mark.parametrize(("name", "options"), VARIANTS)
def test_a_seed_gives_the_same_hunt(name, options):
    motor = MotorSystem.with_rmt(47.0)
    first, powers = _hunt(name, motor, start=52, seed=3, max_pulses=60, **options)
    again, powers_again = _hunt(name, motor, start=52, seed=3, max_pulses=60, **options)
    assert powers == powers_again and first.estimate == again.estimate
    assert all(isinstance(p, int) for p in powers)


def test_the_default_converges_in_few_pulses():
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


def test_the_default_reads_through_the_emg_noise():
    # The noise's excess in a peak-to-peak reading, derived again (the
    # method's table was made the same way with 200,000 draws per MEP).
    rng = np.random.default_rng(0)
    for a, excess in zip(tm._PP_A[::3], tm._PP_EXCESS[::3], strict=True):
        trace = a * _SHAPE + rng.normal(0.0, 1.0, (4000, _SHAPE.size))
        reads = trace.max(axis=1) - trace.min(axis=1)
        assert np.median(reads) - a == pytest.approx(excess, abs=0.06)
    m = make_method("bayes", start=50)
    assert m._mep(50.0 + 2 * 2.49) == pytest.approx(50.0, abs=0.1)
    assert m._mep(10.0) < 1.0  # noise alone reads about 10.7 uV
    assert make_method("bayes", start=50, noise_uv=0)._mep(55.0) == 55.0


def test_an_unreadable_mep_is_refused():
    m = make_method("bayes", start=50)
    for bad in (float("nan"), -3.0, float("inf")):
        with pytest.raises(ValueError, match="peak-to-peak"):
            m.update(50, bad)
    assert m.pulses == 0


def test_an_unknown_method_is_named():
    with pytest.raises(ValueError, match="unknown threshold method 'psi'"):
        make_method("psi", start=50)
    with pytest.raises(ValueError, match="'digital' or 'analog'"):
        make_method("samt", start=50, control="binary")
