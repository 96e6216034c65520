"""The session runner: runs a checked protocol's blocks on one clock.

Order of a run: check everything (nothing is touched if a check fails), claim
a new run in the session folder, write the protocol copy and the plan, bring
up the streams and the recorder, open the device process and the participant's
window, run the blocks, and whatever happens, disarm first, then record why,
close the recording and write the summary.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pylsl

from ..language.protocol import (
    InstructionsBlock,
    RestBlock,
    StimulateBlock,
    TaskBlock,
    WaitBlock,
)
from ..language.rig import Rig
from ..language.thresholds import Thresholds
from ..safety.checking import CheckedProtocol, check_file
from ..safety.plan import PlannedBlock
from .block_timeline import BlockTimeline
from .console import ConsoleState, OperatorConsole, StreamHealth, TaskProgress
from .device_process import DeviceConfig, DeviceFault, DeviceProcess, PulseReport
from .diskwatch import DiskWatch, free_space_problem, recording_rate
from .journal import Journal
from .ledger import PulseLedger
from .lslconfig import configure_lsl_for_rig
from .markers import MarkerOutlet
from .online import OnlinePulses
from .recording import Recorder, wait_for_streams
from .resume import ResumePoint
from .session_folder import SessionFolder, new_run, write_new
from .simrig import start_simulated_rig
from .streamwatch import StreamWatch

logger = logging.getLogger("stimtrain.orchestrator.session.runner")


class SessionAborted(RuntimeError):
    """The session stopped before its end (signal, operator, fault)."""


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


class _Stop:
    """A flag set by signals, the operator or a fault; checked between steps."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.event = threading.Event()

    def set(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.event.set()

    def note(self, reason: str) -> None:
        """Record a stop without taking a lock (for signal handlers).

        A handler runs in the main thread between two bytecodes, possibly
        while that thread holds the event's lock (inside :meth:`set`): setting
        the event there would deadlock. Whoever catches the handler's exception
        calls :meth:`set`.
        """
        if self.reason is None:
            self.reason = reason

    def __call__(self) -> bool:
        return self.reason is not None or self.event.is_set()


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
    ):
        self.checked = checked
        self.confirm = confirm or _ask_operator
        self.thresholds_source = thresholds_source or {"source": "command line"}
        self.resumed_from = resumed_from
        self.rig: Rig = checked.rig
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
        self.stop = _Stop()
        # Set when the safe stop begins; later signals are ignored.
        self._closing = False
        self.folder: SessionFolder | None = None
        self.journal: Journal | None = None
        self.markers: MarkerOutlet | None = None
        self.device: DeviceProcess | None = None
        #: Delivered pulses and their marker fields (created with the markers).
        self.ledger: PulseLedger | None = None
        self.task_levels: dict[str, float] = {}
        #: Operator keys: pause at the next safe point, skip the current block.
        self.pause = threading.Event()
        self.skip = threading.Event()
        #: Set while a required stream has stopped: no pulse is given then.
        self.stalled = threading.Event()
        #: Held while pulses are scheduled or dropped, so a stall never
        #: falls between checking the flag and scheduling.
        self.schedule_lock = threading.Lock()
        #: Set while a task block is paused between trials.
        self.task_paused = threading.Event()
        #: The online pulses of the task block running now, if any.
        self._online: OnlinePulses | None = None
        self._watch: StreamWatch | None = None
        self.recording_check: dict | None = None
        #: What failed during the safe stop, each reported once.
        self.stop_failures: list[str] = []
        #: Set once stimulation has been stopped because data can't be kept.
        self._data_fault = threading.Event()
        self.state: ConsoleState | None = None
        self.live_console = live_console
        self.sim_options = {k: v for k, v in (sim_options or {}).items() if v}
        if self.sim_options and not self.rig.simulated:
            raise ValueError("--sim-faults/--sim-eeg-dropout need a simulated rig")

    # -- callbacks from the device reader thread ---------------------------------
    @property
    def delivered(self) -> int:
        """Pulses delivered in this run so far."""
        return 0 if self.ledger is None else self.ledger.delivered

    def _on_pulse(self, report: PulseReport) -> None:
        self.ledger.record(report)

    def _on_delivered(self, delivered: int) -> None:
        if self.state is not None:
            self.state.update(
                pulses_delivered=delivered, markers_sent=self.markers.count
            )

    def _on_fault(self, message: str) -> None:
        self.stop.set(f"device fault: {message}")

    # -- the run -------------------------------------------------------------------
    def run(self) -> SessionResult:
        """Run the session; returns its result (also on abort)."""
        folder = new_run(self.data_root, self.participant, self.session)
        self.folder = folder
        self.journal = Journal(
            folder.file("journal.jsonl"), on_failure=self._on_journal_failure
        )
        protocol = self.checked.protocol
        write_new(folder.file("protocol.yaml"), protocol.document.text)
        write_new(
            folder.file("protocol.sha256"),
            f"{protocol.sha256}  {Path(protocol.file).name}\n",
        )
        write_new(folder.file("plan.json"), self.plan.to_json())
        self.journal.write(
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
        self.journal.write("lsl_network", network=self.rig.lsl.network, notes=lsl_lines)
        status, completed = "aborted", []
        previous = {
            sig: signal.signal(sig, self._on_signal)
            for sig in (signal.SIGINT, signal.SIGTERM)
        }
        recorder = sim = None
        try:
            with ExitStack() as stack:
                stream_names = list(self.rig.required_streams)
                if self.rig.simulated:
                    name = f"stimtrain-sim-eeg-{os.getpid()}"
                    sim = start_simulated_rig(
                        pulse_log=folder.file("simulator_pulses.jsonl"),
                        eeg_stream=name,
                        model=self.rig.stimulator_model,
                        **self.sim_options,
                    )
                    stream_names = [name]
                    self.say(
                        f"simulated rig: stimulator {sim.stimulator_port}, "
                        f"trigger box {sim.trigger_port}"
                    )
                suffix = f"{self.participant}-{self.session}-{folder.run}-{os.getpid()}"
                self.markers = MarkerOutlet(suffix)
                self.ledger = PulseLedger(
                    self.markers, self.journal, on_change=self._on_delivered
                )
                streams = wait_for_streams(
                    [*stream_names, self.markers.name], self.rig.stream_timeout_s
                )
                rate = recording_rate(streams)
                problem = free_space_problem(
                    folder.path, self.plan.total_duration_s, rate
                )
                if problem is not None:
                    self.journal.write("refused", reason=problem)
                    raise SessionAborted(problem)
                recorder = Recorder(folder.file("recording.xdf"), streams)
                self.journal.write(
                    "recording_started", streams=recorder.streams, bytes_per_s=rate
                )
                # The recording's disk is watched like a required stream: when
                # it fills or the file stops growing, stimulation stops.
                stack.enter_context(
                    DiskWatch(
                        folder.file("recording.xdf"),
                        rate,
                        self._on_recording_failure,
                    )
                )
                # The required streams (EEG, EMG) are watched for the whole
                # session: one that stops pauses stimulation.
                watch = stack.enter_context(
                    StreamWatch(
                        [i for i in streams if i.name() in stream_names],
                        stall_s=STREAM_STALL_S,
                        on_stall=self._on_stream_stall,
                        on_recover=self._on_stream_recover,
                    )
                )
                self._watch = watch
                self.device = DeviceProcess(
                    DeviceConfig(
                        model=self.rig.stimulator_model,
                        stimulator_port=sim.stimulator_port
                        if sim
                        else self.rig.stimulator_port,
                        trigger_port=(
                            None
                            if self.rig.trigger is None
                            else sim.trigger_port
                            if sim
                            else self.rig.trigger.port
                        ),
                        trigger_lines=self.rig.trigger.lines if self.rig.trigger else 1,
                        trigger_kind=(
                            self.rig.trigger.kind if self.rig.trigger else "triggerbox"
                        ),
                        traffic_log=str(folder.file("devices.jsonl")),
                    ),
                    on_pulse=self._on_pulse,
                    on_fault=self._on_fault,
                )
                state = self.device.start()
                self.journal.write(
                    "device_opened", state=state, realtime=self.device.realtime
                )
                win = self._open_window(stack)
                self.state = ConsoleState.from_plan(
                    self.plan, self.participant, self.session, run=folder.run
                )
                self.state.update(device=state)
                console = stack.enter_context(
                    OperatorConsole(self.state, self._on_key, keys=self.live_console)
                )
                plain_say, self.say = self.say, console.say
                if not self.device.realtime:
                    warning = (
                        "the device process has no real-time priority: pulse "
                        "timing is looser (docs/operator.md, Timing)"
                    )
                    self.state.warn(warning)
                    self.say(f"warning: {warning}")
                stack.callback(setattr, self, "say", plain_say)
                health = _HealthFeed(watch, self.state)
                stack.callback(health.stop)
                if console.keys_active and self.confirm is _ask_operator:
                    # One reader of the terminal: the console asks the questions.
                    self.confirm = console.confirm
                self.markers.push(
                    "session_start",
                    participant=self.participant,
                    session=self.session,
                    run=folder.run,
                    protocol=protocol.name,
                    protocol_sha256=protocol.sha256,
                )
                for block, planned in zip(
                    protocol.blocks, self.plan.blocks, strict=True
                ):
                    if self.stop():
                        break
                    if planned.skipped:
                        # Finished in an earlier run of this session (resume).
                        self.journal.write(
                            "block_skipped", block=block.index, label=block.label
                        )
                        self.state.finish_block(block.index, skipped=True)
                        completed.append(block.index)
                        continue
                    self._pause_point(block.index)
                    if self.stop():
                        break
                    self.state.start_block(block.index, pylsl.local_clock())
                    self._run_block(win, block, planned)
                    skipped = self.skip.is_set()
                    self.skip.clear()
                    self.state.finish_block(block.index, skipped=skipped)
                    if not self.stop() and not skipped:
                        completed.append(block.index)
                status = "completed" if not self.stop() else "aborted"
                self.state.update(status="finished" if not self.stop() else "aborting")
        except SessionAborted as exc:
            self.stop.set(str(exc))
        except Exception as exc:  # noqa: BLE001 - any fault ends in a safe stop
            logger.exception("session fault")
            self.stop.set(f"{type(exc).__name__}: {exc}")
        finally:
            self._closing = True
            # Every step runs whatever the one before did (a full disk, a dead
            # process); the unit is disarmed before anything touches the disk.
            step = self._stop_step
            step("disarm", self._safe_stop)
            reason = self.stop.reason
            if self.markers is not None:
                if reason:
                    step("abort marker", self.markers.push, "abort", reason=reason)
                step(
                    "session_end marker",
                    self.markers.push,
                    "session_end",
                    status=status,
                    pulses_delivered=self.delivered,
                )
            if self.device is not None:
                step("device process", self.device.stop)
            if recorder is not None:
                step("recording", recorder.stop)
            if self.markers is not None:
                step("marker stream", self.markers.close)
            if sim is not None:
                step("simulated rig", sim.stop)
            result = SessionResult(
                folder,
                status if reason is None else "aborted",
                reason,
                self.plan.total_pulses,
                self.delivered,
                completed,
            )
            self.recording_check = step(
                "recording check", self._check_recording, folder, recorder
            )
            step("summary", self._write_summary, result)
            step(
                "journal",
                self.journal.write,
                "session_end",
                status=result.status,
                reason=reason,
                pulses_delivered=self.delivered,
                stop_failures=self.stop_failures,
                journal_unwritten=len(self.journal.unwritten),
            )
            if self.journal.fallback is not None:
                step(
                    "journal copy",
                    self.say,
                    f"journal: {len(self.journal.unwritten)} lines could not be "
                    f"written to {self.journal.path}; they are in "
                    f"{self.journal.fallback}",
                )
            step("journal close", self.journal.close)
            # Only now: a repeated signal must not end the process before the
            # summary and the journal's last line are written.
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return result

    def _stop_step(self, name: str, fn: Callable, *args, **kwargs):
        """One step of the safe stop: run it; report a failure once, go on."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the next steps must still run
            failure = f"{name}: {type(exc).__name__}: {exc}"
            logger.error("safe stop: %s", failure)
            self.stop_failures.append(failure)
            try:
                self.say(f"safe stop: {failure}")
            except Exception:  # noqa: BLE001 - the console itself may be gone
                pass
            return None

    def _on_recording_failure(self, reason: str) -> None:
        """The recording can't be kept: hold and disarm now, then stop."""
        self._stop_for_data(f"recording: {reason}", "recording_failed")

    def _on_journal_failure(self, error: OSError) -> None:
        # Called on whatever thread wrote the line (the device reader thread,
        # among others, which can't wait for a device reply): a thread of its
        # own holds and disarms.
        threading.Thread(
            target=self._stop_for_data,
            args=(f"journal: {error}", "journal_failed"),
            daemon=True,
        ).start()

    def _stop_for_data(self, reason: str, event: str) -> None:
        """Stop stimulating because data can no longer be kept: disarm first."""
        if self._data_fault.is_set():
            return
        self._data_fault.set()
        with self.schedule_lock:
            self.stalled.set()
            self._hold(reason=event)
            if self.device is not None and self.device.fault is None:
                try:
                    self.device.request("disarm", timeout=2.0)
                except DeviceFault as exc:
                    logger.warning("disarm after %s failed: %s", event, exc)
        self.stop.set(reason)
        self.journal.write(event, reason=reason)
        if self.markers is not None:
            try:
                self.markers.push(event, reason=reason)
            except Exception:  # noqa: BLE001 - the stop matters, not the marker
                logger.exception("marker %s", event)
        if self.state is not None:
            self.state.warn(f"{reason}: stimulation stopped")

    def _check_recording(self, folder, recorder) -> dict | None:
        """Check the XDF against the journal: every pulse must have its marker."""
        if recorder is None:
            return None
        from .xdfcheck import check_recording

        check = check_recording(
            folder.file("recording.xdf"),
            folder.file("journal.jsonl"),
            marker_stream=self.markers.name if self.markers else None,
        )
        result = check.as_dict()
        self.journal.write("recording_checked", **result)
        self.say(
            f"recording: {check.pulses_matched} of {check.pulses_journal} pulses "
            f"have their marker" + ("" if check.ok else f"; PROBLEM: {check.reason}")
        )
        return result

    def _on_stream_stall(self, name: str, age_s: float) -> None:
        # Called on the watch thread: the pulses stop here and now, not when
        # the main thread next looks (a frame later, or a pulse later).
        with self.schedule_lock:
            self.stalled.set()
            self.journal.write("stream_stalled", stream=name, age_s=age_s)
            if self.markers is not None:
                self.markers.push("stream_stalled", stream=name, age_s=age_s)
            self._hold()
        if self.state is not None:
            self.state.warn(
                f"stream {name} stopped ({age_s:.1f} s): stimulation paused"
            )

    def _hold(
        self, reason: str = "stream stalled", after: float | None = None, **extra
    ) -> None:
        """Drop the scheduled pulses in the device process, at once.

        Every pulse, or those due from clock time ``after`` on (a pause at a
        safe point). The unit stays armed; the block's own code disarms, waits
        and reschedules what was not given. Online pulses dropped here become
        ``no_pulse`` trials. A stall calls it with the schedule lock held.
        """
        if self.device is None or self.device.fault is not None:
            return
        try:
            held = self.device.request(
                "hold", *(() if after is None else (after,)), timeout=2.0
            )
        except DeviceFault as exc:
            # The device fault ends the session (and its safe stop disarms).
            logger.warning("hold (%s) failed: %s", reason, exc)
            return
        dropped = [tuple(item) for item in held["dropped"]]
        self.journal.write(
            "stimulation_held",
            held_at=held["held_at"],
            pulses_dropped=len(dropped),
            reason=reason,
            **extra,
        )
        if self._online is not None:
            self._online.dropped(dropped, reason.replace(" ", "_"))

    def _on_stream_recover(self, name: str) -> None:
        self.journal.write("stream_recovered", stream=name)
        if self.markers is not None:
            self.markers.push("stream_recovered", stream=name)
        if self._watch is not None and not self._watch.stalled:
            self.stalled.clear()
        if self.state is not None:
            self.state.warn(f"stream {name} is back")

    def _on_signal(self, signum, frame) -> None:
        # Once the session is stopping, a second Ctrl+C or SIGTERM must not
        # cut the safe stop (disarm, recording close) short: it is ignored.
        if self._closing or self.stop():
            return
        if signum == signal.SIGINT:
            self.stop.note("interrupted (Ctrl+C)")
        else:
            self.stop.note(f"signal {signal.Signals(signum).name}")
        raise SessionAborted(self.stop.reason)

    def _safe_stop(self) -> None:
        """Disarm first; if the device process can't, kill it so the unit times out.

        After a device fault the device process disarms and ends by itself:
        wait for it (killing it would interrupt that disarm) and journal what
        it reported.
        """
        if self.device is None:
            return
        if self.device.fault is not None or not self.device.alive:
            if self.device.wait_ended(5.0):
                result = self.device.shutdown_result or "ended without a report"
                event = "disarmed" if result.startswith("disarmed") else "disarm_failed"
                self.journal.write(event, by="device process", result=result)
                return
        try:
            self.device.request("disarm", timeout=2.0)
            self.journal.write("disarmed", state=self.device.state)
        except DeviceFault as exc:
            self.journal.write("disarm_failed", error=str(exc))
            self.device.kill()

    def _open_window(self, stack: ExitStack):
        from stimtrain.tasks.display import open_window, virtual_display

        stack.enter_context(virtual_display())
        screen = self.rig.screen
        win = open_window(
            size=screen.size, fullscr=screen.fullscreen, screen=screen.index
        )
        stack.callback(win.close)
        return win

    def _run_block(self, win, block, planned: PlannedBlock) -> None:
        clock = pylsl.local_clock
        fields = dict(block=block.index, type=block.type, label=block.label)
        if isinstance(block, RestBlock):
            fields["eyes"] = block.eyes
        self.markers.push("block_start", **fields)
        self.journal.write("block_start", **fields)
        self.say(
            f"block {block.index + 1}/{len(self.plan.blocks)}: {block.type} "
            f"'{block.label}' ({planned.duration_s:.1f} s planned"
            + (f", {planned.pulses} pulses)" if planned.pulses else ")")
        )
        outcome: dict = {}
        try:
            outcome = self._run_block_body(win, block, planned, clock)
        finally:
            # Also when the block is stopped by an abort or a fault.
            if self.skip.is_set():
                outcome["skipped_by_operator"] = True
            self.markers.push("block_end", **fields)
            done = not self.stop() and not self.skip.is_set()
            self.journal.write("block_end", completed=done, **fields, **outcome)

    def _run_block_body(self, win, block, planned: PlannedBlock, clock) -> dict:
        from stimtrain.tasks.runner import show_fixation, show_text

        outcome: dict = {}
        if isinstance(block, RestBlock):
            show_fixation(win, block.duration_s, clock=clock, should_stop=self._ending)
        elif isinstance(block, InstructionsBlock):
            show_text(win, block.text, block.duration_s, clock=clock)
        elif isinstance(block, StimulateBlock):
            outcome = self._stimulate(win, block, planned)
        elif isinstance(block, TaskBlock):
            outcome = self._task(win, block, planned)
        elif isinstance(block, WaitBlock):
            outcome = self._wait_for_operator(win, block)
        return outcome

    def _wait_for_operator(self, win, block: WaitBlock) -> dict:
        from stimtrain.tasks.runner import show_text

        show_text(win, block.participant_text or "Please wait.", 0.0)
        if self.rig.simulated:
            # Nobody sits at a simulated rig: confirm, and say so in the journal.
            self.say(f"  operator: {block.text} (auto-confirmed on the simulated rig)")
            return {"confirmed_by": "auto (simulated rig)"}
        answer = self.confirm(block.text)
        self.journal.write("operator_key", block=block.index, answer=answer)
        if not answer:
            self.stop.set(f"operator declined: {block.text}")
            raise SessionAborted(self.stop.reason)
        return {"confirmed_by": "operator"}

    def _stimulate(self, win, block: StimulateBlock, planned: PlannedBlock) -> dict:
        from stimtrain.tasks.runner import show_fixation

        clock = pylsl.local_clock
        t_block = clock()
        self.ledger.set_block_fields(
            block.index,
            pattern=planned.pattern,
            intensity=planned.intensity_value,
            unit=planned.unit,
            power=planned.power,
        )
        if planned.delivery == "paired":
            self.device.request(
                "set_paired",
                planned.conditioning_power,
                planned.power,
                round(planned.isi_s * 1e3, 3),
            )
            self.ledger.update_block_fields(
                block.index,
                conditioning_power=planned.conditioning_power,
                isi=planned.isi_s,
            )
        else:
            self.device.request("set_power", planned.power)
        if planned.delivery == "device_train":
            # The unit runs each train; the host starts it at the train's time.
            self.device.request(
                "set_train", planned.train_frequency_hz, planned.train_pulses
            )
            self.ledger.update_block_fields(
                block.index,
                train_pulses=planned.train_pulses,
                frequency=planned.train_frequency_hz,
            )
        self.state.update(device=self.device.request("arm", 3.0, timeout=6.0))
        self.journal.write("armed", block=block.index, power=planned.power)
        first = t_block + planned.pulse_offsets_s[0]
        if first < clock() + 0.05:
            # Arming took longer than the lead-in: shift the whole block so its
            # pulse intervals stay exact, and say so.
            shift = clock() + 0.1 - first
            t_block += shift
            self.journal.write("block_late", block=block.index, shift_s=shift)
        timeline = BlockTimeline(
            planned.pulse_offsets_s,
            planned.train_pulses or 1,
            planned.duration_s,
        )
        with self.schedule_lock:
            if not self.stalled.is_set():  # else the interruption below schedules
                self.device.schedule(
                    block.index,
                    timeline.items(t_block, range(timeline.n_units), planned.delivery),
                )
        start, pausable = t_block, True
        while True:
            self._show_next_pulse(timeline, start)
            leave = functools.partial(self._leave, pausable)
            show_fixation(
                win,
                max(0.0, timeline.last_pulse(start) - clock()),
                clock=clock,
                should_stop=leave,
            )
            if self._ending() or not leave():
                break
            start, pausable = self._interrupt(win, block, planned, timeline, start)
        end = timeline.end(start)
        if self.stop():
            raise SessionAborted(self.stop.reason)
        if self.skip.is_set():
            # The operator skipped the block: a disarm also drops its schedule.
            self.state.update(device=self.device.request("disarm"))
            self.journal.write("disarmed", block=block.index, reason="block skipped")
            self.state.update(next_event=None)
            return {"pulses_planned": planned.pulses}
        if not self.device.wait_block(block.index, timeout=5.0):
            raise DeviceFault(
                self.device.fault or "pulses were not all delivered in time"
            )
        self.state.update(device=self.device.request("disarm"), next_event=None)
        self.journal.write("disarmed", block=block.index)
        show_fixation(
            win, max(0.0, end - clock()), clock=clock, should_stop=self._ending
        )
        return {"pulses_planned": planned.pulses}

    def _ending(self) -> bool:
        """Whether the current block ends now (abort or skip).

        A stalled stream doesn't end a rest or a task block: the stimulation
        is held, the participant's block goes on.
        """
        return self.stop() or self.skip.is_set()

    def _leave(self, pausable: bool) -> bool:
        """Whether a stimulation block must stop waiting for its pulses.

        It must on an abort or skip, a stalled stream, and the pause key
        while the block still has a safe point to pause at.
        """
        return (
            self._ending()
            or self.stalled.is_set()
            or (pausable and self.pause.is_set())
        )

    def _show_next_pulse(self, timeline: BlockTimeline, start: float) -> None:
        clock = pylsl.local_clock
        times = [start + off for off in timeline.offsets]
        end = timeline.end(start)
        self.state.update(
            next_event=lambda: next((t for t in times if t > clock()), end)
        )

    def _interrupt(
        self, win, block, planned, timeline: BlockTimeline, start: float
    ) -> tuple[float, bool]:
        """Hold a stimulation block (stalled stream or pause key), then go on.

        A stalled stream has held every pulse already (:meth:`_hold`); the
        operator's pause takes effect at the next safe point (see
        :meth:`BlockTimeline.safe_point`): the pulses before it are given
        first. Then the unit is disarmed until the streams are back and the
        pause is over, and the units not yet given are rescheduled with their
        intervals, so nothing is given twice and the block never exceeds its
        plan. Returns the block's new start and whether the pause key can
        still interrupt it.
        """
        from stimtrain.tasks.runner import show_fixation

        clock = pylsl.local_clock
        given = functools.partial(self.ledger.given, block.index)
        stalled = self.stalled.is_set()
        if not stalled:
            point = timeline.safe_point(start, given(), clock() + PAUSE_LEAD_S)
            if point is None:
                self.journal.write(
                    "pause_deferred",
                    block=block.index,
                    reason="no safe point left in this block",
                )
                self.say("  pause: no safe point left in this block; after it")
                return start, False
            unit, t_safe = point
            self._hold("operator pause", after=t_safe, from_unit=unit)
            self.say(f"  pausing before pulse {unit + 1} of the block")
            last = timeline.last_pulse_before(start, t_safe)
            if last is not None:
                # The units before the safe point are given first.
                show_fixation(
                    win,
                    max(0.0, last - clock() + 0.05),
                    clock=clock,
                    should_stop=self._ending,
                )
        reason = "stream stalled" if stalled else "operator pause"
        # The disarm's reply follows every pulse report: ``given`` is complete.
        self.state.update(device=self.device.request("disarm"))
        left = timeline.left(given())
        self.journal.write(
            "stimulation_paused",
            block=block.index,
            pulses_left=len(left),
            reason=reason,
        )
        self.say(f"  {reason}: stimulation paused ({len(left)} left)")
        if not stalled:
            self.state.update(status="paused")
        while (self.stalled.is_set() or self.pause.is_set()) and not self._ending():
            show_fixation(win, 0.1, clock=clock, should_stop=self._ending)
        if not self._ending():
            self.state.update(status="running")
        if self._ending() or not left:
            return start, True
        self.state.update(device=self.device.request("arm", 3.0, timeout=6.0))
        start = timeline.restart(given(), clock() + 0.5)
        with self.schedule_lock:
            if self.stalled.is_set():
                return start, True  # stalled again already: interrupted again
            self.device.schedule(
                block.index, timeline.items(start, left, planned.delivery)
            )
        self.journal.write("stimulation_resumed", block=block.index)
        self.say("  stimulation resumed")
        return start, True

    def _task_pause_point(self, win, block, online, trials_done: int) -> bool:
        """Between two trials: hold here while the operator paused.

        With online TMS, pulses still due from the last trial are withdrawn
        and the unit is disarmed for the pause (a Magstim left armed without
        firing disarms itself after a minute), then armed again.
        """
        from stimtrain.tasks.runner import show_text

        if not self.pause.is_set():
            return not self._ending()
        if online is not None:
            with self.schedule_lock:
                self.task_paused.set()
                self._hold("operator pause")
            self.state.update(device=self.device.request("disarm"))
        self.journal.write("paused", block=block.index, after_trial=trials_done)
        self.state.update(status="paused")
        self.say(f"  paused after trial {trials_done}")
        while self.pause.is_set() and not self._ending():
            show_text(win, "Paused", 0.1, should_stop=self._ending)
        if self._ending():
            return False
        if online is not None:
            self.state.update(device=self.device.request("arm", 3.0, timeout=6.0))
            self.task_paused.clear()
        self.journal.write("resumed", block=block.index)
        self.state.update(status="running")
        return True

    def _pause_point(self, index: int) -> None:
        """A safe point between blocks: hold here while the operator paused."""
        if not self.pause.is_set():
            return
        self.journal.write("paused", before_block=index)
        self.state.update(status="paused")
        while self.pause.is_set() and not self.stop():
            time.sleep(0.05)
        self.journal.write("resumed", before_block=index)
        self.state.update(status="running")

    def _on_key(self, key: str, action: str) -> None:
        """Every operator key press goes into the journal, then takes effect."""
        current = None if self.state is None else self.state.current_block
        self.journal.write("operator_key", key=key, action=action, block=current)
        if action == "abort":
            self.stop.set("operator abort key")
            try:
                # Disarm at once, from this thread: it also drops the schedule.
                self.device.request("disarm", timeout=2.0)
            except DeviceFault:
                pass  # the session's safe stop kills the device process
        elif action == "pause":
            self.pause.set()
        elif action == "resume":
            self.pause.clear()
        elif action == "skip":
            self.skip.set()

    def _task(self, win, block: TaskBlock, planned: PlannedBlock) -> dict:
        from stimtrain.tasks.levels import load_levels, record_level
        from stimtrain.tasks.participant import SimulatedParticipant
        from stimtrain.tasks.runner import run_task_block

        participant = (
            SimulatedParticipant(seed=planned.seed)
            if self.simulated_participant
            else None
        )

        scored: list[bool] = []

        def emit(event: str, timestamp: float, **fields) -> None:
            self.markers.push(event, timestamp, **fields)
            # The console shows the trial and the running accuracy.
            if event == "stim_onset":
                self.state.update(
                    task=TaskProgress(
                        task=block.task,
                        trial=int(fields.get("trial", 0)) + 1,
                        n_trials=block.trials,
                        accuracy=sum(scored) / len(scored) if scored else None,
                    )
                )
            elif event == "response" and fields.get("correct") is not None:
                scored.append(bool(fields["correct"]))

        # Levels carry over between blocks and sessions of one participant.
        levels_path = self.folder.path.parent / "task_levels.json"
        start_level = load_levels(levels_path).get(block.task)
        online = None
        if block.tms is not None:
            online = OnlinePulses(self, block, planned)
            online.start()
            self._online = online
        try:
            result = run_task_block(
                win,
                block.task,
                block.params,
                n_trials=block.trials,
                seed=planned.seed,
                tsv_path=self.folder.task_tsv(block.index, block.task),
                emit=emit,
                block=block.index,
                participant=participant,
                clock=pylsl.local_clock,
                should_stop=self._ending,
                start_level=start_level,
                on_event=None if online is None else online.on_event,
                between_trials=functools.partial(
                    self._task_pause_point, win, block, online
                ),
            )
        finally:
            outcome_online = {} if online is None else online.finish()
            self._online = None
        if result.stopped and not self.stop() and not self.skip.is_set():
            self.stop.set("task stopped (escape key)")
        elif result.level is not None:
            record_level(levels_path, block.task, result.level)
            self.task_levels[block.task] = result.level
        self.say(f"  {block.task}: {json.dumps(result.measures, default=str)}")
        return {
            "measures": result.measures,
            "trials_done": len(result.results),
            "start_level": result.start_level,
            "level": result.level,
            **outcome_online,
        }

    def _write_summary(self, result: SessionResult) -> None:
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
            "markers_sent": 0 if self.markers is None else self.markers.count,
            "recording": result.folder.file("recording.xdf").name,
            "thresholds": self.plan.thresholds,
            "task_levels": self.task_levels,
            "recording_check": self.recording_check,
            "rig": self.rig.name,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_new(result.folder.file("summary.json"), json.dumps(summary, indent=2))


#: A required stream with no new sample for this long pauses stimulation.
STREAM_STALL_S = 1.0
#: The operator's pause stops before a unit at least this far ahead (beyond
#: the device process's guard before a pulse).
PAUSE_LEAD_S = 0.5


class _HealthFeed:
    """Copies the streams' health into the console state twice a second."""

    def __init__(self, watch: StreamWatch, state: ConsoleState) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(watch, state), daemon=True, name="health-feed"
        )
        self._thread.start()

    def _run(self, watch: StreamWatch, state: ConsoleState) -> None:
        while not self._stop.wait(0.5):
            state.update(
                streams=[
                    StreamHealth(
                        name=h["name"],
                        nominal_rate=h["nominal_srate"],
                        measured_rate=h["srate"],
                        age_s=h["age_s"],
                        ok=h["ok"],
                    )
                    for h in watch.health()
                ]
            )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)


def _ask_operator(question: str) -> bool:
    try:
        answer = input(f"{question} [Enter = continue, n = abort] ")
    except EOFError:
        return False
    return answer.strip().lower() not in ("n", "no", "abort")


def run_protocol(
    protocol: str | Path,
    *,
    participant: str,
    session: str | int,
    rig: str | Path | None = None,
    data_root: str | Path = "stimtrain-data",
    thresholds: Thresholds | None = None,
    limits: str | Path | None = None,
    simulated_participant: bool | None = None,
    say: Callable[[str], None] = print,
    thresholds_source: dict | None = None,
    resume: ResumePoint | None = None,
    sim_options: dict | None = None,
) -> SessionResult:
    """Check and run a protocol file (the ``stimtrain run`` command).

    ``thresholds_source`` (file, measured, method …) is written to the
    journal with the thresholds. With ``resume`` (see
    :func:`~stimtrain.orchestrator.session.resume.read_resume_point`) the blocks
    finished in earlier runs are skipped and their pulses count towards the
    session cap.

    Raises
    ------
    ProtocolError
        When any check fails; nothing has been created or touched.
    """
    from .course import participant_pulses_on

    # The per-day cap counts every pulse this participant got today, in any
    # session or run (also runs that crashed), from their journals.
    today = participant_pulses_on(Path(data_root), participant, datetime.date.today())
    checked = check_file(
        protocol,
        rig=rig,
        thresholds=thresholds,
        limits=limits,
        require_power=True,
        participant=participant,
        delivered_today=today,
        skip_blocks=frozenset() if resume is None else resume.completed_blocks,
        delivered_session=0 if resume is None else resume.pulses_delivered,
    )
    if resume is not None and checked.protocol.sha256 != resume.protocol_sha256:
        raise ValueError(
            f"{protocol}: the protocol (or a fragment it includes) changed since "
            f"run {resume.runs[0]} (sha256 {resume.protocol_sha256[:12]}…, now "
            f"{checked.protocol.sha256[:12]}…); resume needs the same protocol"
        )
    runner = SessionRunner(
        checked,
        participant=participant,
        session=str(session),
        data_root=Path(data_root),
        simulated_participant=simulated_participant,
        say=say,
        thresholds_source=thresholds_source,
        sim_options=sim_options,
        resumed_from=None
        if resume is None
        else {
            "runs": list(resume.runs),
            "completed_blocks": sorted(resume.completed_blocks),
            "pulses_delivered": resume.pulses_delivered,
        },
    )
    return runner.run()
