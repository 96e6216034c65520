"""The rooms depend one way (docs/architecture.md), checked on every import.

In the manner of MNE-Python's import-nesting test: each module's imports are
read from its source (not executed), mapped to the room they belong to, and
held to the allowed graph. A new import that breaks it fails here, naming the
module and the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("orchestrator", "devices", "tasks", "analysis", "protocols")
#: Which rooms each room may import. ``stimtrain`` is the shared layer at the
#: package's root (the command line, the marker vocabulary, helpers every
#: room may use); it imports rooms only from its command line.
ALLOWED = {
    "orchestrator": {"orchestrator", "devices", "tasks", "stimtrain"},
    "devices": {"devices", "stimtrain"},
    "tasks": {"tasks", "stimtrain"},
    "analysis": {"analysis", "stimtrain"},
    "protocols": {"protocols"},
    "stimtrain": {"stimtrain"},
}
#: Shared-layer modules that sit above the rooms (they may import any room).
TOP = {"stimtrain/cli.py"}


def _modules():
    for room in ROOMS:
        for path in sorted((ROOT / room).rglob("*.py")):
            yield room, path, f"{room}/{path.relative_to(ROOT / room)}"
    for path in sorted((ROOT / "stimtrain").glob("*.py")):
        yield "stimtrain", path, f"stimtrain/{path.name}"


def _imported_rooms(path: Path, room: str, root: Path = ROOT) -> set[tuple[str, str]]:
    """``(room, import text)`` of every stimtrain import in one module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = path.relative_to(root).parent.parts
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # Relative: resolve against the module's own package.
                base = package[: len(package) - node.level + 1]
                names = [".".join(("stimtrain", *base, node.module or ""))]
                if base and base[0] == "stimtrain":
                    names = [".".join((*base, node.module or ""))]
            else:
                names = [node.module or ""]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] != "stimtrain":
                continue
            target = parts[1] if len(parts) > 1 and parts[1] in ROOMS else "stimtrain"
            found.add((target, name))
    return found


def test_rooms_depend_one_way():
    broken = []
    for room, path, shown in _modules():
        if shown in TOP:
            continue
        for target, name in sorted(_imported_rooms(path, room)):
            if target not in ALLOWED[room]:
                broken.append(f"{shown} imports {name} ({room} -> {target})")
    assert not broken, "\n".join(broken)


def test_the_graph_sees_relative_and_absolute_imports():
    # The checker itself: a module of each kind is read right.
    plan = ROOT / "orchestrator" / "safety" / "plan.py"
    orchestrator = _imported_rooms(plan, "orchestrator")
    assert ("orchestrator", "stimtrain.orchestrator.safety.delivery") in orchestrator
    assert ("orchestrator", "stimtrain.orchestrator.language.protocol") in orchestrator
    devices = _imported_rooms(ROOT / "devices" / "magstim" / "driver.py", "devices")
    assert ("devices", "stimtrain.devices.errors") in devices


#: The orchestrator's stages, in the order a protocol goes through them: each
#: may import the stages before it, never one after it.
STAGES = ("language", "safety", "session")


def _stage(name: str) -> str | None:
    parts = name.split(".")
    if parts[:2] != ["stimtrain", "orchestrator"] or len(parts) < 3:
        return None
    return parts[2] if parts[2] in STAGES else None


def test_orchestrator_stages_depend_one_way():
    broken = []
    for room, path, shown in _modules():
        if room != "orchestrator":
            continue
        here = path.relative_to(ROOT / "orchestrator").parts[0]
        if here not in STAGES:
            assert path.name == "__init__.py", f"{shown}: a module outside a stage"
            continue
        for _, name in sorted(_imported_rooms(path, room)):
            there = _stage(name)
            if there is not None and STAGES.index(there) > STAGES.index(here):
                broken.append(f"{shown} imports {name} ({here} -> {there})")
    assert not broken, "\n".join(broken)


def test_the_stage_check_sees_a_backward_import(tmp_path):
    # The checker itself: a language module importing the session is seen.
    module = tmp_path / "orchestrator" / "language" / "x.py"
    module.parent.mkdir(parents=True)
    module.write_text("from ..session.journal import Journal\nfrom . import spec\n")
    stages = {_stage(name) for _, name in _imported_rooms(module, "x", tmp_path)}
    assert stages == {"session", "language"}
