"""Test configuration: LSL stays on this machine; PsychoPy gets a virtual display."""

import os
from importlib.resources import files

# Must be set before liblsl initialises, i.e. before pylsl is first used.
os.environ.setdefault(
    "LSLAPICFG", str(files("stimtrain.orchestrator") / "data" / "lsl_api.cfg")
)
