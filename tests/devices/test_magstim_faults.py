"""Injected faults and error replies: each ends with the unit disarmed, the error
reported, and nothing sent that was not asked for."""

import time

import pytest
import serial

from stimtrain.devices.errors import (
    CommandRejected,
    CRCError,
    DeviceError,
    DeviceTimeout,
    PortVanished,
    RemoteControlLost,
)
from stimtrain.devices.faults import FaultPlan
from stimtrain.devices.magstim.protocol import encode, frame


def _armed(make_driver, model="super_rapid2", **kwargs):
    sim, m, traffic = make_driver(model, **kwargs)
    m.arm()
    m.wait_ready()
    return sim, m, traffic


def test_dropped_byte_times_out_and_the_link_recovers(make_driver):
    sim, m, traffic = _armed(make_driver, driver_kwargs={"timeout": 0.1})
    sim.faults = FaultPlan(drop_every=1)
    with pytest.raises(DeviceTimeout, match=r"'F': expected .* more reply byte"):
        m.temperature()
    sim.faults = FaultPlan()
    assert m.temperature() == (25.0, 25.0)  # no stale byte desynchronises replies
    m.disarm()
    assert not sim.armed


def test_one_bad_checksum_is_retried_two_are_an_error(make_driver):
    sim, m, traffic = make_driver("rapid2")
    sim.faults = FaultPlan(corrupt_crc_every=2)
    sim._n_replies = 0  # the next reply is number 1: intact; number 2: corrupt
    m.temperature()
    n = len(traffic.sent())
    assert m.temperature() == (25.0, 25.0)  # reply 2 corrupt, retry is reply 3
    assert traffic.sent()[n:] == [encode("F")] * 2
    sim.corrupt_crc_every = 1
    n = len(traffic.sent())
    with pytest.raises(CRCError, match="checksum.*also after one retry"):
        m.temperature()
    assert traffic.sent()[n:] == [encode("F")] * 2  # one retry, no more


def test_bad_checksum_on_fire_is_not_resent(make_driver):
    sim, m, traffic = _armed(make_driver)
    sim.corrupt_crc_every = 1
    n = len(traffic.sent())
    with pytest.raises(CRCError, match="not re-sent"):
        m.fire()
    assert traffic.sent()[n:] == [encode("E", "H")]
    assert len(sim.pulses) == 1  # the pulse was given, exactly once
    sim.corrupt_crc_every = 0
    m.disarm()
    assert not sim.armed


def test_late_reply(make_driver):
    sim, m, traffic = _armed(make_driver, driver_kwargs={"timeout": 0.15})
    sim.faults = FaultPlan(late_every=1, late_s=0.05)
    assert m.temperature() == (25.0, 25.0)  # late but within the timeout
    sim.faults = FaultPlan(late_every=1, late_s=0.3)
    with pytest.raises(DeviceTimeout):
        m.temperature()
    sim.faults = FaultPlan()
    time.sleep(0.2)  # the late reply arrives now, and is discarded
    assert m.keep_alive().armed
    m.disarm()
    assert not sim.armed


def test_silence_after_n_commands_and_the_unit_disarms_itself(make_driver):
    sim, m, traffic = _armed(
        make_driver, armed_timeout=0.3, driver_kwargs={"timeout": 0.1}
    )
    sim.faults = FaultPlan(silent_after=sim.commands_received)
    with pytest.raises(DeviceTimeout):
        m.keep_alive()
    with pytest.raises(DeviceTimeout):
        m.disarm()  # the link is dead: the unit's own timeout must act
    time.sleep(0.35)
    assert not sim.armed and not sim.remote
    assert sim.pulses == []


def test_disconnect_after_n_commands(make_driver):
    sim, m, traffic = _armed(make_driver, armed_timeout=0.3)
    sim.faults = FaultPlan(disconnect_after=sim.commands_received)
    with pytest.raises(PortVanished, match="vanished during command 'x'"):
        m.keep_alive()
    assert sim.disconnected
    n = len(traffic)
    with pytest.raises(PortVanished, match="vanished earlier"):
        m.fire()
    assert len(traffic) == n  # nothing is written to a vanished port
    m.close()  # no disarm attempt, no hang
    time.sleep(0.35)
    assert not sim.armed  # the unit's remote-control timeout disarmed it
    assert sim.pulses == []


def test_overheating_after_n_pulses(make_driver):
    sim, m, traffic = _armed(
        make_driver, "rapid2", faults=FaultPlan(overheat_after_pulses=1)
    )
    m.fire()
    state = m.state()
    assert not state.armed and "replace coil (over temperature)" in state.errors
    assert state.coil_temperature > 40.0
    assert m.error_code() == ("C", 7)
    with pytest.raises(CommandRejected, match="conflicts with unit state"):
        m.arm()
    assert not sim.armed and len(sim.pulses) == 1


def test_refusal_to_arm(make_driver):
    sim, m, traffic = make_driver("bistim", faults=FaultPlan(refuse_arm=True))
    with pytest.raises(DeviceError, match="arm was sent but the unit is still in"):
        m.arm()
    assert not sim.armed
    with pytest.raises(DeviceError, match="not armed"):
        m.wait_ready(timeout=0.2)


@pytest.mark.parametrize("version", [(8, 0, 0), (9, 0, 0)])
def test_loss_of_remote_control_is_detected_and_disarms(make_driver, version):
    sim, m, traffic = _armed(make_driver, "rapid2", version=version, armed_timeout=0.2)
    time.sleep(0.3)  # the keep-alive lapsed: the unit drops remote control
    with pytest.raises(RemoteControlLost, match="remote control was lost"):
        m.keep_alive()
    assert traffic.sent()[-2:][0] == encode("E", "A")  # disarm sent at once
    assert not sim.armed
    with pytest.raises(CommandRejected):
        m.fire()  # the driver does not re-take control behind anyone's back
    assert sim.pulses == []


def test_error_replies_of_the_unit(sim, raw):
    raw.write(b"K" + b"@" + bytes([0]))  # unknown command
    assert raw.read(10) == b"?"
    raw.write(encode("E", "B"))  # needs remote control
    assert raw.read(3) == frame(b"ES")
    raw.write(encode("Q"))
    raw.read(3)
    raw.write(encode("N", "X"))  # the version query takes 'D'
    assert raw.read(3) == frame(b"N?")
    raw.write(encode("B", "2000"))  # 200 Hz: above the 100 Hz programmable
    assert raw.read(3) == frame(b"B?")
    raw.write(encode("D", "06001"))
    assert raw.read(3) == frame(b"D?")
    assert not sim.armed


def test_unit_refuses_train_and_changes_it_cannot_do(make_sim):
    sim = make_sim("rapid2", version=(9, 0, 0), power=60)
    with serial.Serial(sim.port, 9600, timeout=0.5) as port:

        def ask(cmd, data="@", n=4):
            port.write(encode(cmd, data))
            return port.read(n)

        ask("Q", n=3)
        assert ask("B", "0300")[:1] == b"B"  # 30 Hz is a valid setting…
        ask("D", "00010")
        assert ask("[", "0010")[:1] == b"["  # train mode
        ask("E", "B", n=3)
        time.sleep(0.1)
        assert ask("E", "H", n=3) == frame(b"ES")  # …but 25 Hz is the limit at 60 %
        assert ask("C", "010", n=1) == b"?"  # no IPI on a Rapid: unknown command
        ask("E", "A", n=3)
        ask("B", "0100")  # 10 Hz, 10 pulses: a 1 s train
        ask("E", "B", n=3)
        time.sleep(0.1)
        assert ask("E", "H", n=3)[:1] == b"E" and len(sim.pulses) == 1
        assert ask("B", "0050") == frame(b"BS")  # no changes during the train
        assert ask("@", "050", n=3) == frame(b"@S")
        assert ask("^") == frame(b"^S")  # enhanced power needs single-pulse
    assert sim.pulses[0].source == "train"


def test_bistim_unit_refuses_ipi_changes_while_armed(make_sim):
    sim = make_sim("bistim")
    with serial.Serial(sim.port, 9600, timeout=0.5) as port:
        for cmd, data, n in (("Q", "@", 3), ("E", "B", 3)):
            port.write(encode(cmd, data))
            port.read(n)
        for cmd, data in (("C", "005"), ("Y", "@"), ("Z", "@")):
            port.write(encode(cmd, data))
            assert port.read(3) == frame(cmd.encode() + b"S")
