"""The protocol library: every file checks, and its plan matches hand counts."""

from dataclasses import replace
from pathlib import Path

import pytest

from stimtrain.orchestrator.checking import check_file
from stimtrain.orchestrator.course import load_course
from stimtrain.orchestrator.rig import simulated_rig
from stimtrain.orchestrator.safety import Thresholds

LIBRARY = Path(__file__).parents[2] / "protocols"
TH = Thresholds(rmt=50, amt=40)

# (pulses, stimulation-block durations in s) computed by hand from the files:
# a stimulation block lasts 1.5 s (arming) + its last pulse's offset + 1 s
# (tail) for trains; single pulses end one interval after the last pulse.
EXPECTED = {
    # 900 pulses at 1 Hz: last pulse at 899 s.
    "one_hz_rtms.yaml": (900, [1.5 + 899 + 1]),
    # 75 trains of 40 at 10 Hz, period 4 + 26 = 30 s: last pulse 74*30 + 3.9.
    "ten_hz_clinical.yaml": (3000, [1.5 + 74 * 30 + 3.9 + 1]),
    # 20 trains of 40 at 20 Hz, period 2 + 28 s: last pulse 19*30 + 1.95.
    "twenty_hz.yaml": (800, [1.5 + 19 * 30 + 1.95 + 1]),
    # 200 bursts in 20 trains of 10 (2 s on, 8 s off): last burst at
    # 19*10 + 9/5 s, its last pulse 2/50 s later.
    "itbs.yaml": (640, [None, 1.5 + 190 + 1.8 + 0.04 + 1, None]),
    # 200 bursts at 5 Hz without pause.
    "ctbs.yaml": (600, [1.5 + 199 / 5 + 0.04 + 1]),
    "online_tms_flanker.yaml": (40, []),
    "itbs_then_training.yaml": (600, [1.5 + 190 + 1.8 + 0.04 + 1]),
    "followup.yaml": (60, [None]),
    "demo.yaml": (72, [None, 1.5 + 10 + 1.8 + 0.04 + 1]),
    # 2 repetitions of 10 SICI pairs + 10 ICF pairs + 10 test pulses.
    "sici_icf.yaml": (100, [None] * 6),
}


def _rig(name):
    if name == "sici_icf.yaml":
        return replace(simulated_rig(), stimulator_model="bistim")
    return simulated_rig()


def test_every_library_file_is_listed():
    assert sorted(p.name for p in LIBRARY.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_library_plan_matches_hand_count(name):
    checked = check_file(
        LIBRARY / name, rig=_rig(name), thresholds=TH, require_power=True
    )
    plan = checked.plan
    pulses, durations = EXPECTED[name]
    assert plan.total_pulses == pulses
    stim = [b for b in plan.blocks if b.type == "stimulate"]
    assert len(stim) == len(durations)
    for block, expected in zip(stim, durations, strict=True):
        if expected is not None:
            assert block.duration_s == pytest.approx(expected, abs=1e-6), block.label
        assert block.power is not None and block.delivery in (
            "serial",
            "trigger",
            "paired",
        )


def test_clinical_protocol_uses_the_whole_session_cap():
    plan = check_file(LIBRARY / "ten_hz_clinical.yaml", thresholds=TH).plan
    cap = [c for c in plan.checks if c["rule"] == "pulses per session"][0]
    assert cap["margin"] == 0 and cap["ok"]
    train = [c for c in plan.checks if c["rule"].startswith("train duration")][0]
    assert (train["limit"], train["value"]) == (4.2, 4.0)


def test_sici_order_is_random_and_recorded():
    plan = check_file(
        LIBRARY / "sici_icf.yaml", rig=_rig("sici_icf.yaml"), thresholds=TH
    ).plan
    assert len(plan.order) == 2
    labels = [b.label for b in plan.blocks]
    assert sorted(labels[:3]) == [
        "ICF 10 ms (1/2)",
        "SICI 3 ms (1/2)",
        "test alone (1/2)",
    ]


def test_course_library_loads():
    course = load_course(LIBRARY / "courses" / "four_day_itbs_training.yaml")
    assert [s.label for s in course.sessions] == [
        "day1",
        "day2",
        "day3",
        "day4",
        "fu1w",
        "fu1m",
    ]
