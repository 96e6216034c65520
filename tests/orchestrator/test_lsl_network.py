"""What an LSL outlet exposes under the shipped configuration, with real liblsl.

Each outlet and inlet runs in its own process with its own ``LSLAPICFG``
(liblsl reads its configuration once per process); the outlet's sockets are
read from the kernel with psutil.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import psutil
import pytest

from stimtrain.orchestrator.language.errors import ProtocolError
from stimtrain.orchestrator.language.rig import LslNetwork, load_rig, simulated_rig
from stimtrain.orchestrator.session.lslconfig import (
    LSL_CONFIG,
    config_ports,
    configure_lsl,
    configure_lsl_for_rig,
)

OUTLET = textwrap.dedent(
    """
    import sys, time
    import pylsl
    info = pylsl.StreamInfo(sys.argv[1], "EEG", 2, 100, "float32", sys.argv[1])
    outlet = pylsl.StreamOutlet(info)
    print("ready", flush=True)
    end = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < end:
        outlet.push_sample([1.0, 2.0])
        time.sleep(0.01)
    """
)
INLET = textwrap.dedent(
    """
    import json, sys
    import psutil, pylsl
    found = pylsl.resolve_byprop("name", sys.argv[1], timeout=10)
    if not found:
        sys.exit("not found")
    inlet = pylsl.StreamInlet(found[0])
    sample, _ = inlet.pull_sample(timeout=10)
    peers = sorted(
        {c.raddr.ip for c in psutil.Process().net_connections(kind="tcp")
         if c.status == psutil.CONN_ESTABLISHED}
    )
    print(json.dumps({"sample": sample, "peers": peers}))
    """
)


def _python(code: str, cfg: str | Path, *args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, LSLAPICFG=str(cfg))
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], env=env, text=True, **kw
    )


def _inlet(cfg: str | Path, name: str) -> dict:
    """Resolve ``name``, pull one sample, in a process configured by ``cfg``.

    Returns ``{"sample": [...], "peers": [addresses its TCP connections go to]}``.
    """
    proc = _python(INLET, cfg, name, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return json.loads(out)


@pytest.fixture
def outlet(request):
    """Start an outlet under a configuration; yields (process, stream name)."""
    procs = []

    def start(cfg: str | Path, seconds: float = 30) -> tuple[psutil.Process, str]:
        name = f"stimtrain-nettest-{uuid.uuid4().hex[:8]}"
        proc = _python(OUTLET, cfg, name, str(seconds), stdout=subprocess.PIPE)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "ready"
        return psutil.Process(proc.pid), name

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def _sockets(proc: psutil.Process) -> list[tuple[str, str, int]]:
    """The process's listening TCP and bound UDP sockets: (kind, address, port)."""
    found = []
    for conn in proc.net_connections(kind="inet"):
        if conn.type == socket.SOCK_STREAM and conn.status == psutil.CONN_LISTEN:
            found.append(("tcp", conn.laddr.ip, conn.laddr.port))
        elif conn.type == socket.SOCK_DGRAM:
            found.append(("udp", conn.laddr.ip, conn.laddr.port))
    return found


def _loopback(address: str) -> bool:
    return ipaddress.ip_address(address.split("%")[0]).is_loopback


def _lab_address() -> str | None:
    """A non-loopback IPv4 address of this machine (its lab-network side)."""
    for addresses in psutil.net_if_addrs().values():
        for a in addresses:
            if a.family == socket.AF_INET and not _loopback(a.address):
                return a.address
    return None


def test_shipped_config_keeps_discovery_on_loopback_and_no_ipv6(outlet):
    proc, _ = outlet(LSL_CONFIG)
    ports = config_ports()
    sockets = _sockets(proc)
    assert sockets
    # No IPv6 socket: liblsl binds those to [::], every interface.
    assert all(ipaddress.ip_address(a).version == 4 for _, a, _ in sockets), sockets
    # The discovery responder listens on loopback only.
    responder = [(k, a) for k, a, p in sockets if p == ports.multicast]
    assert responder == [("udp", "127.0.0.1")], sockets
    # What is left on every interface is the outlet's data (TCP) and service
    # (UDP) port, inside the range the console warning and the guide name.
    exposed = {(k, p) for k, a, p in sockets if not _loopback(a)}
    assert {k for k, _ in exposed} == {"tcp", "udp"}, sockets
    assert all(p in ports for _, p in exposed), (sockets, str(ports))


def test_an_inlet_on_this_machine_receives_samples(outlet):
    _, name = outlet(LSL_CONFIG)
    got = _inlet(LSL_CONFIG, name)
    assert got["sample"] == [1.0, 2.0]
    assert got["peers"] and all(_loopback(a) for a in got["peers"]), got


def test_the_warning_is_true_a_lab_machine_could_read_the_stream(outlet, tmp_path):
    """liblsl binds the data port to every interface; the console says so.

    A process configured like a lab machine that knows this computer's
    lab-network address finds the stream there and reads it. When a liblsl
    can bind outlets to loopback this fails: ship that setting, drop the
    warning from :func:`configure_lsl`.
    """
    address = _lab_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    # Another machine reaches this one only at its lab-network address: every
    # query (the "machine" multicast address and the known peer) goes there.
    lab = tmp_path / "lab_machine.cfg"
    lab.write_text(
        "[ports]\nPortRange = 512\nIPv6 = disable\n"
        f"[multicast]\nResolveScope = machine\nMachineAddresses = {{{address}}}\n"
        f"[lab]\nKnownPeers = {{{address}}}\n[log]\nlevel = -2\n",
        encoding="utf-8",
    )
    _, name = outlet(LSL_CONFIG)
    got = _inlet(lab, name)
    assert got["sample"] == [1.0, 2.0]
    # It read the stream through the lab-network address, not loopback.
    assert got["peers"] == [address], got


def test_local_sets_the_shipped_config_and_warns_with_the_ports(monkeypatch):
    monkeypatch.setenv("LSLAPICFG", str(LSL_CONFIG))
    lines = configure_lsl("local")
    assert os.environ["LSLAPICFG"] == str(LSL_CONFIG)
    ports = str(config_ports())
    assert ports == "16572-17083"
    assert len(lines) == 2
    assert "liblsl 1." in lines[0] and "all interfaces" in lines[0]
    assert f"TCP and UDP {ports}" in lines[0]
    assert "firewall" in lines[1] and "What is exposed on the network" in lines[1]


def test_local_replaces_an_inherited_config_and_says_so(monkeypatch, tmp_path):
    other = tmp_path / "lab.cfg"
    monkeypatch.setenv("LSLAPICFG", str(other))
    lines = configure_lsl("local")
    assert os.environ["LSLAPICFG"] == str(LSL_CONFIG)
    assert lines[0].startswith(f"LSL: LSLAPICFG={other} from the environment is not")
    assert "lsl: {network: lab}" in lines[0]


def test_lab_says_the_streams_are_on_the_lab_network(monkeypatch, tmp_path):
    cfg = tmp_path / "lab.cfg"
    monkeypatch.setenv("LSLAPICFG", str(LSL_CONFIG))
    (line,) = configure_lsl("lab", cfg)
    assert os.environ["LSLAPICFG"] == str(cfg)
    assert "records over the lab network" in line and str(cfg) in line
    assert "any machine on that network" in line
    # Without a file: an LSLAPICFG from the lab is kept, the shipped one dropped.
    monkeypatch.setenv("LSLAPICFG", str(cfg))
    (line,) = configure_lsl("lab")
    assert os.environ["LSLAPICFG"] == str(cfg) and "(LSLAPICFG)" in line
    monkeypatch.setenv("LSLAPICFG", str(LSL_CONFIG))
    (line,) = configure_lsl("lab")
    assert "LSLAPICFG" not in os.environ
    assert "liblsl's default configuration" in line


def test_configure_refuses_bad_arguments(monkeypatch):
    monkeypatch.setenv("LSLAPICFG", str(LSL_CONFIG))
    with pytest.raises(ValueError, match="local, lab"):
        configure_lsl("wifi")
    with pytest.raises(ValueError, match="only used with network lab"):
        configure_lsl("local", "x.cfg")


# --- the rig file's lsl section ---------------------------------------------------

STIM = "stimulator: {model: super_rapid2, port: /dev/ttyUSB0}\n"


def _rig(tmp_path: Path, text: str):
    path = tmp_path / "rig.yaml"
    path.write_text(STIM + text, encoding="utf-8")
    return load_rig(path)


def _problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ProtocolError) as info:
        _rig(tmp_path, text)
    return [str(p) for p in info.value.problems]


def test_rigs_keep_lsl_local_unless_the_file_says_lab(tmp_path, monkeypatch):
    assert simulated_rig().lsl == LslNetwork()
    assert _rig(tmp_path, "").lsl == LslNetwork(network="local", config=None)
    assert _rig(tmp_path, "lsl: {network: local}\n").lsl.network == "local"
    assert _rig(tmp_path, "lsl: {network: lab}\n").lsl == LslNetwork(network="lab")
    (tmp_path / "lab_lsl.cfg").write_text("[lab]\n", encoding="utf-8")
    rig = _rig(tmp_path, "lsl: {network: lab, config: lab_lsl.cfg}\n")
    assert rig.lsl == LslNetwork(network="lab", config=tmp_path / "lab_lsl.cfg")
    monkeypatch.setenv("LSLAPICFG", str(LSL_CONFIG))
    (line,) = configure_lsl_for_rig(rig)
    assert os.environ["LSLAPICFG"] == str(tmp_path / "lab_lsl.cfg")
    assert "lab network" in line
    assert "all interfaces" in configure_lsl_for_rig(simulated_rig())[-2]


def test_bad_lsl_fields_are_located(tmp_path):
    rig = str(tmp_path / "rig.yaml")
    assert _problems(tmp_path, "lsl: {network: wifi}\n") == [
        f"{rig}:2:16: error: lsl.network: must be one of local, lab (got wifi)"
    ]
    assert _problems(tmp_path, "lsl: {network: local, config: lab.cfg}\n") == [
        f"{rig}:2:31: error: lsl.config: is only used with network: lab (got lab.cfg)"
    ]
    (problem,) = _problems(tmp_path, "lsl:\n  network: lab\n  config: missing.cfg\n")
    assert problem.startswith(f"{rig}:4:11: error: lsl.config: must be an existing")
    assert str(tmp_path / "missing.cfg") in problem
    (problem,) = _problems(tmp_path, "lsl: {netwrok: lab}\n")
    assert problem.startswith(f"{rig}:2:7: error: lsl.netwrok: is not a field of")
    (problem,) = _problems(tmp_path, "lsl: lab\n")
    assert problem.startswith(f"{rig}:2:6: error: lsl: must be a mapping")
