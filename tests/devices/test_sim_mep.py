"""The simulated participant's motor system: its threshold is the one it is given."""

import numpy as np
import pytest

from stimtrain.devices.sim_mep import MotorSystem, simulated_participant


@pytest.mark.parametrize("rmt", [32.0, 47.0, 78.5])
def test_the_threshold_is_where_half_the_meps_reach_50_uv(rmt):
    motor = simulated_participant(rmt, seed=int(rmt))
    rng = np.random.default_rng(0)
    meps = np.array([motor.mep(rmt, rng) for _ in range(6000)])
    # Binomial SD of a proportion of 0.5 in 6000 draws is 0.0065.
    assert np.mean(meps >= 50.0) == pytest.approx(0.5, abs=0.025)
    assert motor.p_response(rmt) == pytest.approx(0.5, abs=1e-6)


def test_meps_grow_with_intensity_and_fall_with_distance():
    motor = MotorSystem.with_rmt(50.0)
    assert [motor.p_response(p) for p in (40, 45, 50, 55, 60)] == sorted(
        motor.p_response(p) for p in (40, 45, 50, 55, 60)
    )
    assert motor.p_response(45) < 0.5 < motor.p_response(55)
    at = [motor.p_response(60, distance_mm=d) for d in (0, 7, 14, 21)]
    assert at == sorted(at, reverse=True) and at[0] > 0.99 and at[-1] < 0.01


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
    with pytest.raises(ValueError, match="1-100"):
        MotorSystem.with_rmt(120)
