"""The rig: stimulator and port, trigger line, streams, screen, LSL network, EEG.

A rig file is separate from the protocol so that one protocol runs on every
lab's hardware. ``sim`` is the built-in simulated rig: a Magstim Super Rapid²
simulator, a serial TTL trigger box simulator wired to its trigger input and a
simulated 32-channel EEG amplifier, all behind real pseudo-terminals and LSL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import spec as s
from .errors import Problem, ProtocolError
from .fields import FieldReader
from .units import UnitError
from .yamlpos import load_yaml_file

TRIGGER_KINDS = ("triggerbox", "rts")
SIM_EEG_STREAM = "stimtrain-sim-eeg"
#: The simulated amplifier's EMG channel (first dorsal interosseous).
SIM_EMG_CHANNEL = "FDI"


#: ``lsl.network`` of a rig file: ``local`` keeps LSL on this machine (the
#: shipped configuration), ``lab`` records over the lab network.
LSL_NETWORKS = ("local", "lab")


@dataclass(frozen=True, kw_only=True)
class TriggerLine:
    """A host-timed trigger path into the stimulator's trigger input."""

    kind: str
    port: str | None
    lines: int = 0x01


@dataclass(frozen=True, kw_only=True)
class Screen:
    """Where the participant's window opens."""

    index: int = 0
    size: tuple[int, int] = (1024, 768)
    fullscreen: bool = False


@dataclass(frozen=True, kw_only=True)
class EmgSource:
    """Where MEPs are read live (the rig file's ``emg``): an LSL stream's channel."""

    stream: str
    channel: str


@dataclass(frozen=True, kw_only=True)
class EegSource:
    """The EEG a triggered block reads live (the rig file's ``eeg``).

    Attributes
    ----------
    stream : str
        LSL name of the EEG stream.
    sfreq : float
        Its sampling rate, Hz (the run refuses a stream at another rate).
    channels : tuple of str or None
        Its channel labels, when the rig declares them (montages are then
        checked before the run; else when the stream is found).
    delay_s : float
        The amplifier's declared constant delay: a sample's true time is its
        stamp minus this, s.
    latency_bound_s : float
        A pulse decided more slowly than this (newest sample pulled ->
        deadline handed over) is not given, s.
    """

    stream: str
    sfreq: float
    channels: tuple[str, ...] | None = None
    delay_s: float = 0.0
    latency_bound_s: float = 0.005


@dataclass(frozen=True, kw_only=True)
class LslNetwork:
    """Where the session's LSL streams may be read (the rig file's ``lsl``).

    Attributes
    ----------
    network : str
        ``local``: LSL stays on this machine (the shipped configuration);
        ``lab``: streams are recorded over the lab network (networked
        amplifiers), and the console says so.
    config : Path or None
        With ``lab``: the lab's ``lsl_api.cfg``; None uses ``LSLAPICFG`` or
        liblsl's defaults.
    """

    network: str = "local"
    config: Path | None = None


@dataclass(frozen=True, kw_only=True)
class Rig:
    """A lab set-up.

    Attributes
    ----------
    name : str
        ``sim`` or the rig file's path.
    stimulator_model : str
        A model key of :mod:`stimtrain.devices.stimulator`.
    stimulator_port : str or None
        Serial port; None on the simulated rig (the simulator picks a pty).
    trigger : TriggerLine or None
        How host-timed pulses reach the stimulator; None means serial only.
    required_streams : tuple of str
        LSL stream names that must be present and recorded (the EEG).
    stream_timeout_s : float
        How long to wait for the required streams before refusing to start.
    screen : Screen
        The participant's screen.
    simulated : bool
        Start the device simulators and the simulated EEG.
    lsl : LslNetwork
        Whether LSL stays on this machine or records over the lab network.
    emg : EmgSource or None
        The EMG channel threshold and hotspot blocks read MEPs from.
    eeg : EegSource or None
        The EEG triggered blocks read phase from.
    """

    name: str
    stimulator_model: str
    stimulator_port: str | None
    trigger: TriggerLine | None
    required_streams: tuple[str, ...] = ()
    stream_timeout_s: float = 10.0
    screen: Screen = field(default_factory=Screen)
    simulated: bool = False
    lsl: LslNetwork = field(default_factory=LslNetwork)
    emg: EmgSource | None = None
    eeg: EegSource | None = None


#: The simulated amplifier's rate, Hz (devices/sim_eeg.py).
SIM_EEG_RATE = 5000.0


def simulated_eeg(delay_s: float = 0.0) -> EegSource:
    """The simulated rig's EEG: 32 channels of the 10-20 system and the EMG.

    ``delay_s`` is the simulated amplifier's delay (``--sim-eeg-delay``),
    which the simulated rig declares as it is.
    """
    from stimtrain.devices.sim_eeg import CHANNEL_NAMES_32

    return EegSource(
        stream=SIM_EEG_STREAM,
        sfreq=SIM_EEG_RATE,
        channels=(*CHANNEL_NAMES_32, SIM_EMG_CHANNEL),
        delay_s=delay_s,
    )


def simulated_rig(model: str = "super_rapid2", *, trigger: bool = True) -> Rig:
    """Return a built-in simulated rig (``--rig sim``, ``--rig sim-<model>``).

    ``sim`` is a Super Rapid²; ``sim-bistim`` a BiStim² (paired pulses),
    ``sim-magpro_x100_magoption`` a MagPro X100 with MagOption, and so on for
    every registered model, each with a trigger box on its trigger input.
    ``sim-<model>-serial`` has no trigger line: serial commands only (trains
    then run on the unit itself).
    """
    name = "sim" if model == "super_rapid2" else f"sim-{model}"
    return Rig(
        name=name if trigger else f"sim-{model}-serial",
        stimulator_model=model,
        stimulator_port=None,
        trigger=TriggerLine(kind="triggerbox", port=None) if trigger else None,
        required_streams=(SIM_EEG_STREAM,),
        stream_timeout_s=10.0,
        screen=Screen(),
        simulated=True,
        emg=EmgSource(stream=SIM_EEG_STREAM, channel=SIM_EMG_CHANNEL),
        eeg=simulated_eeg(),
    )


def _stimulator_models() -> tuple[str, ...]:
    from stimtrain.devices.stimulator import models

    return models()


_STIMULATOR_SPEC = s.RecordSpec(
    "the stimulator",
    "The stimulator and the serial port it is connected to.",
    (
        s.FieldSpec(
            "model",
            s.Kind(
                "model",
                lambda v: s.choice(_stimulator_models()).parse(v),
                {"type": "string"},
            ),
            "Stimulator model (see `stimtrain devices --models`).",
            required=True,
        ),
        s.FieldSpec("port", s.TEXT, "Serial port, e.g. /dev/ttyUSB0.", required=True),
    ),
)


def _line_mask(value: int) -> str | None:
    return None if 1 <= value <= 255 else "must be a line mask from 1 to 255"


_TRIGGER_SPEC = s.RecordSpec(
    "the trigger line",
    "How host-timed pulses reach the stimulator's trigger input.",
    (
        s.FieldSpec(
            "kind",
            s.choice(TRIGGER_KINDS),
            "triggerbox (serial TTL box) or rts (a serial port's RTS line).",
            required=True,
        ),
        s.FieldSpec("port", s.TEXT, "Serial port of the trigger line.", required=True),
        s.FieldSpec(
            "lines",
            s.INTEGER,
            "Trigger box output lines (bit mask).",
            1,
            check=_line_mask,
        ),
    ),
)
_STREAMS_SPEC = s.RecordSpec(
    "the streams",
    "LSL streams that must be recorded.",
    (
        s.FieldSpec(
            "require", s.list_of(s.TEXT, min_items=0), "Names of required streams."
        ),
        s.FieldSpec(
            "timeout",
            s.TIME,
            "How long to wait for them before refusing to start.",
            "10 s",
            check=s.positive,
        ),
    ),
)


def _size(value):
    if not (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise UnitError("must be [width, height] in pixels")
    return tuple(value)


_SCREEN_SPEC = s.RecordSpec(
    "the screen",
    "Where the participant's window opens.",
    (
        s.FieldSpec("index", s.INTEGER, "Screen number.", 0),
        s.FieldSpec(
            "size",
            s.Kind(
                "size",
                _size,
                {"type": "array", "items": {"type": "integer"}, "minItems": 2},
            ),
            "Window size [width, height] in pixels.",
            [1024, 768],
        ),
        s.FieldSpec("fullscreen", s.BOOLEAN, "Open full screen.", True),
    ),
)
_LSL_SPEC = s.RecordSpec(
    "the LSL network",
    "Whether LSL stays on this machine or records over the lab network.",
    (
        s.FieldSpec(
            "network",
            s.choice(LSL_NETWORKS),
            "local: streams stay on this machine (the shipped configuration); "
            "lab: record over the lab network (networked amplifiers).",
            "local",
        ),
        s.FieldSpec(
            "config",
            s.TEXT,
            "With network: lab, the lab's lsl_api.cfg (relative to the rig file); "
            "default: LSLAPICFG or liblsl's own defaults.",
        ),
    ),
)
_EMG_SPEC = s.RecordSpec(
    "the EMG",
    "Where threshold and hotspot blocks read MEPs: an LSL stream and its channel.",
    (
        s.FieldSpec(
            "stream",
            s.TEXT,
            "Name of the LSL stream with the EMG (also recorded: list it under "
            "streams.require).",
            required=True,
        ),
        s.FieldSpec(
            "channel", s.TEXT, "The channel's label in the stream.", required=True
        ),
    ),
)
_EEG_SPEC = s.RecordSpec(
    "the EEG",
    "The EEG stream triggered blocks read the rhythm's phase from, live.",
    (
        s.FieldSpec(
            "stream",
            s.TEXT,
            "Name of the LSL stream with the EEG (also recorded: list it under "
            "streams.require).",
            required=True,
        ),
        s.FieldSpec(
            "rate",
            s.FREQUENCY,
            "The stream's sampling rate.",
            required=True,
            check=s.positive,
        ),
        s.FieldSpec(
            "channels",
            s.list_of(s.TEXT),
            "The stream's channel labels (montages are then checked before the run).",
        ),
        s.FieldSpec(
            "delay",
            s.TIME,
            "The amplifier's constant delay: how old a sample is when it is "
            "stamped (measure it; e.g. 50 ms for BrainAmp-class amplifiers).",
            required=True,
            check=s.non_negative,
        ),
        s.FieldSpec(
            "latency_bound",
            s.TIME,
            "No pulse when deciding it took longer (newest sample pulled -> "
            "deadline handed over).",
            "5 ms",
            check=s.positive,
        ),
    ),
)
RIG_SPEC = s.RecordSpec(
    "a rig",
    "A lab set-up: stimulator, trigger line, required streams, screen, LSL "
    "network, EMG, EEG.",
    (),
    extra_keys=("stimulator", "trigger", "streams", "screen", "lsl", "emg", "eeg"),
)
RIG_SECTIONS = {
    "stimulator": _STIMULATOR_SPEC,
    "trigger": _TRIGGER_SPEC,
    "streams": _STREAMS_SPEC,
    "screen": _SCREEN_SPEC,
    "lsl": _LSL_SPEC,
    "emg": _EMG_SPEC,
    "eeg": _EEG_SPEC,
}


def _lsl_network(
    r: FieldReader, raw: dict | None, lsl: dict | None, rig_file: Path
) -> LslNetwork:
    """The rig's LSL network; ``config`` only with ``lab``, and must exist.

    ``raw`` is the ``lsl`` mapping as written, ``lsl`` its values as read
    (None when the section is absent or not a mapping).
    """
    if raw is None or lsl is None:
        return LslNetwork()
    config = None
    if lsl["config"] is not None:
        path = ("lsl", "config")
        config = Path(lsl["config"]).expanduser()
        if not config.is_absolute():
            config = rig_file.parent / config
        network_valid = raw.get("network", "local") in LSL_NETWORKS
        if lsl["network"] != "lab":
            if network_valid:
                r.fail(path, "is only used with network: lab", lsl["config"])
        elif not config.is_file():
            r.fail(
                path,
                f"must be an existing lsl_api.cfg (no file {config})",
                lsl["config"],
            )
    return LslNetwork(network=lsl["network"], config=config)


def load_rig(spec: str | Path) -> Rig:
    """Load a rig by name (``sim``) or from a rig YAML file.

    Parameters
    ----------
    spec : str | Path
        ``"sim"`` or a path to a rig file.

    Returns
    -------
    Rig
        The rig.

    Raises
    ------
    ProtocolError
        When the file has problems.
    """
    if str(spec) == "sim":
        return simulated_rig()
    if str(spec).startswith("sim-"):
        model = str(spec)[4:]
        trigger = not model.endswith("-serial")
        model = model.removesuffix("-serial")
        if model not in _stimulator_models():
            raise ProtocolError(
                [
                    Problem(
                        str(spec),
                        0,
                        0,
                        "rig",
                        "a simulated rig must be sim, sim-<model> or "
                        "sim-<model>-serial, model one of "
                        + ", ".join(_stimulator_models()),
                        model,
                    )
                ]
            )
        return simulated_rig(model, trigger=trigger)
    doc = load_yaml_file(spec)
    problems: list = []
    r = FieldReader(doc, problems)
    top = r.mapping(doc.data, ())
    if top is None:
        raise ProtocolError(problems)
    RIG_SPEC.read(r, top, ())
    if "stimulator" not in top:
        r.fail(("stimulator",), "is required", "nothing")
    sections: dict[str, dict] = {}
    for name, section in RIG_SECTIONS.items():
        if top.get(name) is not None:
            m = r.mapping(top[name], (name,))
            if m is not None:
                sections[name] = section.read(r, m, (name,))
    lsl = _lsl_network(r, top.get("lsl"), sections.get("lsl"), Path(spec))
    if problems:
        raise ProtocolError(problems)
    stim = sections["stimulator"]
    trig = sections.get("trigger")
    streams = sections.get("streams") or _STREAMS_SPEC.read(r, {}, ("streams",))
    screen = sections.get("screen") or _SCREEN_SPEC.read(r, {}, ("screen",))
    return Rig(
        name=str(spec),
        stimulator_model=stim["model"],
        stimulator_port=stim["port"],
        trigger=None
        if trig is None
        else TriggerLine(kind=trig["kind"], port=trig["port"], lines=trig["lines"]),
        required_streams=tuple(streams["require"] or ()),
        stream_timeout_s=streams["timeout"],
        screen=Screen(
            index=screen["index"], size=screen["size"], fullscreen=screen["fullscreen"]
        ),
        simulated=False,
        lsl=lsl,
        emg=None
        if "emg" not in sections
        else EmgSource(
            stream=sections["emg"]["stream"], channel=sections["emg"]["channel"]
        ),
        eeg=_eeg(sections.get("eeg")),
    )


def _eeg(v: dict | None) -> EegSource | None:
    """The rig's EEG from its section's values (None without a section)."""
    if v is None:
        return None
    return EegSource(
        stream=v["stream"],
        sfreq=v["rate"],
        channels=None if v["channels"] is None else tuple(v["channels"]),
        delay_s=v["delay"],
        latency_bound_s=v["latency_bound"],
    )
