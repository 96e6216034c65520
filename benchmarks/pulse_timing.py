"""Pulse timing through the real driver path to the simulated rig.

Host-timed pulses are scheduled in absolute LSL-clock times and executed by
the device process (the same code as a session); the simulated stimulator, in
its own process behind real pseudo-terminals, records the LSL-clock time at
which each pulse reached it. Prints the error between the scheduled and the
delivered time (median, 99th percentile, max) for

* single pulses at 1 Hz fired by serial command (``EH`` + CRC), and
* theta-burst triplets (50 Hz, 20 ms apart, bursts at 5 Hz) through the
  serial TTL trigger box wired to the stimulator's trigger input.

Usage: ``python benchmarks/pulse_timing.py [--serial-pulses N] [--tbs-pulses N]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from stimtrain.orchestrator.lslconfig import use_local_lsl  # noqa: E402

use_local_lsl()

import numpy as np  # noqa: E402
import pylsl  # noqa: E402

from stimtrain.orchestrator.device_process import DeviceConfig, DeviceProcess  # noqa: E402
from stimtrain.orchestrator.simrig import start_simulated_rig  # noqa: E402


def machine() -> str:
    """One line describing this machine."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def read_pulses(path: Path, n: int, timeout: float = 5.0) -> list[float]:
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return [json.loads(line)["time"] for line in lines]


def run(label: str, device, log: Path, block: int, times: list[float], via: str):
    before = len(read_pulses(log, 0, timeout=0))
    device.schedule(block, [(t, i, via) for i, t in enumerate(times)])
    device.wait_block(block, timeout=times[-1] - pylsl.local_clock() + 5)
    delivered = read_pulses(log, before + len(times))[before:]
    if len(delivered) != len(times):
        print(f"{label}: {len(delivered)} of {len(times)} pulses delivered")
        return None
    err = (np.asarray(delivered) - np.asarray(times)) * 1e3
    stats = {
        "n": len(err),
        "median_ms": float(np.median(err)),
        "p99_ms": float(np.percentile(err, 99)),
        "max_ms": float(np.max(np.abs(err))),
    }
    print(
        f"{label:<40} n={stats['n']:4d}  median {stats['median_ms']:.3f} ms  "
        f"p99 {stats['p99_ms']:.3f} ms  max {stats['max_ms']:.3f} ms"
    )
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serial-pulses", type=int, default=30)
    parser.add_argument("--tbs-pulses", type=int, default=600)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "pulses.jsonl"
        sim = start_simulated_rig(pulse_log=log, eeg_stream=f"bench-eeg-{os.getpid()}")
        device = DeviceProcess(
            DeviceConfig(
                model="super_rapid2",
                stimulator_port=sim.stimulator_port,
                trigger_port=sim.trigger_port,
            )
        )
        try:
            device.start()
            device.request("set_power", 30)
            device.request("arm", 3.0, timeout=6.0)
            t0 = pylsl.local_clock() + 0.5
            # 1.001 s: the unit refuses a serial fire sooner than 1 s after the last.
            serial = [t0 + 1.001 * i for i in range(args.serial_pulses)]
            run("single pulses, 1 Hz, serial command", device, log, 0, serial, "serial")
            t0 = pylsl.local_clock() + 0.5
            bursts = args.tbs_pulses // 3
            tbs = [t0 + 0.2 * b + 0.02 * k for b in range(bursts) for k in range(3)]
            run("theta-burst triplets, trigger box", device, log, 1, tbs, "trigger")
            device.request("disarm")
        finally:
            device.stop()
            sim.stop()


if __name__ == "__main__":
    main()
