"""Magstim model capabilities and Rapid energy limits against the spec."""

import pytest

from stimtrain.devices.magstim.capabilities import (
    MODELS,
    energy_per_pulse,
    max_continuous_frequency,
    max_frequency_hz,
    max_on_time,
    min_wait_after_train,
    recharge_time,
)


def test_models():
    assert set(MODELS) == {
        "200",
        "bistim",
        "rapid2",
        "super_rapid2",
        "super_rapid2_plus",
    }
    rapid = MODELS["rapid2"]
    assert rapid.family == "rapid" and rapid.has_trains
    assert rapid.enhanced_max_power == 110 and rapid.max_power == 100
    assert rapid.serial_max_rate_hz == 1.0 and rapid.serial_max_rate_enhanced_hz == 0.5
    assert not MODELS["200"].has_trains and MODELS["200"].enhanced_max_power is None


def test_energy_table_points_and_interpolation():
    assert energy_per_pulse(10) == pytest.approx(2.5)
    assert energy_per_pulse(70) == pytest.approx(123.4)
    assert energy_per_pulse(100) == pytest.approx(252.0)
    # Interpolating E/p² reproduces the spec's 134.2 J at 73 %.
    assert energy_per_pulse(73) == pytest.approx(134.2, abs=0.05)


def test_min_wait_spec_check():
    # Spec: 73 %, 25 Hz, 250 pulses, E = 134.2 J → 21.95 s.
    assert min_wait_after_train(250, 25, 73) == pytest.approx(21.95, abs=0.1)
    assert min_wait_after_train(10, 1, 50) == 0.5  # never below 0.5 s


def test_on_time_and_continuous_frequency():
    assert max_on_time(10, 100) == pytest.approx(63000 / (10 * 252.0))
    assert max_continuous_frequency(100) == pytest.approx(1050 / 252.0)


@pytest.mark.parametrize(
    ("model", "power", "hz"),
    [
        ("rapid2", 10, 50),
        ("rapid2", 30, 50),
        ("rapid2", 31, 37),  # between columns: next higher power's column
        ("rapid2", 40, 37),
        ("rapid2", 55, 25),
        ("rapid2", 100, 15),
        ("super_rapid2", 65, 40),
        ("super_rapid2_plus", 50, 97),
        ("super_rapid2_plus", 91, 41),
    ],
)
def test_max_frequency_table(model, power, hz):
    assert max_frequency_hz(model, power) == hz


def test_max_frequency_enhanced_and_200():
    assert max_frequency_hz("rapid2", 110) < 15
    assert recharge_time("200", 49) == 2.0
    assert recharge_time("200", 50) == 3.0
    assert recharge_time("200", 80) == 4.0
    assert recharge_time("bistim", 10) == 4.0
    assert max_frequency_hz("200", 60) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="unknown Magstim model"):
        max_frequency_hz("rapid3", 50)


def test_common_capabilities_share_the_limit_functions():
    from stimtrain.devices.magstim.capabilities import stimulator_capabilities

    caps = stimulator_capabilities("super_rapid2_plus")
    assert caps.key == "super_rapid2_plus" and caps.intensity_range == (0, 100)
    assert caps.max_frequency(60) == 80 and caps.max_train_pulses == 6000
    assert caps.min_wait_after_train(250, 25, 73) == pytest.approx(21.95, abs=0.1)
    assert caps.max_on_time(10, 100) == pytest.approx(25.0)
    bistim = stimulator_capabilities("bistim")
    assert bistim.paired_pulse and not bistim.device_trains
    assert bistim.recharge_time(30) == 4.0 and bistim.max_on_time is None
    assert stimulator_capabilities("200").serial_max_rate_hz is None
