"""Tests of the simulated participant (no display)."""

from __future__ import annotations

import numpy as np
import pytest

from stimtrain.tasks import SimulatedParticipant, Trial
from stimtrain.tasks.participant import DEFAULT_PROFILES


def _trial(cond: str, correct_key: str | None = "left") -> Trial:
    return Trial(0, cond, {"text": ""}, correct_key)


@pytest.mark.parametrize("cond", ["congruent", "incongruent"])
def test_default_flanker_profile_is_recovered(cond):
    """Mean RT, error and lapse rates match the true parameters.

    With n = 5000 draws the tolerances are 4 standard errors: the ex-Gaussian
    SD is sqrt(sigma**2 + tau**2) = 72 ms, so SE(mean) ~ 1 ms; binomial
    SE of a 10 % rate ~ 0.4 %. The seed is fixed, so this is deterministic;
    the 4-SE margin says the check is not tuned to the seed.
    """
    part = SimulatedParticipant(seed=1)
    true = part.condition_params("flanker", cond)
    assert true == DEFAULT_PROFILES["flanker"]["conditions"][cond]
    n = 5000
    out = [part.respond("flanker", _trial(cond)) for _ in range(n)]
    keys = [k for k, _ in out]
    rts = np.array([rt for _, rt in out if rt is not None])
    p_lapse = keys.count(None) / n
    responded = n - keys.count(None)
    p_error = keys.count("right") / responded
    sd = np.hypot(true["sigma"], true["tau"])
    assert rts.mean() == pytest.approx(
        part.expected_rt("flanker", cond), abs=4 * sd / np.sqrt(len(rts))
    )

    def se(p, m):
        return np.sqrt(p * (1 - p) / m)

    assert abs(p_lapse - true["p_lapse"]) < 4 * se(true["p_lapse"], n)
    assert abs(p_error - true["p_error"]) < 4 * se(true["p_error"], responded)
    assert set(keys) <= {"left", "right", None}


def test_reproducible_and_overridable():
    """Same seed, same responses; profiles override parts of a condition."""
    a = SimulatedParticipant(3, {"flanker": {"conditions": {"congruent": {"mu": 0.3}}}})
    b = SimulatedParticipant(3, {"flanker": {"conditions": {"congruent": {"mu": 0.3}}}})
    trials = [_trial("congruent"), _trial("incongruent", "right")] * 20
    assert [a.respond("flanker", t) for t in trials] == [
        b.respond("flanker", t) for t in trials
    ]
    assert a.condition_params("flanker", "congruent")["mu"] == 0.3
    assert a.condition_params("flanker", "congruent")["tau"] == 0.06  # kept
    with pytest.raises(ValueError, match="unknown participant parameters"):
        SimulatedParticipant(0, {"flanker": {"conditions": {"congruent": {"m": 1}}}})


def test_no_go_and_unknown_task():
    """Withholding is correct on a no-go trial; unknown tasks use defaults."""
    part = SimulatedParticipant(
        0,
        {
            "gonogo": {
                "keys": ["space"],
                "conditions": {"nogo": {"p_error": 0.0, "p_lapse": 0.0}},
            }
        },
    )
    assert all(
        part.respond("gonogo", _trial("nogo", None)) == (None, None) for _ in range(50)
    )
    key, rt = part.respond("other", _trial("x", "a"), keys=["a", "b"])
    assert key in {"a", "b", None}


def test_post_error_slowing_and_stop_race():
    """RTs after an error are slower by post_error_slowing; the race stops late RTs."""
    part = SimulatedParticipant(
        2,
        {
            "flanker": {
                "conditions": {"congruent": {"p_error": 0.3, "p_lapse": 0.0}},
                "post_error_slowing": 0.05,
            }
        },
    )
    trial = _trial("congruent")
    out = [part.respond("flanker", trial) for _ in range(4000)]
    after_error = [
        rt for (k0, _), (_, rt) in zip(out, out[1:], strict=False) if k0 == "right"
    ]
    after_correct = [
        rt for (k0, _), (_, rt) in zip(out, out[1:], strict=False) if k0 == "left"
    ]
    sd = np.hypot(0.04, 0.06)
    se = sd * np.sqrt(1 / len(after_error) + 1 / len(after_correct))
    assert np.mean(after_error) - np.mean(after_correct) == pytest.approx(
        0.05, abs=4 * se
    )
    # Stop trials: with SSD + SSRT far beyond any RT nothing is stopped, and
    # with SSD = 0 only RTs faster than the SSRT (220 +- 20 ms) get through.
    stop = SimulatedParticipant(
        3, {"stopsignal": {"conditions": {"stop": {"p_lapse": 0.0, "p_error": 0.0}}}}
    )
    late = Trial(0, "stop", {"text": ""}, "left", signal_s=5.0)
    assert all(stop.respond("stopsignal", late)[0] is not None for _ in range(200))
    early = Trial(0, "stop", {"text": ""}, "left", signal_s=0.0)
    got = [stop.respond("stopsignal", early) for _ in range(500)]
    assert all(rt < 0.22 + 4 * 0.02 for k, rt in got if k is not None)
    assert sum(k is None for k, _ in got) > 450
