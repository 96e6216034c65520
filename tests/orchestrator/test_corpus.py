"""Every invalid or unsafe protocol in tests/corpus gives its exact message."""

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stimtrain.cli import main

CORPUS = Path(__file__).parents[1] / "corpus"
EXPECTED = yaml.safe_load((CORPUS / "expected.yaml").read_text())


def _args(path: Path) -> list[str]:
    for line in path.read_text().splitlines():
        if line.startswith("# args: "):
            return shlex.split(line[len("# args: ") :])
    return []


def test_corpus_is_complete():
    files = sorted(
        f"{p.parent.name}/{p.name}"
        for sub in ("invalid", "unsafe")
        for p in (CORPUS / sub).glob("*.yaml")
    )
    assert files == sorted(EXPECTED)
    assert len(files) >= 60


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_exact_message(name, monkeypatch, capsys):
    path = CORPUS / name
    monkeypatch.chdir(path.parent)
    status = main(["validate", "-q", path.name, *_args(path)])
    out = capsys.readouterr().out.strip().splitlines()
    assert status == 1
    assert out == EXPECTED[name]


def test_console_script_exit_codes(tmp_path):
    good = Path(__file__).parents[2] / "protocols" / "demo.yaml"
    bad = CORPUS / "invalid" / "rest_no_unit.yaml"
    ok = subprocess.run(
        [sys.executable, "-m", "stimtrain.cli", "validate", str(good)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    both = subprocess.run(
        [
            sys.executable,
            "-m",
            "stimtrain.cli",
            "validate",
            str(good),
            str(bad),
        ],
        capture_output=True,
        text=True,
    )
    assert both.returncode == 1
    lines = [line for line in both.stdout.splitlines() if "error:" in line]
    assert lines == [
        f"{bad}:5:15: error: blocks[0].duration: needs a time unit (us, ms, s, min or h), "
        "e.g. '150 ms' (got 5)"
    ]


def test_every_problem_reported_at_once(tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text(
        "stimtrain: 1\nname: many\nblocks:\n"
        "  - type: rest\n    duration: 5\n"
        "  - type: rest\n    duration: 2 parsecs\n"
        "  - type: nap\n"
    )
    from stimtrain.orchestrator.language.errors import ProtocolError
    from stimtrain.orchestrator.language.protocol import load_protocol

    with pytest.raises(ProtocolError) as info:
        load_protocol(path)
    assert [(p.line, p.field) for p in info.value.problems] == [
        (5, "blocks[0].duration"),
        (7, "blocks[1].duration"),
        (8, "blocks[2].type"),
    ]
