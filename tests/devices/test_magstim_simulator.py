"""The Magstim driver against the simulator, over real ptys."""

import math
import time

import pytest
from pylsl import local_clock

from stimtrain.devices.errors import (
    CommandRejected,
    CRCError,
    DeviceError,
    DeviceLimitError,
)
from stimtrain.devices.magstim.driver import Magstim
from stimtrain.devices.magstim.protocol import crc, encode, frame

#: Sanity bound on a simulator's stamp of a pulse: the other test worker's
#: sessions load both cores (benchmarks/ measure the real numbers).
STAMP_BOUND_S = 0.05


def test_full_sequence(sim, magstim):
    traffic = []
    magstim.traffic_log = lambda d, data, t: traffic.append((d, data, t))
    assert magstim.status().standby
    magstim.remote_control()
    assert magstim.version() == (9, 0, 0)
    magstim.set_power(35)
    assert magstim.get_power() == 35
    magstim.arm()
    status = magstim.wait_ready(timeout=1.0)
    assert status.armed and status.ready and status.remote_control
    before = local_clock()
    sent = magstim.fire()
    assert before <= sent <= local_clock()
    (pulse,) = sim.pulses
    assert pulse.power == 35 and pulse.source == "serial"
    assert abs(pulse.time - sent) < STAMP_BOUND_S
    magstim.disarm()
    assert magstim.status().standby
    assert magstim.temperature() == (25.0, 25.0)
    assert sim.coil_temperature > 25.0  # warmed a little by the pulse
    assert {d for d, _, _ in traffic} == {"tx", "rx"}
    assert encode("E", "H") in [data for d, data, _ in traffic if d == "tx"]


def test_reply_status_is_before_command(raw):
    raw.write(encode("Q"))
    reply = raw.read(3)
    assert reply[0:1] == b"Q" and not reply[1] & 0x80  # remote was still off
    raw.write(encode("Q"))
    assert raw.read(3)[1] & 0x80


def test_unknown_command_bad_data_bad_crc(sim, raw):
    raw.write(encode("K"))
    assert raw.read(10) == b"?"
    raw.write(encode("Q"))
    raw.read(3)
    raw.write(encode("@", "1x0"))
    assert raw.read(3) == frame(b"@?")
    raw.write(encode("@", "101"))  # above 100 without enhanced power
    assert raw.read(3) == frame(b"@?")
    bad = encode("@", "050")
    raw.write(bad[:-1] + bytes([bad[-1] ^ 0x55]))
    assert raw.read(10) == b"?"
    assert sim.power == 30  # unchanged by the corrupted command
    raw.write(encode("E", "Z"))
    assert raw.read(3) == frame(b"E?")


def test_remote_control_required(magstim):
    with pytest.raises(CommandRejected, match="state") as info:
        magstim.arm()
    assert info.value.reason == "state"
    with pytest.raises(CommandRejected):
        magstim.set_power(50)
    magstim.disarm()  # accepted without remote control
    magstim.temperature()


def test_fire_refusals(sim, magstim):
    magstim.remote_control()
    with pytest.raises(CommandRejected, match="'E' refused"):
        magstim.fire()  # not armed
    magstim.arm()
    with pytest.raises(CommandRejected):
        magstim.fire()  # armed but still charging
    magstim.wait_ready()
    magstim.fire()
    time.sleep(0.1)
    magstim.keep_alive()
    sent = []
    magstim.traffic_log = lambda d, data, t: sent.append(data)
    with pytest.raises(DeviceLimitError, match="at most 1 Hz"):
        magstim.fire()  # Rapid serial single pulses: at most 1 Hz
    assert sent == []  # refused by the driver: nothing written
    magstim._last_fire = None  # a host that forgot: the unit refuses it too
    with pytest.raises(CommandRejected, match="state"):
        magstim.fire()
    assert len(sim.pulses) == 1


def test_driver_detects_bad_crc(make_sim):
    sim = make_sim(corrupt_crc_every=1)
    with Magstim(sim.port) as magstim:
        with pytest.raises(CRCError, match="checksum.*after one retry"):
            magstim.temperature()
        sim.corrupt_crc_every = 0


def test_silent_unit_times_out(make_sim):
    from stimtrain.devices.errors import DeviceTimeout

    sim = make_sim(silent=True)
    with pytest.raises(DeviceTimeout, match="expected 1 more reply byte"):
        with Magstim(sim.port, timeout=0.1) as magstim:
            magstim.status()


def test_power_validation_and_change_time(sim, magstim):
    magstim.remote_control()
    with pytest.raises(ValueError, match="outside 0–100"):
        magstim.set_power(101)
    magstim.arm()
    magstim.wait_ready()
    magstim.set_power(40)  # +10 % → about 100 ms not ready
    assert not magstim.status().ready
    magstim.wait_ready(timeout=1.0)
    magstim.set_enhanced_power(True)
    magstim.set_power(105)
    assert magstim.rapid_status().enhanced_power


def test_remote_control_timeout_disarms(make_sim):
    sim = make_sim(standby_timeout=0.6, armed_timeout=0.3)
    with Magstim(sim.port) as magstim:
        magstim.remote_control()
        magstim.arm()
        for _ in range(4):  # keep-alive every 100 ms holds it
            time.sleep(0.1)
            assert magstim.keep_alive().armed
        time.sleep(0.5)
        status = magstim.status()
        assert status.standby and not status.remote_control
        with pytest.raises(CommandRejected):
            magstim.arm()


def test_auto_disarm(make_sim):
    sim = make_sim(auto_disarm_after=0.2)
    with Magstim(sim.port) as magstim:
        magstim.remote_control()
        magstim.arm()
        magstim.wait_ready()
        time.sleep(0.3)
        assert magstim.keep_alive().standby


def test_hot_coil_disarms_and_refuses_arm(sim, magstim):
    magstim.remote_control()
    magstim.arm()
    magstim.wait_ready()
    sim.coil_temperature = 41.0
    status = magstim.status()
    assert status.standby and status.replace_coil
    assert magstim.temperature()[0] == pytest.approx(41.0, abs=0.1)
    with pytest.raises(CommandRejected, match="state"):
        magstim.arm()
    with pytest.raises(DeviceError, match="not armed"):
        magstim.wait_ready(timeout=0.2)


def test_200_recharge_and_parameters(make_sim):
    sim = make_sim("200")
    with Magstim(sim.port, "200") as magstim:
        magstim.remote_control()
        magstim.set_power(60)
        magstim.arm()
        magstim.wait_ready(timeout=1.0)
        magstim.fire()
        assert not magstim.status().ready  # recharging: 3 s at 60 %
        with pytest.raises(DeviceLimitError, match="recharge takes 3 s at 60 %"):
            magstim.fire()
        magstim._last_fire = None  # the unit itself refuses too
        with pytest.raises(CommandRejected):
            magstim.fire()
        with pytest.raises(DeviceError, match="Rapid family only"):
            magstim.version()
    assert len(sim.pulses) == 1
    assert sim.trigger() is False and sim.missed == 1


def test_train_parameters_stored(sim, raw):
    raw.write(encode("Q"))
    raw.read(3)
    raw.write(encode("B", "0250"))  # 25.0 Hz
    assert raw.read(4)[0:1] == b"B"
    raw.write(encode("D", "00250"))
    assert raw.read(4)[0:1] == b"D"
    raw.write(encode("[", "0100"))  # 10 s: train mode
    reply = raw.read(4)
    assert reply[0:1] == b"[" and reply[-1] == crc(reply[:-1])
    with Magstim(sim.port) as magstim:
        params = magstim.rapid_parameters()
    assert params.frequency_hz == 25.0 and params.n_pulses == 250
    assert params.duration_s == 10.0 and params.rapid_status.train


def test_pulse_listener_and_latency(make_sim):
    from dataclasses import replace

    from stimtrain.devices.magstim.capabilities import MODELS

    # A Rapid variant without the 1 Hz serial limit, to time 50 fires quickly.
    fast = replace(MODELS["rapid2"], serial_max_rate_hz=1000.0)
    sim = make_sim(fast)
    heard = []
    sim.add_pulse_listener(heard.append)
    sent = []
    with Magstim(sim.port, fast) as magstim:
        magstim.remote_control()
        magstim.arm()
        magstim.wait_ready()
        for _ in range(50):
            time.sleep(0.01)
            sent.append(magstim.fire())
            magstim.keep_alive()
    pulses = sim.pulses
    assert heard == pulses and len(pulses) == 50
    latency = sorted(p.time - t for p, t in zip(pulses, sent, strict=True))
    median, worst = latency[25] * 1e6, latency[-1] * 1e6
    print(f"fire() → pulse: median {median:.0f} µs, max {worst:.0f} µs")
    assert latency[25] < 0.0005


def test_older_rapid_firmware_widths(make_sim):
    sim = make_sim(version=(7, 1, 0))
    with Magstim(sim.port) as magstim:
        magstim.remote_control()
        assert magstim.version() == (7, 1, 0)
        assert magstim.keep_alive().remote_control  # Q@ before v9
        magstim.set_power(45)
        assert magstim.rapid_parameters().power == 45
        with pytest.raises(ValueError, match="no command 'x'"):
            magstim._command("x")


def test_coil_cools_exponentially_towards_ambient(make_sim):
    sim = make_sim(ambient_temperature=25.0, cooling_time_constant=0.2)
    sim.coil_temperature = 45.0
    time.sleep(0.2)
    # At least one time constant has passed: the excess is at most 20 °C / e.
    cooled = sim.coil_temperature
    assert 25.0 < cooled <= 25.0 + 20.0 * math.exp(-1.0) + 1e-9
    assert sim.coil_temperature <= cooled  # it keeps falling, never below ambient
