"""Trigger box driver and simulator, and the simulated rig wired together."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from stimtrain.devices.magstim.driver import Magstim
from stimtrain.devices.sim_rig import SimulatedRig
from stimtrain.devices.sim_triggerbox import TriggerBoxSimulator
from stimtrain.devices.triggerbox import TriggerBox


def test_triggerbox_rising_edges():
    edges = []
    sim = TriggerBoxSimulator(lambda mask, t: edges.append((mask, t)))
    port = sim.start()
    try:
        with TriggerBox(port, pulse_width=0.001) as box:
            sent = box.pulse(0x01)
            box.set_lines(0x03)  # lines 0 and 1 rise
            box.set_lines(0x07)  # line 2 rises
            box.set_lines(0x07)  # no change: no edge
            box.set_lines(0x00)
            box.pulse(0x05)
            with pytest.raises(ValueError, match="non-zero"):
                box.pulse(0)
        time.sleep(0.05)
    finally:
        sim.stop()
    assert [mask for mask, _ in edges] == [0x01, 0x03, 0x04, 0x05]
    assert abs(edges[0][1] - sent) < 0.005
    assert sim.lines == 0


@pytest.fixture
def rig():
    with SimulatedRig("rapid2", eeg=False, charge_time=0.05) as rig:
        yield rig


def _armed(rig, power=30):
    magstim = Magstim(rig.stimulator_port)
    magstim.open()
    magstim.remote_control()
    magstim.set_power(power)
    magstim.arm()
    magstim.wait_ready()
    return magstim


def test_rig_trigger_edges_fire_pulses(rig):
    magstim = _armed(rig, power=30)  # Rapid² at ≤30 %: up to 50 Hz
    sent = []
    try:
        with TriggerBox(rig.trigger_port) as box:
            for _ in range(50):
                sent.append(box.pulse())
                time.sleep(0.025)
                if len(sent) % 10 == 0:
                    magstim.keep_alive()
            time.sleep(0.02)
            first = box.pulse()
            box.pulse()  # ~1 ms later: faster than 50 Hz, ignored
            time.sleep(0.03)
            box.pulse(0x02)  # other line: not wired to the stimulator
            time.sleep(0.02)
    finally:
        magstim.close()
    pulses = rig.pulses
    assert len(pulses) == 51 and rig.stimulator.missed == 1
    assert {p.source for p in pulses} == {"trigger"} and pulses[0].power == 30
    assert pulses[-1].time == pytest.approx(first, abs=0.005)
    latency = sorted(p.time - t for p, t in zip(pulses, sent, strict=False))
    print(
        f"TriggerBox.pulse() → pulse: median {latency[25] * 1e6:.0f} µs, "
        f"max {latency[-1] * 1e6:.0f} µs"
    )
    assert latency[25] < 0.0005


def test_rig_edges_when_not_ready_are_missed(rig):
    with TriggerBox(rig.trigger_port) as box:
        box.pulse()
        time.sleep(0.02)
    assert rig.pulses == [] and rig.stimulator.missed == 1


def test_rig_forwards_pulses_to_eeg():
    pytest.importorskip("stimtrain.devices.sim_eeg")
    with SimulatedRig("rapid2", eeg=True, charge_time=0.05) as rig:
        magstim = _armed(rig, power=40)
        try:
            sent = magstim.fire()
            time.sleep(0.05)
        finally:
            magstim.close()
        ((time_, _sample),) = rig.eeg.pulses
        assert time_ == rig.pulses[0].time == pytest.approx(sent, abs=0.005)


def test_serve_rig_cli(tmp_path):
    log = tmp_path / "pulses.jsonl"
    code = (
        "import sys; from stimtrain.devices.sim_rig import serve; "
        f"serve('rig', pulse_log={str(log)!r})"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        port = proc.stdout.readline().split(": ", 1)
        trigger = proc.stdout.readline().split(": ", 1)
        assert port[0] == "port" and trigger[0] == "trigger_port"
        with Magstim(port[1].strip()) as magstim:
            magstim.remote_control()
            magstim.set_power(31)
            magstim.arm()
            magstim.wait_ready()
            with TriggerBox(trigger[1].strip()) as box:
                sent = box.pulse()
                time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    (line,) = log.read_text().splitlines()
    record = json.loads(line)
    assert record["power"] == 31 and record["source"] == "trigger"
    assert record["time"] == pytest.approx(sent, abs=0.005)
