"""Brain-state-triggered stimulation: pulses locked to the phase of an EEG rhythm.

:mod:`.montage` combines named channels into one signal (the C3 Hjorth
preset), :mod:`.estimator` predicts the next time the rhythm crosses a target
phase (autoregressive forward prediction, after Zrenner et al. 2018), and
:mod:`.gate` lets pulses through only while the rhythm's power is high.
"""

from .estimator import Estimate, PhaseEstimator
from .gate import AmplitudeGate
from .montage import PRESETS, Montage

__all__ = ["PRESETS", "AmplitudeGate", "Estimate", "Montage", "PhaseEstimator"]
