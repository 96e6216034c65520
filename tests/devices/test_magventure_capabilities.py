"""MagPro models: registry entries, value grids and protection limits."""

import pytest

from stimtrain.devices import stimulator
from stimtrain.devices.errors import DeviceError
from stimtrain.devices.magventure.capabilities import (
    MODELS,
    check_delays,
    check_mode,
    check_train,
    get_model,
)

KEYS = ["magpro_r30", "magpro_r30_magoption", "magpro_x100", "magpro_x100_magoption"]


def test_every_model_is_registered():
    assert set(KEYS) <= set(stimulator.models())
    for key in KEYS:
        caps = stimulator.get_capabilities(key)
        assert caps.manufacturer == "magventure" and caps.key == key
        assert caps.intensity_range == (0, 100) and caps.intensity_resolution == 1.0
        assert caps.device_trains and caps.max_train_pulses == 1000
        assert caps.paired_pulse == key.endswith("magoption")
        assert caps.device_bursts == key.startswith("magpro_x100")
        assert caps.trigger_inputs == ("serial", "ttl")
    assert stimulator.get_capabilities("magpro_r30").max_train_frequency_hz == 30
    assert stimulator.get_capabilities("magpro_x100").max_train_frequency_hz == 100


def test_unknown_model():
    with pytest.raises(ValueError, match="unknown MagPro model 'magpro_x200'"):
        get_model("magpro_x200")


def test_rate_grid():
    grid = MODELS["magpro_x100"].rate_grid
    assert grid[:10] == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    assert grid[10:12] == (2.0, 3.0) and grid[-1] == 100.0 and len(grid) == 109
    assert MODELS["magpro_r30"].rate_grid[-1] == 30.0


@pytest.mark.parametrize("key", KEYS)
def test_max_frequency_falls_with_output_and_is_on_the_grid(key):
    model = MODELS[key]
    caps = model.capabilities()
    rates = [caps.max_frequency(p) for p in range(0, 101, 5)]
    assert rates[0] == model.max_rate_hz == caps.max_frequency(50)
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))
    assert all(r in model.rate_grid for r in rates)
    # Pulse energy grows with output², so the rate must fall at least that fast.
    assert caps.max_frequency(100) <= model.max_rate_hz / 4
    assert caps.recharge_time(100) == pytest.approx(1 / caps.max_frequency(100))
    with pytest.raises(DeviceError, match="output: must be within 0–100%, got 120"):
        caps.max_frequency(120)


def test_check_train_normalises_and_refuses():
    x100 = MODELS["magpro_x100"]
    assert check_train(x100, 5, 10, 20, 8.0) == (5.0, 10, 20, 8.0)
    assert check_train(x100, 0.3, 1, 1, 0.30000000000000004) == (0.3, 1, 1, 0.3)
    with pytest.raises(
        DeviceError, match="pulses in train: must be an integer, got 2.5"
    ):
        check_train(x100, 5, 2.5, 1, 1.0)
    with pytest.raises(DeviceError, match="number of trains: expected a number"):
        check_train(x100, 5, 2, "3", 1.0)


def test_check_delays():
    assert check_delays(0.1, -100, 12000) == (0.1, -100.0, 12000)
    with pytest.raises(
        DeviceError, match="charge delay \\(ms\\): must be within 0–12000"
    ):
        check_delays(0, 0, 12001)


def test_check_mode_per_model():
    r30 = MODELS["magpro_r30"]
    x100o = MODELS["magpro_x100_magoption"]
    check_mode(x100o, "dual", "reverse", "biphasic", 2, 1000.0, 1.0)
    check_mode(x100o, "standard", "normal", "biphasic_burst", 3, 20.0, 1.0)
    with pytest.raises(
        DeviceError, match="waveform: MagVenture MagPro R30 offers \\['biphasic'\\]"
    ):
        check_mode(r30, "standard", "normal", "biphasic_burst", 3, 20.0, 1.0)
    with pytest.raises(DeviceError, match="IPI \\(ms\\): must be within 1–3000"):
        check_mode(x100o, "twin", "normal", "biphasic", 2, 3100.0, 1.0)
    with pytest.raises(
        DeviceError,
        match="IPI \\(ms\\): 1050.0 is not on the device grid \\(1–10 ms by 0.1",
    ):
        check_mode(x100o, "twin", "normal", "biphasic", 2, 1050.0, 1.0)
