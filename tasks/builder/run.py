"""Run a Builder experiment as a task block, in a given window, with PsychoPy's Session.

PsychoPy compiles and runs the experiment itself
(:class:`psychopy.session.Session`: ``addExperiment`` writes the script from
the ``.psyexp``, ``runExperiment`` runs it and saves its data), in the window
stimtrain gives it; :class:`~.hooks.Instrument` turns what the script does
into markers, TSV rows and TMS events. Around the run this module keeps the
rest of the process as it was:

- the experiment's folder is copied into a fresh temporary package (Session
  writes the compiled script and an ``__init__.py`` beside the ``.psyexp``,
  and imports it by a name that must be new to the process), so the
  experimenter's folder and PsychoPy's installed demos are never written to;
- loops without their own random seed get the block's, so a protocol's seed
  reproduces the trial order as it does for the built-in tasks;
- the experiment's *Experiment info* comes from
  ``Session.getExpInfoFromExperiment`` (PsychoPy adds fields such as the date
  there), with the block's parameters set into it;
- PsychoPy's device listener loop, which ``runExperiment`` pauses and never
  resumes, is resumed; the working directory (the script changes it), the
  window's colour, units and frame rate, PsychoPy's log clock and targets,
  ``sys.path`` and ``sys.modules`` are put back, and any stimulus the script
  left drawing is taken off the window;
- the experiment's own data files (its CSV, ``.psydat`` and log) land in
  ``data_dir`` (PsychoPy nests them in a ``data/`` folder there).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pylsl

from ..api import TSV_COLUMNS, TrialResult
from ..block import TaskBlockResult
from ..participant import SimulatedParticipant
from ..trials_tsv import _TrialsTSV
from .experiment import BuilderError, BuilderExperiment, _quiet, read_experiment
from .hooks import ComponentEvent, Instrument, StopRun
from .keys import SimulatedKeys

if TYPE_CHECKING:  # pragma: no cover
    from psychopy.visual import Window

logger = logging.getLogger("stimtrain.tasks.builder")


@dataclass
class BuilderBlockResult(TaskBlockResult):
    """A Builder block's outcome: a task block's, and where PsychoPy saved its data.

    Attributes
    ----------
    data_dir : Path | None
        The folder given to PsychoPy (its files are in ``data/`` there).
    data_files : list of Path
        The files PsychoPy wrote there.
    escaped : bool
        The experiment's own escape key ended it.
    """

    data_dir: Path | None = None
    data_files: list[Path] | None = None
    escaped: bool = False


def check_runnable(
    experiment: BuilderExperiment, *, simulated: bool
) -> BuilderExperiment:
    """Raise the first reason the experiment cannot run here.

    Parameters
    ----------
    experiment : BuilderExperiment
        A read experiment.
    simulated : bool
        The simulated participant will play (it answers keyboards only).

    Returns
    -------
    experiment : BuilderExperiment

    Raises
    ------
    BuilderError
        Located in the ``.psyexp``.
    """
    if experiment.problems:
        raise experiment.problems[0]
    if simulated:
        for comp in experiment.manual_components():
            raise BuilderError(
                "the simulated participant answers keyboard components only",
                comp.type,
                file=str(experiment.path),
                line=comp.line,
                col=1,
                field=f"routines.{comp.routine}.{comp.name}",
            )
    return experiment


def run_builder_block(
    win: Window,
    experiment: BuilderExperiment | str | Path,
    params: Mapping[str, Any] | None,
    *,
    tsv_path: Path | str,
    data_dir: Path | str,
    emit: Callable[..., None],
    block: int = 0,
    seed: int | None = None,
    participant: SimulatedParticipant | None = None,
    clock: Callable[[], float] = pylsl.local_clock,
    should_stop: Callable[[], bool] = lambda: False,
    on_event: Callable[[str, float, ComponentEvent], None] | None = None,
    between_trials: Callable[[int], bool] | None = None,
    max_trials: int | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> BuilderBlockResult:
    """Run a Builder experiment in ``win`` as one task block.

    Parameters
    ----------
    win : psychopy.visual.Window
        The session's window (the experiment's own window settings are
        applied to it for the run, then undone).
    experiment : BuilderExperiment | path
        The experiment, or its ``.psyexp`` file.
    params : mapping | None
        Values of the experiment's declared *Experiment info* fields.
    tsv_path : path-like
        The trials TSV to create (one row per loop iteration that showed
        something, written as each ends); never overwritten.
    data_dir : path-like
        A new folder for PsychoPy's own data files.
    emit : callable
        ``emit(event, timestamp, **fields)`` sends a marker: ``task_start``,
        ``component_onset``, ``component_offset``, ``stim_onset`` (an
        iteration's first onset), ``response`` and ``task_end``.
    block : int
        Block number, in every marker.
    seed : int | None
        Seed of the loops that have none of their own, and of the simulated
        participant (``None``: the loops stay as written).
    participant : SimulatedParticipant | None
        Who presses the keys; ``None``: the real keyboard.
    clock : callable
        The LSL clock.
    should_stop : callable
        Checked before every flip and at every iteration's end.
    on_event : callable | None
        ``on_event("<component>.started" | "<component>.stopped", t,
        ComponentEvent)`` from the flip callback, before the marker.
    between_trials : callable | None
        ``between_trials(rows_done)`` at every iteration's end (where a pause
        is held); returning False stops the block.
    max_trials : int | None
        End after this many rows (loop iterations): the block's ``trials``.
    defaults : mapping | None
        Values for declared fields the parameters leave out (the session's
        ``participant`` and ``session``); ignored for undeclared fields.

    Returns
    -------
    result : BuilderBlockResult

    Raises
    ------
    BuilderError
        Before anything is shown: the experiment cannot run here, or a
        parameter is not one it declares.
    FileExistsError
        If ``tsv_path`` or ``data_dir`` exists.
    Exception
        Whatever the experiment raised (after its data was saved).
    """
    if not isinstance(experiment, BuilderExperiment):
        experiment = read_experiment(experiment)
    check_runnable(experiment, simulated=participant is not None)
    values = {
        k: v for k, v in (defaults or {}).items() if k in experiment.fields
    } | experiment.exp_info(params)
    data_dir = Path(data_dir).absolute()
    data_dir.mkdir(parents=True, exist_ok=False)
    planned = _planned_rows(experiment, max_trials)
    columns = [c for c in experiment.condition_columns() if c not in (*TSV_COLUMNS,)]
    tsv = _TrialsTSV(Path(tsv_path), [*columns, "loop", "iteration"])
    keys = None
    if participant is not None:
        keys = SimulatedKeys(participant, experiment.name, clock)
    hooks = Instrument(
        experiment,
        win,
        tsv,
        emit,
        block=block,
        clock=clock,
        keys=keys,
        should_stop=should_stop,
        on_event=on_event,
        between_trials=between_trials,
        max_trials=max_trials,
    )
    emit(
        "task_start",
        clock(),
        block=block,
        task=experiment.name,
        n_trials=planned,
        seed=seed,
        level=None,
        builder=experiment.path.name,
    )
    started = time.perf_counter()
    reason = None
    try:
        with _Staged(experiment, seed) as staged:
            reason = staged.run(win, hooks, values, data_dir)
    finally:
        tsv.close()
    stopped = reason == "stopped" or hooks.escaped
    result = BuilderBlockResult(
        task=experiment.name,
        n_trials=planned if planned is not None else len(hooks.results),
        results=hooks.results,
        measures=measures(hooks.results),
        stopped=stopped,
        tsv_path=Path(tsv_path),
        params=values,
        data_dir=data_dir,
        data_files=sorted(p for p in data_dir.rglob("*") if p.is_file()),
        escaped=hooks.escaped,
    )
    emit(
        "task_end",
        clock(),
        block=block,
        task=experiment.name,
        trials_done=len(hooks.results),
        stopped=stopped,
        level=None,
    )
    logger.info(
        "Builder block %d (%s) %s after %d trials (%.1f s)",
        block,
        experiment.name,
        "stopped" if stopped else "finished",
        len(hooks.results),
        time.perf_counter() - started,
    )
    return result


def _planned_rows(experiment: BuilderExperiment, max_trials: int | None) -> int | None:
    rows = experiment.max_rows
    if max_trials is None:
        return rows
    return max_trials if rows is None else min(rows, max_trials)


class _Staged:
    """The experiment copied into a new package, and the process put back after."""

    def __init__(self, experiment: BuilderExperiment, seed: int | None) -> None:
        self.experiment = experiment
        self.seed = seed
        self.root = Path(tempfile.mkdtemp(prefix="stimtrain-builder-"))
        # A name no module of this process has: Session imports the script
        # as <package>.<stem>, and a second run must not get the first's.
        self.package = f"stimtrain_builder_{uuid.uuid4().hex[:12]}"

    def __enter__(self) -> _Staged:
        source = self.experiment.path.parent
        shutil.copytree(
            source,
            self.root / self.package,
            ignore=shutil.ignore_patterns("data", "__pycache__", "*.pyc", ".git"),
        )
        self.file = self.root / self.package / self.experiment.path.name
        if self.seed is not None:
            _seed_loops(self.file, self.seed)
        return self

    def __exit__(self, *exc) -> None:
        for name in [m for m in sys.modules if m.split(".")[0] == self.package]:
            del sys.modules[name]
        shutil.rmtree(self.root, ignore_errors=True)

    def run(self, win, hooks: Instrument, values: dict, data_dir: Path) -> str | None:
        """Compile and run the experiment; returns why it ended early, if it did."""
        from psychopy import logging as plogging
        from psychopy import session
        from psychopy.data.utils import parsePipeSyntax
        from psychopy.hardware.listener import loop as listener

        cwd = os.getcwd()
        path_before = list(sys.path)
        clock_before = plogging.defaultClock
        drawn_before = list(getattr(win, "_toDraw", []))
        window = {
            name: getattr(win, name, None)
            for name in ("color", "colorSpace", "units", "_monitorFrameRate")
        }
        listening = getattr(listener, "_active", False)
        if win._monitorFrameRate is None:
            # The script measures the frame rate otherwise (slow, and
            # meaningless without a refresh); the runner's is known.
            win._monitorFrameRate = 1.0 / hooks.period
        key = self.experiment.name
        thisSession = None
        # PsychoPy warns about every setting a newer Builder wrote, and the
        # script sets the console's level: errors only here, as before after.
        restore_console = _quiet()
        try:
            thisSession = session.Session(
                root=str(self.root), dataDir=str(data_dir), win=win, restMsg=""
            )
            thisSession.addExperiment(str(self.file), key=key)
            exp_info = thisSession.getExpInfoFromExperiment(key)
            for name in list(exp_info):
                plain, _ = parsePipeSyntax(name)
                if plain in values:
                    exp_info[name] = values[plain]
                elif isinstance(exp_info[name], (list, tuple)):
                    # Builder's dialog would show the first choice.
                    exp_info[name] = exp_info[name][0] if exp_info[name] else ""
            hooks.install(thisSession.experiments[key])
            try:
                thisSession.runExperiment(key, expInfo=exp_info)
            except StopRun as stop:
                return stop.reason
            finally:
                hooks.finish()
                hooks.uninstall()
                if hooks.this_exp is not None:
                    # Saved already: not again when the handler is collected.
                    hooks.this_exp.abort()
            return None
        finally:
            plogging.flush()
            restore_console()
            if listening:
                listener.resume()
            os.chdir(cwd)
            sys.path[:] = path_before
            plogging.setDefaultClock(clock_before)
            if thisSession is not None:
                plogging.root.removeTarget(thisSession.logFile)
                thisSession.logFile.logger.flush()
            win.hideMessage()
            for stim in list(getattr(win, "_toDraw", [])):
                if stim not in drawn_before:
                    stim.setAutoDraw(False)
            for name, value in window.items():
                if value is not None or name == "_monitorFrameRate":
                    try:
                        setattr(win, name, value)
                    except Exception:  # noqa: BLE001 - a best-effort restore
                        logger.debug("Window %s not restored", name)


def _seed_loops(file: Path, seed: int) -> None:
    """Give every loop without a random seed of its own the block's seed."""
    from psychopy import experiment

    restore = _quiet()
    try:
        exp = experiment.Experiment()
        exp.loadFromXML(str(file))
    finally:
        restore()
    changed = False
    for element in exp.flow:
        loop = getattr(element, "loop", None)
        if type(element).__name__ != "LoopInitiator" or loop is None:
            continue
        param = loop.params.get("random seed")
        if param is not None and str(param.val).strip() == "":
            param.val = str(int(seed))
            changed = True
    if changed:
        exp.saveToXML(str(file))


def measures(results: list[TrialResult]) -> dict[str, Any]:
    """A Builder block's generic measures: trials, responses, accuracy, mean RT.

    Parameters
    ----------
    results : list of TrialResult
        The rows written.

    Returns
    -------
    measures : dict
        ``trials``, ``responses``, ``accuracy`` (over scored rows) and
        ``rt_ms`` (mean over responses); ``nan`` where undefined.
    """
    scored = [r.correct for r in results if r.correct is not None]
    rts = [r.rt for r in results if r.rt is not None]
    return {
        "trials": len(results),
        "responses": sum(1 for r in results if r.key is not None),
        "accuracy": sum(scored) / len(scored) if scored else math.nan,
        "rt_ms": 1000.0 * sum(rts) / len(rts) if rts else math.nan,
    }
