"""The rig: which stimulator on which port, which trigger line, streams and screen.

A rig file is separate from the protocol so that one protocol runs on every
lab's hardware. ``sim`` is the built-in simulated rig: a Magstim Rapid²
simulator, a serial TTL trigger box simulator wired to its trigger input and a
simulated 32-channel EEG amplifier, all behind real pseudo-terminals and LSL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .errors import ProtocolError
from .fields import FieldReader, boolean, choice, integer, positive, text
from .units import parse_time
from .yamlpos import load_yaml_file

STIMULATOR_MODELS = ("rapid2", "super_rapid2", "super_rapid2_plus", "200")
TRIGGER_KINDS = ("triggerbox",)
SIM_EEG_STREAM = "stimtrain-sim-eeg"


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
class Rig:
    """A lab set-up.

    Attributes
    ----------
    name : str
        ``sim`` or the rig file's path.
    stimulator_model : str
        One of :data:`STIMULATOR_MODELS`.
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
    """

    name: str
    stimulator_model: str
    stimulator_port: str | None
    trigger: TriggerLine | None
    required_streams: tuple[str, ...] = ()
    stream_timeout_s: float = 10.0
    screen: Screen = field(default_factory=Screen)
    simulated: bool = False


def simulated_rig() -> Rig:
    """Return the built-in simulated rig (``--rig sim``)."""
    return Rig(
        name="sim",
        stimulator_model="super_rapid2",
        stimulator_port=None,
        trigger=TriggerLine(kind="triggerbox", port=None),
        required_streams=(SIM_EEG_STREAM,),
        stream_timeout_s=10.0,
        screen=Screen(),
        simulated=True,
    )


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
    doc = load_yaml_file(spec)
    problems: list = []
    r = FieldReader(doc, problems)
    top = r.mapping(doc.data, ())
    if top is None:
        raise ProtocolError(problems)
    r.known(top, (), ("stimulator", "trigger", "streams", "screen"), "a rig")
    model, port, trigger, streams, timeout = "rapid2", None, None, (), 10.0
    screen = Screen()
    stim = r.mapping(top.get("stimulator"), ("stimulator",))
    if stim is not None:
        r.known(stim, ("stimulator",), ("model", "port"), "the stimulator")
        model = r.get(
            stim, ("stimulator",), "model", choice(STIMULATOR_MODELS), required=True
        )
        port = r.get(stim, ("stimulator",), "port", text, required=True)
    if top.get("trigger") is not None:
        trig = r.mapping(top["trigger"], ("trigger",))
        if trig is not None:
            r.known(trig, ("trigger",), ("kind", "port", "lines"), "the trigger line")
            kind = r.get(
                trig, ("trigger",), "kind", choice(TRIGGER_KINDS), required=True
            )
            tport = r.get(trig, ("trigger",), "port", text, required=True)
            lines = r.get(trig, ("trigger",), "lines", integer, default=1)
            if lines is not None and not 1 <= lines <= 255:
                r.fail(("trigger", "lines"), "must be a line mask from 1 to 255", lines)
            trigger = TriggerLine(kind=kind, port=tport, lines=lines or 1)
    if "streams" in top:
        st = r.mapping(top["streams"], ("streams",))
        if st is not None:
            r.known(st, ("streams",), ("require", "timeout"), "the streams")
            req = st.get("require", [])
            if not isinstance(req, list) or not all(isinstance(x, str) for x in req):
                r.fail(
                    ("streams", "require"), "must be a list of LSL stream names", req
                )
            else:
                streams = tuple(req)
            timeout = r.get(
                st, ("streams",), "timeout", parse_time, default=10.0, check=positive
            )
    if "screen" in top:
        sc = r.mapping(top["screen"], ("screen",))
        if sc is not None:
            r.known(sc, ("screen",), ("index", "size", "fullscreen"), "the screen")
            index = r.get(sc, ("screen",), "index", integer, default=0)
            size = sc.get("size", [1024, 768])
            if not (
                isinstance(size, list)
                and len(size) == 2
                and all(isinstance(v, int) and v > 0 for v in size)
            ):
                r.fail(("screen", "size"), "must be [width, height] in pixels", size)
                size = [1024, 768]
            full = r.get(sc, ("screen",), "fullscreen", boolean, default=True)
            screen = Screen(index=index, size=tuple(size), fullscreen=full)
    if problems:
        raise ProtocolError(problems)
    return Rig(
        name=str(spec),
        stimulator_model=model,
        stimulator_port=port,
        trigger=trigger,
        required_streams=streams,
        stream_timeout_s=timeout,
        screen=screen,
        simulated=False,
    )
