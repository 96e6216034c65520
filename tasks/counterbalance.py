"""Counterbalancing helpers for a task's ``make_trials``.

:func:`exact_conditions` makes a block's condition labels with exact shares;
:func:`balanced` balances a nuisance factor (a target side, an ink, a
cue-target interval) against the conditions. Both take the block's seeded
generator as their only source of randomness, if any.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


def balanced(
    conditions: Sequence[str], values: Sequence[Any], rng: np.random.Generator
) -> list[Any]:
    """Assign values to trials so each is equally frequent within each condition.

    Within every condition the values repeat as often as whole sets fit; the
    remainder is drawn at random without replacement; the assignment order
    within the condition is random. Use it to counterbalance a nuisance
    factor (a target side, an ink, a cue-target interval) against the
    conditions.

    Parameters
    ----------
    conditions : sequence of str
        The condition of each trial.
    values : sequence
        The values to balance.
    rng : numpy.random.Generator
        Source of the remainder and the order.

    Returns
    -------
    assigned : list
        One value per trial, aligned with ``conditions``.
    """
    values = list(values)
    out: list[Any] = [None] * len(conditions)
    for cond in dict.fromkeys(conditions):
        idx = [i for i, c in enumerate(conditions) if c == cond]
        whole, rest = divmod(len(idx), len(values))
        pool = values * whole + [values[j] for j in rng.permutation(len(values))[:rest]]
        for i, j in zip(idx, rng.permutation(len(idx)), strict=True):
            out[i] = pool[j]
    return out


def exact_conditions(n_trials: int, shares: Mapping[str, float | None]) -> list[str]:
    """Return a block's condition labels, each share made exact, in label order.

    A condition with share ``p`` gets ``round(n_trials * p)`` trials (at most
    the trials not yet given out, in the order of ``shares``); the one
    condition whose share is ``None`` gets the rest. Shuffle the list (or
    index it with a permutation) to get a presentation order.

    Parameters
    ----------
    n_trials : int
        Number of trials.
    shares : mapping
        Condition label -> share in [0, 1], or ``None`` for the condition that
        takes the rest (exactly one).

    Returns
    -------
    conditions : list of str
        ``n_trials`` labels grouped by condition, in the order of ``shares``.

    Raises
    ------
    ValueError
        If ``n_trials`` is negative or not exactly one share is ``None``.
    """
    if n_trials < 0:
        raise ValueError(f"n_trials must be >= 0, got {n_trials}")
    rest = [cond for cond, p in shares.items() if p is None]
    if len(rest) != 1:
        raise ValueError(
            f"shares: exactly one condition must take the rest (None), got {rest}"
        )
    counts: dict[str, int] = {}
    left = n_trials
    for cond, p in shares.items():
        if p is not None:
            counts[cond] = min(int(round(n_trials * p)), left)
            left -= counts[cond]
    counts[rest[0]] = left
    return [cond for cond in shares for _ in range(counts[cond])]
