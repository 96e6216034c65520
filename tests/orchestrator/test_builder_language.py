"""Builder task blocks in the protocol language: path, hash, params and the plan."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stimtrain.orchestrator.language.protocol import load_protocol
from stimtrain.orchestrator.safety.plan import compile_plan

BUILDER = Path(__file__).parents[1] / "corpus" / "builder"


@pytest.fixture
def layout(tmp_path):
    """A protocol in one folder, its experiment in a sibling one."""
    shutil.copytree(BUILDER, tmp_path / "experiments")
    (tmp_path / "protocols").mkdir()
    return tmp_path


def _write(layout: Path, block: str) -> Path:
    path = layout / "protocols" / "p.yaml"
    path.write_text(f"stimtrain: 1\nname: b\nblocks:\n{block}")
    return path


BLOCK = (
    "  - type: task\n"
    "    builder: ../experiments/{name}.psyexp\n"
    "    trials: 3\n"
    "    params: {{participant: p01, hand: left}}\n"
    "    tms: {{at: word.started + 150 ms, intensity: 50 %MSO}}\n"
)


def test_builder_block_is_read_relative_to_the_protocol(layout, monkeypatch):
    monkeypatch.chdir(layout / "experiments")  # not where the protocol is
    protocol = load_protocol(_write(layout, BLOCK.format(name="keys")))
    (block,) = protocol.blocks
    facts = block.builder
    assert Path(facts.path) == layout / "experiments" / "keys.psyexp"
    assert block.task == "keys" and block.params == {
        "participant": "p01",
        "hand": "left",
    }
    # 4 rows in its loops, capped at the block's 3 trials; one word per row.
    assert block.trials == 3 and facts.onsets == 3 and facts.onset_gap_s == 0.5
    assert block.n_pulses == 3


def test_experiment_bytes_are_in_the_protocol_hash(layout):
    path = _write(layout, BLOCK.format(name="keys"))
    before = load_protocol(path).sha256
    exp = layout / "experiments" / "keys.psyexp"
    exp.write_bytes(exp.read_bytes() + b"\n")
    assert load_protocol(path).sha256 != before


def test_loops_give_the_trials_without_a_cap(layout):
    path = _write(layout, BLOCK.format(name="keys").replace("    trials: 3\n", ""))
    (block,) = load_protocol(path).blocks
    assert block.trials == 4 and block.builder.onsets == 4


def test_plan_judges_every_start_at_the_shortest_gap(layout):
    (block,) = compile_plan(
        load_protocol(_write(layout, BLOCK.format(name="keys")))
    ).blocks
    assert block.pulses == 3 and block.min_interval_s == 0.5
    assert block.run_decides_timing and block.task == "keys" and block.trials == 3
    assert "word.started + 150 ms" in block.online
