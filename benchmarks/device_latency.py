"""Device latency and keep-alive regularity, measured at the simulated stimulator.

The simulators (a Super Rapid² and a serial trigger box wired to its trigger
input) run in a child process behind real pseudo-terminals, as hardware would
be; they stamp every command and every pulse with the LSL clock when it
arrives. This process drives them through the real drivers and prints:

1. Trigger latency: from the moment the driver's fire call starts
   (``line.fire()`` of the serial-command and trigger-box trigger lines) to
   the simulator's receipt of the command (median, p99, max). Serial single
   pulses run at the unit's 1 Hz limit.
2. Keep-alive intervals as the simulator receives them from the device
   process, while this (main) process is saturated: two Python threads
   spinning and allocating cyclic garbage (GC pressure) for the whole
   measurement. The armed unit drops remote control (and disarms) after 1 s
   without one.

A pseudo-terminal transfers bytes at memory speed: the 9600 baud wire time
(about 1.04 ms per byte, 3.1 ms for the 3-byte Magstim fire command) is not
included and must be added for real hardware.

Usage: ``python benchmarks/device_latency.py [--serial-pulses N]
[--trigger-pulses N] [--busy-seconds S]``
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from machine import describe  # same folder: one machine description

from stimtrain.orchestrator.session.lslconfig import use_local_lsl

use_local_lsl()

import numpy as np  # noqa: E402
import pylsl  # noqa: E402

from stimtrain.devices.magstim.protocol import encode  # noqa: E402
from stimtrain.devices.stimulator import open_stimulator  # noqa: E402
from stimtrain.devices.traffic import format_traffic  # noqa: E402
from stimtrain.devices.trigger import make_trigger  # noqa: E402
from stimtrain.orchestrator.session.device_process import (  # noqa: E402
    DeviceConfig,
    DeviceFault,
    DeviceProcess,
)


# ----------------------------------------------------------- child process
def serve(log_path: str) -> None:
    """Child: serve the stimulator and trigger box, log arrivals as JSON lines."""
    from stimtrain.devices.magstim.simulator import MagstimSimulator
    from stimtrain.devices.sim_triggerbox import TriggerBoxSimulator

    # Real devices have their own processors: run above the host's work.
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(20))
    except (AttributeError, OSError):
        pass
    log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115
    lock = threading.Lock()

    def record(**item) -> None:
        with lock:
            log.write(json.dumps(item) + "\n")
            log.flush()

    class RecordingSimulator(MagstimSimulator):
        def _on_data(self, data: bytes, t: float) -> None:
            record(kind="rx", t=t, hex=data.hex())
            super()._on_data(data, t)

    stim = RecordingSimulator("super_rapid2", charge_time=0.1)
    stim.add_pulse_listener(lambda p: record(kind="pulse", t=p.time, source=p.source))

    def edge(mask: int, t: float) -> None:
        if mask & 1:
            record(kind="edge", t=t, pulse=stim.trigger(t))

    box = TriggerBoxSimulator(edge)
    print(f"port: {stim.start()}", flush=True)
    print(f"trigger_port: {box.start()}", flush=True)
    try:
        sys.stdin.read()  # until the parent closes our stdin
    finally:
        box.stop()
        stim.stop()
        log.close()


# ----------------------------------------------------------- parent process
def _read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _arrivals(
    path: Path, kind: str, n: int, since: float, data: str | None = None
) -> list[dict]:
    """The first ``n`` records of ``kind`` (and hex ``data``) after ``since``."""
    deadline = time.monotonic() + 2.0
    while True:
        found = [
            r
            for r in _read_log(path)
            if r["kind"] == kind and r["t"] >= since and data in (None, r.get("hex"))
        ]
        if len(found) >= n or time.monotonic() > deadline:
            return found[:n]
        time.sleep(0.02)


def _stats(label: str, values_s: list[float]) -> None:
    if len(values_s) == 0:
        print(f"{label:<46} no data")
        return
    ms = np.asarray(values_s) * 1e3
    print(
        f"{label:<46} n={len(ms):4d}  median {np.median(ms):7.3f} ms  "
        f"p99 {np.percentile(ms, 99):7.3f} ms  max {ms.max():7.3f} ms"
    )


def _idle(stim, until: float) -> None:
    """Sleep until ``until``, keeping remote control alive meanwhile."""
    while (left := until - pylsl.local_clock()) > 0:
        time.sleep(min(left, 0.4))
        if until - pylsl.local_clock() > 0.05:
            stim.keep_alive()


def measure_fire(ports, log: Path, n_serial: int, n_trigger: int) -> None:
    stim = open_stimulator("super_rapid2", ports["port"])
    stim.open()
    try:
        stim.remote_control(True)
        stim.set_intensity(30)
        stim.arm()
        stim.wait_ready()
        # Serial: the unit's receipt of the complete fire command 'EH'.
        fire_hex = encode("E", "H").hex()
        line = make_trigger("serial", stimulator=stim)
        calls, writes = [], []
        for i in range(n_serial):
            if i:
                # The unit refuses a serial fire sooner than 1 s after the last.
                _idle(stim, calls[-1] + 1.01)
            calls.append(pylsl.local_clock())
            writes.append(line.fire())
        got = [r["t"] for r in _arrivals(log, "rx", n_serial, calls[0], fire_hex)]
        _stats("serial command: fire call → unit", np.subtract(got, calls))
        _stats("serial command: write returned → unit", np.subtract(got, writes))

        # Trigger box: the box's receipt of the byte that raises line 0.
        calls, writes = [], []
        with make_trigger("triggerbox", port=ports["trigger_port"]) as box:
            for i in range(n_trigger):
                if i % 10 == 0:
                    stim.keep_alive()
                calls.append(pylsl.local_clock())
                writes.append(box.pulse())
                time.sleep(0.05)  # 20 Hz, well inside the unit's limit at 30 %
        edges = _arrivals(log, "edge", n_trigger, calls[0])
        got = [e["t"] for e in edges]
        _stats("trigger box: fire call → box", np.subtract(got, calls))
        _stats("trigger box: write returned → box", np.subtract(got, writes))
        missed = sum(not e["pulse"] for e in edges)
        print(f"{'trigger box: edges the unit ignored':<46} {missed} of {len(edges)}")
    finally:
        stim.disarm()
        stim.close()


def _busy(stop: threading.Event) -> None:
    # Pure-Python work that holds the GIL and makes cyclic garbage.
    rounds = 0
    while not stop.is_set():
        junk = []
        for i in range(2000):
            node = {"i": i}
            node["self"] = node
            junk.append(node)
        rounds += 1
        if rounds % 50 == 0:
            gc.collect()  # a full collection now and then, as a big app has


def measure_keep_alive(ports, log: Path, seconds: float) -> None:
    traffic = log.with_name("traffic.jsonl")
    device = DeviceProcess(
        DeviceConfig(
            model="super_rapid2",
            stimulator_port=ports["port"],
            trigger_port=ports["trigger_port"],
            traffic_log=str(traffic),
        )
    )
    device.start()
    armed = None
    try:
        device.set_power(30)
        device.arm(3.0)
        stop = threading.Event()
        t_start = pylsl.local_clock()
        workers = [threading.Thread(target=_busy, args=(stop,)) for _ in range(2)]
        for w in workers:
            w.start()
        time.sleep(seconds)
        stop.set()
        for w in workers:
            w.join()
        t_end = pylsl.local_clock()
        armed = device.status()["armed"]
        device.disarm()
    except DeviceFault as exc:
        print(f"device fault: {exc}\nlast traffic:")
        print("\n".join(format_traffic(traffic).splitlines()[-12:]))
        t_end = pylsl.local_clock()
    finally:
        device.stop()
    keep_alive = encode("x", "@").hex()  # the keep-alive of software v9 and later
    arrivals = [
        r["t"]
        for r in _read_log(log)
        if r["kind"] == "rx" and r["hex"] == keep_alive and t_start <= r["t"] <= t_end
    ]
    _stats(
        f"keep-alive interval, main process busy {seconds:g} s",
        np.diff(arrivals).tolist(),
    )
    print(f"{'unit still armed afterwards':<46} {armed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serial-pulses", type=int, default=20)
    parser.add_argument("--trigger-pulses", type=int, default=200)
    parser.add_argument("--busy-seconds", type=float, default=20.0)
    parser.add_argument("--serve", metavar="LOG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    print(f"machine: {describe()}")
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "arrivals.jsonl"
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(log)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            lines = [child.stdout.readline().strip() for _ in range(2)]
            ports = dict(line.split(": ", 1) for line in lines)
            measure_fire(ports, log, args.serial_pulses, args.trigger_pulses)
            measure_keep_alive(ports, log, args.busy_seconds)
        finally:
            child.stdin.close()
            child.wait(5)


if __name__ == "__main__":
    main()
