"""A stimulation block's timeline: units, safe points for a pause, restarts."""

import pytest

from stimtrain.orchestrator.language.thresholds import Thresholds
from stimtrain.orchestrator.safety.checking import check_file
from stimtrain.orchestrator.session.block_timeline import SAFE_GAP_S, BlockTimeline
from stimtrain.protocols import protocol_path


def _itbs_like():
    # Two trains of three 5 Hz pulses, 8 s apart: the pause goes between them.
    offsets = [1.0, 1.2, 1.4, 9.4, 9.6, 9.8]
    return BlockTimeline(offsets, 1, 11.0)


def test_units_and_schedule_items():
    tl = BlockTimeline([0.5, 0.6, 0.7, 5.5, 5.6, 5.7], 3, 8.0)
    assert tl.n_units == 2
    assert tl.items(100.0, [0, 1], "device_train") == [
        (100.5, 0, "device_train"),
        (105.5, 1, "device_train"),
    ]
    assert tl.unit_last_offset(0) == 0.7 and tl.last_pulse(100.0) == 105.7
    assert tl.end(100.0) == 108.0


def test_bad_timelines_are_refused():
    with pytest.raises(ValueError, match="at least one pulse"):
        BlockTimeline([], 1, 1.0)
    with pytest.raises(ValueError, match="5 pulses don't split into units of 2"):
        BlockTimeline([0, 1, 2, 3, 4], 2, 5.0)


def test_safe_point_is_the_next_gap_between_trains():
    tl = _itbs_like()
    # Nothing given yet: the first pulse itself is a safe point.
    assert tl.safe_point(100.0, set(), after=100.5) == (0, 101.0)
    # Inside the first train: not before its 2nd or 3rd pulse, but before
    # the next train.
    assert tl.safe_point(100.0, {0}, after=101.1) == (3, 109.4)
    # Too close to the next train's start (the lead): none left.
    assert tl.safe_point(100.0, {0, 1, 2}, after=109.5) is None


def test_single_pulses_at_1_hz_pause_between_any_two():
    tl = BlockTimeline([1.0 + SAFE_GAP_S * i for i in range(5)], 1, 6.0)
    assert tl.safe_point(0.0, {0, 1}, after=2.5) == (2, 3.0)


def test_continuous_pattern_has_no_safe_point_once_started():
    tl = BlockTimeline([1.0 + 0.2 * i for i in range(10)], 1, 3.0)
    assert tl.safe_point(0.0, {0}, after=1.1) is None


def test_restart_keeps_the_intervals_of_what_is_left():
    tl = _itbs_like()
    start = tl.restart({0, 1, 2}, at=500.0)
    items = tl.items(start, tl.left({0, 1, 2}), "trigger")
    assert [round(t, 9) for t, _, _ in items] == [500.0, 500.2, 500.4]
    assert [i for _, i, _ in items] == [3, 4, 5]
    assert tl.last_pulse_before(100.0, 109.4) == pytest.approx(101.4)
    assert tl.last_pulse_before(100.0, 100.5) is None
    with pytest.raises(ValueError, match="every unit"):
        tl.restart(set(range(6)), at=1.0)


def test_library_itbs_pauses_between_its_trains():
    # The library's iTBS: 2 s trains of 10 bursts, 8 s apart.
    checked = check_file(protocol_path("itbs.yaml"), thresholds=Thresholds(rmt=50))
    planned = next(b for b in checked.plan.blocks if b.pulses == 600)
    tl = BlockTimeline(planned.pulse_offsets_s, 1, planned.duration_s)
    first = tl.unit_offset(0)
    # A pause pressed 1 s into the first train waits for the second: 30
    # pulses per train (10 bursts of 3), the next train 10 s after the first.
    unit, t = tl.safe_point(0.0, set(range(10)), after=first + 1.0)
    assert unit == 30 and t == pytest.approx(first + 10.0)
