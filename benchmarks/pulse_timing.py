"""Pulse timing through the real driver path to the simulated rig.

Host-timed pulses are scheduled in absolute LSL-clock times and executed by
the device process (the same code as a session); the simulated stimulator, in
its own process behind real pseudo-terminals, records the LSL-clock time at
which each pulse reached it. Prints the error between the scheduled and the
delivered time (median, 99th percentile, max) for

* single pulses at 1 Hz fired by serial command (``EH`` + CRC), and
* theta-burst triplets (50 Hz, 20 ms apart, bursts at 5 Hz) through the
  serial TTL trigger box wired to the stimulator's trigger input, and
* with ``--with-task``: both again while the main process renders a flanker
  task (PsychoPy, simulated participant, under Xvfb when there is no display),
  plus online pulses at stimulus onset + 150 ms, scheduled from the flip
  time of each onset as a session does;
* with ``--with-view``: everything twice in the same run, first as above,
  then with the live view serving a headless chromium that shows every pulse
  (its process reads the pulse markers and the simulated EEG/EMG, as in a
  session), so the two can be compared side by side.

Usage: ``python benchmarks/pulse_timing.py [--serial-pulses N] [--tbs-pulses N]
[--with-task] [--online-trials N] [--with-view]``
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import tempfile
import threading
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path

from machine import describe, steal_ms, steal_since  # same folder

from stimtrain.orchestrator.session.lslconfig import use_local_lsl  # noqa: E402

use_local_lsl()

import numpy as np  # noqa: E402
import pylsl  # noqa: E402

from stimtrain.orchestrator.session.device_process import DeviceConfig, DeviceProcess  # noqa: E402
from stimtrain.orchestrator.session.simrig import start_simulated_rig  # noqa: E402


def read_pulses(path: Path, n: int, timeout: float = 5.0) -> list[float]:
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return [json.loads(line)["time"] for line in lines]


def render_task(win, tmp: Path, until: float, seed: int, on_event=None) -> int:
    """Run flanker trials in the main process until the clock passes ``until``."""
    from stimtrain.tasks.participant import SimulatedParticipant
    from stimtrain.tasks.runner import run_task_block

    result = run_task_block(
        win,
        "flanker",
        {},
        n_trials=10_000,
        seed=seed,
        tsv_path=tmp / f"trials-{seed}.tsv",
        emit=lambda *a, **k: None,
        participant=SimulatedParticipant(seed=seed),
        should_stop=lambda: pylsl.local_clock() > until,
        on_event=on_event,
    )
    return len(result.results)


def summarize(label: str, err_ms: np.ndarray) -> dict:
    stats = {
        "n": len(err_ms),
        "median_ms": float(np.median(err_ms)),
        "p99_ms": float(np.percentile(err_ms, 99)),
        "max_ms": float(np.max(np.abs(err_ms))),
    }
    print(
        f"{label:<48} n={stats['n']:4d}  median {stats['median_ms']:.3f} ms  "
        f"p99 {stats['p99_ms']:.3f} ms  max {stats['max_ms']:.3f} ms"
    )
    return stats


def report(label: str, block: int, wanted: list[float], delivered, reports) -> None:
    """Print the error at the unit, at the host's write, and the hop between."""
    if len(delivered) != len(wanted):
        print(f"{label}: {len(delivered)} of {len(wanted)} pulses delivered")
        return
    wanted = np.asarray(wanted)
    delivered = np.asarray(delivered)
    # The device process stamps every write; the pulse marker carries it.
    written = np.asarray(
        [r.actual for r in sorted(reports[block], key=lambda r: r.index)]
    )
    summarize(f"{label}: at the unit", (delivered - wanted) * 1e3)
    if len(written) == len(wanted):
        summarize("    host: write - schedule", (written - wanted) * 1e3)
        summarize("    pty hop: unit - write", (delivered - written) * 1e3)


def run(
    label: str,
    device,
    log: Path,
    reports: dict,
    block: int,
    times: list[float],
    via: str,
    during=None,
):
    if not times:
        return
    steal = steal_ms()
    before = len(read_pulses(log, 0, timeout=0))
    device.schedule(block, [(t, i, via) for i, t in enumerate(times)])
    if during is not None:
        during(times[-1])
    device.wait_block(block, timeout=times[-1] - pylsl.local_clock() + 5)
    delivered = read_pulses(log, before + len(times))[before:]
    report(label, block, times, delivered, reports)
    print(f"    hypervisor steal meanwhile: {steal_since(steal)}")


def run_online(
    device, log: Path, reports: dict, win, tmp: Path, n_trials: int, block: int
):
    """Pulses at stimulus onset + 150 ms, scheduled from each onset's flip."""
    steal = steal_ms()
    before = len(read_pulses(log, 0, timeout=0))
    wanted: list[float] = []
    todo: queue.Queue = queue.Queue()

    def on_event(event, t, trial):
        if event == "stim_onset":
            wanted.append(t + 0.150)
            todo.put((t + 0.150, len(wanted) - 1))

    def forward():
        # As in a session: the flip callback must return at once.
        while (item := todo.get()) is not None:
            device.schedule(block, [(item[0], item[1], "trigger")])

    thread = threading.Thread(target=forward, daemon=True)
    thread.start()
    from stimtrain.tasks.participant import SimulatedParticipant
    from stimtrain.tasks.runner import run_task_block

    run_task_block(
        win,
        "flanker",
        {},
        n_trials=n_trials,
        seed=7,
        tsv_path=tmp / "online.tsv",
        emit=lambda *a, **k: None,
        participant=SimulatedParticipant(seed=7),
        on_event=on_event,
    )
    todo.put(None)
    thread.join()
    time.sleep(0.5)
    delivered = read_pulses(log, before + len(wanted))[before:]
    report("online, onset + 150 ms, trigger box", block, wanted, delivered, reports)
    print(f"    hypervisor steal meanwhile: {steal_since(steal)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serial-pulses", type=int, default=30)
    parser.add_argument("--tbs-pulses", type=int, default=600)
    parser.add_argument(
        "--with-task",
        action="store_true",
        help="render a flanker task in the main process meanwhile; add online pulses",
    )
    parser.add_argument("--online-trials", type=int, default=100)
    parser.add_argument(
        "--with-view",
        action="store_true",
        help="measure everything again with the live view and chromium connected",
    )
    args = parser.parse_args()
    print(f"machine: {describe()}")
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "pulses.jsonl"
        sim = start_simulated_rig(pulse_log=log, eeg_stream=f"bench-eeg-{os.getpid()}")
        reports: dict[int, list] = defaultdict(list)
        device = DeviceProcess(
            DeviceConfig(
                model="super_rapid2",
                stimulator_port=sim.stimulator_port,
                trigger_port=sim.trigger_port,
            ),
            on_pulse=lambda r: reports[r.block].append(r),
        )
        with ExitStack() as stack:
            stack.callback(sim.stop)
            stack.callback(device.stop)
            during = win = None
            if args.with_task:
                from stimtrain.tasks.display import open_window, virtual_display

                stack.enter_context(virtual_display())
                win = open_window(size=(1024, 768), fullscr=False)
                stack.callback(win.close)

                def during(until):
                    render_task(win, Path(tmp), until, seed=int(until))

            device.start()
            device.set_power(30)
            device.arm(3.0)
            passes = [("", None)]
            if args.with_view:
                passes.append((" + view", lambda: open_view(stack, sim, reports)))
            for n, (extra, opener) in enumerate(passes):
                if opener is not None:
                    opener()
                measure(
                    args, device, log, reports, win, Path(tmp), during, extra, 10 * n
                )
            device.disarm()


def measure(args, device, log, reports, win, tmp, during, extra, first_block) -> None:
    """Serial pulses, TBS triplets and (with a task) online pulses, once."""
    where = (" + task" if args.with_task else "") + extra
    t0 = pylsl.local_clock() + 0.5
    # 1.001 s: the unit refuses a serial fire sooner than 1 s after the last.
    serial = [t0 + 1.001 * i for i in range(args.serial_pulses)]
    block = first_block
    run(
        f"1 Hz, serial command{where}",
        device,
        log,
        reports,
        block,
        serial,
        "serial",
        during,
    )
    t0 = pylsl.local_clock() + 0.5
    bursts = args.tbs_pulses // 3
    tbs = [t0 + 0.2 * b + 0.02 * k for b in range(bursts) for k in range(3)]
    run(
        f"TBS triplets, trigger box{where}",
        device,
        log,
        reports,
        block + 1,
        tbs,
        "trigger",
        during,
    )
    if args.with_task:
        run_online(device, log, reports, win, tmp, args.online_trials, block=block + 2)


def open_view(stack: ExitStack, sim, reports: dict) -> None:
    """The live view of these pulses, with a headless chromium reading it."""
    import sys

    from stimtrain.orchestrator.language.rig import SIM_EMG_CHANNEL
    from stimtrain.orchestrator.session.console import ConsoleState
    from stimtrain.orchestrator.session.markers import MarkerOutlet
    from stimtrain.orchestrator.session.view.live import LiveView

    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from browser import start_chromium

    markers = MarkerOutlet(f"bench-{os.getpid()}")
    stack.callback(markers.close)
    state = ConsoleState(protocol="pulse timing", participant="bench", session="1")
    journal = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "j.jsonl"
    journal.touch()
    view = stack.enter_context(
        LiveView(
            state,
            lambda *a: "ignored",
            marker_stream=markers.name,
            data_stream=sim.eeg_stream,
            emg_channel=SIM_EMG_CHANNEL,
            journal=str(journal),
        )
    )
    url = view.start()
    browser = start_chromium()
    stack.callback(browser.quit)
    browser.get(url)
    # Pulse markers as the ledger sends them: the view draws each pulse's MEP.
    forwarded = {"n": 0}

    def forward():
        while not stop.is_set():
            done = sorted(
                (r for rs in reports.values() for r in rs), key=lambda r: r.actual
            )
            for r in done[forwarded["n"] :]:
                markers.push(
                    "pulse",
                    r.actual,
                    block=r.block,
                    pulse=r.index,
                    pattern="single",
                    intensity=30,
                    unit="%MSO",
                    power=30,
                    scheduled=r.scheduled,
                )
                state.update(pulses_delivered=state.pulses_delivered + 1)
            forwarded["n"] = len(done)
            time.sleep(0.05)

    stop = threading.Event()
    thread = threading.Thread(target=forward, daemon=True)
    thread.start()
    stack.callback(thread.join, 2)
    stack.callback(stop.set)
    print(f"live view: {url} with chromium connected")


if __name__ == "__main__":
    main()
