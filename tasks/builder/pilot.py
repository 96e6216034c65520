"""``stimtrain task --builder FILE``: run one Builder experiment alone, to try it.

Like the pilot of a built-in task (:mod:`stimtrain.tasks.pilot`): a window
(on a virtual display with ``--simulated``), the keyboard or the simulated
participant, the trials TSV and the markers (JSON lines) in the output
folder, and PsychoPy's own data files in ``<stem>_data/data/`` beside them.
``--param`` sets the experiment's *Experiment info* fields, ``--trials`` ends
it after that many loop iterations, ``--seed`` seeds its loops.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def run_builder(args: argparse.Namespace) -> int:
    """Run a Builder experiment as a pilot block and print what it wrote.

    Parameters
    ----------
    args : argparse.Namespace
        From the ``task`` subcommand's parser, with ``builder`` set.

    Returns
    -------
    status : int
        0 when it ran to its end (or to ``--trials``), 1 when stopped early
        (escape), 2 for a problem found before the start.
    """
    from ..participant import SimulatedParticipant
    from ..pilot import format_measures, parse_params, pilot_window
    from .experiment import BuilderError, read_experiment
    from .run import check_runnable, run_builder_block

    try:
        experiment = read_experiment(args.builder)
        check_runnable(experiment, simulated=args.simulated)
        params = parse_params(args.param)
        experiment.exp_info(params)
        if args.trials is not None and args.trials < 1:
            raise ValueError(f"--trials must be >= 1, got {args.trials}")
    except BuilderError as exc:
        if exc.file is None:
            what = f"--param {exc.field}" if exc.field else "--builder"
            print(f"error: {what}: {exc.rule} (got {exc.value})", file=sys.stderr)
        else:
            print(exc.located(), file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{experiment.name}_{time.strftime('%Y%m%dT%H%M%S')}_{seed}"
    tsv_path = out / f"{stem}_trials.tsv"
    markers_path = out / f"{stem}_markers.jsonl"
    participant = SimulatedParticipant(seed=seed) if args.simulated else None
    with pilot_window(args, markers_path) as (win, emit):
        try:
            result = run_builder_block(
                win,
                experiment,
                params,
                tsv_path=tsv_path,
                data_dir=out / f"{stem}_data",
                emit=emit,
                seed=seed,
                participant=participant,
                max_trials=args.trials,
                defaults={"participant": "pilot"},
            )
        except Exception as exc:  # noqa: BLE001 - the experiment's own error
            print(f"error: the experiment stopped with {type(exc).__name__}: {exc}",
                  file=sys.stderr)  # fmt: skip
            print(f"trials:  {tsv_path}\nmarkers: {markers_path}", file=sys.stderr)
            return 1
    print(f"{experiment.name}: {len(result.results)} trials, seed {seed}")
    print(f"trials:  {tsv_path}")
    print(f"markers: {markers_path}")
    for path in result.data_files or []:
        print(f"data:    {path}")
    print(format_measures(result.measures))
    return 1 if result.stopped else 0
