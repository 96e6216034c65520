"""The protocol library: every file checks, and its plan matches hand counts."""

from dataclasses import replace
from pathlib import Path

import pytest

from stimtrain.orchestrator.language.course_file import load_course
from stimtrain.orchestrator.language.rig import simulated_rig
from stimtrain.orchestrator.safety.checking import check_file
from stimtrain.orchestrator.safety.rules import Thresholds

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
    # Two triggered blocks of at most 12 pulses each, each ending by 40 s.
    "mu_phase_single_pulses.yaml": (24, [1.5 + 40, 1.5 + 40]),
    "itbs_then_training.yaml": (600, [1.5 + 190 + 1.8 + 0.04 + 1]),
    "followup.yaml": (60, [None]),
    "demo.yaml": (72, [None, 1.5 + 10 + 1.8 + 0.04 + 1]),
    # 2 repetitions of 10 SICI pairs + 10 ICF pairs + 10 test pulses.
    "sici_icf.yaml": (100, [None] * 6),
    # At most 40 hotspot and 60 threshold pulses; no stimulate block.
    "motor_threshold.yaml": (100, []),
    # At most 60 threshold pulses, then the iTBS 600 of itbs_then_training.
    "threshold_then_itbs.yaml": (660, [1.5 + 190 + 1.8 + 0.04 + 1]),
}
#: Library protocols that measure the thresholds themselves: judged without
#: one given, each RMT of the sweep standing for the one they would measure.
MEASURING = {"motor_threshold.yaml", "threshold_then_itbs.yaml"}


def _rig(name):
    if name == "sici_icf.yaml":
        return replace(simulated_rig(), stimulator_model="bistim")
    return simulated_rig()


def test_every_library_file_is_listed():
    assert sorted(p.name for p in LIBRARY.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_library_plan_matches_hand_count(name):
    checked = check_file(
        LIBRARY / name,
        rig=_rig(name),
        thresholds=None if name in MEASURING else TH,
        require_power=True,
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


# --- every library protocol on every simulated rig, RMT 35 to 65 %MSO -------

#: The thresholds swept: every RMT a participant is likely to have, and an AMT
#: of 80 % of it (rounded down) for the protocols written in %AMT.
RMTS = range(35, 66)
SIM_RIGS = ("sim",) + tuple(
    f"sim-{key}"
    for key in (
        "200",
        "bistim",
        "rapid2",
        "super_rapid2_plus",
        "magpro_r30",
        "magpro_r30_magoption",
        "magpro_x100",
        "magpro_x100_magoption",
    )
)
DOCS = Path(__file__).parents[2] / "docs" / "protocols.md"


def _sweep(name: str, rig_name: str) -> dict[int, list[str]]:
    """Each RMT's refusals (empty when the protocol passes), on one rig."""
    from stimtrain.orchestrator.language.protocol import load_protocol
    from stimtrain.orchestrator.language.rig import load_rig
    from stimtrain.orchestrator.safety.limits import load_limits
    from stimtrain.orchestrator.safety.plan import compile_plan
    from stimtrain.orchestrator.safety.rules import check_plan

    protocol = load_protocol(LIBRARY / name)
    rig = load_rig(rig_name)
    limits = load_limits()
    out = {}
    for rmt in RMTS:
        th = Thresholds(rmt=rmt, amt=int(0.8 * rmt))
        if name in MEASURING:
            plan = compile_plan(protocol, rig=rig, measured=th)
        else:
            plan = compile_plan(protocol, rig=rig, thresholds=th)
        report = check_plan(plan, protocol, rig=rig, limits=limits, require_power=True)
        out[rmt] = [str(p) for p in report.problems]
    return out


def _range(refusals: dict[int, list[str]]) -> str:
    fits = [rmt for rmt, problems in refusals.items() if not problems]
    if not fits:
        return "—"
    # The ranges are contiguous: a gap would be a finding worth a row of its own.
    assert fits == list(range(fits[0], fits[-1] + 1)), fits
    return f"{fits[0]}–{fits[-1]}"


def _docs_ranges() -> dict[str, dict[str, str]]:
    """The RMT-range table of docs/protocols.md §9, as {file: {rig: range}}."""
    lines = DOCS.read_text(encoding="utf-8").splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith("| file | sim |"))
    rigs = [c.strip().strip("`") for c in lines[head].strip("|").split("|")][1:]
    table = {}
    for line in lines[head + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        table[cells[0].strip("`")] = dict(zip(rigs, cells[1:], strict=True))
    return table


def test_every_library_protocol_names_its_rig():
    from stimtrain.orchestrator.language.protocol import load_protocol

    for name in EXPECTED:
        assert load_protocol(LIBRARY / name).rig in SIM_RIGS, name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_library_fits_its_rig_or_names_a_device_limit(name):
    """On its own rig a library protocol passes for every RMT from 35 to 65 %MSO;
    on every other simulated rig it passes or is refused for a device limit
    (never for a physiological rule), and the docs give the range it fits."""
    from stimtrain.devices.stimulator import get_capabilities
    from stimtrain.orchestrator.language.protocol import load_protocol
    from stimtrain.orchestrator.language.rig import load_rig

    own = load_protocol(LIBRARY / name).rig
    documented = _docs_ranges()[name]
    for rig_name in SIM_RIGS:
        refusals = _sweep(name, rig_name)
        if rig_name == own:
            assert all(not p for p in refusals.values()), refusals
        label = get_capabilities(load_rig(rig_name).stimulator_model).label
        for problems in refusals.values():
            for problem in problems:
                assert label in problem or "device power" in problem, problem
        assert documented[rig_name] == _range(refusals), rig_name
