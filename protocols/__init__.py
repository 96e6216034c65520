"""Ready protocol files, each runnable on the simulated rig."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def protocol_path(name: str) -> Path:
    """Path of a protocol file shipped with stimtrain (e.g. ``"demo.yaml"``)."""
    path = Path(str(files("stimtrain.protocols") / name))
    if not path.is_file():
        known = sorted(p.name for p in path.parent.glob("*.yaml"))
        raise FileNotFoundError(f"no shipped protocol {name!r}; known: {known}")
    return path
