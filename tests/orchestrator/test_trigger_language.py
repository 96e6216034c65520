"""The trigger section of stimulate blocks and the rig's EEG, as read from files."""

import json

import pytest

from stimtrain.orchestrator.language.errors import ProtocolError
from stimtrain.orchestrator.language.protocol import load_protocol_text
from stimtrain.orchestrator.language.rig import load_rig, simulated_rig
from stimtrain.orchestrator.language.thresholds import PhaseOffset, Thresholds
from stimtrain.orchestrator.language.trigger import (
    MONTAGE_PRESETS,
    TriggeredPulses,
    rig_problems,
)
from stimtrain.orchestrator.safety.checking import check_file
from stimtrain.orchestrator.safety.rules import check_protocol
from stimtrain.orchestrator.session.closed_loop import PRESETS

HEAD = "stimtrain: 1\nname: t\nblocks:\n"


def _block(body: str) -> str:
    lines = [
        "  - type: stimulate",
        "    pattern: single",
        "    intensity: 50 %MSO",
    ]
    return HEAD + "\n".join(lines) + "\n" + body


def test_defaults_follow_phastimate():
    """A bare trigger is C3 Hjorth, 8-13 Hz, AR over 500 ms, median gate of 60 s."""
    p = load_protocol_text(
        _block("    pulses: 5\n    trigger:\n      target: trough\n")
    )
    pattern = p.blocks[0].pattern
    assert isinstance(pattern, TriggeredPulses)
    t = pattern.trigger
    assert t.target_deg == 180.0
    assert t.band_hz == (8.0, 13.0)
    assert t.montage == MONTAGE_PRESETS["c3_hjorth"]
    assert (t.estimator, t.window_s) == ("ar", 0.5)
    assert (t.gate_percentile, t.gate_span_s) == (50.0, 60.0)
    assert (t.min_interval_s, t.max_interval_s, t.phase_offset_deg) == (2.0, None, 0)
    assert pattern.max_pulses == 5 and p.blocks[0].pattern_name == "single"


def test_every_field_written():
    """Degrees, a band as a list, a montage mapping, gate none and both bounds."""
    p = load_protocol_text(
        _block(
            "    pulses: 100\n    duration: 20 s\n    trigger:\n"
            "      target: -90\n      band: [9 Hz, 12 Hz]\n"
            "      montage: {C4: 1, CP2: -1}\n      window: 400 ms\n"
            "      gate: none\n      min_interval: 3 s\n      max_interval: 10 s\n"
            "      phase_offset: -12.5\n"
        )
    )
    pattern = p.blocks[0].pattern
    t = pattern.trigger
    assert t.target_deg == 270.0 and t.band_hz == (9.0, 12.0)
    assert t.montage == (("C4", 1.0), ("CP2", -1.0)) and t.montage_name is None
    assert t.gate_percentile is None and t.max_interval_s == 10.0
    assert t.phase_offset_deg == -12.5
    # 20 s at 3 s at the least: 7 pulses at most, fewer than the count.
    assert pattern.max_pulses == 7


def test_gate_mapping_is_located_field_by_field():
    with pytest.raises(ProtocolError) as exc:
        load_protocol_text(
            _block(
                "    pulses: 5\n    trigger:\n      target: peak\n"
                "      gate: {percentile: 80, span: 0 s}\n"
            )
        )
    assert str(exc.value) == (
        "<string>:10:36: error: blocks[0].trigger.gate.span: must be greater than "
        "zero (got 0 s)"
    )


def test_only_single_pulses_are_triggered():
    with pytest.raises(ProtocolError) as exc:
        load_protocol_text(
            HEAD + "  - type: stimulate\n    pattern: rtms\n    intensity: 50 %MSO\n"
            "    pulses: 5\n    trigger:\n      target: peak\n"
        )
    assert "blocks[0].pattern: a block with a trigger gives single pulses" in str(
        exc.value
    )


def test_max_interval_not_below_min():
    with pytest.raises(ProtocolError) as exc:
        load_protocol_text(
            _block(
                "    pulses: 5\n    trigger:\n      target: peak\n"
                "      max_interval: 1 s\n"
            )
        )
    assert "trigger.max_interval: must not be shorter than min_interval" in str(
        exc.value
    )


def test_session_presets_are_the_languages():
    """The trigger process's montages are the ones protocols name."""
    for name, weights in MONTAGE_PRESETS.items():
        assert PRESETS[name].weights == weights


def test_rig_file_eeg_section(tmp_path):
    rig = tmp_path / "rig.yaml"
    rig.write_text(
        "stimulator: {model: super_rapid2, port: /dev/ttyUSB0}\n"
        "eeg:\n  stream: BrainAmp\n  rate: 1000 Hz\n  delay: 50 ms\n"
        "  channels: [C3, FC1, FC5, CP1, CP5]\n"
    )
    eeg = load_rig(rig).eeg
    assert (eeg.stream, eeg.sfreq, eeg.delay_s) == ("BrainAmp", 1000.0, 0.05)
    assert eeg.latency_bound_s == 0.005
    assert eeg.channels == ("C3", "FC1", "FC5", "CP1", "CP5")
    rig.write_text(
        "stimulator: {model: super_rapid2, port: /dev/ttyUSB0}\n"
        "eeg:\n  stream: BrainAmp\n  rate: 1000 Hz\n"
    )
    with pytest.raises(ProtocolError, match=r"eeg\.delay: is required"):
        load_rig(rig)


def test_simulated_rig_declares_its_eeg():
    eeg = simulated_rig().eeg
    assert eeg.sfreq == 5000.0 and {"C3", "FC1", "CP5", "FDI"} <= set(eeg.channels)
    p = load_protocol_text(_block("    pulses: 5\n    trigger:\n      target: peak\n"))
    assert rig_problems(p.blocks, simulated_rig()) == []


def test_plan_judges_every_pulse_at_the_minimum_interval(tmp_path):
    """The worst case: the count (or what the duration allows) at min_interval."""
    path = tmp_path / "p.yaml"
    path.write_text(
        _block(
            "    duration: 30 s\n    trigger:\n      target: peak\n"
            "      min_interval: 2.5 s\n"
        )
    )
    plan = check_file(path, rig="sim").plan
    b = plan.blocks[0]
    assert b.pulses == 13 and b.run_decides_timing
    assert b.min_interval_s == 2.5 and b.trigger.startswith("peak (0 deg)")
    offsets = b.pulse_offsets_s
    assert len(offsets) == 13
    assert all(
        abs(y - x - 2.5) < 1e-9 for x, y in zip(offsets[:-1], offsets[1:], strict=True)
    )
    assert b.duration_s == pytest.approx(1.5 + 30.0)


@pytest.mark.parametrize(
    ("written", "montage"),
    [
        ("      montage: c4_hjorth\n", "c4_hjorth"),
        (
            "      montage: {C4: 1, FC2: -0.25, FC6: -0.25, CP2: -0.25, CP6: -0.25}\n",
            {"C4": 1.0, "FC2": -0.25, "FC6": -0.25, "CP2": -0.25, "CP6": -0.25},
        ),
    ],
)
def test_plan_carries_the_triggers_band_and_montage(written, montage):
    """A triggered block's plan holds its band, montage and estimator as the
    protocol resolved them (a preset's name, or the weights written), and
    plan.json keeps them (the band as a list)."""
    p = load_protocol_text(
        _block(
            "    pulses: 5\n    trigger:\n      target: peak\n"
            "      band: 9-12 Hz\n      estimator: ssp\n" + written
        )
    )
    report = check_protocol(p)
    assert report.ok, report.problems
    (b,) = report.plan.blocks
    assert (b.band_hz, b.montage, b.estimator) == ((9.0, 12.0), montage, "ssp")
    trig = p.blocks[0].pattern.trigger
    assert b.band_hz == trig.band_hz
    assert b.montage == (trig.montage_name or dict(trig.montage))
    (saved,) = json.loads(report.plan.to_json())["blocks"]
    assert saved["band_hz"] == [9.0, 12.0]
    assert saved["montage"] == montage and saved["estimator"] == "ssp"


def test_untriggered_blocks_carry_no_rhythm():
    report = check_protocol(
        load_protocol_text(_block("    pulses: 5\n    interval: 5 s\n"))
    )
    assert report.ok, report.problems
    (b,) = report.plan.blocks
    assert (b.trigger, b.band_hz, b.montage, b.estimator) == (None, None, None, None)


CALIBRATED = (
    "  - type: stimulate\n    pattern: single\n    intensity: 50 %MSO\n"
    "    pulses: 5\n    trigger:\n      target: peak\n"
    "      phase_offset: calibrated\n"
)


def test_calibrated_offset_needs_a_calibration_before():
    """``phase_offset: calibrated`` reads what an earlier calibration measured,
    or the thresholds' phase offset; with neither it is refused before the
    start, the message naming both ways to give one."""
    p = load_protocol_text(HEAD + CALIBRATED)
    report = check_protocol(p)
    assert [str(x) for x in report.problems] == [
        "<string>:10:21: error: blocks[0].trigger.phase_offset: needs a phase "
        "offset: put a phase_calibration block before this block, or give the "
        "participant's thresholds file with a phase_offset (--thresholds; a "
        "phase_calibration block writes one into the session folder) "
        "(got calibrated)"
    ]
    p = load_protocol_text(
        HEAD + "  - type: phase_calibration\n    duration: 30 s\n" + CALIBRATED
    )
    cal, stim = p.blocks
    assert cal.duration_s == 30.0 and cal.calibration.band_hz == (8.0, 13.0)
    assert stim.pattern.trigger.calibrated
    assert "phase offset calibrated" in stim.pattern.trigger.describe()
    report = check_protocol(p, thresholds=Thresholds(phase_offset=_measured(-20.0)))
    assert report.ok, report.problems
    # The session's calibration wins: the plan names it, not the file's value.
    (_, planned) = report.plan.blocks
    assert planned.trigger.endswith("phase offset calibrated by block 1")
    assert planned.phase_offset is None
    assert (planned.band_hz, planned.montage) == ((8.0, 13.0), "c3_hjorth")


def _measured(deg: float, **kw) -> PhaseOffset:
    fields = dict(
        offset_deg=deg,
        estimator="ar",
        band_hz=(8.0, 13.0),
        montage=MONTAGE_PRESETS["c3_hjorth"],
        montage_name="c3_hjorth",
        crossings=96,
        sd_deg=31.2,
        measured="2026-11-20T10:42:00",
        source="thresholds file th.yaml",
    )
    return PhaseOffset(**(fields | kw))


def test_calibrated_offset_from_the_thresholds():
    """With no calibration block, the thresholds' offset is planned and recorded."""
    p = load_protocol_text(HEAD + CALIBRATED)
    report = check_protocol(p, thresholds=Thresholds(phase_offset=_measured(-12.5)))
    assert report.ok, report.problems
    (planned,) = report.plan.blocks
    assert planned.phase_offset["offset_deg"] == -12.5
    assert planned.phase_offset["source"] == "thresholds file th.yaml"
    assert (planned.band_hz, planned.montage) == ((8.0, 13.0), "c3_hjorth")
    assert planned.trigger.endswith(
        "phase offset -12.5 deg from the thresholds file th.yaml (ar, 8-13 Hz, "
        "c3_hjorth, 96 crossings, SD 31.2 deg, measured 2026-11-20T10:42:00)"
    )
    assert report.plan.to_dict()["thresholds"]["phase_offset"]["offset_deg"] == -12.5


@pytest.mark.parametrize(
    ("kw", "differs"),
    [
        ({"estimator": "ssp"}, "estimator ssp, this block ar"),
        ({"band_hz": (9.0, 12.0)}, "band 9-12 Hz, this block 8-13 Hz"),
        (
            {"montage": MONTAGE_PRESETS["c4_hjorth"], "montage_name": "c4_hjorth"},
            "montage c4_hjorth, this block c3_hjorth",
        ),
    ],
)
def test_calibrated_offset_measured_with_another_setup_is_refused(kw, differs):
    p = load_protocol_text(HEAD + CALIBRATED)
    report = check_protocol(
        p, thresholds=Thresholds(phase_offset=_measured(-12.5, **kw))
    )
    assert [str(x) for x in report.problems] == [
        "<string>:10:21: error: blocks[0].trigger.phase_offset: the phase offset "
        f"of the thresholds file th.yaml was measured with another setup ({differs}):"
        " measure it again with a phase_calibration block before this block, or "
        "give the offset yourself with --phase-offset (got calibrated)"
    ]


def test_operator_phase_offset_is_used_whatever_the_estimator():
    p = load_protocol_text(
        HEAD + CALIBRATED.replace("target: peak", "target: peak\n      estimator: ssp")
    )
    report = check_protocol(p, thresholds=Thresholds(phase_offset=PhaseOffset(7.0)))
    assert report.ok, report.problems
    assert report.plan.blocks[0].phase_offset["source"] == "command line"


def test_calibration_block_is_checked_against_the_rig(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        HEAD + "  - type: phase_calibration\n    montage: {C3: 1, M2: -1}\n"
    )
    with pytest.raises(ProtocolError) as exc:
        check_file(path, rig="sim")
    assert "blocks[0].montage: names channels the rig's EEG stream" in str(exc.value)
