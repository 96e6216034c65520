"""Which core and priority the device process and the simulated hardware get.

The device process, which times every pulse, runs on the last core this
process may use, at real-time priority. The simulated rig stands for hardware
with processors of its own: it runs on the other cores, above the device
process's priority, so that neither ever waits for the other (a simulator on
the device's core would delay a spin to a deadline; a device process on the
simulator's core would delay the simulator's stamp of a pulse). Both are best
effort: without the permission (``CAP_SYS_NICE`` or an ``rtprio`` limit) the
processes run with normal priority and timing is looser.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("stimtrain.devices.realtime")

#: SCHED_FIFO priority of the device process.
DEVICE_PRIORITY = 10
#: SCHED_FIFO priority of the simulated hardware (above the device process).
HARDWARE_PRIORITY = 20


def _allowed() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return []


def device_core() -> int | None:
    """The core reserved for the device process (None: only one core)."""
    cpus = _allowed()
    return cpus[-1] if len(cpus) > 1 else None


def _set(cpus: set[int] | None, priority: int, who: str) -> bool:
    if cpus:
        try:
            os.sched_setaffinity(0, cpus)
        except OSError:
            pass
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
    if _set({core} if core is not None else None, DEVICE_PRIORITY, "device"):
        return True
    try:
        os.nice(-10)
    except OSError:
        pass
    return False


def tune_simulated_hardware() -> bool:
    """Keep the simulators off :func:`device_core`, above its priority.

    Returns whether real-time priority was granted.
    """
    core = device_core()
    others = set(_allowed()) - {core} if core is not None else None
    return _set(others, HARDWARE_PRIORITY, "simulators")
