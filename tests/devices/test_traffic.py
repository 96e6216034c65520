"""The raw traffic log: writer, reader and the readable table."""

import json

import pytest

from stimtrain.devices.magstim.driver import Magstim
from stimtrain.devices.sim_rig import SimulatedRig
from stimtrain.devices.traffic import (
    TrafficWriter,
    describe_magventure,
    format_traffic,
    main,
    read_traffic,
)
from stimtrain.devices.triggerbox import TriggerBox


def test_writer_and_reader_round_trip(tmp_path):
    path = tmp_path / "devices.jsonl"
    with TrafficWriter(path) as writer:
        writer.write("rapid2", "tx", b"Q@n", 10.0)
        writer.write("rapid2", "rx", b"Q\x09\xa5", 10.01)
        writer.note("rapid2", "opened on /dev/pts/9", t=9.5)
        with pytest.raises(
            ValueError, match=r"direction must be 'tx' or 'rx', got 'up'"
        ):
            writer.write("rapid2", "up", b"", 11.0)
    records = read_traffic(path)
    assert [(r.direction, r.device, r.data, r.clock) for r in records] == [
        ("tx", "rapid2", b"Q@n", 10.0),
        ("rx", "rapid2", b"Q\x09\xa5", 10.01),
        ("note", "rapid2", b"", 9.5),
    ]
    assert records[2].text == "opened on /dev/pts/9"
    first = json.loads(path.read_text().splitlines()[0])
    assert first == {"dir": "tx", "device": "rapid2", "hex": "51406e", "clock": 10.0}
    with pytest.raises(ValueError, match="is closed"):
        writer.write("rapid2", "tx", b"x", 12.0)


def test_writer_flushes_regularly(tmp_path):
    path = tmp_path / "devices.jsonl"
    writer = TrafficWriter(path, flush_interval=0.0)
    try:
        writer.write("triggerbox", "tx", b"\x01", 1.0)
        # Readable before close: a crash loses at most flush_interval.
        assert len(read_traffic(path)) == 1
    finally:
        writer.close()
    writer.close()  # idempotent


def test_reader_skips_a_torn_last_line_only(tmp_path):
    path = tmp_path / "devices.jsonl"
    good = json.dumps({"dir": "tx", "device": "rapid2", "hex": "45", "clock": 1.0})
    path.write_text(good + "\n" + '{"dir": "rx", "devi')
    assert len(read_traffic(path)) == 1
    path.write_text('{"dir": "tx"}\n' + good + "\n")
    with pytest.raises(
        ValueError, match=r"devices.jsonl, line 1: not a traffic record"
    ):
        read_traffic(path)


def test_format_decodes_a_real_session(tmp_path, capsys):
    path = tmp_path / "devices.jsonl"
    with SimulatedRig("rapid2", eeg=False, charge_time=0.05) as rig:
        with TrafficWriter(path) as writer:
            with Magstim(
                rig.stimulator_port, "rapid2", traffic_log=writer.callback("rapid2")
            ) as magstim:
                magstim.remote_control()
                magstim.set_power(30)
                magstim.arm()
                magstim.wait_ready()
                magstim.fire()
                with TriggerBox(
                    rig.trigger_port, traffic_log=writer.callback("triggerbox")
                ) as box:
                    box.set_lines(0x01)
                    box.set_lines(0x00)
                magstim.disarm()
            writer.note("rapid2", "closed")
    table = format_traffic(path)
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["time", "(s)", "device", "dir"]
    assert lines[1].split()[0] == "0.000000"
    assert "Q@ remote control on" in lines[1]
    # The reply read in pieces is one row, decoded: standby, remote control off
    # before 'Q' took effect (replies report the status before the command).
    assert lines[2].split()[1:3] == ["rapid2", "rx"]
    assert "standby, coil present" in lines[2] and "remote control" not in lines[2]
    assert any("@030 set power A 30 %" in line for line in lines)
    assert any("EB arm" in line for line in lines)
    fire = next(i for i, line in enumerate(lines) if "EH fire" in line)
    assert "armed, ready" in lines[fire + 1]
    assert any(
        "triggerbox  tx    01" in line and "lines 0x01" in line for line in lines
    )
    assert any("EA disarm" in line for line in lines)
    assert lines[-1].endswith("closed")
    times = [float(line.split()[0]) for line in lines[1:]]
    assert times == sorted(times)

    assert main([str(path)]) == 0
    assert "Q@ remote control on" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.jsonl")]) == 1
    assert "missing.jsonl" in capsys.readouterr().err


def test_format_marks_refusals_and_bad_checksums(tmp_path):
    path = tmp_path / "devices.jsonl"
    with TrafficWriter(path) as writer:
        writer.write("super_rapid2", "tx", b"EH\x00", 1.0)  # wrong checksum
        writer.write("super_rapid2", "rx", b"?", 1.01)
        writer.write("super_rapid2", "tx", b"EHr", 2.0)
        writer.write("super_rapid2", "rx", b"ESg", 2.01)
    lines = format_traffic(path).splitlines()
    assert lines[1].endswith("EH fire (bad checksum)")
    assert lines[2].endswith("refused: unknown command or bad checksum")
    assert lines[3].endswith("EH fire")
    assert lines[4].endswith("refused: conflicts with unit state")


def test_describe_magventure_frames():
    protocol = pytest.importorskip("stimtrain.devices.magventure.protocol")
    assert describe_magventure("tx", protocol.encode_frame(b"\x02\x01")) == "enable"
    assert describe_magventure("tx", protocol.encode_frame(b"\x01\x32")) == (
        "set amplitude 50 %"
    )
    two = protocol.encode_frame(b"\x00") + protocol.encode_frame(b"\x03\x01")
    assert describe_magventure("tx", two) == "get status; fire"
    assert describe_magventure("rx", b"\xfe\x01") == "no complete frame"


def test_empty_log(tmp_path):
    path = tmp_path / "devices.jsonl"
    path.write_text("")
    assert format_traffic(path).endswith("no traffic")
