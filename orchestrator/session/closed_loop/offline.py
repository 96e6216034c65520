"""The trigger run offline over a recording with known phase (tests, benchmark).

The recording is replayed as an amplifier would deliver it: a chunk every
``chunk_s``, its samples ``delay_s`` old and stamped with the time they
arrive (true time plus the delay), and the trigger decides after each chunk.
Each deadline it hands over is taken as delivered exactly then (the device
process's own timing is measured by benchmarks/pulse_timing.py), and the
rhythm's true phase there is read from the recording's ground truth.
:func:`noncausal_phase_at` is what a recording alone says of the phase at
its pulses (the pulses' artifacts bridged, the whole recording band-passed
with a zero-phase FIR, Hilbert): the shared estimate of
:mod:`stimtrain.rhythm`, the one the report uses.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ....circular import circular_mean_deg, circular_sd_deg

# What a recording alone says of the phase, under the names the closed
# loop's calibration and tests use: the report's own estimate.
from ....rhythm import band_phase as noncausal_phase  # noqa: F401 - re-exported
from ....rhythm import phase_at as noncausal_phase_at  # noqa: F401 - re-exported
from .montage import Montage
from .trigger import PhaseTrigger, TriggerSettings


class Pulse(NamedTuple):
    """One delivered pulse."""

    time: float
    #: The rhythm's true phase there, degrees.
    true_deg: float
    #: The estimator's phase at the decision, degrees.
    online_deg: float


def replay(
    data: np.ndarray,
    ch_names: list[str],
    sfreq: float,
    true_phase: np.ndarray,
    settings: TriggerSettings,
    montage: Montage,
    *,
    delay_s: float = 0.0,
    chunk_s: float = 0.01,
    max_pulses: int | None = None,
) -> list[Pulse]:
    """Replay a recording chunk by chunk through a :class:`PhaseTrigger`.

    Parameters
    ----------
    data : ndarray, shape (n_times, n_channels)
        The recording.
    ch_names : list of str
        Its channel labels.
    sfreq : float
        Its sampling frequency, Hz.
    true_phase : ndarray, shape (n_times,)
        The rhythm's true phase at every sample, radians.
    settings : TriggerSettings
        The trigger; its ``amp_delay_s`` should be ``delay_s`` (it is what
        the rig declares).
    montage : Montage
        How the channels are combined.
    delay_s : float
        How old the samples are when they arrive, s.
    chunk_s : float
        Time between chunks, s.
    max_pulses : int | None
        Stop after this many pulses.

    Returns
    -------
    list of Pulse
    """
    signal = montage.apply(data, ch_names)
    trigger = PhaseTrigger(settings, sfreq)
    n = len(signal)
    pulses: list[Pulse] = []
    now = trigger.n_samples / sfreq + delay_s
    end = (n - 1) / sfreq
    seen: int | None = None
    while now + settings.lead_s + settings.horizon_s < end:
        # The newest sample that has arrived by ``now``.
        k = int(math.floor((now - delay_s) * sfreq + 1e-9))
        x = signal[k + 1 - trigger.n_samples : k + 1]
        decision = trigger.decide(
            x, k / sfreq + delay_s, now, None if seen is None else k - seen
        )
        seen = k
        if decision.deadline is not None:
            j = int(round(decision.deadline * sfreq))
            if j < n:
                pulses.append(
                    Pulse(
                        decision.deadline,
                        math.degrees(true_phase[j]),
                        math.degrees(decision.estimate.phase),
                    )
                )
            if max_pulses is not None and len(pulses) >= max_pulses:
                break
        now += chunk_s
    return pulses


def phase_error(pulses: list[Pulse], target_deg: float) -> tuple[float, float]:
    """Circular mean error and circular SD of the true phase at the pulses.

    Parameters
    ----------
    pulses : list of Pulse
        The pulses.
    target_deg : float
        The target, degrees.

    Returns
    -------
    mean_error_deg : float
        Circular mean of true minus target, degrees in (-180, 180].
    sd_deg : float
        Circular standard deviation ``sqrt(-2 ln R)``, degrees.
    """
    err = [p.true_deg - target_deg for p in pulses]
    return circular_mean_deg(err), circular_sd_deg(err)
