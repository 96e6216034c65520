"""The safety check against docs/specs/safety.md, with its limits from a data file."""

import pytest

from stimtrain.orchestrator.language.errors import ProtocolError
from stimtrain.orchestrator.language.protocol import load_protocol_text
from stimtrain.orchestrator.language.rig import simulated_rig
from stimtrain.orchestrator.language.units import Intensity
from stimtrain.orchestrator.safety.rules import (
    Thresholds,
    check_protocol,
    load_limits,
    resolve_intensity,
)

CLINICAL = """
stimtrain: 1
name: clinical 10 Hz
{safety}
blocks:
  - type: stimulate
    pattern: rtms
    intensity: 120 %RMT
    frequency: 10 Hz
    train_duration: 4 s
    trains: 75
    inter_train_interval: 26 s
"""


def _check(text, **kwargs):
    protocol = load_protocol_text(text, "p.yaml")
    return check_protocol(protocol, thresholds=Thresholds(rmt=50), **kwargs)


def test_clinical_protocol_passes_by_default():
    report = _check(CLINICAL.format(safety=""))
    assert report.ok, [str(p) for p in report.problems]
    train = [c for c in report.checks if c.rule.startswith("train duration")]
    assert train[0].limit == pytest.approx(4.2)
    assert train[0].margin == pytest.approx(0.2)
    # 75 trains of 40 pulses: the 3000-pulse clinical course fits the session cap.
    total = [c for c in report.checks if c.rule == "pulses per session"][0]
    assert total.value == 3000 and total.ok


def test_clinical_protocol_refused_with_the_stricter_margin():
    report = _check(CLINICAL.format(safety="safety: {stricter_margin: true}"))
    assert not report.ok
    assert "must be at most 3.15 s (got 4 s)" in str(report.problems[0])


def test_lab_limits_file_switches_the_margin_on(tmp_path):
    text = load_limits().source
    lab = tmp_path / "lab.yaml"
    lab.write_text(
        open(text).read().replace("stricter_margin: false", "stricter_margin: true")
    )
    report = _check(CLINICAL.format(safety=""), limits=load_limits(lab))
    assert not report.ok


def test_table_lookup_rounds_up_never_interpolates():
    limits = load_limits()
    # 12 Hz is checked against the 20 Hz row, 105 %MT against the 110 column.
    assert limits.max_train_duration(12, 105) == 1.6
    assert limits.max_train_duration(10, 100) == 5
    assert limits.max_train_duration(10, 90) == 5
    assert limits.max_train_duration(26, 100) is None
    assert limits.max_train_duration(10, 221) is None


def test_bad_limits_file_is_located(tmp_path):
    lab = tmp_path / "lab.yaml"
    text = open(load_limits().source).read()
    lab.write_text(
        text.replace("max_pulses_per_session: 3000", "max_pulses_per_session: lots")
    )
    with pytest.raises(
        ProtocolError, match=r"lab.yaml:\d+:\d+: error: max_pulses_per_session"
    ):
        load_limits(lab)


def test_intensity_conversion_rounds_down_to_device_resolution():
    dose = resolve_intensity(Intensity(110, "%RMT"), Thresholds(rmt=47))
    assert dose.power == 51  # 51.7 rounds down: never more than written
    assert dose.pct_rmt == pytest.approx(100 * 51 / 47)
    assert resolve_intensity(Intensity(120, "%RMT"), Thresholds(rmt=50)).power == 60
    assert resolve_intensity(Intensity(60, "%MSO"), Thresholds()).pct_rmt is None
    assert resolve_intensity(Intensity(80, "%AMT"), Thresholds(amt=40)).power == 32


def test_power_is_rounded_down_and_judged_as_sent():
    text = """
stimtrain: 1
name: tbs
blocks:
  - type: stimulate
    pattern: theta_burst
    variant: cTBS
    intensity: 70 %RMT
"""
    protocol = load_protocol_text(text, "t.yaml")
    # 70 % of 45 = 31.5 -> 31 %MSO = 68.9 %RMT: the power sent never exceeds
    # the intensity written, so a protocol at the cap stays at it.
    report = check_protocol(protocol, thresholds=Thresholds(rmt=45))
    assert report.ok, report.problems
    assert report.plan.blocks[0].power == 31
    # Written in %MSO, the power is judged in %RMT: 36 %MSO = 72 %RMT.
    mso = load_protocol_text(text.replace("70 %RMT", "36 %MSO"), "t.yaml")
    report = check_protocol(mso, thresholds=Thresholds(rmt=50))
    assert [str(p) for p in report.problems] == [
        "t.yaml:8:16: error: blocks[0].intensity: a theta-burst train of 200 bursts "
        "of 3 at 50 Hz (40 s): theta-burst intensity cap: "
        "must be at most 70 %RMT (got 36 %MSO = 72 %RMT)"
    ]


def test_device_limits_need_the_rig():
    text = """
stimtrain: 1
name: tbs
blocks:
  - type: stimulate
    pattern: theta_burst
    variant: iTBS
    intensity: 70 %RMT
"""
    protocol = load_protocol_text(text, "t.yaml")
    no_rig = check_protocol(protocol, thresholds=Thresholds(rmt=80))
    assert no_rig.ok
    with_rig = check_protocol(
        protocol, thresholds=Thresholds(rmt=80), rig=simulated_rig()
    )
    assert "maximum frequency at 56 %MSO" in str(with_rig.problems[0])


def test_run_requires_device_power():
    text = CLINICAL.format(safety="")
    protocol = load_protocol_text(text, "p.yaml")
    report = check_protocol(protocol, thresholds=Thresholds(), require_power=True)
    assert any(
        "needs the participant's threshold (--rmt)" in str(p) for p in report.problems
    )
