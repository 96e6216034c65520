"""Trigger lines on real pseudo-terminals: trigger box, serial command, RTS."""

import time

import pytest
import serial

from stimtrain.devices.errors import DeviceError, TriggerLineError
from stimtrain.devices.magstim.driver import Magstim
from stimtrain.devices.sim_rig import SimulatedRig
from stimtrain.devices.sim_triggerbox import TriggerBoxSimulator
from stimtrain.devices.trigger import (
    RTSTrigger,
    SerialCommandTrigger,
    TriggerBoxTrigger,
    has_modem_lines,
    make_trigger,
)


@pytest.fixture
def box_sim():
    edges = []
    sim = TriggerBoxSimulator(lambda mask, t: edges.append((mask, t)))
    sim.start()
    sim.edges = edges
    yield sim
    sim.stop()


def _settle(condition, timeout=1.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
    return condition()


def test_triggerbox_fire_release_and_pulse(box_sim):
    traffic = []
    line = TriggerBoxTrigger(
        box_sim.port,
        lines=0x05,
        pulse_width=0.002,
        traffic_log=lambda d, data, t: traffic.append((d, data, t)),
    )
    with line:
        assert line.kind == "triggerbox" and line.pulse_width == 0.002
        t_fire = line.fire()
        assert _settle(lambda: box_sim.lines == 0x05)
        line.release()
        assert _settle(lambda: box_sim.lines == 0)
        t_pulse = line.pulse()
        assert _settle(lambda: len(box_sim.edges) == 2 and box_sim.lines == 0)
    assert [mask for mask, _ in box_sim.edges] == [0x05, 0x05]
    assert abs(box_sim.edges[0][1] - t_fire) < 0.01
    assert abs(box_sim.edges[1][1] - t_pulse) < 0.01
    sent = [data for d, data, _ in traffic if d == "tx"]
    # open and close set the lines low; each pulse is the mask, then 0.
    assert sent == [b"\x00", b"\x05", b"\x00", b"\x05", b"\x00", b"\x00"]
    # pulse() holds the line at least pulse_width.
    assert traffic[4][2] - traffic[3][2] >= 0.002


@pytest.mark.parametrize("lines", [0, 256, -1, 1.5, True])
def test_triggerbox_rejects_bad_line_mask(lines):
    with pytest.raises(ValueError, match=r"lines must be a line mask from 1 to 255"):
        TriggerBoxTrigger("/dev/null", lines=lines)


@pytest.mark.parametrize("width", [0, -0.001, 0.5])
def test_rejects_bad_pulse_width(width):
    with pytest.raises(ValueError, match=rf"pulse_width .*got {width!r}"):
        TriggerBoxTrigger("/dev/ttyX", pulse_width=width)
    with pytest.raises(ValueError, match=r"trigger on /dev/ttyY: pulse_width"):
        RTSTrigger("/dev/ttyY", pulse_width=width)


def test_serial_command_trigger_fires_the_stimulator():
    with SimulatedRig("rapid2", eeg=False, charge_time=0.05) as rig:
        with Magstim(rig.stimulator_port, "rapid2") as magstim:
            magstim.remote_control()
            magstim.set_power(35)
            magstim.arm()
            magstim.wait_ready()
            line = make_trigger("serial", stimulator=magstim)
            assert isinstance(line, SerialCommandTrigger) and line.pulse_width == 0
            with line:
                sent = line.pulse()
            assert magstim.status().armed  # the line does not own the stimulator
        (pulse,) = rig.pulses
    assert pulse.source == "serial" and pulse.power == 35
    # The stamp follows the write; the unit may read the bytes before it.
    assert -0.001 < pulse.time - sent < 0.01


def test_rts_on_a_pty_fails_naming_the_port(box_sim):
    # A pty has no modem-control lines, so the RTS path can't be exercised
    # end to end here; it must refuse clearly instead of failing mid-session.
    line = make_trigger("rts", port=box_sim.port, pulse_width=0.001)
    assert isinstance(line, RTSTrigger)
    with pytest.raises(TriggerLineError, match=rf"{box_sim.port} has no modem-control"):
        line.open()
    with pytest.raises(
        DeviceError, match=rf"RTS trigger on {box_sim.port} is not open"
    ):
        line.fire()
    line.close()  # harmless when not open
    # Nothing was written to the port while trying.
    time.sleep(0.02)
    assert box_sim.edges == []


def test_rts_on_a_missing_port_fails_naming_it():
    with pytest.raises(TriggerLineError, match="cannot open /dev/no-such-port"):
        RTSTrigger("/dev/no-such-port").open()


def test_has_modem_lines_is_false_on_a_pty(box_sim):
    with serial.Serial(box_sim.port) as ser:
        assert not has_modem_lines(ser)


def test_make_trigger_checks_its_settings():
    with pytest.raises(ValueError, match=r"trigger kind must be one of .*'parallel'"):
        make_trigger("parallel", port="/dev/ttyS0")
    with pytest.raises(ValueError, match="'serial' needs the stimulator"):
        make_trigger("serial")
    with pytest.raises(ValueError, match="'triggerbox' needs a port"):
        make_trigger("triggerbox")
    with pytest.raises(ValueError, match="'rts' needs a port, got ''"):
        make_trigger("rts", port="")
    box = make_trigger("triggerbox", port="/dev/ttyS0", lines=0x02, pulse_width=0.005)
    assert isinstance(box, TriggerBoxTrigger)
    assert (box.lines, box.pulse_width) == (0x02, 0.005)
