"""The LSL configuration stimtrain ships, and what a session exposes on the network.

Kept free of pylsl imports at module level: liblsl reads ``LSLAPICFG`` when it
first needs its configuration (the first outlet, inlet or resolve), so the
variable must be set before anything uses LSL, in this process and in the
processes it starts.

What liblsl can and cannot keep on this machine (liblsl 1.17 and 1.18, the
versions bundled with pylsl and the LabRecorder bindings): discovery is
limited by ``ResolveScope = machine`` and ``KnownPeers = {127.0.0.1}``, the
multicast responder binds to ``multicast.ListenAddress`` (127.0.0.1) and
``ports.IPv6 = disable`` removes the IPv6 sockets; but each outlet's TCP data
port and UDP service port (time sync and stream queries) are always bound to
all addresses (``0.0.0.0``): liblsl has no setting for their address. A
machine on the lab network that queries this computer's address can find and
read the streams; only a firewall stops it. :func:`configure_lsl` says so.
"""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from ..language.rig import LSL_NETWORKS, Rig

LSL_CONFIG = files("stimtrain.orchestrator") / "data" / "lsl_api.cfg"
#: Where the operator guide explains the exposure and the firewall rules.
DOC_SECTION = "docs/operator.md, 'What is exposed on the network'"


def use_local_lsl() -> None:
    """Point liblsl at the shipped machine-local configuration.

    A ``LSLAPICFG`` already set is left in place here; a session applies its
    rig's choice with :func:`configure_lsl` before it uses LSL.
    """
    os.environ.setdefault("LSLAPICFG", str(LSL_CONFIG))


@dataclass(frozen=True)
class LslPorts:
    """The ports liblsl uses under one configuration.

    Attributes
    ----------
    base : int
        ``ports.BasePort``: the first data (TCP) and service (UDP) port.
    count : int
        ``ports.PortRange``: how many ports from ``base`` outlets take.
    multicast : int
        ``ports.MulticastPort``: the discovery responder's UDP port.
    """

    base: int = 16572
    count: int = 32
    multicast: int = 16571

    @property
    def last(self) -> int:
        """The last port of the range."""
        return self.base + self.count - 1

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.base <= port <= self.last

    def __str__(self) -> str:
        return f"{self.base}-{self.last}"


def config_ports(path: str | Path | None = None) -> LslPorts:
    """Read the port settings of an ``lsl_api.cfg`` (liblsl's defaults if absent).

    Parameters
    ----------
    path : str | Path | None
        The configuration file; None reads the shipped one.

    Returns
    -------
    LslPorts
        Base port, range and multicast port.
    """
    parser = configparser.ConfigParser(
        inline_comment_prefixes=(";", "#"), interpolation=None
    )
    parser.optionxform = str  # liblsl's keys are case-sensitive
    text = Path(str(LSL_CONFIG if path is None else path)).read_text(encoding="utf-8")
    parser.read_string(text)
    ports = parser["ports"] if parser.has_section("ports") else {}
    default = LslPorts()
    return LslPorts(
        base=int(ports.get("BasePort", default.base)),
        count=int(ports.get("PortRange", default.count)),
        multicast=int(ports.get("MulticastPort", default.multicast)),
    )


def _liblsl_version() -> str:
    """liblsl's version as ``1.18`` (imports pylsl: call after LSLAPICFG is set)."""
    try:
        import pylsl

        number = pylsl.library_version()
    except Exception:  # noqa: BLE001 - the console line must not stop a session
        return "liblsl"
    return f"liblsl {number // 100}.{number % 100}"


def configure_lsl(
    network: str = "local", config: str | Path | None = None
) -> list[str]:
    """Set ``LSLAPICFG`` for a session and return the console lines about it.

    Call before anything in the process uses LSL (liblsl reads its
    configuration once) and before the session starts other processes.

    Parameters
    ----------
    network : str
        ``local``: the shipped configuration, whatever ``LSLAPICFG`` the
        environment set. ``lab``: ``config`` if given, else an ``LSLAPICFG``
        from the environment, else liblsl's own defaults (its search for
        ``lsl_api.cfg``; site-wide discovery).
    config : str | Path | None
        The lab's ``lsl_api.cfg``; only with ``network="lab"``.

    Returns
    -------
    list of str
        Lines to print at session start: on this machine, what liblsl still
        exposes (the data and service ports on every interface) and what to
        do; on the lab network, that every stream can be read there.

    Raises
    ------
    ValueError
        For an unknown ``network`` or a ``config`` with ``network="local"``.
    """
    if network not in LSL_NETWORKS:
        raise ValueError(
            f"LSL network must be one of {', '.join(LSL_NETWORKS)} (got {network!r})"
        )
    shipped = str(LSL_CONFIG)
    inherited = os.environ.get("LSLAPICFG")
    lines: list[str] = []
    if network == "local":
        if config is not None:
            raise ValueError("an LSL configuration file is only used with network lab")
        os.environ["LSLAPICFG"] = shipped
        if inherited and inherited != shipped:
            lines.append(
                f"LSL: LSLAPICFG={inherited} from the environment is not used: this "
                "rig keeps LSL on this machine (a rig that records over the lab "
                "network says lsl: {network: lab})"
            )
        ports = config_ports()
        lines.append(
            f"LSL: streams are found only on this machine, but {_liblsl_version()} "
            "cannot bind outlets to loopback: their data and time ports (TCP and "
            f"UDP {ports}) listen on all interfaces, so a machine on the lab "
            "network could read the EEG and markers"
        )
        lines.append(
            f"LSL: block TCP and UDP ports {ports} from other machines with the "
            f"firewall ({DOC_SECTION})"
        )
        return lines
    if config is not None:
        os.environ["LSLAPICFG"] = str(config)
        source = f"configuration {config}"
    elif inherited and inherited != shipped:
        source = f"configuration {inherited} (LSLAPICFG)"
    else:
        os.environ.pop("LSLAPICFG", None)
        source = "liblsl's default configuration"
    lines.append(
        f"LSL: this rig records over the lab network (lsl.network: lab, {source}): "
        "every stream of the session, the EEG and markers included, can be found "
        "and read by any machine on that network"
    )
    return lines


def configure_lsl_for_rig(rig: Rig) -> list[str]:
    """Apply a rig's ``lsl`` setting (:func:`configure_lsl`); the console lines.

    Parameters
    ----------
    rig : Rig
        The session's rig; simulated rigs keep LSL on this machine.

    Returns
    -------
    list of str
        Lines to print at session start.
    """
    return configure_lsl(rig.lsl.network, rig.lsl.config)
