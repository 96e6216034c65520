"""Trigger box driver and simulator, and the simulated rig wired together."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from pylsl import local_clock

from stimtrain.devices.magstim.driver import Magstim
from stimtrain.devices.sim_rig import SimulatedRig, serve
from stimtrain.devices.sim_triggerbox import TriggerBoxSimulator
from stimtrain.devices.triggerbox import TriggerBox, wait_until

#: Sanity bound on a simulator's stamp of a pulse: the other test worker's
#: sessions load both cores (benchmarks/ measure the real numbers).
STAMP_BOUND_S = 0.05
#: The command that serves a simulated device (as a lab would switch one on).
SIM_CLI = [sys.executable, "-m", "stimtrain.cli", "sim"]


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
    assert abs(edges[0][1] - sent) < STAMP_BOUND_S
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
    assert pulses[-1].time == pytest.approx(first, abs=STAMP_BOUND_S)
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
        assert time_ == rig.pulses[0].time == pytest.approx(sent, abs=STAMP_BOUND_S)


def test_serve_rig_cli(tmp_path):
    log = tmp_path / "pulses.jsonl"
    code = (
        "import sys; from stimtrain.devices.sim_rig import serve; "
        f"serve('rig', pulse_log={str(log)!r}, model='super_rapid2_plus', "
        "faults='overheat_after_pulses=1')"
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
            status = magstim.status()  # the fault plan overheated the coil
            assert status.standby and status.replace_coil
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    (line,) = log.read_text().splitlines()
    record = json.loads(line)
    assert record["power"] == 31 and record["source"] == "trigger"
    assert record["time"] == pytest.approx(sent, abs=STAMP_BOUND_S)


def test_serve_rejects_bad_arguments_before_starting():
    with pytest.raises(ValueError, match="contradicts device 'magstim-200'"):
        serve("magstim-200", model="rapid2")
    with pytest.raises(ValueError, match="unknown stimulator model 'rapid3'"):
        serve("rig", model="rapid3")
    with pytest.raises(ValueError, match="unknown fault 'bogus'"):
        serve("rig", faults="bogus=1")


def test_triggerbox_marks_edges_read_together_as_late():
    seen = []
    sim = TriggerBoxSimulator(lambda mask, t: seen.append((mask, sim.edge_read_late)))
    port = sim.start()
    try:
        with TriggerBox(port) as box:
            box._serial.write(b"\x01\x00\x03\x00")  # one write: one read
            time.sleep(0.05)
            box._serial.write(b"\x01")  # read on its own
            time.sleep(0.05)
    finally:
        sim.stop()
    assert seen == [(0x01, True), (0x03, True), (0x01, False)]
    assert sim.n_late_edges == 2


@pytest.mark.parametrize("stall_s", [0.030, 0.045])
def test_rig_reader_stall_does_not_drop_theta_burst_edges(stall_s):
    """Regression: a late trigger-box reader made the simulator drop edges.

    Pulse listeners run on the trigger box's reader thread, so stalling one
    delays the next reads exactly as a descheduled reader does. A 30 ms stall
    after a burst's first pulse used to stamp the second edge 10 ms late, so
    the third, on time, looked 10 ms after it (Super Rapid² at 35 %: 13.3 ms
    minimum) and was ignored; a 45 ms stall read both edges in one chunk with
    one time stamp, and the third looked 0 ms after the second.
    """
    with SimulatedRig("super_rapid2", eeg=False, charge_time=0.05) as rig:

        def stall(pulse):
            if len(rig.pulses) % 3 == 1:
                time.sleep(stall_s)

        rig.stimulator.add_pulse_listener(stall)
        magstim = _armed(rig, power=35)
        try:
            with TriggerBox(rig.trigger_port) as box:
                t0 = local_clock() + 0.02
                for burst in range(4):  # theta burst: triplets at 50 Hz
                    for k in range(3):
                        wait_until(t0 + burst * 0.2 + k * 0.02)
                        box.pulse()
                    magstim.keep_alive()
                time.sleep(0.1)
        finally:
            magstim.close()
    assert rig.stimulator.missed == 0 and len(rig.pulses) == 12
    assert rig.triggerbox.n_late_edges >= 4  # the stall did make late reads
    assert sum(p.late_read for p in rig.pulses) >= 4


def test_rig_edge_in_train_mode_starts_a_device_train():
    with SimulatedRig("rapid2", eeg=False, charge_time=0.05) as rig:
        magstim = Magstim(rig.stimulator_port, "rapid2")
        magstim.open()
        try:
            magstim.remote_control()
            magstim.set_train(20, 4)  # the unit times 4 pulses at 20 Hz itself
            magstim.arm()
            magstim.wait_ready()
            with TriggerBox(rig.trigger_port) as box:
                sent = box.pulse()
                time.sleep(0.2)
                box.pulse()  # during the train's wait: ignored
                time.sleep(0.02)
        finally:
            magstim.close()
    pulses = rig.pulses
    assert [p.source for p in pulses] == ["train"] * 4 and rig.stimulator.missed == 1
    assert pulses[0].time == pytest.approx(sent, abs=STAMP_BOUND_S)
    assert pulses[-1].time - pulses[0].time == pytest.approx(0.15)


def test_served_device_survives_a_burst_of_sigterm():
    # A runner killed outright sends its rig SIGTERM (PDEATHSIG), sometimes more
    # than once: a handler that set an Event while the main thread held that
    # Event's lock (or while an earlier handler did) hung the rig for good.
    proc = subprocess.Popen(
        [*SIM_CLI, "triggerbox"], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        assert proc.stdout.readline().startswith("port: ")
        for _ in range(300):
            proc.send_signal(signal.SIGTERM)
        # It must end, not hang; a signal that lands after serve() put the
        # default handler back may end it by that handler instead.
        assert proc.wait(timeout=10) in (0, -signal.SIGTERM)
    finally:
        proc.kill()
        proc.wait()
