"""Threshold-hunting methods on simulated participants, against the known truth.

Every method hunts the resting motor threshold of the same simulated
participants (devices/sim_mep.py: thresholds 30-80 %MSO, Boltzmann slopes
2-6 %MSO, maximal MEPs 0.5-5 mV, excitability spread 0.04-0.10 of the
threshold, log-normal amplitude SD 0.2-0.5), starting 5 %MSO above the
threshold plus a uniform error of ±5 %MSO (an operator's starting guess:
the hotspot's intensity). Each MEP is read as the session reads it from the
simulated rig (``MotorSystem.measured``: the MEP's waveform plus 2 µV RMS of
EMG noise at 5 kHz, peak-to-peak over 15-50 ms). Printed per method: pulses
used and |relative error| of the estimate (median and 95th percentile), the
median signed error (bias), the share of hunts that converged within 150
pulses, and the run time. ``--noise-uv`` sets the EMG's noise (0: every MEP
read exactly), and tells ``bayes`` the same.

Usage: ``python benchmarks/threshold_methods.py [--participants N] [--seed S]
[--noise-uv UV] [--methods NAME[:OPTION=VALUE,...] ...]``
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402

from stimtrain.devices.sim_mep import MotorSystem  # noqa: E402
from stimtrain.orchestrator.session.threshold_methods import (  # noqa: E402
    METHODS,
    make_method,
)

#: Every registered method, and SAMT reading amplitudes as a variant.
DEFAULT = [*METHODS, "samt:control=analog"]
#: No hunt goes on longer than this (the cap counts as not converged).
MAX_PULSES = 150


def parse(spec: str) -> tuple[str, dict]:
    """``name[:key=value,...]`` as the method's name and its options."""
    name, _, rest = spec.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        try:
            options[key] = float(value) if "." in value else int(value)
        except ValueError:
            options[key] = value
    return name, options


def hunt(
    spec: str, motor: MotorSystem, start: int, rng: np.random.Generator
) -> tuple[int, float, bool]:
    """Run one hunt: the pulses it used, its estimate, whether it converged."""
    name, options = parse(spec)
    if name == "bayes":
        options.setdefault("noise_uv", motor.emg_noise_uv)
    m = make_method(name, start=start, max_pulses=MAX_PULSES, **options)
    while not m.done:
        power = m.next_power()
        m.update(power, motor.measured(power, rng))
    return m.pulses, m.estimate, m.converged


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--participants", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--noise-uv", type=float, default=2.0)
    parser.add_argument("--methods", nargs="*", default=DEFAULT)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    people = [
        replace(MotorSystem.draw(rng), emg_noise_uv=args.noise_uv)
        for _ in range(args.participants)
    ]
    starts = [int(round(p.rmt + 5 + rng.uniform(-5, 5))) for p in people]
    truth = np.array([p.rmt for p in people])
    print(f"machine: {describe()}")
    print(
        f"{args.participants} simulated participants (seed {args.seed}), "
        f"RMT 30-80 %MSO, EMG noise {args.noise_uv:g} uV RMS\n"
    )
    header = (
        f"{'method':<22} {'pulses median':>13} {'pulses p95':>10} "
        f"{'|err| median':>12} {'|err| p95':>9} {'bias':>6} {'conv':>5} "
        f"{'time':>6}"
    )
    print(header)
    print("-" * len(header))
    t_all = time.perf_counter()
    for spec in args.methods:
        t0 = time.perf_counter()
        # Every method's generator starts from the same seed, so a rerun of
        # one method alone gives the same row.
        run_rng = np.random.default_rng([args.seed, 1])
        results = [
            hunt(spec, p, s, run_rng) for p, s in zip(people, starts, strict=True)
        ]
        pulses = np.array([r[0] for r in results])
        signed = (np.array([r[1] for r in results]) - truth) / truth
        err = np.abs(signed)
        conv = np.mean([r[2] for r in results])
        print(
            f"{spec:<22} {np.median(pulses):>13.0f} "
            f"{np.percentile(pulses, 95):>10.0f} "
            f"{100 * np.median(err):>11.2f}% {100 * np.percentile(err, 95):>8.2f}% "
            f"{100 * np.median(signed):>+5.1f}% {100 * conv:>4.0f}% "
            f"{time.perf_counter() - t0:>5.1f}s"
        )
    print(f"\ntotal {time.perf_counter() - t_all:.1f} s")


if __name__ == "__main__":
    main()
