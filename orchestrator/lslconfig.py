"""The LSL configuration stimtrain ships: keep every stream on this machine.

Kept free of pylsl imports: liblsl reads ``LSLAPICFG`` when it starts, so the
variable must be set before anything uses LSL.
"""

from __future__ import annotations

import os
from importlib.resources import files

LSL_CONFIG = files("stimtrain.orchestrator") / "data" / "lsl_api.cfg"


def use_local_lsl() -> None:
    """Point liblsl at the shipped machine-local configuration.

    A lab's own ``LSLAPICFG`` (networked amplifiers) is left in place.
    """
    os.environ.setdefault("LSLAPICFG", str(LSL_CONFIG))
