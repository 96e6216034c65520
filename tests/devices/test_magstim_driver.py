"""Every Magstim command of every model: the driver against the simulator on ptys."""

import time

import pytest

from stimtrain.devices.errors import (
    CommandRejected,
    DeviceError,
    DeviceLimitError,
    DeviceTimeout,
    PortVanished,
)
from stimtrain.devices.magstim.capabilities import MODELS, max_frequency_hz
from stimtrain.devices.magstim.driver import Magstim
from stimtrain.devices.magstim.protocol import encode, rapid_parameter_widths
from stimtrain.devices.magstim.simulator import MagstimSimulator
from stimtrain.devices.stimulator import Stimulator, get_capabilities, open_stimulator

#: Sanity bound on a simulator's stamp of a pulse: the other test worker's
#: sessions load both cores (benchmarks/ measure the real numbers).
STAMP_BOUND_S = 0.05


@pytest.mark.parametrize("key", sorted(MODELS))
def test_registry_opens_and_drives_every_model(make_sim, make_traffic, key):
    caps = get_capabilities(key)
    model = MODELS[key]
    assert caps.manufacturer == "magstim" and caps.label == model.label
    assert caps.paired_pulse == (key == "bistim")
    assert caps.device_trains == (model.family == "rapid")
    assert caps.max_frequency(50) == max_frequency_hz(key, 50)
    assert (caps.min_wait_after_train is None) == (model.family != "rapid")
    sim = make_sim(key)
    traffic = make_traffic()
    stim = open_stimulator(key, sim.port, traffic_log=traffic)
    assert isinstance(stim, Stimulator) and stim.capabilities == caps
    with stim:
        stim.remote_control()
        stim.set_intensity(42)
        stim.arm()
        stim.wait_ready(timeout=1.0)
        state = stim.state()
        assert state.remote_control and state.armed and state.ready
        assert state.intensity == 42 and state.coil_temperature == 25.0
        assert state.errors == ()
        stim.fire()
    assert [p.power for p in sim.pulses if p.unit == "A"] == [42]
    assert not sim.armed  # leaving the context disarmed the unit
    assert encode("E", "A") in traffic.sent()[-3:]


def test_200_commands_and_refusals(make_driver):
    sim, m, traffic = make_driver("200")
    m.set_power(55)
    assert m.get_power() == 55 and sim.power == 55
    n = len(traffic)
    for call in (
        m.version,
        m.rapid_parameters,
        m.error_code,
        lambda: m.set_power_b(10),
        lambda: m.set_ipi(3),
        lambda: m.set_train(10, 10),
    ):
        with pytest.raises(
            DeviceError, match="exists on the .* not on the Magstim 200"
        ):
            call()
    with pytest.raises(DeviceLimitError, match="one channel.*20"):
        m.set_intensity(40, 20)
    with pytest.raises(DeviceLimitError, match="power 101 % outside 0–100 %"):
        m.set_power(101)
    assert len(traffic) == n  # nothing was written for any of them


def test_bistim_power_b_ipi_resolution_and_paired_pulse(make_driver):
    sim, m, traffic = make_driver("bistim")
    m.set_intensity(40, 35)
    assert (m.get_power(), m.get_power_b()) == (40, 35)
    m.set_ipi(10)
    assert m.get_ipi() == 10.0 and m.system_mode() == "2"
    n = len(traffic)
    with pytest.raises(DeviceLimitError, match="whole ms.*2.5"):
        m.set_ipi(2.5)
    with pytest.raises(DeviceLimitError, match="0–999 ms, got 1000"):
        m.set_ipi(1000)
    assert len(traffic) == n
    m.set_high_resolution(True)
    assert m.system_mode() == "3"
    m.set_ipi(2.5)
    assert m.get_ipi() == 2.5
    n = len(traffic)
    with pytest.raises(DeviceLimitError, match="0–99.9 ms"):
        m.set_ipi(100)
    with pytest.raises(DeviceLimitError, match="resolution of 0.1 ms"):
        m.set_ipi(2.55)
    assert len(traffic) == n
    m.arm()
    m.wait_ready()
    sent = len(traffic.sent())
    with pytest.raises(DeviceLimitError, match="IPI resolution cannot change while"):
        m.set_high_resolution(False)
    with pytest.raises(DeviceLimitError, match="IPI cannot change while armed"):
        m.set_ipi(3)
    # Only status queries went out, never Y/Z/C.
    assert {f[:1] for f in traffic.sent()[sent:]} == {b"J"}
    m.fire()
    a, b = sim.pulses
    assert (a.unit, a.power, b.unit, b.power) == ("A", 40, "B", 35)
    assert b.time - a.time == pytest.approx(0.0025)
    with pytest.raises(DeviceLimitError, match="recharge takes 4 s"):
        m.fire()
    m.disarm()
    m.set_power_b(0)
    assert m.system_mode() == "0"  # single stimulator
    m.set_power_b(20)
    m.set_ipi(0)
    assert m.system_mode() == "1"  # simultaneous


@pytest.mark.parametrize(
    ("version", "widths"),
    [
        ((6, 0, 0), (3, 4, 4, 3, 3)),
        ((7, 2, 0), (3, 4, 4, 3, 4)),
        ((9, 0, 0), (3, 4, 5, 4, 4)),
        ((10, 1, 0), (3, 4, 5, 4, 4)),
    ],
)
def test_rapid_version_dependent_widths(make_driver, version, widths):
    sim, m, traffic = make_driver("rapid2", version=version)
    assert m.software_version == version
    assert rapid_parameter_widths(version[0]) == widths
    params = m.set_train(10, 20)  # 2 s at 10 Hz
    assert (params.frequency_hz, params.n_pulses, params.duration_s) == (10, 20, 2)
    assert params.rapid_status.train and not params.rapid_status.single_pulse_mode
    sent = traffic.sent()
    assert len([f for f in sent if f[:1] == b"D"][-1]) == 2 + widths[2]
    assert len([f for f in sent if f[:1] == b"["][-1]) == 2 + widths[3]
    m.keep_alive()
    assert traffic.sent()[-1][:1] == (b"x" if version[0] >= 9 else b"Q")
    if version[0] >= 9:
        m.set_charge_delay(150)
        assert m.get_charge_delay() == 150
        assert m.system_status().charge_delay_set
        n_frame = [f for f in traffic.sent() if f[:1] == b"n"][-1]
        assert len(n_frame) == 2 + (5 if version[0] >= 10 else 4)
        top = 10_000 if version[0] >= 10 else 2000
        with pytest.raises(DeviceLimitError, match=f"0–{top} ms"):
            m.set_charge_delay(top + 1)
    else:
        with pytest.raises(DeviceError, match="v9 or later"):
            m.system_status()
        with pytest.raises(DeviceError, match="v9 or later"):
            m.set_charge_delay(100)


def test_rapid_device_runs_a_train_then_waits(make_driver):
    sim, m, traffic = make_driver("super_rapid2")
    m.set_power(50)
    m.set_train(20, 5)
    assert m.min_wait_after_train() == 0.5
    assert m.rapid_parameters().wait_s == 0.5
    m.arm()
    m.wait_ready()
    sent = m.fire()
    time.sleep(0.3)
    pulses = sim.pulses
    assert [p.source for p in pulses] == ["train"] * 5
    assert pulses[0].time == pytest.approx(sent, abs=STAMP_BOUND_S)
    gaps = [b.time - a.time for a, b in zip(pulses, pulses[1:], strict=False)]
    assert gaps == pytest.approx([0.05] * 4)
    n = len(traffic)
    with pytest.raises(DeviceLimitError, match="wait has"):
        m.fire()
    with pytest.raises(DeviceLimitError, match="during a train or the wait"):
        m.set_frequency(10)
    with pytest.raises(DeviceLimitError, match="during a train or the wait"):
        m.set_power(40)
    assert len(traffic) == n
    assert m.rapid_status().wait  # the unit reports its wait too
    time.sleep(0.5)
    m.wait_ready()
    m.fire()
    time.sleep(0.25)
    assert len(sim.pulses) == 10


def test_rapid_limits_are_refused_before_sending(make_driver):
    sim, m, traffic = make_driver("rapid2")
    m.set_power(60)  # Rapid² at 60 %: 25 Hz at most
    n = len(traffic)
    with pytest.raises(DeviceLimitError, match="30 Hz is above the 25 Hz maximum"):
        m.set_train(30, 30)
    with pytest.raises(DeviceLimitError, match="maximum on-time at 60 %"):
        m.set_train(25, 2000)  # 80 s > 63000 / (25 · 90.7 J) = 27.8 s
    with pytest.raises(DeviceLimitError, match="resolution of 0.1 Hz"):
        m.set_frequency(10.05)
    with pytest.raises(DeviceLimitError, match="1–6000, got 6001"):
        m.set_pulses(6001)
    with pytest.raises(DeviceLimitError, match="whole number, got 50.5"):
        m.set_power(50.5)
    assert len(traffic) == n
    m.set_train(25, 50)
    n = len(traffic)
    with pytest.raises(
        DeviceLimitError, match="25 Hz is above the 20 Hz maximum at 70"
    ):
        m.set_power(70)
    with pytest.raises(DeviceLimitError, match="needs single-pulse mode"):
        m.set_enhanced_power(True)
    assert len(traffic) == n
    assert sim.power == 60


def test_rapid_enhanced_power(make_driver):
    sim, m, traffic = make_driver("rapid2", power=100)
    with pytest.raises(DeviceLimitError, match="power 105 % outside 0–100 %"):
        m.set_power(105)
    m.set_enhanced_power(True)
    m.set_power(105)
    assert sim.power == 105
    m.arm()
    m.wait_ready()
    m.fire()
    with pytest.raises(DeviceLimitError, match="at most 0.5 Hz"):
        m.fire()
    m.disarm()
    with pytest.raises(DeviceLimitError, match="needs enhanced power off"):
        m.set_duration(1.0)
    m.set_enhanced_power(False)
    assert m.get_power() == 100  # the unit lowered it to the normal maximum


def test_rapid_error_code_system_status_and_interlock(make_driver):
    sim, m, traffic = make_driver("super_rapid2_plus")
    with pytest.raises(DeviceLimitError, match="needs confirm=True"):
        m.ignore_coil_safety_interlock()
    assert encode("b") not in traffic.sent()
    m.ignore_coil_safety_interlock(confirm=True)
    assert traffic.sent()[-1] == encode("b")
    assert m.error_code() == ("U", 0)
    status = m.system_status()
    assert status.instrument.remote_control and status.rapid.single_pulse_mode
    assert not status.charge_delay_set and status.extended == 0


def test_unlock_code(make_sim, make_traffic):
    sim = make_sim("super_rapid2", unlock_code="1234-ABCD")
    traffic = make_traffic()
    with Magstim(
        sim.port, "super_rapid2", unlock_code="1234-ABCD", traffic_log=traffic
    ) as m:
        m.remote_control()
        assert traffic.sent()[0] == encode("Q", "1234-ABCD")
        m.keep_alive()
        assert traffic.sent()[-1] == encode("x")
        m.remote_control(False)
    with Magstim(sim.port, "super_rapid2", unlock_code="9999-ABCD") as m:
        with pytest.raises(CommandRejected, match="bad data") as info:
            m.remote_control()
        assert info.value.reason == "bad_data"
    with Magstim(sim.port, "super_rapid2", timeout=0.2) as m:
        with pytest.raises(DeviceTimeout, match="may need an unlock code"):
            m.remote_control()
    assert not sim.remote
    with pytest.raises(ValueError, match="unlock_code"):
        Magstim(sim.port, "super_rapid2", unlock_code="")


class _ClampingUnit(MagstimSimulator):
    """A faulty unit whose output stage tops out at 80 %: it says yes, keeps 80."""

    def _cmd_power_a(self, data, t):
        payload = super()._cmd_power_a(data, t)
        self._power = min(self._power, 80)
        return payload


def test_read_back_mismatch_is_an_error():
    sim = _ClampingUnit("super_rapid2", charge_time=0.05)
    sim.start()
    try:
        with Magstim(sim.port, "super_rapid2") as m:
            m.remote_control()
            m.set_power(80)
            with pytest.raises(
                DeviceError,
                match="power read back does not match: sent 90 %, unit reports 80 %",
            ):
                m.set_power(90)
    finally:
        sim.stop()


def test_closing_without_remote_control_still_disarms(make_driver):
    sim, m, traffic = make_driver("super_rapid2")
    m.arm()
    m.remote_control(False)  # R also disarms the unit
    assert not sim.armed and not sim.remote
    m.close()
    assert traffic.sent()[-2] == encode("E", "A")


def test_open_names_the_unit_and_the_missing_port(tmp_path):
    missing = str(tmp_path / "no-such-port")
    with pytest.raises(PortVanished, match=rf"Magstim Rapid².*{missing}"):
        Magstim(missing, "rapid2").open()


def test_failing_traffic_log_does_not_fail_commands(sim, caplog):
    calls = []

    def broken(direction, data, t):
        calls.append(direction)
        raise OSError("disk full")

    with Magstim(sim.port, "rapid2", traffic_log=broken) as magstim:
        status = magstim.remote_control()
    assert status.remote_control
    assert "tx" in calls and "rx" in calls
    assert "traffic_log failed" in caplog.text
