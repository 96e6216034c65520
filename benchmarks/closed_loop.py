"""Phase-locked pulses on a simulated mu rhythm, against its known phase.

For each in-band SNR (11, 5, -1 dB at the C3 Hjorth output) and amplifier
delay (0 and 50 ms), a synthetic recording (devices/sim_mu.py: a bursting mu
rhythm at C3 drifting within 8.5-12.5 Hz, over independent pink noise on C3
and its four neighbours, 5 kHz) is replayed chunk by chunk (10 ms) through
the trigger (orchestrator/session/closed_loop: C3 Hjorth, 500 ms window,
8-13 Hz, AR order 30, gate at the running median band power of the last
60 s, at least 2 s between pulses), half the pulses aimed at the peak and
half at the trough. Each deadline is taken as delivered exactly; the
rhythm's true phase there is compared with the target: circular mean error
and circular SD (``sqrt(-2 ln R)``), beside the anchor table of Zrenner et
al. 2018 (22, 42, 72 degrees; about +4 with 50 ms of data age). The floor
column is what a non-causal estimate (a 1 s zero-phase FIR over the whole
recording, then Hilbert) makes of the same pulses: "offline SD" is its
phase at the pulses around the target (what a lab would see from its
recording), "floor" its error against the true phase (what the in-band
noise alone leaves, however the phase is estimated).

Usage: ``python benchmarks/closed_loop.py [--pulses N] [--seed S]``
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve, firwin, hilbert
from scipy.stats import circmean, circstd

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402

from stimtrain.devices.sim_mu import synthetic_recording  # noqa: E402
from stimtrain.orchestrator.session.closed_loop import PRESETS  # noqa: E402
from stimtrain.orchestrator.session.closed_loop.offline import replay  # noqa: E402
from stimtrain.orchestrator.session.closed_loop.trigger import (  # noqa: E402
    TriggerSettings,
)

#: (SNR dB, circular SD in degrees) of Zrenner et al. 2018 at no delay.
ANCHORS = {11.0: 22.0, 5.0: 42.0, -1.0: 72.0}
#: What a constant 50 ms of data age adds to the anchor SD, degrees.
DELAY_ANCHOR = 4.0
SNRS = (11.0, 5.0, -1.0)
DELAYS = (0.0, 0.05)
TARGETS = (0.0, 180.0)


def noncausal_phase(rec) -> np.ndarray:
    """Zero-phase 8-13 Hz FIR (1 s) over the whole recording, Hilbert phase."""
    x = PRESETS["c3_hjorth"].apply(rec.data, rec.ch_names)
    taps = firwin(int(rec.sfreq) + 1, [8.0, 13.0], pass_zero=False, fs=rec.sfreq)
    # Symmetric taps, centred ("same"): zero phase in one pass.
    return np.angle(hilbert(fftconvolve(x, taps, mode="same")))


def condition(snr: float, delay: float, pulses: int, seed: int) -> dict:
    """Run one SNR and delay; return the errors and the time per decision."""
    per_target = math.ceil(pulses / len(TARGETS))
    # About 2.3 s per pulse (2 s minimum interval, the gate, the wait for
    # the phase) and the gate's warm-up; the replay stops at ``per_target``.
    seconds = 10 + 3.0 * per_target
    true_err, offline_err, floor_err = [], [], []
    n_decisions = 0
    spent = 0.0
    for k, target in enumerate(TARGETS):
        rec = synthetic_recording(seconds, snr, seed=seed * 100 + k)
        settings = TriggerSettings(target_deg=target, amp_delay_s=delay)
        t0 = time.perf_counter()
        got = replay(
            rec.data,
            rec.ch_names,
            rec.sfreq,
            rec.phase,
            settings,
            PRESETS["c3_hjorth"],
            delay_s=delay,
            max_pulses=per_target,
        )
        spent += time.perf_counter() - t0
        # One decision per 10 ms chunk up to where the replay stopped.
        n_decisions += int((got[-1].time if got else seconds) / 0.01)
        floor = noncausal_phase(rec)
        for p in got:
            j = int(round(p.time * rec.sfreq))
            true_err.append(math.radians(p.true_deg - target))
            offline_err.append(floor[j] - math.radians(target))
            floor_err.append(floor[j] - rec.phase[j])
    err = np.array(true_err)
    return {
        "n": len(err),
        "mean": math.degrees(float(np.angle(np.exp(1j * circmean(err))))),
        "sd": math.degrees(float(circstd(err))),
        "offline_sd": math.degrees(float(circstd(np.array(offline_err)))),
        "floor_sd": math.degrees(float(circstd(np.array(floor_err)))),
        "ms_per_decision": 1e3 * spent / max(n_decisions, 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Run every condition and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pulses", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"machine: {describe()}")
    print(
        f"{'SNR dB':>6} {'delay ms':>8} {'pulses':>6} {'mean err':>8} "
        f"{'SD':>6} {'anchor SD':>9} {'SD-anchor':>9} {'offline SD':>10} "
        f"{'floor':>6} "
        f"{'ms/decision':>11}"
    )
    for snr in SNRS:
        for delay in DELAYS:
            r = condition(snr, delay, args.pulses, args.seed)
            anchor = ANCHORS[snr] + (DELAY_ANCHOR if delay else 0.0)
            print(
                f"{snr:>6g} {delay * 1e3:>8g} {r['n']:>6d} {r['mean']:>+8.1f} "
                f"{r['sd']:>6.1f} {anchor:>9.0f} {r['sd'] - anchor:>+9.1f} "
                f"{r['offline_sd']:>10.1f} {r['floor_sd']:>6.1f} "
                f"{r['ms_per_decision']:>11.2f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
