"""Child processes that end with their parent.

Every room starts helper processes (the simulated rig, its EEG amplifier, a
virtual X server) that must not outlive a parent killed outright (SIGKILL,
a crash): they would go on serving ports and LSL streams nobody records.
"""

from __future__ import annotations

import ctypes
import signal

#: prctl option: signal to deliver when the parent (thread) dies (Linux).
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to send SIGTERM to the calling process when its parent dies.

    Call it in the child (as ``preexec_fn`` of :class:`subprocess.Popen`, or
    first thing in a spawned process). Linux only; elsewhere it does nothing.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
