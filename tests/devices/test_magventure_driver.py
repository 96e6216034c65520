"""MagPro driver against the simulator on a real pty with real pyserial.

Every test ends in the state a lab needs: what was asked is read back, a
refusal sends nothing, and a fault ends disabled with the error reported.
"""

import dataclasses
import time

import pytest

from stimtrain.devices import stimulator
from stimtrain.devices.errors import CRCError, DeviceError, DeviceTimeout, PortVanished
from stimtrain.devices.faults import FaultPlan
from stimtrain.devices.magstim.simulator import MagstimSimulator
from stimtrain.devices.magventure import MagPro, MagVentureSimulator, probe
from stimtrain.devices.magventure.capabilities import MODELS
from stimtrain.devices.magventure.protocol import (
    Command,
    Delays,
    FrameParser,
    TrainSettings,
)


class Traffic:
    """A traffic log that also decodes the commands the driver wrote."""

    def __init__(self):
        self.entries = []

    def __call__(self, direction, data, t):
        self.entries.append((direction, data, t))

    def commands(self):
        parser = FrameParser()
        out = []
        for direction, data, _ in self.entries:
            if direction == "tx":
                out += parser.feed(data)
        return out

    def ids(self):
        return [Command(c[0]) for c in self.commands()]


@pytest.fixture
def make_sim():
    started = []

    def make(model="magpro_x100", **kwargs):
        sim = MagVentureSimulator(model, **kwargs)
        sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def make_driver():
    opened = []

    def make(sim, model=None, *, open=True, **kwargs):
        traffic = Traffic()
        driver = MagPro(sim.port, model or sim.model.key, traffic_log=traffic, **kwargs)
        driver.traffic = traffic
        opened.append(driver)
        if open:
            driver.open()
        return driver

    yield make
    for driver in opened:
        driver.close()


@pytest.fixture
def sim(make_sim):
    return make_sim()


@pytest.fixture
def mp(sim, make_driver):
    return make_driver(sim)


def wait_for(predicate, timeout=1.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


# ---------------------------------------------------------------- basics
def test_open_reads_status_and_mode_without_changing_anything(sim, mp):
    assert mp.traffic.ids() == [Command.STATUS, Command.MODE]
    assert mp.traffic.commands()[1][1] == 0  # a 0x09 "get", not a "set"
    assert mp.amplitude == sim.amplitude == (30, 30)
    assert mp.coil_temperature == 25 and mp.coil_type == 60
    assert mp.settings == sim.settings
    assert not sim.enabled and not mp.enabled


def test_open_refuses_another_model(make_sim, make_driver):
    sim = make_sim("magpro_r30")
    driver = make_driver(sim, "magpro_x100", open=False)
    with pytest.raises(DeviceError, match="answers as R30, expected X100"):
        driver.open()
    assert not driver.is_open


def test_open_reports_a_missing_port(tmp_path):
    with pytest.raises(PortVanished, match="cannot open"):
        MagPro(str(tmp_path / "ttyNONE")).open()


def test_registry_opens_the_driver(sim):
    driver = stimulator.open_stimulator("magpro_x100", sim.port)
    assert isinstance(driver, MagPro) and driver.model.key == "magpro_x100"
    with driver:
        assert driver.state().intensity == 30


def test_set_intensity_reads_back(sim, mp):
    mp.set_intensity(55)
    assert sim.amplitude == (55, 30) and mp.amplitude == (55, 30)
    assert mp.traffic.ids()[-1] == Command.AMPLITUDE


@pytest.mark.parametrize("value", [50.5, 101, -1, True, "50", float("nan")])
def test_set_intensity_refuses_off_grid_values_before_sending(sim, mp, value):
    before = len(mp.traffic.commands())
    with pytest.raises(DeviceError, match="amplitude A"):
        mp.set_intensity(value)
    assert len(mp.traffic.commands()) == before
    assert sim.amplitude == (30, 30)


def test_amplitude_b_needs_magoption(make_sim, make_driver, mp):
    with pytest.raises(DeviceError, match="amplitude B: MagVenture MagPro X100 has no"):
        mp.set_intensity(40, 20)
    sim = make_sim("magpro_x100_magoption")
    driver = make_driver(sim)
    driver.set_intensity(40, 20)
    assert sim.amplitude == (40, 20)
    assert driver.state().intensity_b == 20


def test_arm_fire_disarm(sim, mp):
    mp.set_intensity(60)
    mp.arm()
    assert sim.enabled and mp.enabled
    mp.wait_ready()
    state = mp.state()
    assert state.armed and state.ready and state.intensity == 60
    sent = mp.fire()
    assert wait_for(lambda: mp.pulse_count == 1)
    (pulse,) = sim.pulses
    assert pulse.source == "serial" and pulse.power == 60
    # A sanity bound (timing is benchmarked); the stamp follows the write and
    # the unit may read the bytes before it.
    assert -0.001 < pulse.time - sent < 0.5
    assert mp.didt == (90, 0)
    mp.disarm()
    assert not sim.enabled and not mp.enabled
    assert mp.traffic.ids()[2:] == [
        Command.AMPLITUDE,
        Command.ENABLE,
        Command.STATUS,
        Command.STATUS,
        Command.FIRE,
        Command.ENABLE,
    ]
    assert mp.errors == ()


def test_fire_refused_while_charging_sends_nothing(make_sim, make_driver):
    sim = make_sim("magpro_r30")
    mp = make_driver(sim)
    mp.set_intensity(100)  # R30 at 100 %: 0.143 s to charge
    mp.arm()
    with pytest.raises(DeviceError, match="still charging for 0.1"):
        mp.fire()
    assert Command.FIRE not in mp.traffic.ids()
    assert not mp.state().ready
    mp.wait_ready()
    mp.fire()
    assert len(sim.pulses) == 1


def test_fire_refused_when_not_enabled_sends_nothing(sim, mp):
    with pytest.raises(DeviceError, match="not enabled \\(call arm\\(\\) first\\)"):
        mp.fire()
    assert mp.traffic.ids() == [Command.STATUS, Command.MODE]
    assert sim.pulses == []


def test_fire_refused_above_the_serial_rate(sim, mp):
    mp.arm()
    mp.wait_ready()
    mp.fire()
    with pytest.raises(DeviceError, match="limited to 5 Hz"):
        mp.fire()
    assert mp.traffic.ids().count(Command.FIRE) == 1
    time.sleep(0.2)
    mp.fire()
    assert len(sim.pulses) == 2


def test_wait_ready(make_sim, make_driver):
    sim = make_sim("magpro_r30")
    mp = make_driver(sim)
    with pytest.raises(DeviceError, match="not enabled"):
        mp.wait_ready()
    mp.set_intensity(100)  # R30 at 100 %: 7 Hz, 0.143 s recharge
    mp.arm()
    mp.wait_ready()
    mp.fire()
    assert wait_for(lambda: mp.pulse_count == 1)
    with pytest.raises(DeviceTimeout, match="recharge needs 0.1"):
        mp.wait_ready(timeout=0.01)
    mp.wait_ready(timeout=1.0)
    assert mp.state().ready
    assert sim.trigger()  # recharged: a trigger edge now gives a pulse


def test_close_disables(sim, make_driver):
    driver = make_driver(sim)
    driver.arm()
    driver.close()
    assert not sim.enabled
    assert driver.traffic.ids()[-1] == Command.ENABLE
    assert driver.traffic.commands()[-1] == bytes([2, 0])


def test_keep_alive_only_queries_status(sim, mp):
    assert MagPro.keep_alive_interval_s is None
    mp.keep_alive()
    assert mp.traffic.ids()[-1] == Command.STATUS


def test_long_status_and_page(sim, mp):
    mp.set_page("timing")
    assert sim.page == 2 and mp.page == 2
    long = mp.long_status()
    assert (long.page, long.running, long.amplitude_a) == (2, False, 30)
    with pytest.raises(DeviceError, match="page: 'setup' is not one of"):
        mp.set_page("setup")
    assert mp.traffic.ids()[-1] == Command.LONG_STATUS


# ---------------------------------------------------------- pushed frames
def test_front_panel_knob_is_seen_without_a_command(sim, mp):
    before = len(mp.traffic.commands())
    sim.turn_knob(72)
    assert wait_for(lambda: mp.amplitude == (72, 30))
    assert len(mp.traffic.commands()) == before
    assert mp.state().intensity == 72


def test_temperature_push_updates_the_driver(sim, mp):
    sim.coil_temperature = 33.2
    assert wait_for(lambda: mp.coil_temperature == 33)


def test_overheated_coil_disables_and_blocks_arming(sim, mp):
    mp.arm()
    sim.coil_temperature = 41
    assert wait_for(lambda: not mp.enabled)
    assert not sim.enabled
    assert any("disabled itself" in e for e in mp.errors)
    before = len(mp.traffic.commands())
    with pytest.raises(DeviceError, match="coil temperature 41 °C is above 40 °C"):
        mp.arm()
    with pytest.raises(DeviceError, match="not enabled"):
        mp.fire()
    assert len(mp.traffic.commands()) == before


def test_frame_listener_sees_pushed_frames(sim, mp):
    seen = []
    mp.add_frame_listener(lambda frame, t: seen.append(type(frame).__name__))
    sim.turn_knob(40)
    assert wait_for(lambda: "AmplitudeFrame" in seen)


# -------------------------------------------------------------- trains
def test_device_train_runs_at_the_set_rate(sim, mp):
    mp.set_intensity(40)
    mp.set_train(20, 4, 2, 0.2)
    assert sim.train == TrainSettings(20.0, 4, 2, 0.2)
    assert mp.traffic.ids()[-2:] == [Command.SET_TRAIN, Command.STATUS]
    mp.arm()
    sent = mp.start_train()
    assert mp.running and sim.running
    assert wait_for(lambda: not mp.running, timeout=2.0)
    times = [p.time for p in sim.pulses]
    assert len(times) == 8 and mp.pulse_count == 8
    assert all(p.source == "train" for p in sim.pulses)
    assert -0.001 < times[0] - sent < 0.5
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert gaps[:3] == pytest.approx([0.05] * 3) and gaps[4:] == pytest.approx(
        [0.05] * 3
    )
    assert gaps[3] == pytest.approx(0.2)


def test_itbs_runs_on_the_device(sim, mp):
    mp.set_intensity(45)
    mp.set_burst(3, 20)
    mp.set_train(5, 3, 2, 0.2)
    mp.arm()
    mp.start_train()
    assert wait_for(lambda: not mp.running and len(sim.pulses) == 18, timeout=3.0)
    times = [p.time for p in sim.pulses]
    assert [
        b - a for a, b in zip(times[:3], times[1:3], strict=False)
    ] == pytest.approx([0.02, 0.02])
    assert times[3] - times[0] == pytest.approx(0.2)
    # The ITI runs from the last burst of a train to the next train.
    assert times[9] - times[6] == pytest.approx(0.2)


def test_train_refusals_send_nothing(sim, mp):
    with pytest.raises(DeviceError, match="call set_train\\(\\) first"):
        mp.start_train()
    mp.set_train(30, 10, 1, 1.0)
    with pytest.raises(DeviceError, match="not enabled"):
        mp.start_train()
    mp.set_intensity(100)
    mp.arm()
    with pytest.raises(
        DeviceError, match="rate 30 Hz is above the 25 Hz allowed at 100 %"
    ):
        mp.start_train()
    assert Command.START_TRAIN not in mp.traffic.ids()
    assert sim.pulses == []


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (
            (10.5, 10, 1, 1.0),
            "repetition rate \\(Hz\\): 10.5 is not on the device grid",
        ),
        ((101, 10, 1, 1.0), "repetition rate .* within 0.1–100"),
        ((10, 1001, 1, 1.0), "pulses in train: must be within 1–1000"),
        ((10, 10, 0, 1.0), "number of trains: must be within 1–500"),
        ((10, 10, 1, 0.05), "inter-train interval: must be within 0.1–120 s"),
        ((10, 10, 1, 1.25), "inter-train interval: must be a multiple of 0.1 s"),
    ],
)
def test_set_train_refuses_off_grid_values(sim, mp, args, match):
    with pytest.raises(DeviceError, match=match):
        mp.set_train(*args)
    assert Command.SET_TRAIN not in mp.traffic.ids()


def test_r30_rate_grid_stops_at_30_hz(make_sim, make_driver):
    driver = make_driver(make_sim("magpro_r30"))
    with pytest.raises(
        DeviceError, match="rate \\(Hz\\): must be within 0.1–30, got 31"
    ):
        driver.set_train(31, 10, 1, 1.0)
    driver.set_train(0.3, 10, 1, 1.0)
    with pytest.raises(DeviceError, match="0.35 is not on the device grid"):
        driver.set_train(0.35, 10, 1, 1.0)


def test_disarm_stops_a_running_train(sim, mp):
    mp.set_train(10, 50, 1, 1.0)
    mp.arm()
    mp.start_train()
    time.sleep(0.15)
    mp.disarm()
    assert wait_for(lambda: not mp.running)
    count = len(sim.pulses)
    time.sleep(0.15)
    assert 1 <= count == len(sim.pulses) < 50


# ------------------------------------------------------ mode and delays
def test_set_mode_twin_reads_back_index_coded_values(make_sim, make_driver):
    sim = make_sim("magpro_x100_magoption")
    driver = make_driver(sim)
    got = driver.set_mode("twin", ipi_ms=2.5, ba_ratio=0.6)
    assert (got.mode, got.ipi_ms, got.ba_ratio) == ("twin", 2.5, 0.6)
    assert sim.settings == got
    assert driver.get_mode() == got
    driver.set_current_direction("reverse")
    assert sim.settings.direction == "reverse" and sim.settings.ipi_ms == 2.5
    driver.set_ba_ratio(5.0)
    driver.set_waveform("monophasic")
    assert sim.settings.waveform == "monophasic" and sim.settings.ba_ratio == 5.0
    driver.set_mode("standard")
    assert sim.settings.ipi_ms is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "twin", "ipi_ms": 2.0}, "mode: MagVenture MagPro X100 offers"),
        ({"waveform": "monophasic"}, "waveform: MagVenture MagPro X100 offers"),
        ({"direction": "sideways"}, "current direction: must be 'normal' or 'reverse'"),
        (
            {"waveform": "biphasic_burst", "ipi_ms": 0.45},
            "IPI \\(ms\\): must be within 0.5–100",
        ),
        (
            {"waveform": "biphasic_burst", "ipi_ms": 25.5},
            "IPI \\(ms\\): 25.5 is not on the device grid",
        ),
        ({"waveform": "biphasic_burst"}, "needs an IPI"),
        ({"ipi_ms": 10.0}, "only Twin/Dual mode or Biphasic Burst have an IPI"),
        ({"burst_pulses": 6}, "burst pulses: must be within 2–5"),
        ({"ba_ratio": 0.33}, "B/A ratio: 0.33 is not on the device grid"),
    ],
)
def test_set_mode_refuses_before_sending(sim, mp, kwargs, match):
    with pytest.raises(DeviceError, match=match):
        mp.set_mode(**kwargs)
    assert mp.traffic.ids() == [Command.STATUS, Command.MODE]
    assert sim.settings.mode == "standard"


def test_mode_readback_mismatch_disables(sim, make_driver):
    # The driver believes in a MagOption the unit doesn't have: the unit keeps
    # Standard mode, the read-back shows it, and the driver disables.
    believed = dataclasses.replace(MODELS["magpro_x100"], magoption=True)
    driver = make_driver(sim, believed)
    driver.arm()
    with pytest.raises(
        DeviceError, match="mode: sent 'twin', device reports 'standard'"
    ):
        driver.set_mode("twin", ipi_ms=3.0)
    assert not sim.enabled
    assert driver.traffic.commands()[-1] == bytes([2, 0])
    assert any("sent 'twin'" in e for e in driver.state().errors)


def test_set_delays(sim, mp):
    mp.set_delays(trigger_in_ms=2.5, trigger_out_ms=-1.0, charge_delay_ms=500)
    assert sim.delays == Delays(2.5, -1.0, 500)
    assert mp.traffic.ids()[-2:] == [Command.DELAYS, Command.STATUS]
    for kwargs, match in [
        ({"trigger_in_ms": 0.05}, "trigger-in delay: must be a multiple of 0.1 ms"),
        ({"trigger_out_ms": 150}, "trigger-out delay: must be within -100–100 ms"),
        ({"charge_delay_ms": 1.5}, "charge delay \\(ms\\): must be an integer"),
    ]:
        with pytest.raises(DeviceError, match=match):
            mp.set_delays(**kwargs)
    assert mp.traffic.ids().count(Command.DELAYS) == 1


# ------------------------------------------------------------------ faults
def test_one_crc_error_is_retried(make_sim, make_driver):
    # Replies 1 and 2 answer open(); reply 3 (the amplitude read-back) is bad.
    sim = make_sim(faults=FaultPlan(corrupt_crc_every=3))
    driver = make_driver(sim)
    driver.set_intensity(50)
    assert driver.traffic.ids().count(Command.AMPLITUDE) == 2
    assert driver.amplitude[0] == 50 and driver.errors == ()


def test_crc_errors_beyond_one_retry_raise_and_disable(make_sim, make_driver):
    sim = make_sim(faults=FaultPlan(corrupt_crc_every=2))
    driver = make_driver(sim)  # get-mode reply 2 is bad, its retry passes
    with pytest.raises(CRCError, match="enable: CRC error .* after 2 attempt"):
        driver.arm()
    assert wait_for(lambda: not sim.enabled)
    assert driver.traffic.commands()[-1] == bytes([2, 0])
    assert any("CRC error" in e for e in driver.state().errors)


def test_crc_error_on_fire_is_not_retried(make_sim, make_driver):
    # Replies: status, mode, enable ×3, status; the pulse frame is reply 7.
    sim = make_sim(faults=FaultPlan(corrupt_crc_every=7))
    driver = make_driver(sim)
    driver.arm()
    driver.wait_ready()
    with pytest.raises(CRCError, match="fire: CRC error"):
        driver.fire()
    assert len(sim.pulses) == 1  # one pulse, never a second one by a retry
    assert driver.traffic.ids().count(Command.FIRE) == 1
    assert wait_for(lambda: not sim.enabled)


def test_dropped_byte_is_retried(make_sim, make_driver):
    sim = make_sim(faults=FaultPlan(drop_every=3))
    driver = make_driver(sim)
    driver.set_intensity(35)
    assert driver.traffic.ids().count(Command.AMPLITUDE) == 2
    assert sim.amplitude[0] == 35 == driver.amplitude[0]


def test_every_reply_short_ends_in_timeout(make_sim, make_driver):
    sim = make_sim(faults=FaultPlan(drop_every=1))
    driver = make_driver(sim, open=False)
    with pytest.raises(DeviceTimeout, match="status: incomplete answer .* after 2"):
        driver.open()
    assert not driver.is_open and not sim.enabled


def test_late_reply_times_out_then_disables(make_sim, make_driver):
    sim = make_sim(faults=FaultPlan(late_every=3, late_s=0.4))
    driver = make_driver(sim, timeout=0.2)
    with pytest.raises(DeviceTimeout, match="enable: no answer within 0.2 s"):
        driver.arm()
    # The unit did enable; its late answer, then the answer to the driver's
    # disable, arrive in order and leave both ends disabled.
    assert wait_for(lambda: mp_saw_enable_then_disable(driver), timeout=1.5)
    assert not sim.enabled
    assert driver.traffic.commands()[-1] == bytes([2, 0])


def mp_saw_enable_then_disable(driver):
    rx = b"".join(d for direction, d, _ in driver.traffic.entries if direction == "rx")
    enabled = [f[3] & 0x10 for f in FrameParser().feed(rx) if f[0] == 1]
    return enabled[-3:] == [0x10, 0x10, 0] and not driver.enabled


def test_late_reply_within_timeout_is_fine(make_sim, make_driver):
    sim = make_sim(faults=FaultPlan(late_every=3, late_s=0.1))
    driver = make_driver(sim, timeout=0.5)
    t0 = time.monotonic()
    driver.set_intensity(44)
    assert time.monotonic() - t0 >= 0.1
    assert driver.amplitude[0] == 44


def test_silent_device_times_out_and_is_not_left_armed(make_sim, make_driver):
    sim = make_sim(faults=FaultPlan(silent_after=2))
    driver = make_driver(sim, timeout=0.2)
    with pytest.raises(DeviceTimeout, match="enable: no answer"):
        driver.arm()
    assert not sim.enabled
    assert not driver.enabled
    assert "no answer" in driver.errors[0]


def test_vanished_port_is_reported(make_sim, make_driver):
    sim = make_sim(faults=FaultPlan(disconnect_after=2))
    driver = make_driver(sim)
    with pytest.raises(PortVanished, match="vanished"):
        driver.arm()
    with pytest.raises(PortVanished):
        driver.status()
    assert not sim.enabled
    t0 = time.monotonic()
    driver.close()
    assert time.monotonic() - t0 < 0.5 and not driver.is_open


def test_overheating_after_pulses(make_sim, make_driver):
    sim = make_sim(faults=FaultPlan(overheat_after_pulses=1))
    driver = make_driver(sim)
    driver.arm()
    driver.wait_ready()
    driver.fire()
    assert wait_for(lambda: not driver.enabled)
    assert driver.coil_temperature > 40
    assert any("disabled itself" in e for e in driver.errors)
    with pytest.raises(DeviceError, match="coil temperature .* above 40"):
        driver.arm()
    assert len(sim.pulses) == 1


def test_refused_arm(make_sim, make_driver):
    sim = make_sim(faults=FaultPlan(refuse_arm=True))
    driver = make_driver(sim)
    with pytest.raises(DeviceError, match="sent enable, device reports disabled"):
        driver.arm()
    assert not sim.enabled and not driver.enabled
    assert driver.traffic.ids()[-1] == Command.ENABLE
    with pytest.raises(DeviceError, match="not enabled"):
        driver.fire()


def test_traffic_log_has_every_byte_in_order(sim, mp):
    mp.set_intensity(20)
    entries = mp.traffic.entries
    times = [t for _, _, t in entries]
    assert times == sorted(times)
    rx = b"".join(d for direction, d, _ in entries if direction == "rx")
    frames = FrameParser().feed(rx)
    assert [f[0] for f in frames] == [0, 9, 1]


def test_probe_identifies_the_model_without_changing_it(make_sim):

    sim = make_sim("magpro_r30_magoption")
    assert probe(sim.port) == "magpro_r30_magoption"
    assert sim.commands_received == 1 and not sim.enabled
    with MagstimSimulator("rapid2") as magstim:
        assert probe(magstim.port, timeout=0.1) is None
    assert probe("/dev/nonexistent-port") is None
