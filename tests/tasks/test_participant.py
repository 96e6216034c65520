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
