"""MagVenture simulator at the byte level: a bare pyserial port on its pty."""

import time

import pytest
import serial

from stimtrain.devices.faults import FaultPlan
from stimtrain.devices.magventure import MagVentureSimulator
from stimtrain.devices.magventure.protocol import (
    AmplitudeFrame,
    FrameParser,
    LongStatus,
    ModeSettings,
    PageFrame,
    PulseFrame,
    Status,
    TemperatureFrame,
    TrainSettings,
    amplitude_command,
    crc8,
    decode_frame,
    enable_command,
    encode_frame,
    fire_command,
    get_mode_command,
    long_status_command,
    page_command,
    start_train_command,
    status_command,
)


@pytest.fixture
def make_port():
    """Start a simulator and open a bare port on it."""
    opened = []

    def make(model="magpro_x100", **kwargs):
        kwargs.setdefault("charge_time", 0.0)
        sim = MagVentureSimulator(model, **kwargs)
        sim.start()
        port = serial.Serial(sim.port, 38400, timeout=0.2)
        opened.append((sim, port))
        return sim, port

    yield make
    for sim, port in opened:
        port.close()
        sim.stop()


@pytest.fixture
def link(make_port):
    return make_port()


def ask(port, frame, n_bytes):
    """Write a command; return the raw answer of ``n_bytes``."""
    port.reset_input_buffer()
    port.write(frame)
    return port.read(n_bytes)


def frames(raw):
    return [decode_frame(d) for d in FrameParser().feed(raw)]


def test_status_and_long_status_replies(link):
    sim, port = link
    raw = ask(port, status_command(), 13)
    assert len(raw) == 13 and raw[:3] == bytes([0xFE, 9, 0]) and raw[-1] == 0xFF
    (status,) = frames(raw)
    assert type(status) is Status
    assert (status.mode.model, status.mode.enabled) == ("X100", False)
    assert (status.temperature, status.coil_name, status.amplitude_a) == (
        25,
        "Cool-B65",
        30,
    )
    raw = ask(port, long_status_command(), 19)
    (long,) = frames(raw)
    assert isinstance(long, LongStatus) and (long.page, long.running) == (1, False)
    assert port.read(1) == b""  # nothing else follows


def test_enable_answers_three_frames_and_disable_one(link):
    sim, port = link
    raw = ask(port, enable_command(True), 24)
    one, three, again = frames(raw)
    assert type(one) is AmplitudeFrame and one.mode.enabled
    assert type(three) is TemperatureFrame and three.coil_type == 60
    assert type(again) is AmplitudeFrame and again.mode.enabled
    assert sim.enabled
    (off,) = frames(ask(port, enable_command(False), 8))
    assert type(off) is AmplitudeFrame and not off.mode.enabled
    assert not sim.enabled and port.read(1) == b""


def test_amplitude_is_clamped_to_the_grid(link):
    sim, port = link
    (frame,) = frames(ask(port, amplitude_command(42), 8))
    assert (frame.amplitude_a, frame.amplitude_b) == (42, 30)
    (frame,) = frames(ask(port, encode_frame(bytes([1, 150])), 8))
    assert frame.amplitude_a == 100 == sim.amplitude[0]


def test_twin_amplitude_b_follows_the_ratio(make_port):
    sim, port = make_port("magpro_x100_magoption")
    wanted = ModeSettings(model="X100+Option", mode="twin", ipi_ms=3.0, ba_ratio=0.5)
    (reply,) = frames(ask(port, wanted.to_command(), 14))
    assert reply == wanted
    (frame,) = frames(ask(port, amplitude_command(60), 8))
    assert (frame.amplitude_a, frame.amplitude_b) == (60, 30)


def test_fire_only_when_enabled(link):
    sim, port = link
    assert ask(port, fire_command(), 8) == b""
    assert sim.pulses == [] and sim.missed == 1
    ask(port, enable_command(True), 24)
    (pulse,) = frames(ask(port, fire_command(), 8))
    assert type(pulse) is PulseFrame and pulse.didt_a == 45  # 1.5 A/µs per % at 30 %
    assert [p.source for p in sim.pulses] == ["serial"]


def test_mode_get_and_set_round_to_the_tables(make_port):
    sim, port = make_port("magpro_x100_magoption")
    raw = ask(port, get_mode_command(), 14)
    assert len(raw) == 14
    (mode,) = frames(raw)
    assert (mode.mode, mode.waveform, mode.ipi_ms) == ("standard", "biphasic", None)
    # Twin IPI 1234 ms is between table entries: the unit rounds to 1200.
    odd = encode_frame(
        bytes([9, 1, 3, 2, 1, 1, 3])
        + (12340).to_bytes(2, "big")
        + (33).to_bytes(2, "big")
    )
    (mode,) = frames(ask(port, odd, 14))
    assert (mode.mode, mode.direction, mode.ipi_ms, mode.ba_ratio) == (
        "twin",
        "reverse",
        1200,
        0.35,
    )
    assert FrameParser().feed(odd)[0][0] == 9
    raw = ask(port, get_mode_command(), 14)
    assert raw[9:11] == (18).to_bytes(2, "little")  # (3000 − 1200) / 100
    assert sim.settings.ipi_ms == 1200


def test_mode_the_model_lacks_is_not_applied(link):
    sim, port = link
    twin = ModeSettings(model="X100", mode="twin", ipi_ms=3.0)
    (mode,) = frames(ask(port, twin.to_command(), 14))
    assert mode.mode == "standard" == sim.settings.mode


def test_set_train_rounds_and_start_runs_it(link):
    sim, port = link
    port.write(encode_frame(bytes.fromhex("06 0068 07D0 0001 0005")))  # 10.4 Hz, 2000
    assert port.read(1) == b""  # set train is not answered
    assert sim.train == TrainSettings(10.0, 1000, 1, 0.5)
    port.write(encode_frame(bytes.fromhex("06 00C8 0003 0001 0005")))  # 20 Hz, 3
    (refused,) = frames(ask(port, start_train_command(), 7))
    assert refused == PageFrame(1, False)  # not enabled
    ask(port, enable_command(True), 24)
    raw = ask(port, start_train_command(), 7 + 3 * 8 + 7)
    got = frames(raw)
    assert got[0] == PageFrame(2, True) and got[-1] == PageFrame(2, False)
    assert [type(f) for f in got[1:-1]] == [PulseFrame] * 3
    times = [p.time for p in sim.pulses]
    assert [b - a for a, b in zip(times, times[1:], strict=False)] == pytest.approx(
        [0.05] * 2
    )


def test_train_too_fast_for_the_output_is_refused(link):
    sim, port = link
    ask(port, amplitude_command(100), 8)
    ask(port, enable_command(True), 24)
    port.write(TrainSettings(50.0, 3, 1, 1.0).to_command())
    (frame,) = frames(ask(port, start_train_command(), 7))
    assert frame == PageFrame(1, False) and sim.pulses == []


def test_page_change_is_pushed(link):
    sim, port = link
    (frame,) = frames(ask(port, page_command("protocol"), 7))
    assert frame == PageFrame(7, False) and sim.page == 7


def test_trigger_input(link):
    sim, port = link
    seen = []
    sim.add_pulse_listener(seen.append)
    assert not sim.trigger()
    assert sim.missed == 1
    ask(port, amplitude_command(100), 8)  # X100 at 100 %: 25 Hz, 40 ms recharge
    ask(port, enable_command(True), 24)
    t = sim._clock()  # noqa: SLF001 - the simulator's own clock
    assert sim.trigger(t)
    assert not sim.trigger(t + 0.02) and sim.missed == 2
    assert sim.trigger(t + 0.04)
    assert [p.time for p in seen] == [t, t + 0.04]
    assert [p.source for p in seen] == ["trigger", "trigger"]
    assert [type(f) for f in frames(port.read(16))] == [PulseFrame, PulseFrame]
    sim.remove_pulse_listener(seen.append)
    assert sim.trigger(t + 0.1) and len(seen) == 2


def test_enable_then_charge(make_port):
    sim, port = make_port(charge_time=None)  # the recharge time at the amplitude
    ask(port, amplitude_command(100), 8)  # X100 at 100 %: 40 ms
    ask(port, enable_command(True), 24)
    t = sim._clock()  # noqa: SLF001
    assert not sim.trigger(t) and sim.missed == 1
    assert sim.trigger(t + 0.05)


def test_trigger_in_delay_and_burst(link):
    sim, port = link
    port.write(encode_frame(bytes.fromhex("08 0019 0000 0000 00 00")))  # 2.5 ms
    burst = ModeSettings(waveform="biphasic_burst", burst_pulses=4, ipi_ms=10.0)
    ask(port, burst.to_command(), 14)
    ask(port, enable_command(True), 24)
    t = sim._clock()  # noqa: SLF001
    assert sim.trigger(t)
    times = [p.time - t for p in sim.pulses]
    assert times == pytest.approx([0.0025, 0.0125, 0.0225, 0.0325])


def test_temperature_rises_with_pulses_and_blocks_enable(make_port):
    sim, port = make_port(heating=6.0, amplitude=100)
    ask(port, enable_command(True), 24)
    t = sim._clock()  # noqa: SLF001
    for i in range(3):
        sim.trigger(t + i)
    # 3 × 6 °C: 43 °C > 40 °C, so the unit disabled itself and said so.
    got = frames(port.read(200))
    assert any(type(f) is TemperatureFrame and f.temperature >= 31 for f in got)
    assert any(type(f) is AmplitudeFrame and not f.mode.enabled for f in got)
    assert not sim.enabled and sim.coil_temperature > 40
    (refused,) = frames(ask(port, enable_command(True), 24))
    assert not refused.mode.enabled and not sim.enabled


def test_front_panel_knob_pushes_a_frame(link):
    sim, port = link
    sim.turn_knob(64)
    (frame,) = frames(port.read(8))
    assert type(frame) is AmplitudeFrame and frame.amplitude_a == 64


def test_bad_crc_and_junk_are_ignored(link):
    sim, port = link
    bad = bytearray(status_command())
    bad[-2] ^= 0x10
    assert ask(port, bytes(bad), 13) == b""
    raw = ask(port, b"\x00\xff\x13" + status_command(), 13)
    assert len(frames(raw)) == 1
    assert sim.commands_received == 1
    port.write(status_command()[:3])  # an incomplete command is dropped later
    time.sleep(0.2)
    assert len(frames(ask(port, status_command(), 13))) == 1


def test_unknown_and_malformed_commands_are_ignored(link):
    sim, port = link
    assert ask(port, encode_frame(bytes([0x0C])), 8) == b""
    assert ask(port, encode_frame(bytes([9, 0])), 14) == b""  # 0x09 needs 11 bytes
    assert sim.commands_received == 2


# ------------------------------------------------------------------ faults
def test_fault_corrupt_crc(make_port):
    sim, port = make_port(faults=FaultPlan(corrupt_crc_every=2))
    first = ask(port, status_command(), 13)
    second = ask(port, status_command(), 13)
    assert crc8(first[2:-2]) == first[-2]
    assert crc8(second[2:-2]) != second[-2] and second[-1] == 0xFF
    parser = FrameParser()
    assert parser.feed(second) == [] and parser.crc_errors == 1


def test_fault_drop(make_port):
    sim, port = make_port(faults=FaultPlan(drop_every=1))
    raw = ask(port, status_command(), 13)
    assert len(raw) == 12 and raw[-1] != 0xFF


def test_fault_late(make_port):
    sim, port = make_port(faults=FaultPlan(late_every=1, late_s=0.25))
    port.timeout = 1.0
    t0 = time.monotonic()
    raw = ask(port, status_command(), 13)
    assert len(raw) == 13 and time.monotonic() - t0 >= 0.25


def test_fault_silent(make_port):
    sim, port = make_port(faults=FaultPlan(silent_after=1))
    assert len(ask(port, status_command(), 13)) == 13
    assert ask(port, enable_command(True), 24) == b""
    assert not sim.enabled


def test_fault_disconnect(make_port):
    sim, port = make_port(faults=FaultPlan(disconnect_after=1))
    assert len(ask(port, status_command(), 13)) == 13
    port.write(enable_command(True))
    with pytest.raises(serial.SerialException):
        for _ in range(20):
            port.read(1)
    assert not sim.enabled


def test_fault_overheat_after_pulses(make_port):
    sim, port = make_port(faults=FaultPlan(overheat_after_pulses=2))
    ask(port, enable_command(True), 24)
    t = sim._clock()  # noqa: SLF001
    assert sim.trigger(t) and sim.trigger(t + 1)
    assert not sim.enabled and not sim.trigger(t + 2)
    assert len(sim.pulses) == 2


def test_fault_refuse_arm(make_port):
    sim, port = make_port(faults=FaultPlan(refuse_arm=True))
    (frame,) = frames(ask(port, enable_command(True), 24))
    assert type(frame) is AmplitudeFrame and not frame.mode.enabled
    assert not sim.enabled


def test_a_failing_pulse_listener_does_not_stop_the_others(link):
    sim, port = link

    def broken(pulse):
        raise RuntimeError("listener bug")

    seen = []
    sim.add_pulse_listener(broken)
    sim.add_pulse_listener(seen.append)
    ask(port, enable_command(True), 24)
    t = sim._clock()  # noqa: SLF001
    assert sim.trigger(t) and sim.trigger(t + 1.0)
    assert seen == sim.pulses and [p.time for p in seen] == [t, t + 1.0]
