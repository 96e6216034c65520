"""Cores and priorities of the device process and the simulated hardware."""

import json
import os
import subprocess
import sys

import pytest

from stimtrain.devices.realtime import device_core

CHILD = """
import json, os
from stimtrain.devices.realtime import (
    normal_scheduling, tune_device_process, tune_simulated_hardware)
rt = ({which})()
print(json.dumps({{"cpus": sorted(os.sched_getaffinity(0)), "rt": rt,
                  "policy": os.sched_getscheduler(0),
                  "priority": os.sched_getparam(0).sched_priority}}))
"""


def _tuned(which: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(which=which)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_device_has_a_core_the_simulators_preempt_it_anywhere():
    core = device_core()
    assert core == max(os.sched_getaffinity(0))
    device = _tuned("tune_device_process")
    hardware = _tuned("tune_simulated_hardware")
    assert device["cpus"] == [core]
    # The simulated hardware may run on every core (on the device's too: it
    # stamps pulses, which must not wait behind anything).
    assert hardware["cpus"] == sorted(os.sched_getaffinity(0))
    # Real-time where permitted; the simulators always above the device.
    for tuned in (device, hardware):
        assert tuned["policy"] == (os.SCHED_FIFO if tuned["rt"] else os.SCHED_OTHER)
    if device["rt"] and hardware["rt"]:
        assert hardware["priority"] > device["priority"] > 0


def test_background_work_drops_inherited_real_time():
    out = _tuned("lambda: (tune_simulated_hardware(), normal_scheduling())[0]")
    assert out["policy"] == os.SCHED_OTHER
    assert out["priority"] == 0
