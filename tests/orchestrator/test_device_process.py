"""The device process against the simulated rig in its own process, over real ptys."""

import json
import os
import time

import pylsl
import pytest

from stimtrain.orchestrator.device_process import (
    DeviceConfig,
    DeviceFault,
    DeviceProcess,
)
from stimtrain.orchestrator.simrig import start_simulated_rig


@pytest.fixture
def rig(tmp_path):
    log = tmp_path / "pulses.jsonl"
    sim = start_simulated_rig(pulse_log=log, eeg_stream=f"test-dev-eeg-{os.getpid()}")
    yield sim, log
    sim.stop()


def _device(sim, reports, faults, tmp_path):
    return DeviceProcess(
        DeviceConfig(
            model="super_rapid2",
            stimulator_port=sim.stimulator_port,
            trigger_port=sim.trigger_port,
            traffic_log=str(tmp_path / "traffic.jsonl"),
        ),
        on_pulse=reports.append,
        on_fault=faults.append,
    )


def test_schedule_serial_and_trigger_pulses(rig, tmp_path):
    sim, log = rig
    reports, faults = [], []
    device = _device(sim, reports, faults, tmp_path)
    try:
        state = device.start()
        assert state["remote_control"] and not state["armed"]
        device.request("set_power", 30)
        state = device.request("arm", 3.0, timeout=6.0)
        assert state["armed"] and state["ready"]
        t0 = pylsl.local_clock() + 0.3
        device.schedule(0, [(t0, 0, "serial"), (t0 + 1.05, 1, "serial")])
        assert device.wait_block(0, timeout=5)
        t1 = pylsl.local_clock() + 0.2
        triplet = [t1, t1 + 0.02, t1 + 0.04]
        device.schedule(1, [(t, i, "trigger") for i, t in enumerate(triplet)])
        assert device.wait_block(1, timeout=5)
        assert not device.request("disarm")["armed"]
    finally:
        device.stop()
    assert faults == []
    assert [(r.block, r.index, r.via) for r in reports] == [
        (0, 0, "serial"),
        (0, 1, "serial"),
        (1, 0, "trigger"),
        (1, 1, "trigger"),
        (1, 2, "trigger"),
    ]
    time.sleep(0.2)
    delivered = [json.loads(line) for line in log.read_text().splitlines()]
    assert [d["source"] for d in delivered] == ["serial"] * 2 + ["trigger"] * 3
    for report, pulse in zip(reports, delivered, strict=True):
        # Generous sanity bounds; benchmarks/pulse_timing.py measures the real numbers.
        assert abs(report.actual - report.scheduled) < 0.005
        assert 0 <= pulse["time"] - report.actual < 0.01
        assert pulse["power"] == 30
    traffic = [
        json.loads(line)
        for line in (tmp_path / "traffic.jsonl").read_text().splitlines()
    ]
    assert {t["dir"] for t in traffic} == {"tx", "rx"}
    # The fire command 'EH' + CRC went out on the wire twice.
    fires = [t for t in traffic if t["dir"] == "tx" and t["hex"].startswith("4548")]
    assert len(fires) == 2


def test_refused_command_is_reported(rig, tmp_path):
    sim, _ = rig
    device = _device(sim, [], [], tmp_path)
    try:
        device.start()
        with pytest.raises(DeviceFault, match="set_power failed"):
            device.request("set_power", 150)
        # The process survives a refused command and still answers.
        assert device.request("status")["remote_control"]
    finally:
        device.stop()


def test_vanished_port_is_a_fault(rig, tmp_path):
    sim, _ = rig
    faults = []
    device = _device(sim, [], faults, tmp_path)
    device.start()
    try:
        sim.stop()
        deadline = time.monotonic() + 5
        while not faults and time.monotonic() < deadline:
            time.sleep(0.05)
        assert faults, "the keep-alive should notice the stimulator is gone"
        with pytest.raises(DeviceFault):
            device.request("arm", 3.0)
    finally:
        device.stop()
