"""A phase calibration block: the participant's phase offset, from resting EEG.

The online estimator predicts the phase across the edge of its window and
the amplifier's delay, and on a given participant's rhythm it lands a few
degrees after (or before) its target on average (docs/benchmarks.md). The
block records the rig's EEG at rest, replays the estimator on it exactly as
it runs live (chunk by chunk, the samples as old as the rig declares),
aiming at the peak and at the trough, and compares each predicted crossing
with the phase a non-causal estimate of the whole recording finds there.
The opposite of the circular mean error is the offset that later triggered
blocks with ``phase_offset: calibrated`` add to their target (as
bossdevice's phase offset does).
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pylsl

from ....circular import circular_mean_deg, circular_sd_deg
from .montage import Montage
from .offline import noncausal_phase, replay
from .process import _channel_names
from .trigger import TriggerSettings

if TYPE_CHECKING:
    from ...language.blocks import PhaseCalibrationBlock
    from ...language.rig import EegSource
    from ...language.trigger import PhaseTrigger
    from ..context import BlockContext

#: Fewer predicted crossings than this measure nothing: the offset stays 0.
MIN_CROSSINGS = 10
#: The replay's interval between predictions, s: many crossings from a
#: minute of rest, each estimate on a window of its own.
REPLAY_INTERVAL_S = 0.6


class Calibration(NamedTuple):
    """What a calibration measured."""

    #: Degrees to add to a target (the opposite of the mean error).
    offset_deg: float
    #: Circular mean of predicted minus non-causal phase, degrees.
    bias_deg: float
    #: Circular SD of that error, degrees.
    sd_deg: float
    #: Predicted crossings compared.
    crossings: int


def measure_offset(
    data: np.ndarray,
    ch_names: list[str],
    sfreq: float,
    calibration: PhaseTrigger,
    delay_s: float,
) -> Calibration:
    """Replay the estimator on a recording against its non-causal phase.

    Parameters
    ----------
    data : ndarray, shape (n_times, n_channels)
        Resting EEG.
    ch_names : list of str
        Its channel labels.
    sfreq : float
        Its sampling frequency, Hz.
    calibration : PhaseTrigger
        The estimator's band, montage and window.
    delay_s : float
        The amplifier's declared delay, s.

    Returns
    -------
    Calibration
        With ``offset_deg`` 0 when fewer than :data:`MIN_CROSSINGS` were
        predicted (no rhythm to speak of).
    """
    montage = Montage(calibration.montage)
    signal = montage.apply(data, ch_names)
    truth = noncausal_phase(signal, sfreq, calibration.band_hz)
    errors = []
    for target in (0.0, 180.0):
        settings = TriggerSettings(
            target_deg=target,
            band=calibration.band_hz,
            window_s=calibration.window_s,
            min_interval_s=REPLAY_INTERVAL_S,
            amp_delay_s=delay_s,
            estimator=calibration.estimator,
        )
        for p in replay(
            data, ch_names, sfreq, truth, settings, montage, delay_s=delay_s
        ):
            errors.append(p.true_deg - target)
    if len(errors) < MIN_CROSSINGS:
        return Calibration(0.0, float("nan"), float("nan"), len(errors))
    bias = circular_mean_deg(errors)
    return Calibration(-bias, bias, circular_sd_deg(errors), len(errors))


class _Recorder:
    """Pulls the rig's EEG into memory on a thread of its own."""

    def __init__(self, stream: str, timeout: float = 10.0) -> None:
        infos = pylsl.resolve_byprop("name", stream, 1, timeout)
        if not infos:
            raise RuntimeError(f"EEG stream {stream!r} not found over LSL")
        self.inlet = pylsl.StreamInlet(infos[0], max_buflen=10)
        info = self.inlet.info(timeout=timeout)
        self.names = _channel_names(info)
        self.sfreq = info.nominal_srate()
        self.chunks: list[np.ndarray] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._pull, daemon=True)

    def _pull(self) -> None:
        while not self.stop.is_set():
            chunk, _ = self.inlet.pull_chunk(timeout=0.1)
            if chunk:
                self.chunks.append(np.asarray(chunk, dtype=np.float32))

    def data(self) -> np.ndarray:
        """Every sample pulled, ``(n_times, n_channels)``."""
        if not self.chunks:
            return np.zeros((0, len(self.names)))
        return np.concatenate(self.chunks)


def run_calibration(ctx: BlockContext, block: PhaseCalibrationBlock) -> dict:
    """Record resting EEG, measure the phase offset, keep it for later blocks.

    Parameters
    ----------
    ctx : BlockContext
        The session's open parts (``ctx.eeg``: the rig's EEG stream);
        ``ctx.phase_offset`` receives what was measured.
    block : PhaseCalibrationBlock
        The block.

    Returns
    -------
    dict
        What goes into the block's ``block_end``: ``offset_deg``,
        ``bias_deg``, ``sd_deg``, ``crossings`` (or ``skipped``).
    """
    from stimtrain.tasks.runner import show_fixation

    eeg: EegSource | None = ctx.eeg
    if eeg is None:  # the check refuses this before the start
        raise RuntimeError("a phase_calibration block needs the rig's EEG stream")
    recorder = _Recorder(eeg.stream)
    recorder.inlet.open_stream(timeout=10.0)
    recorder.thread.start()
    ctx.say(f"  recording {block.duration_s:g} s of resting EEG for the phase offset")
    try:
        show_fixation(
            ctx.win,
            block.duration_s,
            clock=pylsl.local_clock,
            should_stop=ctx.control.ending,
        )
    finally:
        recorder.stop.set()
        recorder.thread.join(2.0)
        recorder.inlet.close_stream()
    if ctx.control.ending():
        return {"skipped": True}
    got = measure_offset(
        recorder.data(), recorder.names, recorder.sfreq, block.calibration, eeg.delay_s
    )
    result = dict(got._asdict(), calibration_block=block.index)
    ctx.phase_offset = result
    ctx.journal.write("phase_calibrated", **result)
    ctx.run_file("phase_calibration.json").write_text(json.dumps(result, indent=2))
    if got.crossings < MIN_CROSSINGS:
        ctx.say(
            f"  phase calibration: only {got.crossings} crossings (no rhythm to "
            "speak of); calibrated blocks use an offset of 0 degrees"
        )
    else:
        ctx.say(
            f"  phase offset {got.offset_deg:+.1f} degrees (the estimator's mean "
            f"error {got.bias_deg:+.1f}, SD {got.sd_deg:.1f}, {got.crossings} "
            "crossings)"
        )
    return got._asdict()
