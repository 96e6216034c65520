"""``stimtrain task NAME``: run one block of one task alone, to try it.

Opens a window (on a virtual display when there is no ``DISPLAY`` or with
``--simulated``), runs one block with the keyboard or the simulated
participant, writes the trials TSV and the markers (JSON lines, one per
marker, as they would go on the LSL stream) to the output folder, and prints
the task's measures. ``--levels FILE`` starts an adaptive task at the level
saved there and saves the level reached.

``--builder FILE`` runs a PsychoPy Builder experiment the same way
(:mod:`~stimtrain.tasks.builder.pilot`).

Also runnable as ``python -m stimtrain.tasks.pilot NAME ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger("stimtrain.tasks.pilot")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the pilot's arguments to a (sub)parser.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The ``task`` subcommand's parser.
    """
    parser.add_argument("name", nargs="?", help="task name (or --builder FILE)")
    parser.add_argument(
        "--builder",
        metavar="FILE",
        help="run a PsychoPy Builder experiment (.psyexp) instead of a task; "
        "--param sets its Experiment info fields, --trials caps its loop iterations",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="task parameter; VALUE is read as YAML (0.5, true, [a, b]); repeatable",
    )
    parser.add_argument(
        "--simulated",
        action="store_true",
        help="let the simulated participant play, on a virtual display",
    )
    parser.add_argument(
        "--trials", type=int, help="number of trials (default: the task's canonical)"
    )
    parser.add_argument(
        "--out", default=".", metavar="DIR", help="folder for the TSV (default: .)"
    )
    parser.add_argument("--seed", type=int, help="trial-order seed (default: random)")
    parser.add_argument("--level", type=float, help="start level of an adaptive task")
    parser.add_argument(
        "--levels",
        metavar="FILE",
        help="participant levels file: start from it and save the level reached",
    )
    parser.add_argument(
        "--instructions",
        type=float,
        metavar="SECONDS",
        help="show the instructions this long first (default: 5, 0 if simulated)",
    )
    parser.add_argument(
        "--practice", type=int, default=0, metavar="N", help="practice trials first"
    )
    parser.add_argument("--fullscreen", action="store_true", help="full-screen window")


def parse_params(items: list[str]) -> dict[str, Any]:
    """Parse ``KEY=VALUE`` items, reading each value as YAML.

    Parameters
    ----------
    items : list of str
        E.g. ``["deadline_s=1.0", "keys=[f, j]"]``.

    Returns
    -------
    params : dict

    Raises
    ------
    ValueError
        For an item without ``=`` or a value that is not YAML.
    """
    import yaml

    params: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param must be KEY=VALUE, got {item!r}")
        try:
            params[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(
                f"--param {key}: value is not valid YAML ({exc})"
            ) from None
    return params


def run(args: argparse.Namespace) -> int:
    """Run one pilot block and print its measures.

    Parameters
    ----------
    args : argparse.Namespace
        From a parser set up by :func:`add_arguments`.

    Returns
    -------
    status : int
        0 on success, 1 if the block was stopped early, 2 for bad arguments.
    """
    from .levels import load_levels, record_level
    from .params import TaskParamError
    from .registry import get_task

    if (args.name is None) == (args.builder is None):
        print(
            "error: name a task or give --builder FILE (one of them)", file=sys.stderr
        )
        return 2
    if args.builder is not None:
        from .builder.pilot import run_builder

        return run_builder(args)
    try:
        task = get_task(args.name)
        params = task.validate_params(parse_params(args.param))
        if args.trials is not None and args.trials < 1:
            raise ValueError(f"--trials must be >= 1, got {args.trials}")
        if args.practice < 0:
            raise ValueError(f"--practice must be >= 0, got {args.practice}")
        start_level = args.level
        if start_level is None and args.levels:
            start_level = load_levels(args.levels).get(task.name)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    except TaskParamError as exc:
        print(f"error: --param {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n_trials = args.trials or task.default_n_trials(params)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{task.name}_{time.strftime('%Y%m%dT%H%M%S')}_{seed}"
    tsv_path = out / f"{stem}_trials.tsv"
    markers_path = out / f"{stem}_markers.jsonl"
    instructions_s = args.instructions
    if instructions_s is None:
        instructions_s = 0.0 if args.simulated else 5.0

    result = _run_block(
        args, task, params, n_trials, seed, tsv_path, markers_path, start_level,
        instructions_s,
    )  # fmt: skip
    print(f"{task.name}: {len(result.results)} of {n_trials} trials, seed {seed}")
    print(f"trials:  {tsv_path}")
    print(f"markers: {markers_path}")
    if result.level is not None:
        print(f"level:   {result.start_level} -> {result.level}")
    print(format_measures(result.measures))
    if args.levels and result.level is not None and not result.stopped:
        record_level(args.levels, task.name, result.level)
        print(f"saved level {result.level} to {args.levels}")
    return 1 if result.stopped else 0


@contextlib.contextmanager
def pilot_window(args: argparse.Namespace, markers_path: Path):
    """A pilot's window and marker writer: yields ``(win, emit)``.

    The window opens on a virtual display with ``--simulated`` (or when there
    is no display) and closes on the way out; ``emit`` writes each marker as
    one JSON line to ``markers_path`` (a new file).
    """
    from .display import open_window, virtual_display

    with (
        open(markers_path, "x", encoding="utf-8") as markers,
        virtual_display(force=args.simulated),
    ):

        def emit(event: str, timestamp: float, **fields: Any) -> None:
            markers.write(
                json.dumps({"event": event, "timestamp": timestamp, **fields}) + "\n"
            )

        win = open_window(fullscr=args.fullscreen)
        try:
            yield win, emit
        finally:
            win.close()


def _run_block(
    args, task, params, n_trials, seed, tsv_path, markers_path, start_level, instr_s
):
    from .participant import SimulatedParticipant
    from .runner import run_task_block

    participant = SimulatedParticipant(seed=seed) if args.simulated else None
    with pilot_window(args, markers_path) as (win, emit):
        return run_task_block(
            win,
            task,
            params,
            n_trials=n_trials,
            seed=seed,
            tsv_path=tsv_path,
            emit=emit,
            participant=participant,
            start_level=start_level,
            instructions_s=instr_s,
            practice_trials=args.practice,
        )


def format_measures(measures: dict[str, Any]) -> str:
    """Return measures as aligned ``name  value`` lines.

    Parameters
    ----------
    measures : dict

    Returns
    -------
    text : str
    """
    width = max((len(k) for k in measures), default=0)
    lines = []
    for key, value in measures.items():
        if isinstance(value, float):
            text = "n/a" if math.isnan(value) else f"{value:.4g}"
        else:
            text = str(value)
        lines.append(f"  {key:<{width}}  {text}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the pilot as its own program (``python -m stimtrain.tasks.pilot``)."""
    parser = argparse.ArgumentParser(prog="stimtrain task", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
