"""Online TMS: pulses locked to a task's events during a task block.

The task announces each event from its flip callback (``on_event``); a pulse
is due ``delay`` after it on the selected trials, and eligible trials that are
not stimulated get a ``no_pulse`` marker at the same moment.
"""

from __future__ import annotations

import queue
import threading
import time

import numpy as np
import pylsl

from ..language.blocks import TaskBlock


class OnlinePulses:
    """Pulses locked to a task's events, for one task block.

    The task calls :meth:`on_event` from its flip callback; this must return
    at once, so the pulse is handed to a small thread that forwards it to the
    device process (a request there can wait behind a keep-alive exchange).
    The pulse's deadline is absolute (event flip time + delay), so that wait
    never moves it.
    """

    def __init__(self, ctx, block: TaskBlock, planned) -> None:
        self.ctx = ctx
        self.control = ctx.control
        self.block = block
        self.planned = planned
        self.tms = block.tms
        eligible = self._eligible()
        rng = np.random.default_rng([planned.seed, 1])
        self.chosen = self.tms.choose(eligible, rng)
        self.eligible = set(eligible)
        self.queue: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._forward, daemon=True)
        self.scheduled = 0
        self.no_pulse = 0
        #: Scheduled pulses withdrawn (a required stream stopped, a pause).
        self.withdrawn = 0
        self.deadlines: dict[int, float] = {}
        self.last_deadline = 0.0
        self.error: str | None = None

    def _eligible(self) -> list[int]:
        """The trials a pulse may go to: the same trials the task will run
        (same seed), so the choice among them is exactly the plan's."""
        from stimtrain.tasks import get_task

        task = get_task(self.block.task)
        # Parameters checked and completed when the protocol was read.
        trials = task.make_trials(
            self.block.trials,
            np.random.default_rng(self.planned.seed),
            self.block.params,
        )
        return [
            t.index
            for t in trials
            if not self.tms.conditions or t.condition in self.tms.conditions
        ]

    def start(self) -> None:
        r = self.ctx
        r.ledger.set_block_fields(
            self.block.index,
            pattern="online",
            intensity=self.planned.intensity_value,
            unit=self.planned.unit,
            power=self.planned.power,
        )
        r.device.set_power(self.planned.power)
        r.device.arm(3.0)
        r.journal.write(
            "armed",
            block=self.block.index,
            power=self.planned.power,
            online_trials=sorted(self.chosen),
        )
        self.thread.start()

    def on_event(self, event: str, t: float, trial) -> None:
        if event != self.tms.event or trial.index not in self.eligible:
            return
        deadline = t + self.tms.delay_s
        self._offer(trial.index, deadline, self._fields(event, trial))

    def _fields(self, event: str, trial) -> dict:
        """The fields a trial's pulse (or ``no_pulse``) marker carries."""
        return dict(
            task=self.block.task,
            trial=trial.index,
            condition=trial.condition,
            locked_to=event,
            delay=self.tms.delay_s,
        )

    def _offer(self, key: int, deadline: float, fields: dict) -> None:
        """Schedule the pulse of eligible event ``key``, or mark it not given."""
        if key not in self.chosen or self.control.stalled.is_set():
            # Not stimulated (or a required stream is down: no pulse then).
            reason = "stream_stalled" if key in self.chosen else None
            self._no_pulse(deadline, fields, reason=reason)
            return
        index = self.scheduled
        self.scheduled += 1
        self.last_deadline = deadline
        self.ctx.ledger.set_online_fields(self.block.index, index, **fields)
        self.deadlines[index] = deadline
        self.queue.put((deadline, index))

    def _no_pulse(self, deadline: float, fields: dict, *, reason=None) -> None:
        self.no_pulse += 1
        extra = {} if reason is None else {"reason": reason}
        self.ctx.markers.push(
            "no_pulse", deadline, block=self.block.index, scheduled=deadline,
            **{k: fields[k] for k in ("task", "trial", "condition")}, **extra,
        )  # fmt: skip

    def dropped(self, items: list[tuple[int, int]], reason: str) -> None:
        """Pulses the device process dropped (a stream stalled, a pause).

        Their trials get a ``no_pulse`` marker with ``reason``. Called with
        the session's schedule lock held.
        """
        for block, index in items:
            if block != self.block.index:
                continue
            self.withdrawn += 1
            fields = self.ctx.ledger.take_online_fields(block, index)
            self._no_pulse(self.deadlines[index], fields, reason=reason)

    def _forward(self) -> None:
        r, control = self.ctx, self.control
        while True:
            item = self.queue.get()
            if item is None:
                return
            deadline, index = item
            if control.ending():
                continue  # aborted or skipped: a disarm already dropped the rest
            with control.schedule_lock:
                # A stream stopped or the block paused after the event: the
                # pulse is off.
                if control.stalled.is_set():
                    self.dropped([(self.block.index, index)], "stream_stalled")
                    continue
                if control.task_paused.is_set():
                    self.dropped([(self.block.index, index)], "operator_pause")
                    continue
                try:
                    r.device.schedule(
                        self.block.index, [(deadline, index, self.planned.delivery)]
                    )
                except Exception as exc:  # noqa: BLE001 - ends the session safely
                    self.error = f"online pulse not scheduled: {exc}"
                    control.stop.set(self.error)
                    return

    def finish(self) -> dict:
        """Wait for the last pulse, disarm, and say what was delivered."""
        r, control = self.ctx, self.control
        self.queue.put(None)
        self.thread.join(timeout=5.0)
        wait_until = max(self.last_deadline, pylsl.local_clock()) + 1.0
        while (
            r.ledger.block_pulses(self.block.index) < self.scheduled - self.withdrawn
            and pylsl.local_clock() < wait_until
            and r.device.fault is None
        ):
            time.sleep(0.01)
        delivered = r.ledger.block_pulses(self.block.index)
        if r.device.fault is None:
            # On a fault the session's safe stop disarms (or kills) instead.
            r.device.disarm()
            r.journal.write("disarmed", block=self.block.index)
        expected = self.scheduled - self.withdrawn
        if delivered < expected and not control.stop():
            control.stop.set(
                f"online TMS: {delivered} of {expected} pulses were delivered"
            )
        return {
            "pulses_scheduled": self.scheduled,
            "pulses_delivered": delivered,
            "pulses_withdrawn": self.withdrawn,
            "no_pulse_trials": self.no_pulse,
        }
