"""The ``stimtrain`` command line: validate, plan, run, analyze, demo, sim.

It sits above the rooms (it is the one module that imports both the
orchestrator and the analysis), in the shared layer at the package root.

Longer than most because it is the whole command line (every subcommand's
options and exit codes), a contract scripts depend on, kept in one place.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import warnings
from pathlib import Path

from stimtrain.orchestrator.language.errors import ProtocolError
from stimtrain.orchestrator.session.lslconfig import use_local_lsl


def _say(text: str) -> None:
    # Progress goes to stderr so that stdout's last line is the result path.
    print(text, file=sys.stderr, flush=True)


def _add_check_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--rig",
        help="'sim', 'sim-<model>' or a rig YAML file (default: the protocol's rig, "
        "else 'sim')",
    )
    # Thresholds are read as text and checked by load_thresholds, so that a bad
    # value is reported like any other problem (exit 1), not by argparse.
    p.add_argument("--rmt", metavar="N", help="resting motor threshold, 1-100 %%MSO")
    p.add_argument("--amt", metavar="N", help="active motor threshold, 1-100 %%MSO")
    p.add_argument(
        "--thresholds",
        metavar="FILE",
        help="the participant's thresholds file (--rmt/--amt/--phase-offset "
        "override it)",
    )
    p.add_argument(
        "--phase-offset",
        metavar="DEG",
        help="the participant's phase offset, -180 to 180 degrees, for blocks "
        "with phase_offset: calibrated (used whatever their estimator)",
    )
    p.add_argument(
        "--limits", help="a lab safety limits file (default: shipped limits)"
    )


def _thresholds(args, *, record: bool = False):
    """The thresholds of --thresholds/--rmt/--amt; ProtocolError when invalid."""
    from stimtrain.orchestrator.language.thresholds import load_thresholds

    thresholds, source = load_thresholds(
        args.thresholds,
        rmt=args.rmt,
        amt=args.amt,
        participant=getattr(args, "participant", None),
        phase_offset=getattr(args, "phase_offset", None),
    )
    return (thresholds, source) if record else thresholds


def _print_problems(exc: ProtocolError) -> int:
    for problem in exc.problems:
        print(problem)
    return 1


def cmd_validate(args) -> int:
    """Validate protocol files; one line per problem."""
    from stimtrain.orchestrator.safety.checking import check_file

    try:
        thresholds = _thresholds(args)
    except ProtocolError as exc:
        return _print_problems(exc)
    status = 0
    for path in args.files:
        try:
            check_file(
                path,
                rig=args.rig,
                thresholds=thresholds,
                limits=args.limits,
                participant=args.participant,
            )
        except ProtocolError as exc:
            status = _print_problems(exc)
        else:
            if not args.quiet:
                print(f"{path}: ok")
    return status


def cmd_plan(args) -> int:
    """Print the timeline and safety margins of a protocol."""
    from stimtrain.orchestrator.safety.checking import check_file

    try:
        checked = check_file(
            args.file,
            rig=args.rig,
            thresholds=_thresholds(args),
            limits=args.limits,
            participant=args.participant,
        )
    except ProtocolError as exc:
        return _print_problems(exc)
    plan = checked.plan
    if args.json:
        print(plan.to_json(offsets=False))
        return 0
    from rich.console import Console
    from rich.table import Table

    from stimtrain.orchestrator.language.units import format_time

    console = Console()
    table = Table(title=f"{plan.protocol} ({plan.protocol_file})")
    for col in (
        "#",
        "block",
        "type",
        "start",
        "duration",
        "pulses",
        "intensity",
        "via",
    ):
        table.add_column(col)
    for b in plan.blocks:
        intensity = ""
        if b.intensity:
            intensity = b.intensity
            if b.power is not None and not b.intensity.endswith("%MSO"):
                intensity += f" → {b.power} %MSO"
        if b.conditioning:
            cond = b.conditioning
            if b.conditioning_power is not None and not cond.endswith("%MSO"):
                cond += f" → {b.conditioning_power} %MSO"
            intensity = f"{cond}, then {intensity} after {b.isi_s * 1e3:g} ms"
        if b.online:
            intensity += f"\n{b.online}"
        if b.trigger:
            # The run decides the times: judged as every pulse at the minimum.
            intensity += (
                f"\ntriggered: {b.trigger}\nworst case: {b.pulses} pulses "
                f"{b.min_interval_s or 0:g} s apart"
            )
        table.add_row(
            str(b.index + 1),
            b.label,
            b.type
            + (f" ({b.pattern})" if b.pattern else f" ({b.task})" if b.task else ""),
            format_time(b.start_s),
            format_time(b.duration_s),
            (f"≤{b.pulses}" if b.online or b.trigger else str(b.pulses))
            if b.pulses
            else "",
            intensity,
            b.delivery or "",
        )
    console.print(table)
    console.print(
        f"total: {format_time(plan.total_duration_s)}, {plan.total_pulses} pulses"
        + (f" (+{plan.delivered_today} earlier today)" if plan.delivered_today else "")
    )
    for line in plan.order:
        console.print(f"block order: {line}")
    for note in plan.limits_justifications:
        console.print(f"[bold]lab limit loosened[/bold] ({plan.limits_file}): {note}")
    trains = Table(title="trains found in the planned pulses (worst-case timing)")
    for col in ("trains", "block", "kind", "pulses", "rate", "duration", "strongest"):
        trains.add_column(col)
    for numbers, t in _grouped(
        plan.trains,
        lambda t: (
            t["block"],
            t["kind"],
            t["pulses"],
            round(t["frequency_hz"], 6),
            round(t["duration_s"], 6),
            t["pct_rmt"],
            t["pct_amt"],
            t["power"],
        ),
        "train",
    ):
        rate = f"{t['frequency_hz']:.4g} Hz"
        if t["kind"] == "theta_burst":
            rate = (
                f"{t['bursts']} bursts of {t['pulses_per_burst']} at "
                f"{t['burst_frequency_hz']:.3g} Hz"
            )
        strongest = [
            f"{t[k]:.4g} {u}"
            for k, u in (("pct_rmt", "%RMT"), ("pct_amt", "%AMT"), ("power", "%MSO"))
            if t[k] is not None
        ]
        trains.add_row(
            numbers,
            str(t["block"] + 1),
            t["kind"].replace("_", " "),
            str(t["pulses"]),
            rate,
            format_time(t["duration_s"]),
            ", ".join(strongest),
        )
    if plan.trains:
        console.print(trains)
    margins = Table(title="safety margins")
    for col in ("block", "trains", "rule", "limit", "value", "margin", ""):
        margins.add_column(col)
    for numbers, c in _grouped(
        plan.checks,
        lambda c: (c["block"], c["rule"], c["limit"], c["value"], c["unit"]),
        "train",
    ):
        block = "session" if c["block"] is None else str(c["block"] + 1)
        margins.add_row(
            block,
            numbers,
            c["rule"],
            f"{c['limit']:g} {c['unit']}",
            f"{c['value']:.4g} {c['unit']}",
            f"{c['margin']:.4g} {c['unit']}",
            "ok" if c["ok"] else "FAIL",
        )
    console.print(margins)
    return 0


def _grouped(rows, key, number: str) -> list[tuple[str, dict]]:
    """Merge rows with the same ``key`` into one (in first-seen order), their
    numbers shown as ranges.

    Seventy-five identical trains of a clinical protocol read as one row
    ``1–75`` instead of a wall of equal lines.
    """
    out: dict = {}
    for row in rows:
        out.setdefault(key(row), ([], row))[0].append(row[number])
    return [(_ranges(nums), row) for nums, row in out.values()]


def _ranges(numbers: list) -> str:
    """``[1, 2, 3, 5]`` → ``1–3, 5``; no numbers → empty."""
    nums = [n for n in numbers if n is not None]
    if not nums:
        return ""
    parts, start, prev = [], nums[0], nums[0]
    for n in nums[1:] + [None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}–{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(parts)


def cmd_run(args) -> int:
    """Run a protocol on a rig; last line printed is the session folder."""
    use_local_lsl()
    from stimtrain.orchestrator.session.run import run_protocol

    try:
        thresholds, source = _thresholds(args, record=True)
        result = run_protocol(
            args.file,
            participant=args.participant,
            session=args.session,
            rig=args.rig,
            data_root=args.data,
            thresholds=thresholds,
            thresholds_source=source,
            sim_options={
                "faults": args.sim_faults,
                "eeg_dropout": args.sim_eeg_dropout,
                "participant_rmt": args.sim_rmt,
                "participant_seed": args.sim_seed,
                "emg_activity": args.sim_emg_activity,
                # As text: the runner drops empty options, and 0 dB is one.
                "mu_snr": None if args.sim_mu_snr is None else f"{args.sim_mu_snr:g}",
                "eeg_delay": args.sim_eeg_delay or None,
            },
            limits=args.limits,
            simulated_participant=args.simulated_participant,
            say=_say,
            library_log=not args.verbose,
            view=args.view,
        )
    except ProtocolError as exc:
        return _print_problems(exc)
    except ValueError as exc:
        print(f"error: {exc}")
        return 1
    return _report_run(result)


def _report_run(result, scope: str = "") -> int:
    """What a run delivered on stderr, its folder as the last line of stdout."""
    print(
        f"{result.status}: {result.pulses_delivered} of {result.pulses_planned} pulses "
        f"delivered{scope}" + (f"; stopped: {result.reason}" if result.reason else ""),
        file=sys.stderr,
    )
    print(result.path)
    return 0 if result.status == "completed" else 2


def cmd_resume(args) -> int:
    """Continue a session at its first unfinished block, in a new run."""
    use_local_lsl()
    from stimtrain.orchestrator.language.thresholds import Thresholds
    from stimtrain.orchestrator.session.resume import read_resume_point
    from stimtrain.orchestrator.session.run import run_protocol

    try:
        point = read_resume_point(args.session_dir)
    except ValueError as exc:
        print(f"error: {exc}")
        return 1
    if point.finished:
        print(f"{point.session_dir}: the session already completed; nothing to resume")
        return 1
    _say(
        f"resuming {point.participant} session {point.session} after runs "
        f"{', '.join(map(str, point.runs))}: blocks done "
        f"{sorted(b + 1 for b in point.completed_blocks) or 'none'}, "
        f"{point.pulses_delivered} pulses delivered so far"
    )
    root = Path(args.session_dir).resolve().parents[1]
    try:
        # Checked again: the journal's values may predate the threshold rules.
        thresholds = Thresholds.from_record(point.thresholds)
    except (TypeError, ValueError) as exc:
        print(f"error: {point.session_dir}: thresholds of the earlier runs: {exc}")
        return 1
    try:
        result = run_protocol(
            args.protocol or point.protocol,
            participant=point.participant,
            session=point.session,
            rig=point.rig,
            data_root=root,
            thresholds=thresholds,
            limits=args.limits,
            simulated_participant=args.simulated_participant,
            say=_say,
            library_log=not args.verbose,
            resume=point,
            view=args.view,
        )
    except ProtocolError as exc:
        return _print_problems(exc)
    except ValueError as exc:
        print(f"error: {exc}")
        return 1
    return _report_run(result, " in this run")


def _file_backend() -> None:
    # Reports are written to files: never try to open a GUI toolkit (a display
    # may exist without the Qt libraries, or not at all).
    import matplotlib

    matplotlib.use("Agg")


def _mne_verbose(args) -> str:
    # MNE's progress lines only with -v: the result paths must stay readable.
    return "info" if args.verbose else "warning"


def _input_failure(path, err: Exception, args) -> int:
    # One line for bad input (analyze, bids): `error: <path>: <what>`, exit 1;
    # the traceback only with -v.
    from stimtrain.analysis.session import InputError

    if getattr(args, "verbose", False):
        logging.getLogger("stimtrain").exception("details")
    if isinstance(err, InputError):
        print(f"error: {err}", file=sys.stderr)
    else:
        what = str(err) or type(err).__name__
        if isinstance(err, OSError) and err.strerror:
            what = f"{err.strerror}" + (f": {err.filename}" if err.filename else "")
        print(f"error: {path}: {what}", file=sys.stderr)
    return 1


def cmd_analyze(args) -> int:
    """Analyse a session folder, an XDF file or a study; prints the report path."""
    _file_backend()
    tesa = {"realign": True} if args.realign else None
    if args.study:
        from stimtrain.analysis.study import analyze_study

        try:
            result = analyze_study(
                Path(args.study),
                n_jobs=args.n_jobs,
                scheduler=args.scheduler,
                tesa=tesa,
                verbose=_mne_verbose(args),
            )
        except Exception as err:  # noqa: BLE001 - bad input: one line, no traceback
            return _input_failure(args.study, err, args)
        for failure in result.failed:
            print(f"error: {failure.folder}: {failure.reason}", file=sys.stderr)
        print(result.report_path)
        return 1 if result.failed else 0
    if args.path is None:
        print("error: give a session folder or XDF file, or --study DIR")
        return 2
    from stimtrain.analysis.report import analyze_session

    try:
        report = analyze_session(
            Path(args.path), run=args.run, tesa=tesa, verbose=_mne_verbose(args)
        )
    except Exception as err:  # noqa: BLE001 - bad input: one line, no traceback
        return _input_failure(args.path, err, args)
    print(report)
    return 0


def cmd_bids(args) -> int:
    """Write session folders as a BIDS dataset (optionally validate it)."""
    _file_backend()
    from stimtrain.analysis.bids import validate_bids, write_bids

    try:
        root = write_bids(
            [Path(p) for p in args.session_dirs],
            Path(args.root),
            task=args.task,
            line_freq=args.line_freq,
            overwrite=args.overwrite,
        )
    except Exception as err:  # noqa: BLE001 - bad input: one line, no traceback
        return _input_failure(args.root, err, args)
    print(root)
    if args.validate:
        errors, warnings = validate_bids(args.root)
        for e in errors:
            print(f"BIDS error: {e}")
        print(f"BIDS validator: {len(errors)} errors, {len(warnings)} warnings")
        return 1 if errors else 0
    return 0


def cmd_demo(args) -> int:
    """Run protocols/demo.yaml on the simulated rig, analyse it, print the paths."""
    use_local_lsl()
    _file_backend()
    from stimtrain.analysis.report import analyze_session
    from stimtrain.orchestrator.language.thresholds import load_thresholds
    from stimtrain.orchestrator.session.run import run_protocol
    from stimtrain.protocols import protocol_path

    try:
        thresholds, _ = load_thresholds(None, rmt=args.rmt)
    except ProtocolError as exc:
        return _print_problems(exc)
    _say(
        "demo: simulated participant 'demo', resting motor threshold "
        f"{thresholds.rmt:g} %MSO"
    )
    result = run_protocol(
        protocol_path("demo.yaml"),
        participant="demo",
        session=1,
        rig="sim",
        data_root=args.data,
        thresholds=thresholds,
        say=_say,
        library_log=not args.verbose,
        view=args.view,
    )
    if result.status != "completed":
        _say(f"demo session stopped: {result.reason}")
        print(result.path)
        return 2
    _say(
        f"{result.pulses_delivered}/{result.pulses_planned} pulses delivered; analysing"
    )
    report = analyze_session(
        result.path, run=result.folder.run, verbose=_mne_verbose(args)
    )
    print(f"session: {result.path}")
    print(f"report: {report}")
    return 0


def _dropout(text: str | None) -> tuple[float, float] | None:
    if not text:
        return None
    start, _, duration = text.partition(",")
    return float(start), float(duration)


def _sim_rmt(text: str) -> float:
    from stimtrain.orchestrator.language.thresholds import Thresholds

    try:
        value = float(text)
    except ValueError:
        value = text
    rule = Thresholds.value_rule(value)
    if rule:
        raise argparse.ArgumentTypeError(f"{rule} (got {text})")
    return value


def _activity(text: str) -> tuple[float, float, float]:
    parts = text.split(",")
    try:
        every, seconds, uv = (float(x) for x in parts)
    except ValueError:
        every = seconds = uv = -1.0
    if not (every > 0 and 0 < seconds < every and uv > 0):
        raise argparse.ArgumentTypeError(
            "must be EVERY,SECONDS,UV with 0 < SECONDS < EVERY and UV > 0 "
            f"(got {text!r})"
        )
    return every, seconds, uv


def _eeg_delay(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(
            f"must be a delay in seconds within 0-1 (got {text!r})"
        )
    return value


def cmd_sim(args) -> int:
    """Serve a simulated device until interrupted."""
    use_local_lsl()
    from stimtrain.devices.sim_eeg_process import mu_options
    from stimtrain.devices.sim_rig import serve

    participant = None
    if args.participant_rmt is not None:
        participant = {"rmt": args.participant_rmt, "seed": args.participant_seed}
    try:
        mu = mu_options(args.mu_snr, args.eeg_delay or 0.0, args.mu_log)
        serve(
            args.device,
            pulse_log=args.pulse_log,
            eeg_name=args.eeg_name,
            model=args.model,
            faults=args.faults,
            eeg_dropout=_dropout(args.eeg_dropout),
            participant=participant,
            activity=args.emg_activity,
            commands=sys.stdin if args.device == "rig" else None,
            mu=mu,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_devices(args) -> int:
    """List and probe serial ports, or print a traffic log."""
    rest = list(args.rest)
    if rest[:1] == ["traffic"]:
        from stimtrain.devices.traffic import main as traffic_main

        return traffic_main(rest[1:])
    from stimtrain.devices.probe import main as probe_main

    return probe_main(rest)


def cmd_schema(args) -> int:
    """Print a JSON Schema, or write all of them into a folder."""
    from stimtrain.orchestrator.language.schema import SCHEMAS, render, write_schemas

    if args.write:
        for path in write_schemas(args.write):
            print(path)
        return 0
    if args.name not in SCHEMAS:
        print(f"error: unknown schema {args.name!r}; one of {', '.join(SCHEMAS)}")
        return 1
    print(render(args.name), end="")
    return 0


def _iso_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--today: must be a date YYYY-MM-DD (got {text!r})"
        ) from None


def cmd_course_status(args) -> int:
    """Print where a participant stands in a course (0, or 1 on a problem)."""
    from stimtrain.orchestrator.session.course import course_status, format_status

    try:
        status = course_status(args.course, args.participant, args.data, args.today)
    except ProtocolError as exc:
        return _print_problems(exc)
    except ValueError as exc:
        print(f"error: {exc}")
        return 1
    print(format_status(status))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``stimtrain`` command."""
    parser = argparse.ArgumentParser(
        prog="stimtrain",
        description="Run TMS-plus-training sessions from protocol files.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check protocol files for errors and safety")
    p.add_argument("files", nargs="+")
    p.add_argument("-q", "--quiet", action="store_true", help="print problems only")
    p.add_argument("--participant", help="draw counterbalanced orders for this ID")
    _add_check_options(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("plan", help="show a protocol's timeline and safety margins")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--participant", help="draw counterbalanced orders for this ID")
    _add_check_options(p)
    p.set_defaults(func=cmd_plan)

    from stimtrain.tasks import pilot as task_pilot

    p = sub.add_parser("task", help="run one task alone in a window to try it")
    task_pilot.add_arguments(p)
    p.set_defaults(func=task_pilot.run)

    p = sub.add_parser("course", help="multi-day courses")
    csub = p.add_subparsers(dest="course_command", required=True)
    ps = csub.add_parser(
        "status", help="which course session is due, what was done, what carries over"
    )
    ps.add_argument("course", help="the course YAML file")
    ps.add_argument("--participant", required=True, help="participant label")
    ps.add_argument("--data", default="stimtrain-data", help="data root folder")
    ps.add_argument(
        "--today", type=_iso_date, help="judge as of this date (default: today)"
    )
    ps.set_defaults(func=cmd_course_status)

    p = sub.add_parser(
        "devices",
        help="list serial ports, probe which stimulator answers (--probe), "
        "or print a traffic log (devices traffic FILE)",
        add_help=False,
    )
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser(
        "schema", help="print the JSON Schema of protocol, rig, course … files"
    )
    p.add_argument("name", nargs="?", default="protocol")
    p.add_argument("--write", metavar="DIR", help="write every schema into DIR")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("run", help="run a protocol for a participant and session")
    p.add_argument("file")
    p.add_argument("--participant", required=True)
    p.add_argument("--session", required=True)
    p.add_argument(
        "--sim-faults",
        metavar="TEXT",
        help="simulated rig only: faults for the stimulator to rehearse "
        "(see `stimtrain sim --help`)",
    )
    p.add_argument(
        "--sim-eeg-dropout",
        metavar="START,SECONDS",
        help="simulated rig only: the EEG goes silent from START s for SECONDS",
    )
    p.add_argument(
        "--sim-rmt",
        type=_sim_rmt,
        metavar="PCT",
        help="simulated rig only: the simulated participant's true resting motor "
        "threshold, %%MSO (their MEPs follow it)",
    )
    p.add_argument(
        "--sim-seed",
        type=int,
        default=0,
        help="simulated rig only: the simulated participant's variability seed",
    )
    p.add_argument(
        "--sim-emg-activity",
        type=_activity,
        metavar="EVERY,SECONDS,UV",
        help="simulated rig only: the participant tenses the muscle for SECONDS "
        "every EVERY s (UV peak-to-peak), to rehearse pre-activation",
    )
    p.add_argument(
        "--sim-mu-snr",
        type=float,
        metavar="DB",
        help="simulated rig only: a mu rhythm at C3 with known phase, DB above "
        "the background in 8-13 Hz at the C3 Hjorth output (its true phase at "
        "each pulse: simulator_mu_phase.jsonl)",
    )
    p.add_argument(
        "--sim-eeg-delay",
        type=_eeg_delay,
        metavar="SECONDS",
        help="simulated rig only: the EEG's samples arrive SECONDS old and are "
        "stamped on arrival (an amplifier's constant delay)",
    )
    p.add_argument("--data", default="stimtrain-data", help="data root folder")
    p.add_argument(
        "--simulated-participant",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="let the simulated participant play the tasks (default: on the sim rig)",
    )
    p.add_argument(
        "--view",
        action="store_true",
        help="serve the live view (a local web page; its address is printed)",
    )
    _add_check_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "resume", help="continue a crashed session at its first unfinished block"
    )
    p.add_argument("session_dir", metavar="SESSION_DIR")
    p.add_argument(
        "--protocol", help="protocol file, if it moved (its hash must not change)"
    )
    p.add_argument("--limits", help="a lab safety limits file")
    p.add_argument(
        "--simulated-participant",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="let the simulated participant play the tasks (default: on the sim rig)",
    )
    p.add_argument(
        "--view",
        action="store_true",
        help="serve the live view (a local web page; its address is printed)",
    )
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser(
        "analyze", help="analyse a session folder, an XDF file, or a whole study"
    )
    p.add_argument("path", nargs="?")
    p.add_argument("--run", type=int, help="run number (default: the latest)")
    p.add_argument(
        "--realign", action="store_true", help="realign pulses to the EEG artifact"
    )
    p.add_argument("--study", metavar="DIR", help="analyse every session under DIR")
    p.add_argument("--n-jobs", type=int, default=1, help="parallel sessions (joblib)")
    p.add_argument("--scheduler", help="a Dask scheduler address (tcp://host:8786)")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("bids", help="write session folders as a BIDS dataset")
    p.add_argument("session_dirs", nargs="+", metavar="SESSION_DIR")
    p.add_argument("--root", required=True, help="the BIDS dataset folder")
    p.add_argument("--task", default="stimtrain", help="BIDS task label")
    p.add_argument("--line-freq", type=float, default=50.0, help="mains frequency")
    p.add_argument(
        "--validate", action="store_true", help="run the BIDS validator afterwards"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace runs already in the dataset (refused without it)",
    )
    p.set_defaults(func=cmd_bids)

    p = sub.add_parser(
        "demo", help="run and analyse the demo protocol on the simulated rig"
    )
    p.add_argument(
        "--view",
        action="store_true",
        help="serve the live view (a local web page; its address is printed)",
    )
    p.add_argument("--data", default="stimtrain-data", help="data root folder")
    p.add_argument(
        "--rmt",
        metavar="N",
        default="50",
        help="simulated participant's RMT, 1-100 %%MSO (default 50)",
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("sim", help="serve a simulated device on a pseudo-terminal")
    p.add_argument(
        "device",
        help="rig, triggerbox, magstim-200, magstim-bistim, magstim-rapid2, "
        "magstim-super-rapid2, magstim-super-rapid2-plus, magventure-r30, "
        "magventure-x100 (…-magoption)",
    )
    p.add_argument(
        "--pulse-log", help="append each delivered pulse to this JSON-lines file"
    )
    p.add_argument("--eeg-name", help="LSL name of the simulated EEG (rig only)")
    p.add_argument(
        "--model", help="stimulator model of the rig (e.g. bistim, magpro_x100)"
    )
    p.add_argument(
        "--faults",
        help="faults to inject, e.g. 'drop_every=5,late_every=3,late_s=0.3,"
        "silent_after=20,disconnect_after=40,overheat_after_pulses=100,refuse_arm'",
    )
    p.add_argument(
        "--eeg-dropout",
        metavar="START,SECONDS",
        help="rig only: the simulated EEG sends nothing from START s for SECONDS",
    )
    p.add_argument(
        "--participant-rmt",
        type=_sim_rmt,
        metavar="PCT",
        help="rig only: the simulated participant's true RMT (%%MSO)",
    )
    p.add_argument("--participant-seed", type=int, default=0)
    p.add_argument(
        "--emg-activity",
        type=_activity,
        metavar="EVERY,SECONDS,UV",
        help="rig only: voluntary EMG for SECONDS every EVERY s",
    )
    p.add_argument(
        "--mu-snr",
        type=float,
        metavar="DB",
        help="rig only: a mu rhythm at C3 with known phase (in-band SNR at C3 Hjorth)",
    )
    p.add_argument(
        "--eeg-delay",
        type=_eeg_delay,
        metavar="SECONDS",
        help="rig only: the EEG's constant delay (samples stamped that late)",
    )
    p.add_argument(
        "--mu-log", help="rig only: file for each pulse's true mu phase (JSON lines)"
    )
    p.set_defaults(func=cmd_sim)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``stimtrain`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["devices"]:
        # `devices` has its own parser (ports, --probe; `traffic FILE`).
        return cmd_devices(argparse.Namespace(rest=argv[1:]))
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.verbose:
        return args.func(args)
    with warnings.catch_warnings():
        # One readable line per warning, without the source line and path.
        warnings.showwarning = _one_line_warning
        return args.func(args)


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
