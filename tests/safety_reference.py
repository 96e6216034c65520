"""A second, deliberately simple safety checker, written from docs/specs/safety.md.

It shares no code with stimtrain's safety check: it takes plain pulse times
(seconds) and intensities (% of the resting motor threshold) and applies the
rules of the spec with lists and loops, so that the property tests can hold
the production check to it. Default limits only (the shipped
``safety_limits.yaml`` values, restated here from the spec).
"""

from __future__ import annotations

#: docs/specs/safety.md, the Wassermann table (s), rows Hz, columns %RMT.
COLUMNS = [100, 110, 120, 130, 140, 150, 160, 170, 180, 190, 200, 210, 220]
TABLE = {
    1: [1800, 1800, 360, 50, 50, 50, 50, 27, 11, 11, 8, 7, 6],
    5: [10, 10, 10, 7.6, 5.2, 3.6, 2.6, 2.4, 1.6, 1.4, 1.6, 1.2, 1.1],
    10: [5, 5, 4.2, 2.9, 1.3, 0.8, 0.9, 0.8, 0.5, 0.6, 0.4, 0.3, 0.3],
    20: [2.05, 1.6, 1.0, 0.55, 0.35, 0.25, 0.25, 0.15, 0.2, 0.25, 0.2, 0.1, 0.1],
    25: [1.28, 0.84, 0.4, 0.24, 0.2, 0.24, 0.2, 0.12, 0.08, 0.12, 0.12, 0.08, 0.08],
}
SLACK = 1e-6


def max_train_s(frequency: float, pct: float) -> float | None:
    """The table's limit, frequency and intensity rounded up; None beyond it."""
    rows = [f for f in sorted(TABLE) if f >= frequency - SLACK]
    cols = [i for i, c in enumerate(COLUMNS) if c >= pct - SLACK]
    if not rows or not cols:
        return None
    return TABLE[rows[0]][cols[0]]


def _is_theta_burst(times: list[float]) -> bool:
    groups = [[times[0]]]
    for a, b in zip(times, times[1:], strict=False):
        if b - a > 1 / 30 + SLACK:
            groups.append([b])
        else:
            groups[-1].append(b)
    if len(groups) < 2 or any(not 3 <= len(g) <= 5 for g in groups):
        return False
    gaps = [g2[0] - g1[-1] for g1, g2 in zip(groups, groups[1:], strict=False)]
    return all(gap >= 1 / 25 - SLACK for gap in gaps)


def judge(pulses: list[tuple[float, float]]) -> list[str]:
    """Refusals for stimuli ``(time s, intensity %RMT)``; empty when safe."""
    pulses = sorted(pulses)
    refusals = []
    if len(pulses) > 3000:
        refusals.append("more than 3000 pulses in the session")
    trains, current = [], [pulses[0]] if pulses else []
    for p in pulses[1:]:
        if p[0] - current[-1][0] <= 1.0 + SLACK:
            current.append(p)
        else:
            trains.append(current)
            current = [p]
    if current:
        trains.append(current)
    ends = []
    for train in trains:
        times = [t for t, _ in train]
        pct = max(i for _, i in train)
        if len(train) == 1:
            if pct > 120 + SLACK:
                refusals.append(f"single pulse at {pct} %RMT")
            ends.append(None)
            continue
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        frequency = 1 / min(gaps)
        duration = times[-1] - times[0] + max(gaps)
        ends.append((times[0], times[-1] + max(gaps), pct))
        if frequency > 25 + SLACK:
            if not _is_theta_burst(times):
                refusals.append(f"{frequency:.3g} Hz train")
            elif pct > 70 + SLACK:
                refusals.append(f"theta burst at {pct} %RMT")
            continue
        if pct > 220 + SLACK:
            refusals.append(f"train at {pct} %RMT")
            continue
        limit = max_train_s(frequency, pct)
        if limit is None or duration > limit + SLACK:
            refusals.append(f"{frequency:.3g} Hz train of {duration:.3g} s at {pct}")
    found = [e for e in ends if e is not None]
    for (_, end, p1), (start, _, p2) in zip(found, found[1:], strict=False):
        if max(p1, p2) >= 100 - SLACK and start - end < 5 - SLACK:
            refusals.append(f"trains {start - end:.3g} s apart")
    return refusals
