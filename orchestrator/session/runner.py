"""The session: runs a checked protocol's blocks on one clock.

Order of a run: claim a new run in the session folder, write the protocol
copy and the plan, bring up the streams and the recorder, open the device
process and the participant's window, run the blocks, and whatever happens,
disarm first (:mod:`.safe_stop`), then record why, close the recording and
write the summary. This module is the shell; each kind of block runs in its
own module (:mod:`.stimulation`, :mod:`.task_block`, :mod:`.waiting`), the
threads share :class:`~.control.SessionControl` and :class:`~.ledger.PulseLedger`.

Slightly longer than most: the shell opens and closes its parts in one fixed
order, which reads best in one place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

import pylsl

from ..language.protocol import (
    HotspotBlock,
    InstructionsBlock,
    PhaseCalibrationBlock,
    RestBlock,
    StimulateBlock,
    TaskBlock,
    ThresholdBlock,
    WaitBlock,
)
from ..language.rig import simulated_eeg
from ..language.trigger import TriggeredPulses
from ..safety.checking import CheckedProtocol
from ..safety.plan import PlannedBlock
from .console import ConsoleState, OperatorConsole
from .context import BlockContext
from .control import SessionAborted, SessionControl
from .device_process import DeviceConfig, DeviceProcess
from .diskwatch import DiskWatch, free_space_problem, recording_rate
from .emg_reader import EMGReader
from .hunting import run_hotspot, run_threshold
from .journal import Journal
from .ledger import PulseLedger
from .library_output import library_output_to
from .lslconfig import configure_lsl_for_rig
from .markers import MarkerOutlet
from .recording import Recorder, wait_for_streams
from .safe_stop import SafeStop, SessionParts
from .session_folder import SessionFolder, new_run, write_new
from .simoperator import SimulatedOperator
from .simrig import start_simulated_rig
from .stimulation import run_stimulation
from .streamwatch import HealthFeed, StreamWatch
from .task_block import run_task
from .thresholds_found import keep_phase_offset, use_measured_threshold
from .view.live import open_live_view
from .waiting import run_instructions, run_rest, run_wait

logger = logging.getLogger("stimtrain.orchestrator.session.runner")

#: A required stream with no new sample for this long pauses stimulation.
STREAM_STALL_S = 1.0
#: The simulated mu rhythm's in-band SNR when a protocol with triggered blocks
#: runs on the simulated rig without ``--sim-mu-snr``, dB: the level of the
#: closed-loop benchmarks (Zrenner et al. 2018's best condition).
DEFAULT_SIM_MU_SNR_DB = 11.0


@dataclass
class SessionResult:
    """What a run did."""

    folder: SessionFolder
    status: str
    reason: str | None
    pulses_planned: int
    pulses_delivered: int
    blocks_completed: list[int] = field(default_factory=list)

    @property
    def path(self) -> Path:
        """The session folder."""
        return self.folder.path


class SessionRunner:
    """Run one session of a checked protocol.

    Parameters
    ----------
    checked : CheckedProtocol
        From :func:`~stimtrain.orchestrator.safety.checking.check_file`.
    participant, session : str
        BIDS labels.
    data_root : Path
        Root of the data folders.
    simulated_participant : bool | None
        Let the simulated participant play the tasks; default: when the rig is
        simulated.
    say : callable
        Where progress lines go (the console).
    confirm : callable | None
        ``confirm(question) -> bool`` asks the operator (default: the live
        console's question, or a yes/no prompt on the terminal).
    thresholds_source : dict | None
        Where the thresholds came from, for the journal.
    resumed_from : dict | None
        Earlier runs this run resumes (see
        :mod:`~stimtrain.orchestrator.session.resume`).
    live_console : bool
        Show the live operator console when the terminal allows it.
    sim_options : dict | None
        Simulated rig only: ``faults`` and ``eeg_dropout`` to rehearse.
    library_log : bool
        Send what the recording and LSL libraries print to the session
        folder's ``libraries.log`` instead of the terminal
        (:mod:`.library_output`).
    view : bool
        Serve the live view (:mod:`.view`) and print its address.
    """

    def __init__(
        self,
        checked: CheckedProtocol,
        *,
        participant: str,
        session: str,
        data_root: Path,
        simulated_participant: bool | None = None,
        say: Callable[[str], None] = print,
        confirm: Callable[[str], bool] | None = None,
        thresholds_source: dict | None = None,
        resumed_from: dict | None = None,
        live_console: bool = True,
        sim_options: dict | None = None,
        library_log: bool = False,
        view: bool = False,
    ):
        self.checked = checked
        self.view = view
        self.confirm = confirm or _ask_operator
        self.thresholds_source = thresholds_source or {"source": "command line"}
        self.resumed_from = resumed_from
        self.rig = checked.rig
        self.plan = checked.plan
        self.participant = participant
        self.session = session
        self.data_root = Path(data_root)
        self.simulated_participant = (
            self.rig.simulated
            if simulated_participant is None
            else simulated_participant
        )
        self.say = say
        self.live_console = live_console
        self.library_log = library_log
        # ``is not None``: a 0 (0 dB of mu, seed 0) is an option given.
        self.sim_options = {
            k: v for k, v in (sim_options or {}).items() if v is not None
        }
        rehearsed = {k for k, v in self.sim_options.items() if k != "participant_seed"}
        if rehearsed and not self.rig.simulated:
            raise ValueError(
                "--sim-faults, --sim-eeg-dropout, --sim-rmt and --sim-emg-activity "
                "need a simulated rig"
            )
        self.control: SessionControl | None = None
        self.task_levels: dict[str, float] = {}
        self.recording_check: dict | None = None
        #: What failed during the safe stop, each reported once.
        self.stop_failures: list[str] = []

    # -- the run -------------------------------------------------------------------
    def run(self) -> SessionResult:
        """Run the session; returns its result (also on abort)."""
        folder = new_run(self.data_root, self.participant, self.session)
        quiet = (
            library_output_to(folder.file("libraries.log"))
            if self.library_log
            else contextlib.nullcontext()
        )
        with quiet:
            return self._run(folder)

    def _run(self, folder: SessionFolder) -> SessionResult:
        journal = Journal(
            folder.file("journal.jsonl"),
            on_failure=lambda error: self.control.on_journal_failure(error),
        )
        control = self.control = SessionControl(journal)
        self._start_run(folder, journal)
        restore_signals = control.install_signal_handlers()
        stopper = SafeStop(journal, say=lambda text: self.say(text))
        parts = SessionParts()
        status, completed = "aborted", []
        try:
            with stopper.guard(lambda: parts.device) as stack:
                try:
                    ctx = self._open(stack, folder, journal, parts)
                    completed = self._run_blocks(ctx)
                    status = "completed" if not control.stop() else "aborted"
                    parts.state.update(
                        status="finished" if not control.stop() else "aborting"
                    )
                finally:
                    # From here on a second signal must not cut the stop short.
                    control.closing = True
        except SessionAborted as exc:
            control.stop.set(str(exc))
        except Exception as exc:  # noqa: BLE001 - any fault ends in a safe stop
            logger.exception("session fault")
            control.stop.set(f"{type(exc).__name__}: {exc}")
        finally:
            control.closing = True
            result = self._close(stopper, folder, journal, parts, status, completed)
            # Only now: a repeated signal must not end the process before the
            # summary and the journal's last line are written.
            restore_signals()
        return result

    def _start_run(self, folder: SessionFolder, journal: Journal) -> None:
        """The protocol copy, the plan and the run's first journal lines."""
        protocol = self.checked.protocol
        write_new(folder.file("protocol.yaml"), protocol.document.text)
        write_new(
            folder.file("protocol.sha256"),
            f"{protocol.sha256}  {Path(protocol.file).name}\n",
        )
        write_new(folder.file("plan.json"), self.plan.to_json())
        journal.write(
            "run_created",
            participant=self.participant,
            session=self.session,
            run=folder.run,
            protocol=str(Path(protocol.file).resolve()),
            protocol_sha256=protocol.sha256,
            protocol_copy_sha256=hashlib.sha256(
                protocol.document.text.encode("utf-8")
            ).hexdigest(),
            thresholds=self.plan.thresholds,
            thresholds_source=self.thresholds_source,
            rig=self.rig.name,
            block_order=list(self.plan.order),
            limits_file=self.plan.limits_file,
            limits_justifications=list(self.plan.limits_justifications),
            delivered_today=self.plan.delivered_today,
            resumed_from=self.resumed_from,
        )
        for note in self.plan.limits_justifications:
            self.say(f"lab limit loosened: {note}")
        self.say(f"session folder: {folder.path} (run {folder.run})")
        # Before anything in this process uses LSL: liblsl reads its
        # configuration once.
        lsl_lines = configure_lsl_for_rig(self.rig)
        for line in lsl_lines:
            self.say(line)
        journal.write("lsl_network", network=self.rig.lsl.network, notes=lsl_lines)

    def _open(
        self,
        stack: ExitStack,
        folder: SessionFolder,
        journal: Journal,
        parts: SessionParts,
    ) -> BlockContext:
        """Open the streams, recorder, watches, device, window and console."""
        control = self.control
        stream_names = list(self.rig.required_streams)
        hunts = any(
            isinstance(b, (ThresholdBlock, HotspotBlock))
            for b in self.checked.protocol.blocks
        )
        emg = self.rig.emg
        if hunts and emg is not None and emg.stream not in stream_names:
            # MEPs are read from the stream the recording also keeps.
            stream_names.append(emg.stream)
        # Blocks that read the EEG live: triggered and calibration blocks.
        triggered = any(
            isinstance(getattr(b, "pattern", None), TriggeredPulses)
            or isinstance(b, PhaseCalibrationBlock)
            for b in self.checked.protocol.blocks
        )
        eeg = self.rig.eeg if triggered else None
        if eeg is not None and eeg.stream not in stream_names:
            # The phase is read from the stream the recording also keeps.
            stream_names.append(eeg.stream)
        if self.rig.simulated:
            name = f"stimtrain-sim-eeg-{os.getpid()}"
            options = dict(self.sim_options)
            if triggered and "mu_snr" not in options:
                # Phase-locked pulses need a rhythm to lock to.
                options["mu_snr"] = f"{DEFAULT_SIM_MU_SNR_DB:g}"
                self.say(
                    f"simulated EEG: a mu rhythm at {DEFAULT_SIM_MU_SNR_DB:g} dB "
                    "(the protocol has triggered blocks; --sim-mu-snr sets it)"
                )
            parts.sim = start_simulated_rig(
                pulse_log=folder.file("simulator_pulses.jsonl"),
                eeg_stream=name,
                model=self.rig.stimulator_model,
                **options,
            )
            stream_names = [name]
            if triggered:
                # The simulated amplifier's delay is declared as it is.
                delay = float(options.get("eeg_delay") or 0.0)
                eeg = replace(simulated_eeg(delay), stream=name)
            if emg is not None:
                emg = type(emg)(stream=name, channel=emg.channel)
            self.say(
                f"simulated rig: stimulator {parts.sim.stimulator_port}, "
                f"trigger box {parts.sim.trigger_port}"
            )
        suffix = f"{self.participant}-{self.session}-{folder.run}-{os.getpid()}"
        markers = parts.markers = control.markers = MarkerOutlet(suffix)
        ledger = parts.ledger = PulseLedger(
            markers, journal, on_change=self._on_delivered
        )
        streams = wait_for_streams(
            [*stream_names, markers.name], self.rig.stream_timeout_s
        )
        rate = recording_rate(streams)
        problem = free_space_problem(folder.path, self.plan.total_duration_s, rate)
        if problem is not None:
            journal.write("refused", reason=problem)
            raise SessionAborted(problem)
        parts.recorder = Recorder(folder.file("recording.xdf"), streams)
        journal.write(
            "recording_started", streams=parts.recorder.streams, bytes_per_s=rate
        )
        # The recording's disk is watched like a required stream: when it
        # fills or the file stops growing, stimulation stops.
        stack.enter_context(
            DiskWatch(folder.file("recording.xdf"), rate, control.on_recording_failure)
        )
        # The required streams (EEG, EMG) are watched for the whole session:
        # one that stops pauses stimulation.
        watch = stack.enter_context(
            StreamWatch(
                [i for i in streams if i.name() in stream_names],
                stall_s=STREAM_STALL_S,
                on_stall=control.on_stream_stall,
                on_recover=control.on_stream_recover,
            )
        )
        control.streams_stalled = lambda: watch.stalled
        reader = None
        if hunts:
            reader = stack.enter_context(EMGReader(emg.stream, emg.channel))
            reader.start(timeout=self.rig.stream_timeout_s)
        device = parts.device = control.device = self._device_process(
            folder, parts.sim, ledger
        )
        device_state = device.start()
        journal.write("device_opened", state=device_state, realtime=device.realtime)
        win = self._open_window(stack)
        state = parts.state = control.state = ConsoleState.from_plan(
            self.plan, self.participant, self.session, run=folder.run
        )
        state.update(device=device_state)
        console = stack.enter_context(
            OperatorConsole(state, control.on_key, keys=self.live_console)
        )
        plain_say, self.say = self.say, console.say
        stack.callback(setattr, self, "say", plain_say)
        if not device.realtime:
            warning = (
                "the device process has no real-time priority: pulse "
                "timing is looser (docs/operator.md, Timing)"
            )
            state.warn(warning)
            self.say(f"warning: {warning}")
        health = HealthFeed(watch, state)
        stack.callback(health.stop)
        if console.keys_active and self.confirm is _ask_operator:
            # One reader of the terminal: the console asks the questions.
            self.confirm = console.confirm
        if self.view:
            open_live_view(
                stack,
                self.say,
                state,
                console,
                markers=markers.name,
                data=emg.stream if emg is not None else next(iter(stream_names), None),
                emg=emg,
                journal=journal.path,
            )
        return BlockContext(
            win=win,
            control=control,
            device=device,
            ledger=ledger,
            journal=journal,
            markers=markers,
            state=state,
            say=console.say,
            confirm=self.confirm,
            simulated_rig=self.rig.simulated,
            simulated_participant=self.simulated_participant,
            levels_path=folder.path.parent / "task_levels.json",
            trials_file=folder.task_tsv,
            n_blocks=len(self.plan.blocks),
            run_file=folder.file,
            emg=reader,
            operator=(
                SimulatedOperator(parts.sim, seed=self.checked.protocol.seed)
                if hunts and parts.sim is not None
                else None
            ),
            task_levels=self.task_levels,
            eeg=eeg,
            thresholds_carried=self._thresholds_in_use(),
        )

    def _thresholds_in_use(self) -> dict:
        """The motor thresholds this run started with, as a thresholds file
        writes them (a calibration's file keeps them)."""
        given = {
            k: self.plan.thresholds.get(k)
            for k in ("rmt", "amt")
            if self.plan.thresholds.get(k) is not None
        }
        if not given:
            return {}
        source = self.thresholds_source
        if source.get("file"):
            how = {"measured": source.get("measured"), "method": source.get("method")}
            how["method"] = how["method"] or f"from {source['file']}"
        else:
            how = {"method": f"given on the {source.get('source', 'command line')}"}
        return given | {k: v for k, v in how.items() if v is not None}

    def _device_process(self, folder, sim, ledger: PulseLedger) -> DeviceProcess:
        rig = self.rig
        trigger = rig.trigger
        return DeviceProcess(
            DeviceConfig(
                model=rig.stimulator_model,
                stimulator_port=sim.stimulator_port if sim else rig.stimulator_port,
                trigger_port=(
                    None
                    if trigger is None
                    else sim.trigger_port
                    if sim
                    else trigger.port
                ),
                trigger_lines=trigger.lines if trigger else 1,
                trigger_kind=trigger.kind if trigger else "triggerbox",
                traffic_log=str(folder.file("devices.jsonl")),
            ),
            on_pulse=ledger.record,
            on_fault=lambda message: self.control.stop.set(f"device fault: {message}"),
        )

    def _open_window(self, stack: ExitStack):
        from stimtrain.tasks.display import open_window, virtual_display

        stack.enter_context(virtual_display())
        screen = self.rig.screen
        win = open_window(
            size=screen.size, fullscr=screen.fullscreen, screen=screen.index
        )
        stack.callback(win.close)
        return win

    def _on_delivered(self, delivered: int) -> None:
        state = self.control.state
        if state is not None:
            state.update(
                pulses_delivered=delivered, markers_sent=self.control.markers.count
            )

    # -- the blocks ------------------------------------------------------------------
    def _run_blocks(self, ctx: BlockContext) -> list[int]:
        """Run the plan's blocks in order; returns those completed."""
        control, protocol = self.control, self.checked.protocol
        completed: list[int] = []
        ctx.markers.push(
            "session_start",
            participant=self.participant,
            session=self.session,
            run=ctx.state.run,
            protocol=protocol.name,
            protocol_sha256=protocol.sha256,
        )
        for block in protocol.blocks:
            # The plan may change on the way: a threshold block's measurement
            # re-plans the blocks after it.
            planned = self.plan.blocks[block.index]
            if control.stop():
                break
            if planned.skipped:
                # Finished in an earlier run of this session (resume).
                ctx.journal.write("block_skipped", block=block.index, label=block.label)
                ctx.state.finish_block(block.index, skipped=True)
                completed.append(block.index)
                continue
            self._pause_point(ctx, block.index)
            if control.stop():
                break
            ctx.state.start_block(block.index, pylsl.local_clock())
            outcome = _run_block(ctx, block, planned)
            skipped = control.skip.is_set()
            control.skip.clear()
            ctx.state.finish_block(block.index, skipped=skipped)
            if not control.stop() and not skipped:
                completed.append(block.index)
            if "threshold" in outcome and not control.stop():
                self.plan = use_measured_threshold(
                    self.checked,
                    self.plan,
                    block,
                    outcome["threshold"],
                    ctx,
                    done=frozenset(completed),
                    participant=self.participant,
                    resumed=0
                    if self.resumed_from is None
                    else self.resumed_from["pulses_delivered"],
                )
            if (
                isinstance(block, PhaseCalibrationBlock)
                and "offset_deg" in outcome
                and not control.stop()
                and not skipped
            ):
                keep_phase_offset(ctx, block, outcome, self.participant)
        return completed

    def _pause_point(self, ctx: BlockContext, index: int) -> None:
        """A safe point between blocks: hold here while the operator paused."""
        control = self.control
        if not control.pause.is_set():
            return
        ctx.journal.write("paused", before_block=index)
        ctx.state.update(status="paused")
        while control.pause.is_set() and not control.stop():
            time.sleep(0.05)
        ctx.journal.write("resumed", before_block=index)
        ctx.state.update(status="running")

    # -- the end -----------------------------------------------------------------------
    def _close(
        self,
        stopper: SafeStop,
        folder: SessionFolder,
        journal: Journal,
        parts: SessionParts,
        status: str,
        completed: list[int],
    ) -> SessionResult:
        """After the disarm: the last markers, every part closed, the summary."""
        step = stopper.step
        # Also when the guard never ran (a failure before it): disarm first.
        stopper.disarm(parts.device)
        reason = self.control.stop.reason
        delivered = 0 if parts.ledger is None else parts.ledger.delivered
        stopper.close_parts(parts, status=status, reason=reason, delivered=delivered)
        result = SessionResult(
            folder,
            status if reason is None else "aborted",
            reason,
            self.checked.plan.total_pulses,
            delivered,
            completed,
        )
        if parts.recorder is not None:
            self.recording_check = step(
                "recording check", self._check_recording, folder, journal, parts
            )
        step("summary", self._write_summary, result, parts)
        self.stop_failures = stopper.failures
        step(
            "journal",
            journal.write,
            "session_end",
            status=result.status,
            reason=reason,
            pulses_delivered=delivered,
            stop_failures=stopper.failures,
            journal_unwritten=len(journal.unwritten),
        )
        if journal.fallback is not None:
            step(
                "journal copy",
                self.say,
                f"journal: {len(journal.unwritten)} lines could not be "
                f"written to {journal.path}; they are in {journal.fallback}",
            )
        step("journal close", journal.close)
        return result

    def _check_recording(self, folder, journal: Journal, parts: SessionParts) -> dict:
        """Check the XDF against the journal: every pulse must have its marker."""
        from .xdfcheck import check_recording

        check = check_recording(
            folder.file("recording.xdf"),
            folder.file("journal.jsonl"),
            marker_stream=parts.markers.name if parts.markers else None,
        )
        result = check.as_dict()
        journal.write("recording_checked", **result)
        self.say(
            f"recording: {check.pulses_matched} of {check.pulses_journal} pulses "
            f"have their marker" + ("" if check.ok else f"; PROBLEM: {check.reason}")
        )
        return result

    def _write_summary(self, result: SessionResult, parts: SessionParts) -> None:
        summary = {
            "participant": self.participant,
            "session": self.session,
            "run": result.folder.run,
            "protocol": self.checked.protocol.name,
            "protocol_sha256": self.checked.protocol.sha256,
            "status": result.status,
            "reason": result.reason,
            "pulses_planned": result.pulses_planned,
            "pulses_delivered": result.pulses_delivered,
            "blocks_completed": result.blocks_completed,
            "markers_sent": 0 if parts.markers is None else parts.markers.count,
            "recording": result.folder.file("recording.xdf").name,
            "thresholds": self.plan.thresholds,
            "task_levels": self.task_levels,
            "recording_check": self.recording_check,
            "rig": self.rig.name,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_new(result.folder.file("summary.json"), json.dumps(summary, indent=2))


def _run_block(ctx: BlockContext, block, planned: PlannedBlock) -> dict:
    """One block between its ``block_start`` and ``block_end``, by its kind."""
    fields = dict(block=block.index, type=block.type, label=block.label)
    if isinstance(block, RestBlock):
        fields["eyes"] = block.eyes
    ctx.markers.push("block_start", **fields)
    ctx.journal.write("block_start", **fields)
    ctx.say(
        f"block {block.index + 1}/{ctx.n_blocks}: {block.type} "
        f"'{block.label}' ({planned.duration_s:.1f} s planned"
        + (
            f", {'at most ' if planned.trigger else ''}{planned.pulses} pulses)"
            if planned.pulses
            else ")"
        )
    )
    control = ctx.control
    outcome: dict = {}
    try:
        outcome = _execute(ctx, block, planned)
    finally:
        # Also when the block is stopped by an abort or a fault.
        if control.skip.is_set():
            outcome["skipped_by_operator"] = True
        ctx.markers.push("block_end", **fields)
        done = not control.stop() and not control.skip.is_set()
        ctx.journal.write("block_end", completed=done, **fields, **outcome)
    return outcome


def _execute(ctx: BlockContext, block, planned: PlannedBlock) -> dict:
    if isinstance(block, StimulateBlock):
        return run_stimulation(ctx, block, planned)
    if isinstance(block, TaskBlock):
        return run_task(ctx, block, planned)
    if isinstance(block, RestBlock):
        return run_rest(ctx, block)
    if isinstance(block, PhaseCalibrationBlock):
        from .closed_loop.calibration import run_calibration

        return run_calibration(ctx, block)
    if isinstance(block, InstructionsBlock):
        return run_instructions(ctx, block)
    if isinstance(block, WaitBlock):
        return run_wait(ctx, block)
    if isinstance(block, ThresholdBlock):
        return run_threshold(ctx, block, planned)
    if isinstance(block, HotspotBlock):
        return run_hotspot(ctx, block, planned)
    raise TypeError(f"no executor for a {type(block).__name__}")


def _ask_operator(question: str) -> bool:
    try:
        answer = input(f"{question} [Enter = continue, n = abort] ")
    except EOFError:
        return False
    return answer.strip().lower() not in ("n", "no", "abort")
