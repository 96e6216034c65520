"""Reading where a crashed session stands, from the fsynced journals of its runs."""

import pytest

from stimtrain.orchestrator.session.journal import Journal
from stimtrain.orchestrator.session.resume import read_resume_point
from stimtrain.orchestrator.session.session_folder import new_run


def _run(root, events, sha="abc", truncate=False):
    folder = new_run(root, "P01", "1")
    journal = Journal(folder.file("journal.jsonl"))
    journal.write(
        "run_created",
        protocol="/x/demo.yaml",
        protocol_sha256=sha,
        thresholds={"rmt": 50, "amt": None},
        rig="sim",
    )
    for event, fields in events:
        journal.write(event, **fields)
    journal.close()
    if truncate:
        # A run killed while writing: the last line is cut in the middle.
        with open(folder.file("journal.jsonl"), "a") as f:
            f.write('{"event": "pulse", "blo')
    return folder


def test_resume_point_counts_blocks_and_pulses_across_runs(tmp_path):
    pulses = [("pulse", {"block": 2, "pulse": i}) for i in range(5)]
    first = _run(
        tmp_path,
        [
            ("block_end", {"block": 0, "completed": True}),
            ("block_end", {"block": 1, "completed": True}),
            *pulses,
        ],
        truncate=True,
    )
    _run(
        tmp_path,
        [
            ("block_skipped", {"block": 0}),
            *pulses[:3],
            ("block_end", {"block": 2, "completed": True}),
            ("block_end", {"block": 3, "completed": False}),
        ],
    )
    point = read_resume_point(first.path)
    assert point.runs == (1, 2)
    assert point.completed_blocks == {0, 1, 2}
    assert point.pulses_delivered == 8
    assert point.participant == "P01" and point.session == "1"
    assert point.thresholds == {"rmt": 50, "amt": None}
    assert not point.finished


def test_resume_refuses_mixed_protocols_and_empty_folders(tmp_path):
    first = _run(tmp_path, [], sha="aaa")
    _run(tmp_path, [], sha="bbb")
    with pytest.raises(ValueError, match="ran another protocol"):
        read_resume_point(first.path)
    with pytest.raises(ValueError, match="not a session folder"):
        read_resume_point(tmp_path)
    empty = tmp_path / "sub-P02" / "ses-1"
    empty.mkdir(parents=True)
    with pytest.raises(ValueError, match="no run of a session here"):
        read_resume_point(empty)


def test_finished_session_is_reported(tmp_path):
    folder = _run(tmp_path, [("session_end", {"status": "completed"})])
    assert read_resume_point(folder.path).finished


def test_resume_carries_a_measured_threshold_to_the_blocks_after_it(tmp_path):
    from stimtrain.orchestrator.language.errors import ProtocolError
    from stimtrain.orchestrator.language.thresholds import Thresholds
    from stimtrain.orchestrator.safety.checking import check_file
    from stimtrain.protocols import protocol_path

    result = {"block": 1, "measures": "rmt", "method": "bayes", "pulses": 18}
    first = _run(
        tmp_path,
        [
            ("block_end", {"block": 0, "completed": True}),
            ("threshold_result", {**result, "value": 48.6, "converged": True}),
            ("block_end", {"block": 1, "completed": True}),
            # A crash in the iTBS: the next run starts there.
            ("pulse", {"block": 2, "pulse": 0}),
        ],
    )
    point = read_resume_point(first.path)
    assert point.completed_blocks == {0, 1}
    assert point.measured == {"rmt": 48.6}
    # The resumed run judges and powers the iTBS with the measured RMT.
    checked = check_file(
        protocol_path("threshold_then_itbs.yaml"),
        require_power=True,
        skip_blocks=point.completed_blocks,
        delivered_session=point.pulses_delivered,
        measured=Thresholds(**point.measured),
    )
    assert checked.plan.blocks[2].power == 34  # 70 % of 48.6, rounded down
    # A value the protocol was not judged for is refused, located.
    with pytest.raises(ProtocolError) as info:
        check_file(
            protocol_path("threshold_then_itbs.yaml"),
            require_power=True,
            skip_blocks=point.completed_blocks,
            measured=Thresholds(rmt=74.0),
        )
    (problem,) = info.value.problems
    assert problem.field == "expected_rmt"
    assert "74.0 %MSO, is outside this range" in problem.rule


def test_an_unconverged_or_unfinished_hunt_carries_nothing(tmp_path):
    result = {"block": 1, "measures": "rmt", "method": "bayes", "pulses": 60}
    first = _run(
        tmp_path,
        [
            ("block_end", {"block": 0, "completed": True}),
            ("threshold_result", {**result, "value": 47.0, "converged": False}),
            ("block_end", {"block": 1, "completed": True}),
        ],
    )
    assert read_resume_point(first.path).measured == {}
