"""Port listing and probing against simulators on real pseudo-terminals."""

import pytest
import serial

from stimtrain.devices.magstim.protocol import encode
from stimtrain.devices.magstim.simulator import MagstimSimulator
from stimtrain.devices.probe import RAPID_MODELS, list_ports, main, probe
from stimtrain.devices.pty import PtyServer


class _Mute(PtyServer):
    """A port where nothing answers (a device that is off, or not a stimulator)."""

    def __init__(self):
        super().__init__(name="mute")
        self.received = b""

    def _on_data(self, data, t):
        self.received += data


def _sent(result):
    return [data for d, data, _, _ in result.exchanged if d == "tx"]


@pytest.fixture
def make_sim():
    started = []

    def make(model, **kwargs):
        sim = MagstimSimulator(model, **kwargs)
        sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


def test_probe_rapid_reads_version_and_leaves_remote_control_off(make_sim):
    sim = make_sim("super_rapid2", version=(9, 1, 2))
    result = probe(sim.port)
    assert result.answered and result.manufacturer == "magstim"
    assert result.models == RAPID_MODELS and result.label == "Magstim Rapid² family"
    assert result.version == "9.1.2"
    assert result.details["software"] == "software v9 or later"
    assert result.details["coil_temperature"] == pytest.approx(25.0)
    status = sim.status()
    assert not status.remote_control and not status.armed
    sent = _sent(result)
    assert sent[-3:] == [encode("Q", "@"), encode("N", "D"), encode("R", "@")]
    assert not any(frame.startswith(b"E") for frame in sent)  # never arms or fires
    assert "Magstim Rapid² family, version 9.1.2" in result.summary()


def test_probe_rapid_software_generation_from_reply_length(make_sim):
    sim = make_sim("rapid2", version=(8, 0, 0))
    result = probe(sim.port, read_version=False)
    assert result.details["software"] == "software v7–8" and result.version is None
    assert encode("Q", "@") not in _sent(result)


def test_probe_leaves_a_unit_under_remote_control_alone(make_sim):
    sim = make_sim("rapid2")
    with serial.Serial(sim.port, 9600, timeout=0.5) as link:  # another program
        link.write(encode("Q", "@"))
        link.read(3)
    result = probe(sim.port)
    assert result.version is None
    assert "already active" in result.details["version"]
    assert result.details["remote_control"] is True
    assert sim.status().remote_control  # still on: the probe did not send R
    assert encode("R", "@") not in _sent(result)


@pytest.mark.parametrize(
    ("model", "label"), [("200", "Magstim 200²"), ("bistim", "Magstim BiStim²")]
)
def test_probe_tells_200_from_bistim(make_sim, model, label):
    sim = make_sim(model)
    result = probe(sim.port)
    assert result.label == label and result.models == (model,)
    assert not sim.status().remote_control and not sim.status().armed


def test_probe_magventure():
    simulator = pytest.importorskip("stimtrain.devices.magventure.simulator")
    sim = simulator.MagVentureSimulator("magpro_r30", serial_number=4242)
    sim.start()
    try:
        result = probe(sim.port)
    finally:
        sim.stop()
    assert result.manufacturer == "magventure" and result.models == ("magpro_r30",)
    assert result.label == "MagVenture MagPro R30"
    assert result.details["serial_number"] == 4242
    assert result.details["enabled"] is False
    assert _sent(result)[-1] == bytes.fromhex("fe 01 00 00 ff")


def test_probe_silent_port():
    with _Mute() as mute:
        result = probe(mute.port, timeout=0.1)
    assert not result.answered and result.error is None
    assert result.summary().endswith("no stimulator answered")
    assert all(d == "tx" for d, *_ in result.exchanged)
    assert encode("F", "@") in _sent(result)


def test_probe_missing_port():
    result = probe("/dev/no-such-port")
    assert not result.answered
    assert "cannot open or use /dev/no-such-port" in result.error


def test_list_ports_includes_given_paths(make_sim):
    sim = make_sim("rapid2")
    ports = list_ports([sim.port, "/dev/no-such-port", sim.port])
    given = [p for p in ports if p.device in (sim.port, "/dev/no-such-port")]
    assert [(p.device, p.description) for p in given] == [
        (sim.port, "given path"),
        ("/dev/no-such-port", "given path (not found)"),
    ]


def test_main_probes_given_ports(make_sim, capsys):
    sim = make_sim("rapid2")
    assert main(["--probe", "-v", sim.port]) == 0
    out = capsys.readouterr().out
    assert f"{sim.port}: Magstim Rapid² family, version 9.0.0" in out
    assert "F@ get coil temperature" in out
    assert main(["--probe", "/dev/no-such-port"]) == 1
    assert main([sim.port]) == 0
    assert f"{sim.port}: given path" in capsys.readouterr().out
