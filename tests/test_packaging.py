"""Packaging: the built wheel holds the whole tree, and editors resolve
``stimtrain.<room>`` imports in the tree itself."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("orchestrator", "devices", "tasks", "analysis", "protocols")
#: Data files that ship with the package (pyproject's package-data).
DATA = ("*.yaml", "*.cfg", "*.json")


def _tree_files(root: Path) -> set[str]:
    """Every module and data file of the rooms, as the wheel should name it."""
    names = {f"stimtrain/{p.name}" for p in (root / "stimtrain").glob("*.py")}
    for room in ROOMS:
        for path in (root / room).rglob("*"):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            if path.suffix == ".py" or any(path.match(g) for g in DATA):
                names.add(f"stimtrain/{room}/{path.relative_to(root / room)}")
    return names


def test_the_wheel_holds_every_module_and_data_file(tmp_path):
    # A copy of the tree with a new stage folder nobody listed anywhere.
    tree = tmp_path / "tree"
    keep = {"pyproject.toml", "README.md", "stimtrain", *ROOMS}
    for item in ROOT.iterdir():
        if item.name in keep:
            copy = shutil.copytree if item.is_dir() else shutil.copy2
            kwargs = {"symlinks": True} if item.is_dir() else {}
            copy(item, tree / item.name, **kwargs)
    stage = tree / "orchestrator" / "new_stage"
    stage.mkdir()
    (stage / "__init__.py").write_text('"""A stage added later."""\n')
    (stage / "part.py").write_text('"""One module of it."""\n')
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "-q", "-w", str(tmp_path), str(tree)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = tmp_path.glob("stimtrain-*.whl")
    with zipfile.ZipFile(wheel) as z:
        shipped = {n for n in z.namelist() if n.startswith("stimtrain/")}
    assert "stimtrain/orchestrator/new_stage/part.py" in shipped
    missing = _tree_files(tree) - shipped
    assert not missing, sorted(missing)
    # Nothing from outside the rooms (tests, docs, benchmarks) is shipped.
    assert not {n for n in shipped if n.split("/")[1] in ("tests", "docs")}


def test_editors_resolve_room_imports_in_the_tree():
    jedi = pytest.importorskip("jedi")
    code = (
        "from stimtrain.orchestrator.safety.plan import compile_plan\ncompile_plan\n"
        "from stimtrain.devices.stimulator import Stimulator\nStimulator\n"
        "from stimtrain.tasks.api import Task\nTask\n"
        "from stimtrain.analysis.xdf import read_markers\nread_markers\n"
    )
    script = jedi.Script(code, path=ROOT / "scratch.py", project=jedi.Project(ROOT))
    found = {}
    for line, room in (
        (2, "orchestrator"),
        (4, "devices"),
        (6, "tasks"),
        (8, "analysis"),
    ):
        names = script.goto(line, 2, follow_imports=True)
        assert names, f"stimtrain.{room}: not resolved"
        found[room] = Path(names[0].module_path).resolve()
    for room, path in found.items():
        # The definition is in the room's own top-level folder.
        assert path.is_relative_to(ROOT / room), (room, path)
