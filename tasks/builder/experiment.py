"""A PsychoPy Builder experiment (``.psyexp``), read and checked before it runs.

:func:`read_experiment` loads the file with PsychoPy's own Builder model
(:class:`psychopy.experiment.Experiment`) and reports, as
:class:`BuilderError` objects located in the file, what stimtrain cannot run:
a component or routine that needs a device stimtrain does not provide (a
microphone, an eye tracker, a sound card, a port it does not own) or one it
does not know. :meth:`BuilderExperiment.exp_info` checks a block's ``params``
against the fields the experiment declares in its *Experiment info* (so a
typo fails before the session), and :meth:`BuilderExperiment.onsets` counts,
from the flow's loops, how often a component can start: the bound the plan
and the safety check judge online TMS by.
"""

from __future__ import annotations

import ast
import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .devices import DEVICE_NEEDS, MANUAL_COMPONENTS, SUPPORTED_COMPONENTS
from .loops import Loop, _number


class BuilderError(ValueError):
    """A problem with a Builder experiment, located for the person who fixes it.

    Parameters
    ----------
    rule : str
        What is wrong, in words.
    value : object
        The offending value as written.
    file : str | None
        The ``.psyexp`` file the problem is in, or ``None`` when it is in what
        names the experiment (the file is missing, a parameter is wrong):
        the caller locates it there.
    line, col : int
        1-based position in ``file`` (0 when unknown).
    field : str
        ``routines.<routine>.<component>`` in the experiment, or the
        parameter's name (``file`` is ``None``), or ``""`` for the file as a
        whole.
    """

    def __init__(
        self,
        rule: str,
        value: object,
        *,
        file: str | None = None,
        line: int = 0,
        col: int = 0,
        field: str = "",
    ) -> None:
        self.rule = rule
        self.value = value
        self.file = file
        self.line = line
        self.col = col
        self.field = field
        where = f"{file}:{line}:{col}: " if file else ""
        what = f"{field}: " if field else ""
        super().__init__(f"{where}{what}{rule} (got {value})")

    def located(self) -> str:
        """The message as stimtrain prints file problems:
        ``FILE:LINE:COL: error: field: rule (got value)``."""
        where = f"{self.file}:{self.line}:{self.col}: " if self.file else ""
        what = f"{self.field}: " if self.field else ""
        return f"{where}error: {what}{self.rule} (got {self.value})"


@dataclass(frozen=True)
class Component:
    """One component of a routine, as the Builder file declares it.

    Attributes
    ----------
    name, type : str
        Its name and class (``resp``, ``KeyboardComponent``).
    routine : str
        The routine it belongs to.
    params : dict
        Its parameters' values as written (strings; ``$`` marks code).
    line : int
        Where it starts in the file.
    """

    name: str
    type: str
    routine: str
    params: dict[str, str]
    line: int

    @property
    def start_s(self) -> float | None:
        """Its start within the routine in seconds, when written as a fixed time."""
        if self.params.get("startType") != "time (s)":
            return None
        return _number(self.params.get("startVal"))


@dataclass
class BuilderExperiment:
    """A checked Builder experiment.

    Attributes
    ----------
    path : Path
        The ``.psyexp`` file.
    name : str
        The experiment's name (its ``expName`` setting, else the file's stem).
    sha256 : str
        SHA-256 of the file's bytes (what the protocol hash includes).
    fields : dict
        The *Experiment info* fields it declares → their default.
    components : dict
        Component name → :class:`Component`.
    loops : dict
        Loop name → :class:`Loop`, in flow order.
    flow : list of (routine, loops)
        Each routine the flow runs, with the loops around it (outermost first).
    routine_s : dict
        Routine name → its fixed duration in seconds, where it has one.
    problems : list of BuilderError
        What stimtrain cannot run (empty: it can run).
    """

    path: Path
    name: str
    sha256: str
    fields: dict[str, Any]
    components: dict[str, Component]
    loops: dict[str, Loop]
    flow: list[tuple[str, tuple[str, ...]]]
    routine_s: dict[str, float] = field(default_factory=dict)
    problems: list[BuilderError] = field(default_factory=list)

    # -- parameters ---------------------------------------------------------
    def exp_info(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """Check a block's parameters against the declared fields.

        Parameters
        ----------
        params : mapping | None
            ``field: value`` from the protocol (or ``--param``).

        Returns
        -------
        values : dict
            The fields given, checked (text fields as text); the others keep
            what the experiment computes for them.

        Raises
        ------
        BuilderError
            For a field the experiment does not declare, or a value that does
            not fit the declared one (``field`` is the parameter's name).
        """
        given = dict(params or {})
        declared = ", ".join(self.fields) or "none"
        out = {}
        for key, value in given.items():
            if key not in self.fields:
                raise BuilderError(
                    f"is not a field the experiment declares in its Experiment "
                    f"info (declared: {declared})",
                    key,
                    field=key,
                )
            default = self.fields[key]
            if isinstance(default, list):
                if value not in default:
                    raise BuilderError(
                        f"must be one of {', '.join(map(str, default))}",
                        value,
                        field=key,
                    )
            elif isinstance(default, bool):
                if not isinstance(value, bool):
                    raise BuilderError("must be true or false", value, field=key)
            elif isinstance(value, (dict, list, bool)) or value is None:
                raise BuilderError("must be a text or a number", value, field=key)
            else:
                value = str(value)
            out[key] = value
        return out

    # -- counts -------------------------------------------------------------
    def iterations(self, loop: str) -> int | None:
        """How often a loop's body runs in all (``None``: not fixed by the file)."""
        total = 1
        name: str | None = loop
        while name is not None:
            n = self.loops[name].iterations
            if n is None:
                return None
            total *= n
            name = self.loops[name].parent
        return total

    @property
    def max_rows(self) -> int | None:
        """Most loop iterations the experiment runs (trials TSV rows), or ``None``."""
        counts = [self.iterations(name) for name in self.loops]
        return None if None in counts else sum(counts)

    def onsets(self, component: str) -> int | None:
        """Most times a component starts in one run (``None``: not fixed by the file).

        Counted from the flow: once per run of its routine, and a routine in
        loops runs once per iteration of all of them.
        """
        routine = self.components[component].routine
        total = 0
        for name, loops in self.flow:
            if name != routine:
                continue
            n = 1
            for loop in loops:
                if self.loops[loop].iterations is None:
                    return None
                n *= self.loops[loop].iterations
            total += n
        return total

    def onsets_per_row(self, component: str) -> int:
        """Most times a component starts in one loop iteration (or outside loops)."""
        routine = self.components[component].routine
        return sum(1 for name, _ in self.flow if name == routine)

    def in_loop(self, component: str) -> bool:
        """Whether the component's routine runs inside a loop (anywhere in the flow)."""
        routine = self.components[component].routine
        return any(loops for name, loops in self.flow if name == routine)

    @property
    def estimated_s(self) -> float:
        """A rough duration for the timeline: fixed routines at their length,
        others at 1 s, each as often as its loops run it (unfixed loops once)."""
        total = 0.0
        for name, loops in self.flow:
            n = 1
            for loop in loops:
                n *= self.loops[loop].iterations or 1
            total += n * self.routine_s.get(name, 1.0)
        return total

    def keyboards(self) -> list[Component]:
        """The keyboard components."""
        return [c for c in self.components.values() if c.type == "KeyboardComponent"]

    def condition_columns(self) -> list[str]:
        """The loops' conditions-file columns, in flow order (fixed files only)."""
        out: list[str] = []
        for loop in self.loops.values():
            out += [c for c in loop.columns if c not in out]
        return out

    def manual_components(self) -> list[Component]:
        """Response components the simulated participant cannot answer."""
        return [c for c in self.components.values() if c.type in MANUAL_COMPONENTS]


def _quiet():
    """PsychoPy's console at ERROR while a file is read (it warns about every
    setting written by a newer version), restored after."""
    from psychopy import logging as plogging

    level = plogging.console.level
    plogging.console.setLevel(plogging.ERROR)

    def restore() -> None:
        # PsychoPy writes its messages when flushed, at the level then.
        plogging.flush()
        plogging.console.setLevel(level)

    return restore


def _unsupported(kind: str, otherwise: str, **where) -> BuilderError:
    """The error for a routine or component stimtrain cannot run: the device
    it needs when that is the reason, else ``otherwise``."""
    need = DEVICE_NEEDS.get(kind)
    rule = f"needs {need}, which stimtrain does not provide" if need else otherwise
    return BuilderError(rule, kind, **where)


def _line_of(text: str, tag: str, name: str) -> tuple[int, int]:
    m = re.search(rf'<{re.escape(tag)}\b[^>]*\bname="{re.escape(name)}"', text)
    if m is None:
        return 0, 0
    line = text.count("\n", 0, m.start()) + 1
    return line, m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1


def read_experiment(path: str | Path, shown: str | None = None) -> BuilderExperiment:
    """Read a ``.psyexp`` file with PsychoPy's Builder model and check it.

    Parameters
    ----------
    path : str | Path
        The file.
    shown : str | None
        The file's name as messages should show it (default: ``path``).

    Returns
    -------
    experiment : BuilderExperiment
        With :attr:`~BuilderExperiment.problems` listing what stimtrain
        cannot run.

    Raises
    ------
    BuilderError
        When the file is missing, unreadable, not XML or not a Builder
        experiment (located in the file when the XML is broken).
    """
    path = Path(path)
    shown = shown or str(path)
    if not path.is_file():
        raise BuilderError("must name an existing .psyexp file", shown)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BuilderError(f"cannot be read ({exc.strerror})", shown) from None
    text = raw.decode("utf-8-sig", errors="replace")
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as exc:
        line, col = exc.position
        raise BuilderError(
            f"is not a readable Builder experiment: broken XML ({exc.msg})",
            path.name,
            file=shown,
            line=line,
            col=col + 1,
        ) from None
    if root.tag != "PsychoPy2experiment":
        raise BuilderError(
            "is not a Builder experiment (its root element must be "
            "<PsychoPy2experiment>)",
            root.tag,
            file=shown,
            line=1,
            col=1,
        )
    restore = _quiet()
    try:
        from psychopy import experiment

        exp = experiment.Experiment()
        try:
            exp.loadFromXML(str(path))
        except Exception as exc:  # noqa: BLE001 - any Builder failure is the file's
            raise BuilderError(
                f"PsychoPy cannot load it ({type(exc).__name__}: {exc})",
                path.name,
                file=shown,
                line=1,
                col=1,
            ) from None
        return _model(exp, path, shown, text, hashlib.sha256(raw).hexdigest())
    finally:
        restore()


def _info_fields(exp, shown: str, problems: list[BuilderError]) -> dict[str, Any]:
    try:
        info = exp.settings.getInfo(removePipeSyntax=True)
    except Exception as exc:  # noqa: BLE001 - a broken setting is the file's
        problems.append(
            BuilderError(
                f"the Experiment info setting cannot be read ({exc})",
                exp.settings.params["Experiment info"].val,
                file=shown,
                field="settings.Experiment info",
            )
        )
        return {}
    fields: dict[str, Any] = {}
    for key, param in info.items():
        val = getattr(param, "val", param)
        kind = getattr(param, "valType", None)
        if kind == "list":
            try:
                val = list(ast.literal_eval(str(val)))
            except (ValueError, SyntaxError):
                val = str(val)
        elif kind == "bool":
            val = str(val) == "True"
        fields[str(key)] = val
    return fields


def _model(exp, path: Path, shown: str, text: str, sha: str) -> BuilderExperiment:
    from psychopy.experiment.routines import BaseStandaloneRoutine

    from .loops import read_flow

    problems: list[BuilderError] = []
    fields = _info_fields(exp, shown, problems)
    tracker = str(exp.settings.params["eyetracker"].val)
    if tracker not in ("None", ""):
        line, col = _line_of(text, "Param", "eyetracker")
        problems.append(
            BuilderError(
                "needs an eye tracker, which stimtrain does not provide",
                tracker,
                file=shown,
                line=line,
                col=col,
                field="settings.eyetracker",
            )
        )
    components: dict[str, Component] = {}
    routine_s: dict[str, float] = {}
    for rname, routine in exp.routines.items():
        if isinstance(routine, BaseStandaloneRoutine):
            kind = type(routine).__name__
            line, col = _line_of(text, kind, rname)
            problems.append(
                _unsupported(
                    kind,
                    "is a standalone routine stimtrain cannot run",
                    file=shown,
                    line=line,
                    col=col,
                    field=f"routines.{rname}",
                )
            )
            continue
        try:
            seconds, fixed = routine.getMaxTime()
        except Exception:  # noqa: BLE001 - an estimate only
            seconds, fixed = 0.0, False
        if fixed and seconds:
            routine_s[rname] = float(seconds)
        for comp in routine:
            kind = type(comp).__name__
            name = str(comp.params["name"].val)
            if kind == "RoutineSettingsComponent":
                continue
            line, col = _line_of(text, kind, name)
            params = {k: str(p.val) for k, p in comp.params.items()}
            if params.get("disabled") == "True":
                continue
            components[name] = Component(name, kind, rname, params, line)
            if kind in SUPPORTED_COMPONENTS:
                continue
            problems.append(
                _unsupported(
                    kind,
                    "is not a component stimtrain runs (visual, keyboard, mouse "
                    "and code components only)",
                    file=shown,
                    line=line,
                    col=col,
                    field=f"routines.{rname}.{name}",
                )
            )
    loops, flow = read_flow(exp, path.parent)
    name = str(exp.settings.params["expName"].val or "") or path.stem
    return BuilderExperiment(
        path=path,
        name=name,
        sha256=sha,
        fields=fields,
        components=components,
        loops=loops,
        flow=flow,
        routine_s=routine_s,
        problems=problems,
    )
