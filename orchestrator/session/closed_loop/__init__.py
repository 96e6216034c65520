"""Brain-state-triggered stimulation: pulses locked to the phase of an EEG rhythm.

:mod:`.montage` combines named channels into one signal (the C3 Hjorth
preset), :mod:`.base` holds what every phase estimator shares (the checks
of its band and window, its rate, the calls the trigger makes),
:mod:`.estimator` predicts the next time the rhythm crosses a target
phase (autoregressive forward prediction, after Zrenner et al. 2018), and
:mod:`.state_space` does the same with a Kalman-filtered oscillator
(after Wodeyar et al. 2021), and :mod:`.gate` lets pulses through only
while the rhythm's power is high.
"""

from .base import Estimate, RhythmEstimator
from .estimator import PhaseEstimator
from .gate import AmplitudeGate
from .montage import PRESETS, Montage
from .state_space import StateSpaceEstimator

#: The phase estimators by the name a trigger section gives: ``ar`` (the
#: autoregressive default) and ``ssp`` (the state-space oscillator).
ESTIMATORS: dict[str, type[RhythmEstimator]] = {
    "ar": PhaseEstimator,
    "ssp": StateSpaceEstimator,
}

__all__ = [
    "ESTIMATORS",
    "PRESETS",
    "AmplitudeGate",
    "Estimate",
    "Montage",
    "PhaseEstimator",
    "RhythmEstimator",
    "StateSpaceEstimator",
]
