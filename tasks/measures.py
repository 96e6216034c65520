"""Measures shared by the tasks: per-condition summaries, d′, SSRT and helpers.

Every function takes a block's :class:`~stimtrain.tasks.api.TrialResult` list
(or plain numbers) and returns plain floats, ``nan`` where undefined, so the
measures go into JSON as they are.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

from .api import TrialResult


def of_condition(results: Iterable[TrialResult], condition: str) -> list[TrialResult]:
    """Return the results of the trials of one condition, in order.

    Parameters
    ----------
    results : iterable of TrialResult
    condition : str
        The condition label.

    Returns
    -------
    results : list of TrialResult
    """
    return [r for r in results if r.trial.condition == condition]


def proportion(count: float, total: int) -> float:
    """Return ``count / total``, ``nan`` when ``total`` is 0.

    Parameters
    ----------
    count : float
        How many (or how much).
    total : int
        Out of how many.

    Returns
    -------
    p : float
    """
    return count / total if total else math.nan


def mean_ms(seconds: Iterable[float | None]) -> float:
    """Return the mean of durations in seconds, in ms (``nan`` if none).

    Parameters
    ----------
    seconds : iterable of float | None
        E.g. RTs; ``None`` (no response) is left out.

    Returns
    -------
    mean : float
    """
    values = [s for s in seconds if s is not None]
    return float(np.mean(values)) * 1e3 if values else math.nan


def mean_rt_ms(results: Iterable[TrialResult]) -> float:
    """Return the mean RT of the correct responses, in ms (``nan`` if none).

    Parameters
    ----------
    results : iterable of TrialResult

    Returns
    -------
    rt : float
    """
    return mean_ms(r.rt for r in results if r.correct)


def accuracy(results: Sequence[TrialResult]) -> float:
    """Return the proportion of correct trials (``nan`` for none).

    Parameters
    ----------
    results : sequence of TrialResult

    Returns
    -------
    accuracy : float
    """
    return float(np.mean([r.correct for r in results])) if results else math.nan


def condition_summary(
    results: Sequence[TrialResult], conditions: Sequence[str]
) -> dict[str, Any]:
    """Summarise a block overall and per condition.

    Parameters
    ----------
    results : sequence of TrialResult
        The block.
    conditions : sequence of str
        The condition labels to summarise (others count only in the totals).

    Returns
    -------
    summary : dict
        ``n_trials``, ``accuracy``, ``misses`` (no response where one was
        due), and per condition ``n_<cond>``, ``rt_<cond>_ms`` (mean RT of
        correct responses) and ``accuracy_<cond>``.
    """
    out: dict[str, Any] = {"n_trials": len(results)}
    for cond in conditions:
        rs = of_condition(results, cond)
        out[f"n_{cond}"] = len(rs)
        out[f"rt_{cond}_ms"] = mean_rt_ms(rs)
        out[f"accuracy_{cond}"] = accuracy(rs)
    out["misses"] = sum(
        r.key is None and r.trial.correct_key is not None for r in results
    )
    out["accuracy"] = accuracy(results)
    return out


def condition_effect(
    summary: dict[str, Any], name: str, hard: str, easy: str
) -> dict[str, float]:
    """Return the RT and accuracy cost of a hard over an easy condition.

    Parameters
    ----------
    summary : dict
        From :func:`condition_summary` with both conditions.
    name : str
        Name of the effect (e.g. ``"congruency_effect"``).
    hard, easy : str
        Condition labels.

    Returns
    -------
    effect : dict
        ``<name>_ms`` = RT(hard) − RT(easy) and ``<name>_accuracy`` =
        accuracy(easy) − accuracy(hard): both positive for a cost.
    """
    return {
        f"{name}_ms": summary[f"rt_{hard}_ms"] - summary[f"rt_{easy}_ms"],
        f"{name}_accuracy": summary[f"accuracy_{easy}"] - summary[f"accuracy_{hard}"],
    }


def detection(
    signal: Sequence[TrialResult], noise: Sequence[TrialResult]
) -> dict[str, Any]:
    """Return signal-detection counts and rates of responding (any key).

    A response on a signal trial (a go letter, an n-back match) is a hit, on a
    noise trial (a no-go letter, a non-match) a false alarm.

    Parameters
    ----------
    signal : sequence of TrialResult
        Trials that call for a response.
    noise : sequence of TrialResult
        Trials that call for none.

    Returns
    -------
    counts : dict
        ``hits``, ``misses``, ``false_alarms``, ``correct_rejections``,
        ``hit_rate``, ``false_alarm_rate`` and ``dprime`` (log-linear
        corrected, :func:`dprime`).
    """
    hits = sum(r.key is not None for r in signal)
    fas = sum(r.key is not None for r in noise)
    return {
        "hits": hits,
        "misses": len(signal) - hits,
        "false_alarms": fas,
        "correct_rejections": len(noise) - fas,
        "hit_rate": proportion(hits, len(signal)),
        "false_alarm_rate": proportion(fas, len(noise)),
        "dprime": dprime(hits, len(signal), fas, len(noise)),
    }


def dprime(hits: int, n_signal: int, false_alarms: int, n_noise: int) -> float:
    """Return d′ with the log-linear correction (Hautus 1995).

    Adding 0.5 to each count and 1 to each total keeps d′ finite when a rate
    is 0 or 1.

    Parameters
    ----------
    hits, n_signal : int
        Hits and the number of signal (target) trials.
    false_alarms, n_noise : int
        False alarms and the number of noise (non-target) trials.

    Returns
    -------
    d : float
        ``nan`` when either kind of trial is missing.
    """
    if n_signal <= 0 or n_noise <= 0:
        return math.nan
    h = (hits + 0.5) / (n_signal + 1)
    f = (false_alarms + 0.5) / (n_noise + 1)
    z = NormalDist().inv_cdf
    return z(h) - z(f)


def ssrt_integration(
    go_rts: Sequence[float | None],
    p_respond_signal: float,
    mean_ssd: float,
    max_rt: float,
) -> float:
    """Return the stop-signal reaction time by the integration method.

    Follows the consensus guide (Verbruggen et al. 2019, eLife 8:e46323):
    all go trials, with go omissions given the maximum RT, are sorted; the
    nth RT, n = p(respond | signal) × the number of go trials (rounded up),
    minus the mean stop-signal delay, is the SSRT.

    Parameters
    ----------
    go_rts : sequence of float | None
        RTs of all go trials in seconds (choice errors included), ``None``
        for an omission.
    p_respond_signal : float
        Proportion of stop trials with a response.
    mean_ssd : float
        Mean stop-signal delay, in seconds.
    max_rt : float
        The response window, given to omissions.

    Returns
    -------
    ssrt : float
        In seconds; ``nan`` without go trials or stop trials.
    """
    if not go_rts or not math.isfinite(p_respond_signal) or not math.isfinite(mean_ssd):
        return math.nan
    rts = np.sort([max_rt if rt is None else rt for rt in go_rts])
    nth = min(max(int(math.ceil(p_respond_signal * len(rts))), 1), len(rts))
    return float(rts[nth - 1] - mean_ssd)
