"""A simulated participant that can play any task, for pilots and tests.

Response times are drawn from an ex-Gaussian distribution per task and
condition (a normal with mean ``mu`` and SD ``sigma`` plus an exponential
with mean ``tau``; mean RT = mu + tau), a common descriptive model of human
RT distributions. Errors press another response key with a per-condition
probability; lapses give no response at all. The true parameters are kept
in :attr:`SimulatedParticipant.profiles` so tests can check that a task's
measures recover them.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .api import Trial

logger = logging.getLogger("stimtrain.tasks")

#: Parameters used for a condition a profile does not name.
DEFAULT_CONDITION = {
    "mu": 0.45,
    "sigma": 0.04,
    "tau": 0.06,
    "p_error": 0.05,
    "p_lapse": 0.01,
}

#: Default behaviour per task: response keys and per-condition parameters.
#: Flanker values follow typical arrow-flanker data: ~60 ms congruency effect,
#: more errors on incongruent trials.
DEFAULT_PROFILES: dict[str, dict[str, Any]] = {
    "flanker": {
        "keys": ["left", "right"],
        "conditions": {
            "congruent": {
                "mu": 0.42,
                "sigma": 0.04,
                "tau": 0.06,
                "p_error": 0.03,
                "p_lapse": 0.01,
            },
            "incongruent": {
                "mu": 0.48,
                "sigma": 0.04,
                "tau": 0.06,
                "p_error": 0.10,
                "p_lapse": 0.01,
            },
        },
    },
}

#: Shortest simulated RT (s): faster than this is not a reaction.
MIN_RT_S = 0.1


class SimulatedParticipant:
    """Respond to trials like a person, reproducibly.

    Parameters
    ----------
    seed : int
        Seed of the participant's own random generator (independent of the
        trial order's).
    profiles : dict | None
        Per-task behaviour, merged over :data:`DEFAULT_PROFILES`:
        ``{task: {"keys": [...], "conditions": {condition: {"mu": s,
        "sigma": s, "tau": s, "p_error": p, "p_lapse": p}}}}``. Condition
        entries may give only some of the parameters.

    Attributes
    ----------
    profiles : dict
        The complete behaviour in use (the true parameters).
    """

    def __init__(self, seed: int = 0, profiles: Mapping[str, Any] | None = None):
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.profiles: dict[str, dict[str, Any]] = copy.deepcopy(DEFAULT_PROFILES)
        for task, prof in (profiles or {}).items():
            mine = self.profiles.setdefault(task, {"keys": [], "conditions": {}})
            if "keys" in prof:
                mine["keys"] = list(prof["keys"])
            for cond, values in prof.get("conditions", {}).items():
                unknown = set(values) - set(DEFAULT_CONDITION)
                if unknown:
                    raise ValueError(
                        f"unknown participant parameters {sorted(unknown)} for "
                        f"{task}/{cond}; known: {sorted(DEFAULT_CONDITION)}"
                    )
                mine["conditions"].setdefault(cond, {}).update(values)

    def condition_params(self, task_name: str, condition: str) -> dict[str, float]:
        """Return the true parameters used for one task condition.

        Parameters
        ----------
        task_name : str
            Task name.
        condition : str
            Condition label.

        Returns
        -------
        params : dict
            ``mu``, ``sigma``, ``tau`` (s), ``p_error``, ``p_lapse``.
        """
        prof = self.profiles.get(task_name, {})
        return {**DEFAULT_CONDITION, **prof.get("conditions", {}).get(condition, {})}

    def expected_rt(self, task_name: str, condition: str) -> float:
        """Return the mean of the RT distribution (mu + tau), in seconds.

        Parameters
        ----------
        task_name : str
            Task name.
        condition : str
            Condition label.

        Returns
        -------
        rt : float
        """
        p = self.condition_params(task_name, condition)
        return p["mu"] + p["tau"]

    def respond(
        self, task_name: str, trial: Trial, keys: Sequence[str] | None = None
    ) -> tuple[str | None, float | None]:
        """Decide the response to a trial.

        Parameters
        ----------
        task_name : str
            Task name (selects the profile).
        trial : Trial
            The trial; its ``condition`` and ``correct_key`` are used.
        keys : sequence of str | None
            The task's response keys, from which an erroneous key is drawn;
            defaults to the profile's ``keys``.

        Returns
        -------
        key : str | None
            The key pressed, or ``None`` for no response.
        rt : float | None
            Time from stimulus onset to key-down, in seconds, or ``None``.
            It may exceed the task's deadline: the runner then counts no
            response.
        """
        p = self.condition_params(task_name, trial.condition)
        keys = (
            list(keys)
            if keys is not None
            else self.profiles.get(task_name, {}).get("keys", [])
        )
        # Draw every random number on every trial, so that the sequence of RTs
        # does not depend on which trials happened to be errors or lapses.
        u_lapse, u_error = self.rng.random(2)
        rt = float(
            self.rng.normal(p["mu"], p["sigma"]) + self.rng.exponential(p["tau"])
        )
        u_key = self.rng.random()
        rt = max(rt, MIN_RT_S)
        if u_lapse < p["p_lapse"]:
            return None, None
        correct = trial.correct_key
        if correct is None:
            # Withholding is correct (no-go): an error is pressing a key.
            if u_error < p["p_error"] and keys:
                return keys[int(u_key * len(keys))], rt
            return None, None
        if u_error < p["p_error"]:
            wrong = [k for k in keys if k != correct]
            if wrong:
                return wrong[int(u_key * len(wrong))], rt
            logger.debug(
                "No other key to err with on %s; responding correctly", task_name
            )
        return correct, rt
