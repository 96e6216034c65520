"""Test configuration: LSL stays on this machine; PsychoPy gets a virtual display."""

from stimtrain.orchestrator.lslconfig import use_local_lsl

# Must be set before liblsl initialises, i.e. before pylsl is first used.
use_local_lsl()
