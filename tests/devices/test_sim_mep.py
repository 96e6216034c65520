"""The simulated participant's motor system: its threshold is the one it is given."""

import inspect

import numpy as np
import pytest

from stimtrain.devices import sim_mep
from stimtrain.devices.sim_eeg import SimulatedEEG
from stimtrain.devices.sim_mep import MotorSystem, simulated_participant


@pytest.mark.parametrize("rmt", [32.0, 47.0, 78.5])
def test_the_threshold_is_where_half_the_meps_reach_50_uv(rmt):
    motor = simulated_participant(rmt, seed=int(rmt))
    rng = np.random.default_rng(0)
    meps = np.array([motor.mep(rmt, rng) for _ in range(6000)])
    # Binomial SD of a proportion of 0.5 in 6000 draws is 0.0065.
    assert np.mean(meps >= 50.0) == pytest.approx(0.5, abs=0.025)
    assert motor.p_response(rmt) == pytest.approx(0.5, abs=1e-6)


def test_a_curve_with_a_floor_keeps_its_threshold():
    motor = MotorSystem.with_rmt(60.0, mep_min_uv=8.0)
    rng = np.random.default_rng(4)
    meps = np.array([motor.mep(60.0, rng) for _ in range(6000)])
    assert np.mean(meps >= 50.0) == pytest.approx(0.5, abs=0.025)
    assert motor.curve(0.0) == pytest.approx(8.0, rel=1e-3)
    with pytest.raises(ValueError, match="must cross 50"):
        MotorSystem.with_rmt(60.0, mep_min_uv=50.0)


def test_meps_grow_with_intensity_and_fall_with_distance():
    motor = MotorSystem.with_rmt(50.0)
    assert [motor.p_response(p) for p in (40, 45, 50, 55, 60)] == sorted(
        motor.p_response(p) for p in (40, 45, 50, 55, 60)
    )
    assert motor.p_response(45) < 0.5 < motor.p_response(55)
    at = [motor.p_response(60, distance_mm=d) for d in (0, 7, 14, 21)]
    assert at == sorted(at, reverse=True) and at[0] > 0.99 and at[-1] < 0.01
    # The same in drawn MEPs: medians of 400 pulses each.
    rng = np.random.default_rng(2)
    by_power = [
        np.median([motor.mep(p, rng) for _ in range(400)]) for p in (45, 50, 55, 60)
    ]
    assert by_power == sorted(by_power) and by_power[-1] > 4 * by_power[0]
    by_distance = [
        np.median([motor.mep(60, rng, distance_mm=d) for _ in range(400)])
        for d in (0, 5, 10)
    ]
    assert by_distance == sorted(by_distance, reverse=True)


def test_a_reading_on_the_emg_has_its_noise_floor():
    motor = MotorSystem.with_rmt(50.0)
    rng = np.random.default_rng(3)
    # Nothing evoked at 5 %MSO: the peak-to-peak of 2 uV RMS noise over 176
    # samples, about 5.4 RMS.
    floor = [motor.measured(5, rng) for _ in range(2000)]
    assert 9.5 < np.median(floor) < 12.0 and min(floor) > 5.0
    # A large MEP reads about as large; the noise adds a few uV at most.
    silent = MotorSystem.with_rmt(50.0, emg_noise_uv=0.0)
    # (measured() draws the MEP first, so one seed gives the same MEP.)
    excess = [
        motor.measured(70, np.random.default_rng(i))
        - silent.mep(70, np.random.default_rng(i))
        for i in range(200)
    ]
    assert 0 < np.median(excess) < 6.0
    # At the threshold the noise lifts a few more readings over 50 uV.
    at_rmt = np.array([motor.measured(50, rng) for _ in range(4000)])
    assert 0.5 < np.mean(at_rmt >= 50) < 0.62


def test_the_reading_matches_the_simulated_rig():
    # measured() stands in for the rig's EMG: same waveform, rate and noise.
    assert sim_mep.MEP_LATENCY_S == SimulatedEEG.MEP_LATENCY_S
    assert sim_mep.MEP_DURATION_S == SimulatedEEG.MEP_DURATION_S
    defaults = inspect.signature(SimulatedEEG).parameters
    assert sim_mep.EMG_SFREQ == defaults["sfreq"].default
    assert MotorSystem.emg_noise_uv == defaults["emg_noise_uv"].default


def test_a_drawn_population_spans_the_published_ranges():
    rng = np.random.default_rng(1)
    people = [MotorSystem.draw(rng) for _ in range(200)]
    rmts = [p.rmt for p in people]
    assert 30 <= min(rmts) < 35 and 75 < max(rmts) <= 80
    assert all(0.04 <= p.spread <= 0.10 for p in people)
    assert all(2 <= p.k <= 6 and 500 <= p.mep_max_uv <= 5000 for p in people)


def test_the_same_seed_gives_the_same_participant_and_meps():
    a, b = simulated_participant(47, seed=5), simulated_participant(47, seed=5)
    assert a == b and a != simulated_participant(47, seed=6)
    draws = [[m.mep(50, np.random.default_rng(3)) for _ in range(3)] for m in (a, b)]
    assert draws[0] == draws[1]
    reads = [m.measured(50, np.random.default_rng(3)) for m in (a, b)]
    assert reads[0] == reads[1]
    with pytest.raises(ValueError, match="1-100"):
        MotorSystem.with_rmt(120)
