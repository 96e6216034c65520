"""Threshold-hunting methods on simulated participants, against the known truth.

Every method hunts the resting motor threshold of the same simulated
participants (devices/sim_mep.py: thresholds 30-80 %MSO, Boltzmann slopes
2-6 %MSO, maximal MEPs 0.5-5 mV, excitability spread 0.04-0.10 of the
threshold, log-normal amplitude SD 0.2-0.5), starting 5 %MSO above the
threshold plus a uniform error of ±5 %MSO (an operator's starting guess).
Each MEP is measured as the session measures it: the model's MEP plus the
simulated amplifier's EMG noise (peak-to-peak of 2 µV RMS noise over the
15-50 ms window, about 11 µV). Printed per method: pulses used and |relative
error| of the estimate (median and 95th percentile).

Usage: ``python benchmarks/threshold_methods.py [--participants N] [--seed S]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402

from stimtrain.devices.sim_mep import MotorSystem  # noqa: E402
from stimtrain.orchestrator.session.threshold_methods import (  # noqa: E402
    METHODS,
    make_method,
)

#: The EMG noise floor as the session measures it (µV peak-to-peak).
NOISE_P2P_UV = (11.0, 1.5)


def measured(mep_uv: float, rng: np.random.Generator) -> float:
    """An MEP as measured on a noisy EMG: never below the noise's own p-p."""
    noise = rng.normal(*NOISE_P2P_UV)
    return max(mep_uv + rng.normal(0.0, 2.0), noise)


def hunt(method: str, motor: MotorSystem, start: int, rng) -> tuple[int, float]:
    """Run one hunt; the pulses it used and its estimate."""
    m = make_method(method, start=start, max_power=100, max_pulses=150)
    while not m.done:
        power = m.next_power()
        m.update(power, measured(motor.mep(power, rng), rng))
    return m.pulses, m.estimate


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--participants", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    people = [MotorSystem.draw(rng) for _ in range(args.participants)]
    starts = [int(round(p.rmt + 5 + rng.uniform(-5, 5))) for p in people]
    print(f"machine: {describe()}")
    print(
        f"{args.participants} simulated participants (seed {args.seed}), "
        "RMT 30-80 %MSO\n"
    )
    header = (
        f"{'method':<20} {'pulses median':>13} {'pulses p95':>10} "
        f"{'|err| median':>12} {'|err| p95':>9} {'time':>7}"
    )
    print(header)
    print("-" * len(header))
    for method in args.methods:
        t0 = time.perf_counter()
        run_rng = np.random.default_rng([args.seed, 1])
        pairs = zip(people, starts, strict=True)
        results = [hunt(method, p, s, run_rng) for p, s in pairs]
        pulses = np.array([r[0] for r in results])
        err = np.array(
            [abs(r[1] - p.rmt) / p.rmt for r, p in zip(results, people, strict=True)]
        )
        print(
            f"{method:<20} {np.median(pulses):>13.0f} "
            f"{np.percentile(pulses, 95):>10.0f} "
            f"{100 * np.median(err):>11.2f}% {100 * np.percentile(err, 95):>8.2f}% "
            f"{time.perf_counter() - t0:>6.1f}s"
        )


if __name__ == "__main__":
    main()
