"""Courses: loading course files, where a participant stands, pulses per day.

Session folders are built with the runner's own pieces (``new_run``, the
``Journal`` writer, ``write_new``) and the summary keys the runner writes, with
wall times set to chosen dates so that schedules can be checked exactly.
"""

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from stimtrain.cli import main
from stimtrain.orchestrator.language.course_file import (
    COURSE_SESSION_SPEC,
    COURSE_SPEC,
    course_from_document,
    load_course,
    parse_window,
)
from stimtrain.orchestrator.language.errors import ProtocolError
from stimtrain.orchestrator.language.units import UnitError
from stimtrain.orchestrator.language.yamlpos import load_yaml_text
from stimtrain.orchestrator.session.course import (
    course_status,
    format_status,
    participant_pulses_on,
    session_runs,
)
from stimtrain.orchestrator.session.journal import Journal
from stimtrain.orchestrator.session.session_folder import new_run, write_new

DATA = Path(__file__).parent / "data_course"
COURSE = DATA / "four_day.yaml"
CORPUS = Path(__file__).parents[1] / "corpus" / "course"
EXPECTED = yaml.safe_load((CORPUS / "expected.yaml").read_text())


def at(day: str, hour: int = 10, minute: int = 0) -> dt.datetime:
    """A local time on a date written as YYYY-MM-DD."""
    return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(hour, minute))


def make_run(
    root: Path,
    participant: str,
    session: str,
    start: dt.datetime,
    *,
    pulses: int = 0,
    status: str | None = "completed",
    task_levels: dict | None = None,
    sha256: str | None = None,
    pulse_spacing_s: float = 1.0,
    torn: bool = False,
):
    """Write one run as the runner does; status None: a crash (no summary, no end)."""
    folder = new_run(root, participant, session)
    journal = Journal(folder.file("journal.jsonl"))
    t = start.timestamp()
    sha256 = sha256 or load_course(COURSE).sessions[0].protocol.sha256
    journal.write(
        "run_created",
        wall=t,
        participant=participant,
        session=session,
        run=folder.run,
        protocol="training.yaml",
        protocol_sha256=sha256,
        thresholds={"rmt": 50.0},
        rig="sim",
    )
    for i in range(pulses):
        journal.write(
            "pulse",
            wall=t + 60 + i * pulse_spacing_s,
            block=0,
            pulse=i,
            scheduled=float(i),
            actual=float(i),
            via="trigger",
        )
    if status is not None:
        summary = {
            "participant": participant,
            "session": session,
            "run": folder.run,
            "protocol": "course test training",
            "protocol_sha256": sha256,
            "status": status,
            "reason": None if status == "completed" else "operator abort",
            "pulses_planned": 60,
            "pulses_delivered": pulses,
            "blocks_completed": [0],
            "markers_sent": pulses,
            "recording": folder.file("recording.xdf").name,
            "thresholds": {"rmt": 50.0},
            "rig": "sim",
            "finished": "2026-11-21T10:00:00+0000",
        }
        if task_levels is not None:
            summary["task_levels"] = task_levels
        write_new(folder.file("summary.json"), json.dumps(summary, indent=2))
        journal.write(
            "session_end", wall=t + 600, status=status, pulses_delivered=pulses
        )
    journal.close()
    if torn:
        with open(folder.file("journal.jsonl"), "a", encoding="utf-8") as f:
            f.write('{"event": "pulse", "clock": 12.5, "wa')
    return folder


def by_label(status):
    return {st.label: st for st in status.sessions}


# -- course files ------------------------------------------------------------------
def test_load_course_reads_every_field():
    course = load_course(COURSE)
    assert course.name == "four-day training with follow-ups"
    assert course.carry_over == ("level",)
    assert [(s.label, s.day, s.window_s) for s in course.sessions] == [
        ("day1", 0, 0.0),
        ("day2", 1, 0.0),
        ("day3", 2, 0.0),
        ("day4", 3, 0.0),
        ("fu1w", 10, 86400.0),
        ("fu1m", 33, 3 * 86400.0),
    ]
    assert course.sessions[0].protocol_path == DATA / "training.yaml"
    assert course.sessions[4].protocol.name == "course test follow-up"
    # One protocol named by four sessions is loaded once.
    assert course.sessions[0].protocol is course.sessions[3].protocol


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1 d", 86400.0), ("2 days", 172800.0), ("0.5 day", 43200.0), ("12 h", 43200.0)],
)
def test_window_units(text, seconds):
    assert parse_window(text) == seconds


@pytest.mark.parametrize("bad", ["1", 1, "1 week", "d", True, None])
def test_window_refuses_bare_numbers_and_unknown_units(bad):
    with pytest.raises(UnitError, match="with a unit"):
        parse_window(bad)


def test_numeric_session_label_is_a_label(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "stimtrain: 1\ncourse: numbered\nsessions:\n"
        f"  - session: 1\n    protocol: {DATA / 'training.yaml'}\n    day: 0\n"
    )
    assert load_course(path).sessions[0].label == "1"


def test_corpus_is_complete():
    files = sorted(p.name for p in CORPUS.glob("*.yaml") if p.name != "expected.yaml")
    assert files == sorted(EXPECTED)
    assert len(files) >= 20


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_exact_messages(name, monkeypatch):
    monkeypatch.chdir(CORPUS)
    with pytest.raises(ProtocolError) as info:
        load_course(name)
    assert [str(p) for p in info.value.problems] == EXPECTED[name]


def test_json_schema_is_generated_from_the_tables():
    jsonschema = pytest.importorskip("jsonschema")
    schema = COURSE_SPEC.json_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    assert list(schema["properties"]) == [fs.name for fs in COURSE_SPEC.fields]
    items = schema["properties"]["sessions"]["items"]
    assert items == COURSE_SESSION_SPEC.json_schema()
    validator = jsonschema.Draft7Validator(schema)
    good = yaml.safe_load(COURSE.read_text())
    assert not list(validator.iter_errors(good))
    # What the loader refuses, the schema refuses too.
    for name in (
        "unknown_top_field",
        "unknown_session_field",
        "wrong_version",
        "negative_day",
        "window_no_unit",
        "label_not_bids",
        "carry_over_unknown",
        "sessions_empty",
    ):
        doc = yaml.safe_load((CORPUS / f"{name}.yaml").read_text())
        assert list(validator.iter_errors(doc)), name


# -- where a participant stands ----------------------------------------------------
def test_nothing_run_yet_projects_dates_from_today(tmp_path):
    status = course_status(COURSE, "P01", tmp_path, today=dt.date(2026, 11, 2))
    assert status.projected
    s = by_label(status)
    assert s["day1"].status == "due"
    assert s["day1"].target == dt.date(2026, 11, 2)
    assert s["day2"].status == "upcoming"
    assert s["fu1w"].earliest == dt.date(2026, 11, 11)
    assert s["fu1w"].latest == dt.date(2026, 11, 13)
    assert status.due is s["day1"]
    assert status.task_levels == {} and status.pulses_today == 0


def test_done_sessions_due_session_and_carry_over(tmp_path):
    make_run(
        tmp_path, "P01", "day1", at("2026-11-16"), pulses=60, task_levels={"flanker": 3}
    )
    make_run(
        tmp_path,
        "P01",
        "day2",
        at("2026-11-17", 15),
        pulses=60,
        task_levels={"flanker": 5, "nback": 2},
    )
    status = course_status(COURSE, "P01", tmp_path, today=dt.date(2026, 11, 18))
    s = by_label(status)
    assert not status.projected
    assert status.anchor == at("2026-11-16")
    assert [st.status for st in status.sessions] == [
        "done",
        "done",
        "due",
        "upcoming",
        "upcoming",
        "upcoming",
    ]
    assert s["day2"].date == dt.date(2026, 11, 17) and s["day2"].on_time
    assert (len(s["day2"].runs), s["day2"].pulses) == (1, 60)
    assert s["day3"].target == dt.date(2026, 11, 18)
    assert s["fu1m"].earliest == dt.date(2026, 12, 16)
    assert s["fu1m"].latest == dt.date(2026, 12, 22)
    assert status.due is s["day3"]
    assert status.task_levels == {"flanker": 5, "nback": 2}
    assert status.levels_from == {"flanker": "day2", "nback": "day2"}


def test_levels_by_task_come_from_the_latest_session_that_ran_the_task(tmp_path):
    make_run(tmp_path, "P02", "day1", at("2026-11-16"), task_levels={"nback": 3})
    make_run(tmp_path, "P02", "day2", at("2026-11-17"), task_levels={"flanker": 4})
    status = course_status(COURSE, "P02", tmp_path, today=dt.date(2026, 11, 18))
    assert status.task_levels == {"nback": 3, "flanker": 4}
    assert status.levels_from == {"nback": "day1", "flanker": "day2"}


def test_overdue_and_missed(tmp_path):
    make_run(tmp_path, "P01", "day1", at("2026-11-16"))
    make_run(tmp_path, "P01", "day3", at("2026-11-18"))
    status = course_status(COURSE, "P01", tmp_path, today=dt.date(2026, 11, 20))
    s = by_label(status)
    # day2 was skipped while day3 went ahead: missed. day4 (day 3 = 11-19) has
    # nothing after it started: overdue, and it is what to run now.
    assert s["day2"].status == "missed"
    assert s["day4"].status == "overdue"
    assert status.next is s["day4"] and status.due is s["day4"]
    assert "next: day4 (overdue since 2026-11-20)" in format_status(status)


def test_window_in_days(tmp_path):
    make_run(tmp_path, "P01", "day1", at("2026-11-01"))
    for d in ("day2", "day3", "day4"):
        make_run(tmp_path, "P01", d, at("2026-11-01"))
    expected = {
        dt.date(2026, 11, 9): "upcoming",
        dt.date(2026, 11, 10): "due",
        dt.date(2026, 11, 12): "due",
        dt.date(2026, 11, 13): "overdue",
    }
    for today, want in expected.items():
        status = course_status(COURSE, "P01", tmp_path, today=today)
        assert by_label(status)["fu1w"].status == want, today
    # Done outside the window: still done, flagged.
    make_run(tmp_path, "P01", "fu1w", at("2026-11-14"))
    status = course_status(COURSE, "P01", tmp_path, today=dt.date(2026, 11, 14))
    fu1w = by_label(status)["fu1w"]
    assert fu1w.status == "done" and fu1w.on_time is False
    assert status.next.label == "fu1m" and status.due is None
    assert "2026-11-14 (outside window)" in format_status(status)


@pytest.mark.parametrize(
    ("hour", "earliest", "latest"),
    [(9, "2026-11-01", "2026-11-02"), (15, "2026-11-02", "2026-11-03")],
)
def test_window_in_hours_depends_on_the_first_sessions_time(
    tmp_path, hour, earliest, latest
):
    path = tmp_path / "c.yaml"
    protocol = DATA / "training.yaml"
    path.write_text(
        "stimtrain: 1\ncourse: hours\nsessions:\n"
        f"  - session: a\n    protocol: {protocol}\n    day: 0\n"
        f"  - session: b\n    protocol: {protocol}\n    day: 1\n    window: 12 h\n"
    )
    make_run(tmp_path / "data", "P01", "a", at("2026-11-01", hour))
    status = course_status(path, "P01", tmp_path / "data", today=dt.date(2026, 11, 1))
    b = by_label(status)["b"]
    assert (b.earliest, b.latest) == (
        dt.date.fromisoformat(earliest),
        dt.date.fromisoformat(latest),
    )


def test_partial_sessions_and_crashes(tmp_path):
    make_run(tmp_path, "P01", "day1", at("2026-11-16"), pulses=60)
    make_run(tmp_path, "P01", "day2", at("2026-11-17"), pulses=20, status="aborted")
    make_run(
        tmp_path, "P01", "day2", at("2026-11-17", 11), pulses=7, status=None, torn=True
    )
    status = course_status(COURSE, "P01", tmp_path, today=dt.date(2026, 11, 17))
    day2 = by_label(status)["day2"]
    assert day2.status == "partial"
    assert [(r.run, r.status, r.pulses) for r in day2.runs] == [
        (1, "aborted", 20),
        (2, "no summary", 7),
    ]
    assert day2.pulses == 27
    assert status.due is day2
    assert status.pulses_today == 27
    text = format_status(status)
    assert "next: day2 (started but not completed: run it again to resume)" in text
    assert "pulses delivered today: 27 (all sessions of P01)" in text


def test_anchor_is_the_completed_run_of_the_first_session(tmp_path):
    make_run(tmp_path, "P01", "day1", at("2026-11-01"), pulses=5, status="aborted")
    make_run(tmp_path, "P01", "day1", at("2026-11-03"), pulses=60)
    status = course_status(COURSE, "P01", tmp_path, today=dt.date(2026, 11, 4))
    assert status.anchor == at("2026-11-03")
    assert by_label(status)["day2"].status == "due"
    assert by_label(status)["day1"].pulses == 65


def test_a_run_with_another_protocol_is_noted(tmp_path):
    make_run(tmp_path, "P01", "day1", at("2026-11-01"), sha256="0" * 64)
    status = course_status(COURSE, "P01", tmp_path, today=dt.date(2026, 11, 1))
    assert by_label(status)["day1"].note == "a run used another version of the protocol"


def test_finished_course(tmp_path):
    for i, label in enumerate(("day1", "day2", "day3", "day4")):
        make_run(tmp_path, "P01", label, at(f"2026-11-0{i + 1}"))
    make_run(tmp_path, "P01", "fu1w", at("2026-11-11"))
    make_run(tmp_path, "P01", "fu1m", at("2026-12-04"))
    status = course_status(COURSE, "P01", tmp_path, today=dt.date(2026, 12, 5))
    assert all(st.status == "done" and st.on_time for st in status.sessions)
    assert status.next is None and status.due is None
    assert "next: nothing, the course is finished" in format_status(status)


# -- pulses per day ------------------------------------------------------------------
def test_pulses_per_day_across_sessions_midnight_and_crashes(tmp_path):
    # Two sessions on one day; a third run starts at 23:58, its first pulse a
    # minute later and one every 10 s, so 6 before midnight and 14 after; it
    # crashed, leaving a torn last line.
    make_run(tmp_path, "P01", "day1", at("2026-11-16", 9), pulses=60)
    make_run(
        tmp_path, "P01", "extra", at("2026-11-16", 14), pulses=30, status="aborted"
    )
    make_run(
        tmp_path,
        "P01",
        "day2",
        at("2026-11-16", 23, 58),
        pulses=20,
        pulse_spacing_s=10.0,
        status=None,
        torn=True,
    )
    make_run(tmp_path, "P02", "day1", at("2026-11-16", 9), pulses=50)
    assert participant_pulses_on(tmp_path, "P01", dt.date(2026, 11, 16)) == 60 + 30 + 6
    assert participant_pulses_on(tmp_path, "P01", dt.date(2026, 11, 17)) == 14
    assert participant_pulses_on(tmp_path, "P01", dt.date(2026, 11, 15)) == 0
    assert participant_pulses_on(tmp_path, "P03", dt.date(2026, 11, 16)) == 0


def test_pulses_per_day_refuses_a_path_as_participant(tmp_path):
    with pytest.raises(ValueError, match="participant: must be 1-64 letters"):
        participant_pulses_on(tmp_path, "../P01", dt.date(2026, 11, 16))


def test_summary_and_journal_disagreeing_counts_the_larger(tmp_path):
    folder = make_run(tmp_path, "P01", "day1", at("2026-11-16"), pulses=10)
    summary = folder.file("summary.json")
    data = json.loads(summary.read_text())
    data["pulses_delivered"] = 12
    summary.write_text(json.dumps(data))
    assert session_runs(tmp_path, "P01", "day1")[0].pulses == 12


# -- the command --------------------------------------------------------------------
def _course_status(argv) -> int:
    return main(["course", "status", *argv])


def test_command_prints_the_table(tmp_path, capsys):
    make_run(
        tmp_path, "P01", "day1", at("2026-11-16"), pulses=60, task_levels={"flanker": 3}
    )
    argv = [str(COURSE), "--participant", "P01", "--data", str(tmp_path)]
    assert _course_status([*argv, "--today", "2026-11-17"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == [
        f"course: four-day training with follow-ups ({COURSE})",
        "participant: P01, today: 2026-11-17, first session: 2026-11-16",
        "",
    ]
    assert out[3].split() == [
        "session",
        "day",
        "window",
        "status",
        "ran",
        "on",
        "runs",
        "pulses",
        "note",
    ]
    assert out[4].split() == [
        "day1",
        "0",
        "2026-11-16",
        "done",
        "2026-11-16",
        "1",
        "60",
    ]
    assert out[5].split() == ["day2", "1", "2026-11-17", "due"]
    assert out[8].split() == ["fu1w", "10", "2026-11-25..2026-11-27", "upcoming"]
    assert out[-4:] == [
        "next: day2 (due now)",
        f"  stimtrain run {DATA / 'training.yaml'} --participant P01 --session day2 "
        f"--data {tmp_path}",
        "carries over: flanker level 3 (from day1)",
        "pulses delivered today: 0 (all sessions of P01)",
    ]


def test_command_reports_problems(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(CORPUS)
    assert _course_status(["wrong_version.yaml", "--participant", "P01"]) == 1
    assert capsys.readouterr().out.splitlines() == EXPECTED["wrong_version.yaml"]
    argv = [str(COURSE), "--participant", "P 01", "--data", str(tmp_path)]
    assert _course_status(argv) == 1
    assert capsys.readouterr().out.strip() == (
        "error: participant: must be 1-64 letters or digits (a BIDS label) (got 'P 01')"
    )


def test_command_refuses_a_bad_date(capsys):
    with pytest.raises(SystemExit):
        _course_status([str(COURSE), "--participant", "P01", "--today", "17.11.2026"])
    assert "--today: must be a date YYYY-MM-DD (got '17.11.2026')" in (
        capsys.readouterr().err
    )


def test_unusable_wall_times_fall_back_to_the_entry_before(tmp_path):
    folder = make_run(tmp_path, "P01", "day1", at("2026-11-16"), pulses=3)
    with open(folder.file("journal.jsonl"), "a", encoding="utf-8") as f:
        f.write('{"event": "pulse", "wall": 1e300}\n{"event": "pulse", "wall": NaN}\n')
        f.write('{"event": "pulse"}\n[1, 2]\n')
    # The three extra pulses count on the day of the last good time stamp.
    assert participant_pulses_on(tmp_path, "P01", dt.date(2026, 11, 16)) == 6


# -- any document: only the project's own error ---------------------------------------
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 40),
    st.floats(allow_nan=False),
    st.sampled_from(["day1", "day-1", "1 d", "-2 h", "12 h", "x", "", "level"]),
    st.sampled_from([str(DATA / "training.yaml"), "../nowhere.yaml", "a\x00b"]),
)
_keys = st.sampled_from(
    [
        "stimtrain",
        "course",
        "sessions",
        "carry_over",
        "description",
        "session",
        "protocol",
        "day",
        "window",
        "other",
    ]
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(
    doc=st.fixed_dictionaries(
        {},
        optional={
            "stimtrain": _values,
            "course": _values,
            "sessions": st.lists(
                st.dictionaries(_keys, _values, max_size=5), max_size=4
            )
            | _values,
            "carry_over": _values,
        },
    )
)
def test_random_documents_raise_only_protocol_errors(doc):
    text = yaml.safe_dump(doc)
    try:
        course_from_document(load_yaml_text(text, "random.yaml"))
    except ProtocolError as exc:
        assert exc.problems
