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
column is what a non-causal estimate (stimtrain/rhythm.py: the zero-phase
FIR band-pass the report uses, over the whole recording, then Hilbert)
makes of the same pulses: "offline SD" is its
phase at the pulses around the target (what a lab would see from its
recording), "floor" its error against the true phase (what the in-band
noise alone leaves, however the phase is estimated).

With ``--over-lsl``: the same loop in real time on the simulated rig. The
rig's EEG (5 kHz, 32 channels, the mu rhythm at ``--snr`` and the delay
``--delay``) streams over LSL; the trigger process reads it and hands each
deadline to this process, which schedules it on the device process (which
owns the stimulator's port and fires through the trigger box); the rig's
own log gives the rhythm's true phase at every delivered pulse. Printed:
the phase error as above, the decision latency in the trigger process
(newest chunk pulled -> deadline sent, every decision), the hand-over
latency (newest chunk pulled -> the device process has the pulse queued,
every deadline), refusals, and the delivered pulse against its deadline.
``--with-task`` renders a flanker task in this process meanwhile.

``--rhythm arched|resonant`` replays rhythms made differently from the
default (devices/sim_mu.py's RHYTHMS), to see how an estimator does on a
rhythm its model does not describe; ``--snr`` and ``--delay`` pick one row.

Usage: ``python benchmarks/closed_loop.py [--pulses N] [--seed S]
[--rhythm R] [--snr DB] [--delay S]``,
``python benchmarks/closed_loop.py --over-lsl [--pulses N] [--snr DB]
[--delay S] [--with-task]``
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import circmean, circstd

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402

from stimtrain.devices.sim_mu import RHYTHMS, synthetic_recording  # noqa: E402
from stimtrain.orchestrator.session.closed_loop import PRESETS  # noqa: E402
from stimtrain.orchestrator.session.closed_loop.offline import replay  # noqa: E402
from stimtrain.orchestrator.session.closed_loop.trigger import (  # noqa: E402
    TriggerSettings,
)
from stimtrain.rhythm import band_phase  # noqa: E402

#: (SNR dB, circular SD in degrees) of Zrenner et al. 2018 at no delay.
ANCHORS = {11.0: 22.0, 5.0: 42.0, -1.0: 72.0}
#: What a constant 50 ms of data age adds to the anchor SD, degrees.
DELAY_ANCHOR = 4.0
SNRS = (11.0, 5.0, -1.0)
DELAYS = (0.0, 0.05)
TARGETS = (0.0, 180.0)


def noncausal_phase(rec) -> np.ndarray:
    """The shared zero-phase 8-13 Hz band-pass over the whole recording, Hilbert
    phase (radians)."""
    x = PRESETS["c3_hjorth"].apply(rec.data, rec.ch_names)
    return band_phase(x, rec.sfreq, (8.0, 13.0))


def condition(
    snr: float,
    delay: float,
    pulses: int,
    seed: int,
    estimator: str = "ar",
    rhythm: str = "drifting",
) -> dict:
    """Run one SNR and delay; return the errors and the time per decision."""
    per_target = math.ceil(pulses / len(TARGETS))
    # About 2.3 s per pulse (2 s minimum interval, the gate, the wait for
    # the phase) and the gate's warm-up; the replay stops at ``per_target``.
    seconds = 10 + 3.0 * per_target
    true_err, offline_err, floor_err = [], [], []
    n_decisions = 0
    spent = 0.0
    for k, target in enumerate(TARGETS):
        rec = synthetic_recording(seconds, snr, seed=seed * 100 + k, rhythm=rhythm)
        settings = TriggerSettings(
            target_deg=target, amp_delay_s=delay, estimator=estimator
        )
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
        "sd_ci": sd_interval(err),
        "offline_sd": math.degrees(float(circstd(np.array(offline_err)))),
        "floor_sd": math.degrees(float(circstd(np.array(floor_err)))),
        "ms_per_decision": 1e3 * spent / max(n_decisions, 1),
    }


def sd_interval(err: np.ndarray, n_boot: int = 2000) -> tuple[float, float]:
    """95 % bootstrap interval of the circular SD over the pulses, degrees.

    The SD of a few hundred pulses is itself uncertain, more so the wider
    the spread (at -1 dB about +-8 degrees for 200 pulses): a row's gap to
    its anchor means little inside this interval.
    """
    rng = np.random.default_rng(0)
    draws = err[rng.integers(0, len(err), (n_boot, len(err)))]
    sds = np.degrees(circstd(draws, axis=1))
    lo, hi = np.percentile(sds, [2.5, 97.5])
    return float(lo), float(hi)


def _pct(values, q: float) -> float:
    return float(np.percentile(values, q)) * 1e3 if len(values) else float("nan")


def over_lsl(args) -> int:
    """The closed loop in real time on the simulated rig; print what it did."""
    import json
    import os
    import tempfile
    import threading
    from contextlib import ExitStack

    from stimtrain.orchestrator.session.lslconfig import use_local_lsl

    use_local_lsl()
    import pylsl

    from stimtrain.orchestrator.session.closed_loop.process import (
        TriggerConfig,
        TriggerProcess,
    )
    from stimtrain.orchestrator.session.device_process import (
        DeviceConfig,
        DeviceFault,
        DeviceProcess,
    )
    from stimtrain.orchestrator.session.simrig import start_simulated_rig

    bound = 0.005
    target = 0.0
    # One estimator in real time: "both" (the offline default) means ar.
    estimator = "ar" if args.estimator == "both" else args.estimator
    handover: list[float] = []
    refusals: list[str] = []
    faults: list[str] = []
    reports = []
    lock = threading.Lock()
    done = threading.Event()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        log = Path(tmp) / "simulator_pulses.jsonl"
        stream = f"bench-closed-loop-{os.getpid()}"
        sim = start_simulated_rig(
            pulse_log=log,
            eeg_stream=stream,
            mu_snr=f"{args.snr:g}",
            eeg_delay=f"{args.delay:g}",
        )
        stack.callback(sim.stop)
        device = DeviceProcess(
            DeviceConfig(
                model="super_rapid2",
                stimulator_port=sim.stimulator_port,
                trigger_port=sim.trigger_port,
            ),
            on_pulse=reports.append,
        )
        stack.callback(device.stop)
        device.start()
        device.set_power(30)
        device.arm(3.0)

        def on_deadline(h) -> None:
            with lock:
                index = len(handover)
                # The hop to this process counts against the bound too.
                late = pylsl.local_clock() - h.pulled_at
                if late > bound:
                    refusals.append(f"hand-over {late * 1e3:.1f} ms above the bound")
                    return
                if faults:
                    return
                try:
                    device.schedule(1, [(h.deadline, index, "trigger")])
                except DeviceFault as exc:
                    # The device process refused a late pulse and dropped
                    # its schedule: the run ends here, and says why.
                    faults.append(str(exc))
                    done.set()
                    return
                handover.append(pylsl.local_clock() - h.pulled_at)
                if len(handover) >= args.pulses:
                    done.set()

        settings = TriggerSettings(
            target_deg=target,
            amp_delay_s=args.delay,
            min_interval_s=1.5,
            estimator=estimator,
        )
        trigger = TriggerProcess(
            TriggerConfig(stream, PRESETS["c3_hjorth"], settings, bound),
            on_deadline=on_deadline,
            on_refusal=lambda r: refusals.append(r.reason),
        ).start()
        stack.callback(trigger.stop)
        limit = time.monotonic() + 20 + 6 * args.pulses
        if args.with_task:
            sys.path.insert(0, str(Path(__file__).parent))
            from pulse_timing import render_task

            from stimtrain.tasks.display import open_window, virtual_display

            stack.enter_context(virtual_display())
            win = open_window(size=(1024, 768), fullscr=False)
            stack.callback(win.close)
            while not done.is_set() and time.monotonic() < limit:
                render_task(
                    win, Path(tmp), pylsl.local_clock() + 20, seed=len(handover)
                )
        else:
            done.wait(limit - time.monotonic())
        trigger.stop()
        time.sleep(1.0)
        device.disarm()
        mu_log = Path(tmp) / "simulator_mu_phase.jsonl"
        lines = mu_log.read_text().splitlines() if mu_log.exists() else []
        rows = [json.loads(line) for line in lines]
        # An edge the simulator read late has only an upper bound of a time.
        late = sum(1 for r in rows if r.get("late_read"))
        true = np.radians([r["phase_deg"] for r in rows if not r.get("late_read")])
        decisions = trigger.latencies
    err = true - math.radians(target)
    print(
        f"over LSL: {estimator}, {args.snr:g} dB, delay {args.delay * 1e3:g} ms"
        + (", flanker task rendering" if args.with_task else "")
    )
    if len(err):
        print(
            f"  pulses {len(err)}: mean error "
            f"{math.degrees(float(np.angle(np.exp(1j * circmean(err))))):+.1f} deg, "
            f"circular SD {math.degrees(float(circstd(err))):.1f} deg"
            + (f" ({late} read late by the simulator, left out)" if late else "")
        )
    print(
        f"  decision latency (trigger process), {len(decisions)} decisions: "
        f"median {_pct(decisions, 50):.2f} ms, p99 {_pct(decisions, 99):.2f} ms, "
        f"max {_pct(decisions, 100):.2f} ms"
    )
    print(
        f"  hand-over latency (pulled -> queued in the device process), "
        f"{len(handover)} deadlines: median {_pct(handover, 50):.2f} ms, "
        f"p99 {_pct(handover, 99):.2f} ms"
    )
    fired = [r.actual - r.scheduled for r in reports]
    print(
        f"  delivered vs deadline (host write), {len(fired)} pulses: median "
        f"{_pct(fired, 50):.3f} ms, p99 {_pct(fired, 99):.3f} ms"
    )
    print(f"  refused: {len(refusals)}" + (f" ({refusals[0]})" if refusals else ""))
    if faults:
        print(f"  stopped by a device fault: {faults[0]}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run every condition and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pulses", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--over-lsl", action="store_true")
    parser.add_argument(
        "--snr",
        type=float,
        default=None,
        help="one SNR, dB (default: every row offline, 11 over LSL)",
    )
    parser.add_argument(
        "--delay",
        type=float,
        default=None,
        help="one amplifier delay, s (default: every row offline, 0 over LSL)",
    )
    parser.add_argument(
        "--rhythm",
        choices=RHYTHMS,
        default="drifting",
        help="the simulated rhythm, offline (see devices/sim_mu.py's RHYTHMS)",
    )
    parser.add_argument("--with-task", action="store_true")
    parser.add_argument(
        "--estimator",
        choices=("ar", "ssp", "both"),
        default="both",
        help="phase estimator(s) to compare offline (default: both, side by side)",
    )
    args = parser.parse_args(argv)
    print(f"machine: {describe()}")
    if args.over_lsl:
        args.snr = 11.0 if args.snr is None else args.snr
        args.delay = 0.0 if args.delay is None else args.delay
        return over_lsl(args)
    print(f"rhythm: {args.rhythm}")
    names = ("ar", "ssp") if args.estimator == "both" else (args.estimator,)
    print(
        f"{'est':>4} {'SNR dB':>6} {'delay ms':>8} {'pulses':>6} {'mean err':>8} "
        f"{'SD':>6} {'SD 95% CI':>11} {'anchor SD':>9} {'SD-anchor':>9} "
        f"{'offline SD':>10} "
        f"{'floor':>6} "
        f"{'ms/decision':>11}"
    )
    for snr in SNRS if args.snr is None else (args.snr,):
        for delay in DELAYS if args.delay is None else (args.delay,):
            for name in names:
                _row(name, snr, delay, args)
    return 0


def _row(name: str, snr: float, delay: float, args) -> None:
    """Run and print one estimator's row."""
    r = condition(snr, delay, args.pulses, args.seed, name, args.rhythm)
    anchor = ANCHORS.get(snr, math.nan) + (DELAY_ANCHOR if delay else 0.0)
    ci = "{:.0f}-{:.0f}".format(*r["sd_ci"])
    print(
        f"{name:>4} {snr:>6g} {delay * 1e3:>8g} {r['n']:>6d} {r['mean']:>+8.1f} "
        f"{r['sd']:>6.1f} {ci:>11} {anchor:>9.0f} {r['sd'] - anchor:>+9.1f} "
        f"{r['offline_sd']:>10.1f} {r['floor_sd']:>6.1f} "
        f"{r['ms_per_decision']:>11.2f}",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
