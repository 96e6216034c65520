"""Which core and scheduling the device process and the simulated hardware get.

The device process, which times every pulse, runs on the last core this
process may use, at real-time priority (``SCHED_FIFO``), so that rendering and
the main process's garbage collection never delay its wait for a deadline.

The simulated stimulator and trigger box stand for hardware with processors
of their own. Their serial readers run above the device process's priority
and on any core, so that the moment a pulse's bytes arrive they are read and
stamped, even while the device process spins for the next deadline (kept
off the device's core, on two cores they would queue behind each other and
the renderer on the one left). Background simulation (the
simulated EEG, which holds its samples back by a latency of its own) runs
with normal scheduling, in a process of its own, so that it neither preempts
the readers nor holds the interpreter lock they need.

Everything is best effort: without the permission (``CAP_SYS_NICE`` or an
``rtprio`` limit) the processes keep normal scheduling and timing is looser.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("stimtrain.devices.realtime")

#: SCHED_FIFO priority of the device process.
DEVICE_PRIORITY = 10
#: SCHED_FIFO priority of the simulated hardware's readers (above the device).
HARDWARE_PRIORITY = 20
#: SCHED_FIFO priority of a closed loop's phase decisions (below the device,
#: which must never wait for them).
TRIGGER_PRIORITY = 5


def _allowed() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return []


def device_core() -> int | None:
    """The core reserved for the device process (None: only one core)."""
    cpus = _allowed()
    return cpus[-1] if len(cpus) > 1 else None


def _fifo(priority: int, who: str) -> bool:
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        return True
    except (AttributeError, OSError):
        logger.info("no real-time priority for the %s; timing may be looser", who)
        return False


def tune_device_process() -> bool:
    """Pin the calling process to :func:`device_core`, at real-time priority.

    Threads started afterwards inherit both. Returns whether real-time
    priority was granted; without it the process asks for a better nice
    value instead.
    """
    core = device_core()
    if core is not None:
        try:
            os.sched_setaffinity(0, {core})
        except OSError:
            pass
    if _fifo(DEVICE_PRIORITY, "device process"):
        return True
    try:
        os.nice(-10)
    except OSError:
        pass
    return False


def tune_trigger_process() -> bool:
    """Run the calling process's decisions at real-time priority, off the device core.

    A closed loop's estimate costs a fraction of a millisecond per chunk of
    EEG, but with normal scheduling a busy renderer or garbage collection can
    hold it for several; below the device process's priority and off its
    core, it never delays a pulse. Threads started afterwards inherit it.
    Returns whether real-time priority was granted (else a better nice
    value is asked for).
    """
    core = device_core()
    if core is not None:
        try:
            os.sched_setaffinity(0, set(_allowed()) - {core})
        except OSError:
            pass
    if _fifo(TRIGGER_PRIORITY, "trigger process"):
        return True
    try:
        os.nice(-5)
    except OSError:
        pass
    return False


def tune_handover_thread() -> bool:
    """Give the calling thread real-time priority to pass deadlines on at once.

    For the thread of the session's process that receives the trigger
    process's deadlines and hands them to the device process; it sleeps in
    a blocking read, so the priority costs nothing until a deadline comes.
    Returns whether it was granted.
    """
    return _fifo(TRIGGER_PRIORITY, "deadline hand-over")


def tune_simulated_hardware() -> bool:
    """Run the calling process above the device process, on any core.

    Threads started afterwards inherit it. Returns whether real-time
    priority was granted.
    """
    return _fifo(HARDWARE_PRIORITY, "simulators")


def normal_scheduling() -> None:
    """Give the calling thread normal scheduling (inherited real-time dropped).

    For background work started from a real-time process: it must never
    delay the threads that time or stamp pulses.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (AttributeError, OSError):
        pass
