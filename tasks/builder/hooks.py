"""What stimtrain sees of a running Builder experiment: its onsets, keys and rows.

A Builder script starts and stops every component through the window's
``timeOnFlip``, reads keys through each keyboard component's ``getKeys``, and
ends every loop iteration (and each routine outside a loop) with the
experiment handler's ``nextEntry``. For one run, :class:`Instrument` puts its
own callable in front of each of these on the objects the script uses, always
calling PsychoPy's own as well, so the script runs unchanged:

- each component start (``timeOnFlip``) and stop adds a flip callback that
  reads the LSL clock right after the flip, tells the TMS hook, and sends a
  ``component_onset`` or ``component_offset`` marker (an iteration's first
  onset also a ``stim_onset``). A stop is seen where the script records it:
  a timed stop through the handler's ``timestampOnFlip('<name>.stopped')``,
  and the components still shown when their routine ends (a key ended it)
  through its ``addData('<routine>.stopped')``; either way the component
  leaves the screen on the next flip, which is the one stamped;
- each key a keyboard component accepts is a ``response`` marker at its
  key-down time: the component's onset plus its RT, measured from the clock
  PsychoPy resets on that same flip;
- each loop iteration that showed something is a trials-TSV row, written as
  it ends; there the operator's pause is held and a stop takes effect (a stop
  also ends the current frame before its flip);
- flips are paced on the frame grid when the display has no refresh (Xvfb).

Longer than most: every hook reads and writes the same run's state (where
the flow is, the components on screen, the keys seen, the rows written), so
they are one object; the parts that need none of it live beside it (keys.py,
loops.py, experiment.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..api import TSV_COLUMNS, Trial, TrialResult
from ..frames import frame_info
from ..trials_tsv import _TrialsTSV
from .experiment import BuilderExperiment, Component
from .keys import ANY_KEY, PlannedPress, SimulatedKeys, correct_answer

#: Components that make no object in the script (Builder does not list them
#: among a routine's components).
NO_OBJECT = frozenset({"CodeComponent", "StaticComponent", "VariableComponent"})


#: What a loop adds to its current row besides the conditions.
LOOP_COUNTERS = frozenset({"thisN", "thisTrialN", "thisRepN", "thisIndex"})


class StopRun(Exception):  # noqa: N818 - a signal, not an error
    """Ends a Builder run from inside it (PsychoPy saves its data, then re-raises)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ComponentEvent:
    """What the TMS hook learns of a component's start or stop.

    Attributes
    ----------
    index : int | None
        The trial (trials-TSV row) it belongs to; ``None`` outside loops.
    condition : str
        The iteration's condition (see :meth:`Instrument.condition`).
    component, routine : str
        Its names.
    ordinal : int
        How many times this component started before in the run.
    """

    index: int | None
    condition: str
    component: str
    routine: str
    ordinal: int


@dataclass
class _Where:
    """Where the flow was when a component was started or stopped."""

    routine: str | None
    loop: str | None
    iteration: int | None
    trial: int | None
    condition: str
    row: dict = field(default_factory=dict)


@dataclass
class _Keyboard:
    """One keyboard component's current start."""

    component: Component | None
    obj: Any = None
    onset: float | None = None
    where: _Where | None = None
    press: PlannedPress | None = None
    planned: bool = False
    seen: set = field(default_factory=set)


class Instrument:
    """The hooks of one Builder run (see the module's docstring).

    Parameters
    ----------
    experiment : BuilderExperiment
        The checked experiment.
    win : psychopy.visual.Window
        The session's window.
    tsv : _TrialsTSV
        The trials file.
    emit : callable
        ``emit(event, timestamp, **fields)`` sends a marker.
    block : int
        Block number, in every marker.
    clock : callable
        The LSL clock.
    keys : SimulatedKeys | None
        The simulated participant, or ``None`` for the real keyboard.
    should_stop : callable
        Checked before every flip and at every iteration's end.
    on_event : callable | None
        ``on_event(event, t, ComponentEvent)`` with ``"<component>.started"``
        or ``"<component>.stopped"``, from the flip callback.
    between_trials : callable | None
        ``between_trials(rows_done)`` at every iteration's end; False stops.
    max_trials : int | None
        End the run after this many rows (the block's ``trials``).
    """

    def __init__(
        self,
        experiment: BuilderExperiment,
        win,
        tsv: _TrialsTSV,
        emit: Callable[..., None],
        *,
        block: int,
        clock: Callable[[], float],
        keys: SimulatedKeys | None,
        should_stop: Callable[[], bool],
        on_event: Callable[[str, float, ComponentEvent], None] | None,
        between_trials: Callable[[int], bool] | None,
        max_trials: int | None,
    ) -> None:
        self.experiment = experiment
        self.task = experiment.name
        self.win = win
        self.tsv = tsv
        self.emit = emit
        self.block = block
        self.clock = clock
        self.keys = keys
        self.should_stop = should_stop
        self.on_event = on_event
        self.between_trials = between_trials
        self.max_trials = max_trials
        self.module: Any = None
        self.this_exp: Any = None
        #: Onsets no longer count: the run is ending.
        self.stopping = False
        #: Builder's own escape (or Session.stopExperiment) ended the run.
        self.escaped = False
        self.results: list[TrialResult] = []
        self.onset_counts: dict[str, int] = {}
        self._keyboards: dict[int, _Keyboard] = {}
        self._onsets: list[tuple[str, float, _Keyboard | None]] = []
        #: Components started and not yet stopped: name -> where it started.
        self._showing: dict[str, _Where] = {}
        self._responses: list[dict] = []
        self._in_boundary = False
        self._saved: dict[str, Any] = {}
        self.period, self.paced = frame_info(win)
        self._next_flip: float | None = None

    # -- installing ------------------------------------------------------------
    def install(self, module) -> None:
        """Put the hooks in front of the window's and the script's functions."""
        self.module = module
        win = self.win
        self._saved = {
            "timeOnFlip": win.timeOnFlip,
            "flip": win.flip,
            "setupData": module.setupData,
            "endExperiment": module.endExperiment,
            "saveData": module.saveData,
        }
        win.timeOnFlip = self._time_on_flip
        win.flip = self._flip
        module.setupData = self._setup_data
        module.endExperiment = self._end_experiment
        module.saveData = self._save_data

    def uninstall(self) -> None:
        """Give the window and the script their own functions back."""
        for name in ("timeOnFlip", "flip"):
            self.win.__dict__.pop(name, None)
        if self.module is not None and self._saved:
            self.module.setupData = self._saved["setupData"]
            self.module.endExperiment = self._saved["endExperiment"]
            self.module.saveData = self._saved["saveData"]
        for state in self._keyboards.values():
            state.obj.__dict__.pop("getKeys", None)

    def _setup_data(self, *args, **kwargs):
        this_exp = self._saved["setupData"](*args, **kwargs)
        self.this_exp = this_exp
        original = this_exp.nextEntry

        def next_entry() -> None:
            self._end_of_entry()
            original()
            self._boundary()

        timestamp_on_flip = this_exp.timestampOnFlip
        add_data = this_exp.addData

        def timestamp(win, name, *args, **kwargs):
            timestamp_on_flip(win, name, *args, **kwargs)
            component, _, what = str(name).rpartition(".")
            if what == "stopped":
                self._stopped(component)

        def data(name, *args, **kwargs):
            add_data(name, *args, **kwargs)
            routine, _, what = str(name).rpartition(".")
            if what == "stopped":
                for component, where in list(self._showing.items()):
                    if where.routine == routine:
                        self._stopped(component)

        this_exp.nextEntry = next_entry
        this_exp.timestampOnFlip = timestamp
        this_exp.addData = data
        return this_exp

    def _save_data(self, this_exp, *args, **kwargs):
        # The handler is pickled into the .psydat file: without our hooks.
        for name in ("nextEntry", "timestampOnFlip", "addData"):
            this_exp.__dict__.pop(name, None)
        return self._saved["saveData"](this_exp, *args, **kwargs)

    def _end_experiment(self, this_exp, *args, **kwargs):
        from psychopy import logging as plogging
        from psychopy.constants import FINISHED

        # PsychoPy writes its log when flushed, at the console's level then;
        # the script sets it to WARNING just before: flush while it is quiet.
        plogging.flush()
        if this_exp.status == FINISHED:
            # Escape (or a stop request) set it before the script ends the run;
            # the final flip then shows nothing new.
            self.escaped = True
            self.stopping = True
        return self._saved["endExperiment"](this_exp, *args, **kwargs)

    # -- the flow ----------------------------------------------------------------
    def _where(self) -> _Where:
        exp = self.this_exp
        routine = getattr(getattr(exp, "currentRoutine", None), "name", None)
        loop = None if exp is None else exp.currentLoop
        if loop is None or loop is exp:
            return _Where(routine, None, None, None, "")
        row = getattr(loop, "thisTrial", None)
        name = str(getattr(loop, "name", "loop"))
        known = self.experiment.loops.get(name)
        columns = known.columns if known is not None else ()
        # The row's conditions only (the loop adds its counters and data to
        # it), as plain values (a conditions file gives numpy numbers).
        row = {
            str(k): v.item() if hasattr(v, "item") else v
            for k, v in (row.items() if isinstance(row, dict) else ())
            if (str(k) in columns if columns else "." not in str(k))
            and str(k) not in LOOP_COUNTERS
        }
        iteration = getattr(loop, "thisN", getattr(loop, "thisTrialN", None))
        return _Where(
            routine, name, iteration, len(self.results), self.condition(name, row), row
        )

    @staticmethod
    def condition(loop: str, row: dict) -> str:
        """An iteration's condition: its conditions file's ``condition`` column,
        else the loop's name."""
        value = row.get("condition")
        return loop if value is None else str(value)

    def _time_on_flip(self, obj, attrib, format=float):  # noqa: A002 - PsychoPy's name
        self._saved["timeOnFlip"](obj, attrib, format)
        if isinstance(obj, dict) or attrib not in ("tStartRefresh", "tStopRefresh"):
            return
        name = self._name_of(obj)
        if name is None:
            return
        if attrib == "tStopRefresh":
            self._stopped(name)
            return
        where = self._where()
        self._showing[name] = where
        keyboard = self._keyboard(obj, name)
        self.win.callOnFlip(self._stamp, name, True, where, keyboard)

    def _stopped(self, name: str) -> None:
        """A shown component stops: its offset is the next flip (once per start)."""
        where = self._showing.pop(name, None)
        if where is not None:
            self.win.callOnFlip(self._stamp, name, False, where, None)

    def _name_of(self, obj) -> str | None:
        """A component's name: its object's, or (keyboards have none) its place
        among the routine's objects, which Builder lists in the routine's order."""
        name = getattr(obj, "name", None)
        if isinstance(name, str):
            return name
        routine = getattr(self.this_exp, "currentRoutine", None)
        objects = list(getattr(routine, "components", None) or ())
        if routine is None or not any(o is obj for o in objects):
            return None
        comps = [
            c
            for c in self.experiment.components.values()
            if c.routine == routine.name and c.type not in NO_OBJECT
        ]
        same = [c for c in comps if c.type == "KeyboardComponent"]
        mine = [o for o in objects if type(o) is type(obj)]
        if len(comps) == len(objects):
            return comps[next(i for i, o in enumerate(objects) if o is obj)].name
        if len(same) == len(mine):
            return same[next(i for i, o in enumerate(mine) if o is obj)].name
        return None

    def _keyboard(self, obj, name: str) -> _Keyboard | None:
        from psychopy.hardware.keyboard import Keyboard

        if not isinstance(obj, Keyboard):
            return None
        state = self._keyboards.get(id(obj))
        if state is None:
            state = _Keyboard(self.experiment.components.get(name), obj)
            self._keyboards[id(obj)] = state
            original = obj.getKeys

            def get_keys(keyList=None, ignoreKeys=None, waitRelease=True, clear=True):  # noqa: N803
                self._before_keys(obj, state, keyList, ignoreKeys, waitRelease)
                keys = original(
                    keyList=keyList,
                    ignoreKeys=ignoreKeys,
                    waitRelease=waitRelease,
                    clear=clear,
                )
                for key in keys:
                    self._response(state, key)
                return keys

            obj.getKeys = get_keys
        # A new start: nothing seen or planned yet.
        state.onset = None
        state.press = None
        state.planned = False
        state.seen = set()
        return state

    def _stamp(self, name: str, started: bool, where: _Where, keyboard) -> None:
        """Flip callback: the component appeared (or went) on this flip."""
        t = self.clock()
        if not started:
            if self.on_event is not None and not self.stopping:
                self.on_event(f"{name}.stopped", t, self._event(name, where, -1))
            self._marker("component_offset", t, name, where)
            return
        if self.stopping:
            return
        ordinal = self.onset_counts.get(name, 0)
        self.onset_counts[name] = ordinal + 1
        if keyboard is not None:
            keyboard.onset = t
            keyboard.where = where
        first = where.loop is not None and not self._onsets
        self._onsets.append((name, t, keyboard))
        if self.on_event is not None:
            self.on_event(f"{name}.started", t, self._event(name, where, ordinal))
        if first:
            self.emit(
                "stim_onset",
                t,
                block=self.block,
                task=self.task,
                trial=where.trial,
                condition=where.condition,
                loop=where.loop,
                iteration=where.iteration,
            )
        self._marker("component_onset", t, name, where)

    def _event(self, name: str, where: _Where, ordinal: int) -> ComponentEvent:
        return ComponentEvent(
            index=where.trial,
            condition=where.condition,
            component=name,
            routine=where.routine or "",
            ordinal=ordinal,
        )

    def _marker(self, event: str, t: float, name: str, where: _Where) -> None:
        self.emit(
            event,
            t,
            block=self.block,
            task=self.task,
            routine=where.routine,
            component=name,
            loop=where.loop,
            iteration=where.iteration,
            trial=where.trial,
        )

    # -- keys --------------------------------------------------------------------
    def answer(self, component: Component | None) -> tuple[bool, str | None]:
        """Whether a keyboard scores its key, and its correct answer now."""
        return correct_answer(component, vars(self.module))

    def _before_keys(self, kb, state: _Keyboard, key_list, ignore, wait_release):
        if self.keys is None or state.onset is None:
            return
        if not state.planned:
            state.planned = True
            keys = [k for k in (key_list or [ANY_KEY]) if k not in (ignore or ())]
            keys = [str(k) for k in keys] or [ANY_KEY]
            scores, answer = self.answer(state.component)
            correct = answer if scores else keys[0]
            where = state.where
            trial = Trial(
                index=where.trial if where.trial is not None else -1,
                condition=where.condition,
                stimulus={"text": ""},
                correct_key=correct,
            )
            stop = state.component.params.get("stopVal", "") if state.component else ""
            state.press = self.keys.plan(
                trial, state.onset, keys, waits=not str(stop).strip()
            )
        if state.press is not None:
            self.keys.step(kb.device, state.press, release=bool(wait_release))

    def _response(self, state: _Keyboard, key) -> None:
        if state.onset is None or id(key) in state.seen or key.rt is None:
            return
        state.seen.add(id(key))
        rt = float(key.rt)
        t = state.onset + rt
        scores, answer = self.answer(state.component)
        correct = (str(key.name) == answer) if scores else None
        where = state.where
        name = state.component.name if state.component else None
        self.emit(
            "response",
            t,
            block=self.block,
            task=self.task,
            trial=where.trial,
            key=str(key.name),
            rt=rt,
            correct=correct,
            component=name,
            routine=where.routine,
        )
        self._responses.append(
            {"state": state, "key": str(key.name), "rt": rt, "correct": correct}
        )

    # -- iterations ----------------------------------------------------------------
    def _end_of_entry(self) -> None:
        """An iteration (or a routine outside loops) ended: its row, if it showed
        something inside a loop."""
        where = self._where()
        onsets, responses = self._onsets, self._responses
        self._onsets, self._responses = [], []
        if where.loop is None or not onsets:
            return
        boards = [kb for _, _, kb in onsets if kb is not None]
        key = rt = None
        if responses:
            last = responses[-1]
            board = last["state"]
            key, rt, correct = last["key"], last["rt"], last["correct"]
            onset = board.onset
            scores, answer = self.answer(board.component)
        elif boards:
            board = boards[-1]
            onset = board.onset
            scores, answer = self.answer(board.component)
            correct = (answer is None) if scores else None
        else:
            onset, scores, answer, correct = onsets[0][1], False, None, None
        row = where.row
        stimulus = " ".join(f"{k}={v}" for k, v in row.items())
        trial = Trial(
            index=len(self.results),
            condition=where.condition,
            stimulus={"text": stimulus},
            correct_key=answer,
        )
        result = TrialResult(
            trial,
            onset,
            key,
            rt,
            correct,
            {"loop": where.loop, "iteration": where.iteration},
        )
        self.results.append(result)
        extras = {k: v for k, v in row.items() if k not in TSV_COLUMNS}
        self.tsv.row(
            result, {**extras, "loop": where.loop, "iteration": where.iteration}
        )

    def _boundary(self) -> None:
        """Between iterations: the cap on trials, the operator's pause, a stop."""
        done = len(self.results)
        if self.max_trials is not None and done >= self.max_trials:
            self._end_now("trials")
        self._in_boundary = True
        try:
            go_on = self.between_trials is None or self.between_trials(done)
        finally:
            self._in_boundary = False
        if not go_on or self.should_stop():
            self._end_now("stopped")

    def _end_now(self, reason: str):
        """End the run at an iteration's end: clear the screen first, so what the
        routine showed goes (and its offsets are stamped) now, not after
        PsychoPy has saved its files.

        The flip comes before ``stopping``: those offsets are the last
        iteration's own, so online TMS locked to a stop still hears of them (a
        stop request is checked there again, and then gives no pulse).
        """
        self._saved["flip"]()
        self.stopping = True
        raise StopRun(reason)

    # -- frames --------------------------------------------------------------------
    def _flip(self, clearBuffer=True):  # noqa: N803 - PsychoPy's name
        if not self.stopping and not self._in_boundary and self.should_stop():
            # Before the flip: what this frame would have started never shows.
            self.stopping = True
            raise StopRun("stopped")
        if self.paced:
            now = time.perf_counter()
            if self._next_flip is None or now > self._next_flip + self.period:
                self._next_flip = now
            delay = self._next_flip - now
            if delay > 0:
                time.sleep(delay)
            self._next_flip += self.period
        return self._saved["flip"](clearBuffer=clearBuffer)

    def finish(self) -> None:
        """After the run: no more markers; flush the window's pending callbacks."""
        self.stopping = True
        self.win.flip()
