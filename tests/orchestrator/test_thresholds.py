"""Motor thresholds are checked wherever they come from (docs/specs/safety.md).

A threshold is a finite number from 1 to 100 %MSO and an active motor
threshold above the resting one is implausible, whether the value was typed
on the command line (``--rmt``/``--amt`` of validate, plan, run and demo),
read from a thresholds file, or found in the journal a resumed session ran
with. Every refusal is one ``FILE:LINE:COL: error: field: rule (got value)``
line and exit status 1, never a traceback, and nothing is started.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stimtrain.cli import main
from stimtrain.orchestrator.language.thresholds import (
    PhaseOffset,
    Thresholds,
    load_thresholds,
)
from stimtrain.orchestrator.session.journal import Journal
from stimtrain.orchestrator.session.session_folder import new_run
from stimtrain.protocols import protocol_path

DEMO = str(protocol_path("demo.yaml"))
RANGE = "must be a finite number from 1 to 100 %MSO"
BAD_VALUES = ["inf", "-inf", "1000", "nan", "0", "-5", "0.5", "100.5", "fifty"]


def _above(rmt: str) -> str:
    return (
        f"an active motor threshold above the resting one ({rmt} %MSO) is implausible"
    )


def _cli(option: str, rule: str, got: str) -> str:
    return f"<command line>:0:0: error: {option}: {rule} (got {got})"


def _run_main(argv: list[str], capsys) -> tuple[int, list[str]]:
    status = main(argv)
    out = capsys.readouterr().out.strip().splitlines()
    return status, out


def _run_argv(tmp_path: Path) -> list[str]:
    """``stimtrain run`` of the demo with a lab limits file allowing 1 pulse.

    The thresholds are refused before the limits are read; the cap only makes
    sure that no session can start here if they ever were not.
    """
    lab = tmp_path / "lab.yaml"
    lab.write_text("max_pulses_per_session: 1\n")
    data = tmp_path / "data"
    return ["run", DEMO, "--participant", "P01", "--session", "1"] + [
        "--limits",
        str(lab),
        "--data",
        str(data),
    ]


@pytest.mark.parametrize("option", ["--rmt", "--amt"])
@pytest.mark.parametrize("value", BAD_VALUES)
@pytest.mark.parametrize("command", ["validate", "plan"])
def test_bad_option_value_is_one_line_and_exit_1(command, option, value, capsys):
    status, out = _run_main([command, DEMO, f"{option}={value}"], capsys)
    assert status == 1
    assert out == [_cli(option, RANGE, value)]


# Values the code before these rules crashed on or refused for another reason:
# a bad value must never start a session here, even while the test fails.
@pytest.mark.parametrize("value", ["inf", "1000", "nan", "0"])
def test_run_refuses_bad_threshold_before_creating_anything(value, tmp_path, capsys):
    status, out = _run_main([*_run_argv(tmp_path), "--rmt", value], capsys)
    assert status == 1
    assert out == [_cli("--rmt", RANGE, value)]
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("value", ["inf", "1000", "nan", "0"])
def test_demo_refuses_bad_threshold_before_starting(value, tmp_path, capsys):
    data = tmp_path / "data"
    status, out = _run_main(["demo", "--rmt", value, "--data", str(data)], capsys)
    assert status == 1
    assert out == [_cli("--rmt", RANGE, value)]
    assert not data.exists()


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_active_above_resting_on_the_command_line(command, capsys):
    status, out = _run_main([command, DEMO, "--amt", "60", "--rmt", "50"], capsys)
    assert status == 1
    assert out == [_cli("--amt", _above("50"), "60")]


def test_run_refuses_active_above_resting(tmp_path, capsys):
    argv = [*_run_argv(tmp_path), "--rmt", "50", "--amt", "50.5"]
    status, out = _run_main(argv, capsys)
    assert status == 1
    assert out == [_cli("--amt", _above("50"), "50.5")]
    assert not (tmp_path / "data").exists()


def test_both_bad_options_are_reported_at_once(capsys):
    status, out = _run_main(["validate", DEMO, "--rmt", "inf", "--amt", "0"], capsys)
    assert status == 1
    assert out == [_cli("--rmt", RANGE, "inf"), _cli("--amt", RANGE, "0")]


def test_a_bad_option_is_reported_once_for_many_files(capsys):
    status, out = _run_main(["validate", DEMO, DEMO, "--rmt", "nan"], capsys)
    assert status == 1
    assert out == [_cli("--rmt", RANGE, "nan")]


def test_good_values_still_pass(tmp_path, monkeypatch, capsys):
    assert _run_main(["validate", DEMO, "--rmt", "50", "--amt", "40"], capsys) == (
        0,
        [f"{DEMO}: ok"],
    )
    # Equal thresholds are unusual but not impossible.
    assert _run_main(["validate", DEMO, "--rmt", "50", "--amt", "50"], capsys)[0] == 0
    monkeypatch.chdir(tmp_path)
    Path("th.yaml").write_text("stimtrain: 1\nrmt: 50\namt: 40\n")
    assert _run_main(["validate", DEMO, "--thresholds", "th.yaml"], capsys)[0] == 0


# -- thresholds files ----------------------------------------------------------
@pytest.mark.parametrize(
    ("written", "got"),
    [
        (".nan", ".nan"),
        (".NaN", ".NaN"),
        (".inf", ".inf"),
        ("-.inf", "-.inf"),
        ("1000", "1000"),
        ("0", "0"),
        ("-5", "-5"),
        ("100.5", "100.5"),
        ("true", "True"),
        ("'50'", "50"),
    ],
)
@pytest.mark.parametrize("key", ["rmt", "amt"])
def test_bad_value_in_thresholds_file_is_located(
    key, written, got, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    other = {"rmt": "amt: 30", "amt": "rmt: 50"}[key]
    Path("th.yaml").write_text(
        f"stimtrain: 1\nparticipant: P01\n{other}\n{key}: {written}  # measured\n"
    )
    status, out = _run_main(["validate", DEMO, "--thresholds", "th.yaml"], capsys)
    assert status == 1
    assert out == [f"th.yaml:4:6: error: {key}: {RANGE} (got {got})"]


def test_active_above_resting_in_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("th.yaml").write_text("stimtrain: 1\nrmt: 50\namt: 60\n")
    status, out = _run_main(["plan", DEMO, "--thresholds", "th.yaml"], capsys)
    assert status == 1
    assert out == [f"th.yaml:3:6: error: amt: {_above('50')} (got 60)"]


def test_merged_file_and_command_line_values_are_checked(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("th.yaml").write_text("stimtrain: 1\nrmt: 48\namt: 36\n")
    base = ["validate", DEMO, "--thresholds", "th.yaml"]
    # The file's RMT with a command-line AMT above it: the option is at fault.
    status, out = _run_main([*base, "--amt", "60"], capsys)
    assert (status, out) == (1, [_cli("--amt", _above("48"), "60")])
    # A command-line RMT below the file's AMT: located at the file's amt.
    status, out = _run_main([*base, "--rmt", "30"], capsys)
    assert (status, out) == (1, [f"th.yaml:3:6: error: amt: {_above('30')} (got 36)"])
    # An override does not hide a broken file.
    Path("th.yaml").write_text("stimtrain: 1\nrmt: .nan\n")
    status, out = _run_main([*base, "--rmt", "50"], capsys)
    assert (status, out) == (1, [f"th.yaml:2:6: error: rmt: {RANGE} (got .nan)"])
    # A bad option and a bad file: both problems at once.
    status, out = _run_main([*base, "--amt", "inf"], capsys)
    assert status == 1
    assert out == [
        _cli("--amt", RANGE, "inf"),
        f"th.yaml:2:6: error: rmt: {RANGE} (got .nan)",
    ]


def test_run_refuses_a_bad_thresholds_file_before_creating_anything(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    Path("th.yaml").write_text("stimtrain: 1\nrmt: .inf\n")
    argv = [*_run_argv(tmp_path), "--thresholds", "th.yaml"]
    status, out = _run_main(argv, capsys)
    assert status == 1
    assert out == [f"th.yaml:2:6: error: rmt: {RANGE} (got .inf)"]
    assert not (tmp_path / "data").exists()


# -- the Thresholds value itself and resumed sessions --------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rmt": float("inf")}, f"rmt: {RANGE} (got inf)"),
        ({"rmt": float("nan")}, f"rmt: {RANGE} (got nan)"),
        ({"amt": 0}, f"amt: {RANGE} (got 0)"),
        ({"rmt": -5.0}, f"rmt: {RANGE} (got -5)"),
        ({"rmt": True}, f"rmt: {RANGE} (got True)"),
        ({"rmt": 50, "amt": 60}, f"amt: {_above('50')} (got 60)"),
    ],
)
def test_thresholds_refuse_impossible_values(kwargs, message):
    with pytest.raises(ValueError) as info:
        Thresholds(**kwargs)
    assert str(info.value) == message


def test_load_thresholds_checks_numbers_from_python_too():
    with pytest.raises(ValueError) as info:
        load_thresholds(None, rmt=float("inf"))
    assert str(info.value) == _cli("--rmt", RANGE, "inf")
    thresholds, record = load_thresholds(None, rmt="48.5", amt=36)
    assert thresholds == Thresholds(rmt=48.5, amt=36.0)
    assert (record["rmt"], record["amt"]) == (48.5, 36.0)


def test_resume_refuses_impossible_thresholds_in_the_journal(tmp_path, capsys):
    folder = new_run(tmp_path, "P01", "1")
    journal = Journal(folder.file("journal.jsonl"))
    journal.write(
        "run_created",
        protocol=DEMO,
        protocol_sha256="0" * 64,
        thresholds={"rmt": 1000.0, "amt": None},
        rig="sim",
    )
    journal.close()
    before = sorted(p.name for p in folder.path.iterdir())
    status, out = _run_main(["resume", str(folder.path)], capsys)
    assert status == 1
    assert out == [
        f"error: {folder.path}: thresholds of the earlier runs: rmt: {RANGE} (got 1000)"
    ]
    assert sorted(p.name for p in folder.path.iterdir()) == before


def test_console_script_prints_no_traceback():
    script = Path(sys.executable).with_name("stimtrain")
    for value in ("nan", "inf", "0"):
        done = subprocess.run(
            [str(script), "validate", DEMO, "--rmt", value],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
        assert done.stdout.splitlines() == [_cli("--rmt", RANGE, value)]


# -- the phase offset ------------------------------------------------------------
PHASE_RANGE = "must be a finite number of degrees from -180 to 180"
CALIBRATED = """stimtrain: 1
name: calibrated peak
blocks:
  - type: stimulate
    pattern: single
    intensity: 50 %MSO
    pulses: 5
    trigger:
      target: peak
      phase_offset: calibrated
"""
PHASE_FILE = """stimtrain: 1
participant: P01
rmt: 48
phase_offset: {deg}
phase_calibration:
  estimator: ar
  montage: c3_hjorth
  band: 8-13 Hz
  crossings: 96
  sd: 31.2
  measured: 2026-11-20T10:42:00
  method: "phase_calibration block 2 'rest', 60 s"
"""


def test_a_phase_offset_in_the_file_lets_calibrated_blocks_run(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    Path("p.yaml").write_text(CALIBRATED)
    # Neither a calibration block nor a phase offset: located, both fixes named.
    status, out = _run_main(["validate", "p.yaml"], capsys)
    assert status == 1
    assert out == [
        "p.yaml:10:21: error: blocks[0].trigger.phase_offset: needs a phase offset: "
        "put a phase_calibration block before this block, or give the "
        "participant's thresholds file with a phase_offset (--thresholds; a "
        "phase_calibration block writes one into the session folder) "
        "(got calibrated)"
    ]
    Path("th.yaml").write_text(PHASE_FILE.format(deg=-12.5))
    assert _run_main(["validate", "p.yaml", "--thresholds", "th.yaml"], capsys) == (
        0,
        ["p.yaml: ok"],
    )
    thresholds, record = load_thresholds("th.yaml")
    phase = thresholds.phase_offset
    assert (phase.offset_deg, phase.estimator, phase.band_hz) == (-12.5, "ar", (8, 13))
    assert (phase.montage_name, phase.crossings, phase.sd_deg) == (
        "c3_hjorth",
        96,
        31.2,
    )
    assert phase.measured == "2026-11-20T10:42:00"
    assert phase.source == "thresholds file th.yaml"
    assert record["phase_offset"]["offset_deg"] == -12.5
    # The command line wins, and says nothing of an estimator.
    thresholds, record = load_thresholds("th.yaml", phase_offset="4")
    assert thresholds.phase_offset == PhaseOffset(4.0)
    assert record["phase_offset"]["source"] == "command line"
    assert _run_main(["validate", "p.yaml", "--phase-offset", "-3"], capsys)[0] == 0
    # A resumed session reads it back from its plan's record.
    again = Thresholds.from_record({"rmt": 48.0, "amt": None, **record})
    assert again.phase_offset == thresholds.phase_offset


def test_the_file_phase_offset_must_match_the_block_setup(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    Path("p.yaml").write_text(
        CALIBRATED.replace("target: peak\n", "target: peak\n      band: 9-12 Hz\n")
    )
    Path("th.yaml").write_text(PHASE_FILE.format(deg=-12.5))
    status, out = _run_main(["validate", "p.yaml", "--thresholds", "th.yaml"], capsys)
    assert status == 1
    assert out == [
        "p.yaml:11:21: error: blocks[0].trigger.phase_offset: the phase offset of "
        "the thresholds file th.yaml was measured with another setup (band 8-13 Hz, "
        "this block 9-12 Hz): measure it again with a phase_calibration block "
        "before this block, or give the offset yourself with --phase-offset "
        "(got calibrated)"
    ]


@pytest.mark.parametrize(
    ("written", "got"),
    [
        ("200", "200"),
        ("-180.5", "-180.5"),
        (".nan", ".nan"),
        ("-.inf", "-.inf"),
        ("soon", "soon"),
        ("true", "True"),
    ],
)
def test_bad_phase_offset_in_the_file_is_located(
    written, got, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    Path("th.yaml").write_text(PHASE_FILE.format(deg=written))
    status, out = _run_main(["validate", DEMO, "--thresholds", "th.yaml"], capsys)
    assert status == 1
    assert out == [f"th.yaml:4:15: error: phase_offset: {PHASE_RANGE} (got {got})"]


@pytest.mark.parametrize("value", ["200", "nan", "inf", "-181", "later"])
def test_bad_phase_offset_option(value, capsys):
    status, out = _run_main(["validate", DEMO, "--phase-offset", value], capsys)
    assert (status, out) == (1, [_cli("--phase-offset", PHASE_RANGE, value)])


def test_phase_offset_and_its_calibration_go_together(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base = ["validate", DEMO, "--thresholds", "th.yaml"]
    Path("th.yaml").write_text("stimtrain: 1\nrmt: 48\nphase_offset: -12\n")
    assert _run_main(base, capsys) == (
        1,
        [
            "th.yaml:3:15: error: phase_offset: needs phase_calibration: the "
            "estimator, montage and band it was measured with (got -12)"
        ],
    )
    text = PHASE_FILE.format(deg=-12).replace("  estimator: ar\n", "")
    Path("th.yaml").write_text(text.replace("8-13 Hz", "13-8 Hz"))
    status, out = _run_main(base, capsys)
    assert status == 1
    assert out == [
        "th.yaml:6:3: error: phase_calibration.estimator: is required (got nothing)",
        "th.yaml:7:9: error: phase_calibration.band: must have a low edge above 0 "
        "and below the high edge (got 13-8 Hz)",
    ]
    Path("th.yaml").write_text(
        "stimtrain: 1\nphase_calibration:\n  estimator: ar\n  montage: c3_hjorth\n"
        "  band: 8-13 Hz\n"
    )
    assert _run_main(base, capsys) == (
        1,
        [
            "th.yaml:3:3: error: phase_calibration: describes a phase offset: needs "
            "phase_offset (degrees) (got no phase_offset)"
        ],
    )


@pytest.mark.parametrize("value", [200.0, float("nan"), True])
def test_phase_offset_refuses_impossible_values(value):
    with pytest.raises(ValueError) as info:
        Thresholds(phase_offset=PhaseOffset(value))
    assert str(info.value).startswith(f"phase_offset: {PHASE_RANGE}")
