"""A simulated participant that can play any task, for pilots and tests.

Response times are drawn from an ex-Gaussian distribution per task and
condition (a normal with mean ``mu`` and SD ``sigma`` plus an exponential
with mean ``tau``; mean RT = mu + tau), a common descriptive model of human
RT distributions. Errors press another response key with a per-condition
probability (with a single response key, an error on a trial that needs a
response is an omission); lapses give no response at all. After an error the
next response is slower by ``post_error_slowing``. A memory load (the n of
n-back, ``trial.stimulus["load"]``) adds ``load["mu"]`` seconds and
``load["p_error"]`` per step above 1. On a trial with a stop signal an
independent stop process races the go process (the independent race model of
Logan & Cowan 1984): the response is withheld when the go RT exceeds the
stop-signal delay plus an SSRT drawn from ``stop``. The true parameters are
kept in :attr:`SimulatedParticipant.profiles` so tests can check that a
task's measures recover them.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .api import Trial

logger = logging.getLogger("stimtrain.tasks.participant")

#: Parameters used for a condition a profile does not name.
DEFAULT_CONDITION = {
    "mu": 0.45,
    "sigma": 0.04,
    "tau": 0.06,
    "p_error": 0.05,
    "p_lapse": 0.01,
}
#: Task-level parameters of a profile, with their defaults.
DEFAULT_TASK = {
    "post_error_slowing": 0.02,
    "stop": {"ssrt": 0.22, "ssrt_sd": 0.02},
    "load": {"mu": 0.0, "p_error": 0.0},
}


def _cond(mu, sigma, tau, p_error, p_lapse) -> dict[str, float]:
    return {
        "mu": mu,
        "sigma": sigma,
        "tau": tau,
        "p_error": p_error,
        "p_lapse": p_lapse,
    }


#: Default behaviour per task: response keys and per-condition parameters,
#: chosen to give the effects typical of published data: a ~60 ms flanker
#: congruency effect, ~80 ms Stroop interference, ~100 ms switch cost,
#: 15 % no-go commissions, an SSRT of 220 ms, and n-back accuracy falling by
#: about 7 % per step of n.
DEFAULT_PROFILES: dict[str, dict[str, Any]] = {
    "flanker": {
        "keys": ["left", "right"],
        "conditions": {
            "congruent": _cond(0.42, 0.04, 0.06, 0.03, 0.01),
            "incongruent": _cond(0.48, 0.04, 0.06, 0.10, 0.01),
        },
    },
    "stroop": {
        "keys": ["r", "g", "b"],
        "conditions": {
            "congruent": _cond(0.55, 0.05, 0.08, 0.03, 0.01),
            "neutral": _cond(0.58, 0.05, 0.08, 0.04, 0.01),
            "incongruent": _cond(0.63, 0.05, 0.08, 0.08, 0.01),
        },
    },
    "gonogo": {
        "keys": ["space"],
        "conditions": {
            "go": _cond(0.35, 0.04, 0.05, 0.0, 0.02),
            "nogo": _cond(0.30, 0.04, 0.04, 0.15, 0.0),
        },
    },
    "stopsignal": {
        "keys": ["left", "right"],
        "conditions": {
            "go": _cond(0.42, 0.05, 0.08, 0.02, 0.01),
            "stop": _cond(0.42, 0.05, 0.08, 0.02, 0.01),
        },
        "stop": {"ssrt": 0.22, "ssrt_sd": 0.02},
    },
    "nback": {
        "keys": ["space"],
        "conditions": {
            "target": _cond(0.55, 0.08, 0.10, 0.10, 0.01),
            "nontarget": _cond(0.55, 0.08, 0.10, 0.04, 0.0),
        },
        "load": {"mu": 0.05, "p_error": 0.07},
    },
    "switching": {
        "keys": ["left", "right"],
        "conditions": {
            "first": _cond(0.65, 0.06, 0.10, 0.07, 0.01),
            "repeat": _cond(0.55, 0.06, 0.10, 0.03, 0.01),
            "switch": _cond(0.65, 0.06, 0.10, 0.07, 0.01),
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
        "sigma": s, "tau": s, "p_error": p, "p_lapse": p}},
        "post_error_slowing": s, "stop": {"ssrt": s, "ssrt_sd": s},
        "load": {"mu": s, "p_error": p}}}``. Entries may give only some of
        the parameters.

    Attributes
    ----------
    profiles : dict
        The complete behaviour in use (the true parameters).
    """

    def __init__(self, seed: int = 0, profiles: Mapping[str, Any] | None = None):
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.profiles: dict[str, dict[str, Any]] = copy.deepcopy(DEFAULT_PROFILES)
        self._last_error = False
        for task, prof in (profiles or {}).items():
            mine = self.profiles.setdefault(task, {"keys": [], "conditions": {}})
            unknown = set(prof) - {"keys", "conditions", *DEFAULT_TASK}
            if unknown:
                raise ValueError(
                    f"unknown participant profile entries {sorted(unknown)} for "
                    f"{task}; known: {sorted({'keys', 'conditions', *DEFAULT_TASK})}"
                )
            if "keys" in prof:
                mine["keys"] = list(prof["keys"])
            if "post_error_slowing" in prof:
                mine["post_error_slowing"] = float(prof["post_error_slowing"])
            for part in ("stop", "load"):
                if part in prof:
                    _check_known(task, part, prof[part], DEFAULT_TASK[part])
                    mine.setdefault(part, dict(DEFAULT_TASK[part])).update(prof[part])
            for cond, values in prof.get("conditions", {}).items():
                _check_known(task, cond, values, DEFAULT_CONDITION)
                mine.setdefault("conditions", {}).setdefault(cond, {}).update(values)

    def condition_params(
        self, task_name: str, condition: str, load: int = 1
    ) -> dict[str, float]:
        """Return the true parameters used for one task condition.

        Parameters
        ----------
        task_name : str
            Task name.
        condition : str
            Condition label.
        load : int
            Memory load (n of n-back); each step above 1 adds the profile's
            ``load`` increments.

        Returns
        -------
        params : dict
            ``mu``, ``sigma``, ``tau`` (s), ``p_error``, ``p_lapse``.
        """
        prof = self.profiles.get(task_name, {})
        p = {**DEFAULT_CONDITION, **prof.get("conditions", {}).get(condition, {})}
        extra = max(0, load - 1)
        if extra:
            inc = {**DEFAULT_TASK["load"], **prof.get("load", {})}
            p["mu"] += inc["mu"] * extra
            p["p_error"] = min(1.0, p["p_error"] + inc["p_error"] * extra)
        return p

    def task_param(self, task_name: str, name: str) -> Any:
        """Return a task-level parameter (``post_error_slowing``, ``stop``, ``load``).

        Parameters
        ----------
        task_name : str
            Task name.
        name : str
            One of :data:`DEFAULT_TASK`.

        Returns
        -------
        value : float | dict
        """
        value = self.profiles.get(task_name, {}).get(name, DEFAULT_TASK[name])
        if isinstance(value, dict):
            return {**DEFAULT_TASK[name], **value}
        return value

    def expected_rt(self, task_name: str, condition: str, load: int = 1) -> float:
        """Return the mean of the RT distribution (mu + tau), in seconds.

        Parameters
        ----------
        task_name : str
            Task name.
        condition : str
            Condition label.
        load : int
            Memory load (see :meth:`condition_params`).

        Returns
        -------
        rt : float
            Without post-error slowing.
        """
        p = self.condition_params(task_name, condition, load)
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
            The trial; its ``condition``, ``correct_key``, ``signal_s`` (the
            stop-signal delay) and ``stimulus["load"]`` are used.
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
        load = int(trial.stimulus.get("load", 1))
        p = self.condition_params(task_name, trial.condition, load)
        keys = (
            list(keys)
            if keys is not None
            else self.profiles.get(task_name, {}).get("keys", [])
        )
        stop = self.task_param(task_name, "stop")
        # Draw every random number on every trial, so that the sequence of RTs
        # does not depend on which trials happened to be errors or lapses.
        u_lapse, u_error = self.rng.random(2)
        rt = float(
            self.rng.normal(p["mu"], p["sigma"]) + self.rng.exponential(p["tau"])
        )
        u_key = self.rng.random()
        ssrt = float(self.rng.normal(stop["ssrt"], stop["ssrt_sd"]))
        if self._last_error:
            rt += self.task_param(task_name, "post_error_slowing")
        rt = max(rt, MIN_RT_S)
        key, error = self._choose(trial, keys, p, u_lapse, u_error, u_key, task_name)
        if key is not None and trial.signal_s is not None:
            # The race: the stop process finishes at SSD + SSRT.
            if rt > trial.signal_s + ssrt:
                key = None
                error = False
            else:
                error = True  # a failed stop
        self._last_error = error
        return (key, rt) if key is not None else (None, None)

    def _choose(self, trial, keys, p, u_lapse, u_error, u_key, task_name):
        """Return (key, is_error) of the go process."""
        if u_lapse < p["p_lapse"]:
            return None, False
        correct = trial.correct_key
        if correct is None:
            # Withholding is correct (no-go, n-back non-target): an error is
            # pressing a key.
            if u_error < p["p_error"] and keys:
                return keys[int(u_key * len(keys))], True
            return None, False
        if u_error < p["p_error"]:
            wrong = [k for k in keys if k != correct]
            if wrong:
                return wrong[int(u_key * len(wrong))], True
            # One response key: the only error left is not responding.
            logger.debug("Single key on %s: the error is an omission", task_name)
            return None, True
        return correct, False


def _check_known(task: str, part: str, values: Mapping[str, Any], known) -> None:
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(
            f"unknown participant parameters {sorted(unknown)} for "
            f"{task}/{part}; known: {sorted(known)}"
        )
