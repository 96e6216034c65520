"""One line describing the machine a benchmark ran on (printed with its numbers)."""

from __future__ import annotations

import os
import platform


def describe() -> str:
    """CPU model, cores, memory, kernel and Python version."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def steal_ms() -> dict[str, float]:
    """Time the hypervisor has taken from each virtual CPU so far, in ms.

    From ``/proc/stat`` (the ``steal`` column); empty where it is unknown. A
    difference across a measurement says whether the virtual machine itself
    was paused meanwhile, which no scheduling inside it can prevent.
    """
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu"):
                    fields = line.split()
                    if len(fields) > 8:
                        out[fields[0]] = int(fields[8]) * tick_ms
    except OSError:
        pass
    return out


def steal_since(before: dict[str, float]) -> str:
    """``steal_ms()`` now minus ``before``, one ``cpuN: X ms`` per CPU."""
    now = steal_ms()
    return ", ".join(
        f"{cpu}: {now[cpu] - before.get(cpu, 0.0):.0f} ms"
        for cpu in now
        if cpu != "cpu"
    )
