"""The decision to pulse: estimator, amplitude gate and pulse intervals together.

:class:`PhaseTrigger` is fed the montaged signal after every new chunk and
answers with a deadline (the absolute time of the next target crossing)
when one falls within the hand-over horizon, the gate is open and the
minimum interval since the last pulse has passed; otherwise it says why
not. The same object runs offline (the benchmark, the tests) and in the
trigger process over LSL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .base import Estimate
from .gate import AmplitudeGate


@dataclass(frozen=True)
class TriggerSettings:
    """How pulses are locked to the rhythm.

    Parameters
    ----------
    target_deg : float
        Target phase, degrees (0: peak, 180: trough).
    band : tuple of float
        The rhythm's band, Hz.
    window_s : float
        The estimator's window, s.
    ar_order : int
        Order of the autoregressive model.
    gate_percentile : float
        Band power must reach this percentile of the last ``gate_span_s``.
    gate_span_s : float
        The gate's history, s.
    min_interval_s : float
        No pulse sooner than this after the previous one, s.
    phase_offset_deg : float
        Per-participant correction added to the target (the estimator's
        measured bias, from a calibration), degrees.
    amp_delay_s : float
        The amplifier's constant delay: a sample's true time is its stamp
        minus this, s.
    lead_s : float
        The device process needs the deadline at least this long before it, s.
    horizon_s : float
        A crossing more than ``lead_s + horizon_s`` ahead waits for fresher
        data (set it to the chunk interval, so no crossing is skipped).
    blank_s : float
        After a pulse, this long of the signal carries its artifact and
        evoked response: a window that reaches into it is neither estimated
        nor added to the gate's history (a pulse would raise the gate), s.
    max_interval_s : float | None
        After this long without a pulse (from the first decision), the next
        crossing is taken whatever the band power, s; None: never.
    estimator : str
        Which phase estimator decides: a key of ``ESTIMATORS`` (``"ar"``:
        autoregressive; ``"ssp"``: state-space oscillator).
    """

    target_deg: float = 0.0
    band: tuple[float, float] = (8.0, 13.0)
    window_s: float = 0.5
    ar_order: int = 30
    gate_percentile: float = 50.0
    gate_span_s: float = 60.0
    min_interval_s: float = 2.0
    phase_offset_deg: float = 0.0
    amp_delay_s: float = 0.0
    lead_s: float = 0.005
    horizon_s: float = 0.012
    blank_s: float = 0.3
    max_interval_s: float | None = None
    estimator: str = "ar"


#: A decision's reason while the window holds a sample that is not a number.
NOT_FINITE = "samples not finite in the window"


class Decision(NamedTuple):
    """One answer of the trigger."""

    #: Absolute time to pulse, or None.
    deadline: float | None
    #: Why there is no deadline ("" when there is one).
    reason: str
    #: The estimate behind it (None when none was made); its ``phase`` is
    #: the online estimate at the decision.
    estimate: Estimate | None


class PhaseTrigger:
    """Decide, chunk after chunk, when to pulse.

    Parameters
    ----------
    settings : TriggerSettings
        The block's trigger section.
    sfreq : float
        The stream's sampling frequency, Hz.
    """

    def __init__(self, settings: TriggerSettings, sfreq: float) -> None:
        self.settings = settings
        # Imported here: the package imports this module's neighbours first.
        from . import ESTIMATORS

        if settings.estimator not in ESTIMATORS:
            raise ValueError(
                f"unknown estimator {settings.estimator!r}; "
                f"known: {', '.join(sorted(ESTIMATORS))}"
            )
        self.estimator = ESTIMATORS[settings.estimator](
            sfreq, settings.band, settings.window_s, ar_order=settings.ar_order
        )
        self.gate = AmplitudeGate(settings.gate_percentile, settings.gate_span_s)
        self.last_pulse = -math.inf
        #: Time of the first decision (the maximum interval's first start).
        self.started: float | None = None
        self._aim = math.radians(settings.target_deg + settings.phase_offset_deg)
        #: Samples that arrived since the estimator last read the signal
        #: (None: unknown, and the estimator starts over from its window).
        self._unread: int | None = None

    @property
    def n_samples(self) -> int:
        """How many of the newest samples each decision reads."""
        return self.estimator.n_samples

    def decide(
        self, x: np.ndarray, stamp_last: float, now: float, new: int | None = None
    ) -> Decision:
        """Look at the newest samples; answer with a deadline or a reason.

        Parameters
        ----------
        x : ndarray, shape (n,)
            The montaged signal, newest last, at least :attr:`n_samples`.
        stamp_last : float
            The stream's time stamp of ``x[-1]``, s.
        now : float
            The time of the decision on the same clock, s.
        new : int | None
            How many of ``x``'s samples arrived since the previous call
            (None: unknown, e.g. after a gap in the stream; an estimator
            that carries its state across calls then starts over).

        Returns
        -------
        Decision
            With a deadline, the trigger counts it as a pulse (the minimum
            interval runs from it).
        """
        s = self.settings
        if self.started is None:
            self.started = now
        if new is None or self._unread is None:
            self._unread = None
        else:
            self._unread += new
        if len(x) < self.n_samples:
            return Decision(None, "filling the window", None)
        if not np.isfinite(x[-self.n_samples :]).all():
            # An amplifier's marker for a lost sample (NaN) would poison a
            # filter that carries its state, and the gate's history: the
            # window is not read until it has passed (the estimator then
            # starts over, the samples in between being unread).
            return Decision(None, NOT_FINITE, None)
        t_last = stamp_last - s.amp_delay_s
        window_start = t_last - self.n_samples / self.estimator.sfreq
        clean_from = self.last_pulse + s.blank_s
        if window_start < clean_from:
            # The estimator still takes the new samples in, those before
            # ``clean_from`` as not observed (a filter that carries its state
            # runs on through the blank rather than start over after it);
            # the gate's history does not (a pulse would raise it).
            self.estimator.band_power(x, t_last, self._read(), clean_from)
            return Decision(None, "pulse response in the window", None)
        earliest = max(now + s.lead_s, self.last_pulse + s.min_interval_s)
        latest = now + s.lead_s + s.horizon_s
        if earliest > latest:
            # Too soon for a pulse: only the gate's history needs this chunk
            # (the autoregressive prediction is most of an estimate's cost).
            power = self.estimator.band_power(x, t_last, self._read())
            self.gate.update(now, power)
            return Decision(None, "minimum interval", None)
        est = self.estimator.estimate(
            x, t_last, now, self._aim, earliest, latest, self._read()
        )
        passed, _ = self.gate.update(now, est.power)
        if not self.gate.warmed_up:
            return Decision(None, "gate warming up", est)
        if not passed and not self._overdue(now):
            return Decision(None, "band power below the gate", est)
        if est.crossing is None:
            return Decision(None, "no crossing within the horizon", est)
        self.last_pulse = est.crossing
        return Decision(est.crossing, "", est)

    def _read(self) -> int | None:
        """The samples the estimator has not read yet; from now on, none."""
        unread, self._unread = self._unread, 0
        return unread

    def _overdue(self, now: float) -> bool:
        """Whether the maximum interval has passed without a pulse."""
        top = self.settings.max_interval_s
        if top is None:
            return False
        since = max(self.last_pulse, self.started if self.started is not None else now)
        return now - since >= top
