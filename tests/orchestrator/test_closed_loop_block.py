"""What a triggered block tells the operator and the journal about refusals."""

import queue

from stimtrain.orchestrator.language.rig import simulated_eeg
from stimtrain.orchestrator.language.trigger import PhaseTrigger
from stimtrain.orchestrator.session.closed_loop.block import (
    REPORT_EVERY_S,
    report_refusals,
    trigger_settings,
)
from stimtrain.orchestrator.session.journal import Journal, read_journal


def test_refusals_are_told_once_per_reason_then_counted(tmp_path):
    lines: list[str] = []
    journal = Journal(tmp_path / "journal.jsonl")
    refusals: queue.Queue = queue.Queue()
    told: dict = {}
    for ms in (7.2, 9.0, 6.1):
        refusals.put(f"decision latency {ms} ms above the rig's bound of 5 ms")
    refusals.put("the deadline passed before it reached the device")
    report_refusals(refusals, told, lines.append, journal, 3, now=100.0)
    assert lines == [
        "  no pulse: decision latency 7.2 ms above the rig's bound of 5 ms",
        "  no pulse: the deadline passed before it reached the device",
    ]
    # Within the rate limit: counted, not told; after it: told with the count.
    refusals.put("decision latency 8 ms above the rig's bound of 5 ms")
    report_refusals(refusals, told, lines.append, journal, 3, now=101.0)
    assert len(lines) == 2
    refusals.put("decision latency 5.5 ms above the rig's bound of 5 ms")
    report_refusals(
        refusals, told, lines.append, journal, 3, now=100.0 + REPORT_EVERY_S
    )
    assert lines[-1] == (
        "  no pulse: decision latency 5.5 ms above the rig's bound of 5 ms "
        "(3 more since)"
    )
    events = [e for e in read_journal(journal.path) if e["event"] == "pulse_refused"]
    assert [(e["block"], e["repeats"]) for e in events] == [(3, 0), (3, 0), (3, 3)]


def test_trigger_settings_take_the_rigs_delay():
    """gate: none is the 0th percentile; the amplifier's delay is the rig's."""
    trig = PhaseTrigger(target_deg=180.0, gate_percentile=None, max_interval_s=8.0)
    s = trigger_settings(trig, simulated_eeg(0.05))
    assert (s.target_deg, s.gate_percentile, s.amp_delay_s) == (180.0, 0.0, 0.05)
    assert s.max_interval_s == 8.0 and s.band == (8.0, 13.0)


def test_every_estimator_the_language_accepts_has_a_class():
    """The protocol's names and the closed loop's classes are the same list,
    and a block's estimator reaches the trigger's settings."""
    from stimtrain.orchestrator.language.trigger import ESTIMATORS as NAMES
    from stimtrain.orchestrator.session.closed_loop import ESTIMATORS

    assert tuple(ESTIMATORS) == NAMES
    for name in NAMES:
        trig = PhaseTrigger(target_deg=0.0, estimator=name)
        assert trigger_settings(trig, simulated_eeg(0.0)).estimator == name


def test_max_interval_lets_a_crossing_through_a_shut_gate():
    """A gate no estimate passes gives no pulse, unless the maximum interval
    has passed: then the next crossing is taken, still at the target."""
    from stimtrain.devices.sim_mu import synthetic_recording
    from stimtrain.orchestrator.session.closed_loop import PRESETS
    from stimtrain.orchestrator.session.closed_loop.offline import replay
    from stimtrain.orchestrator.session.closed_loop.trigger import TriggerSettings

    rec = synthetic_recording(40.0, 11.0, seed=5)

    def pulses(**kw):
        settings = TriggerSettings(gate_percentile=100.0, **kw)
        return replay(
            rec.data, rec.ch_names, rec.sfreq, rec.phase, settings,
            PRESETS["c3_hjorth"],
        )  # fmt: skip

    # The 100th percentile: only a new maximum passes, rarer and rarer.
    shut = pulses()
    opened = pulses(max_interval_s=4.0)
    assert len(opened) > len(shut)
    gaps = [b.time - a.time for a, b in zip(opened[:-1], opened[1:], strict=True)]
    assert max(gaps) < 4.0 + 0.2


def test_the_console_counts_refusals_by_kind_and_sees_each_pulse_phase():
    """What :meth:`TriggeredRun.progress` gives the operator console."""
    from types import SimpleNamespace

    from stimtrain.orchestrator.language.trigger import TriggeredPulses
    from stimtrain.orchestrator.session.closed_loop.block import (
        TriggeredRun,
        refusal_kind,
    )

    assert [
        refusal_kind(r)
        for r in (
            "decision latency 7.2 ms above the rig's bound of 5 ms",
            "hand-over latency 3.0 ms above the rig's bound of 2 ms",
            "the deadline passed before it reached the device",
            "sooner than 2 s after the last pulse",
            "something new happened",
        )
    ] == [
        "slow decision",
        "slow hand-over",
        "deadline passed",
        "too soon",
        "something new",
    ]
    trig = PhaseTrigger(target_deg=180.0, phase_offset_deg=-5.0)
    block = SimpleNamespace(
        index=2, pattern=TriggeredPulses(trigger=trig, max_pulses=20, pulses=20)
    )
    ctx = SimpleNamespace(
        eeg=simulated_eeg(0.0),
        ledger=SimpleNamespace(block_pulses=lambda index: 2 if index == 2 else 0),
    )
    run = TriggeredRun(ctx, block, planned=None)
    empty = run.progress()
    assert (empty.given, empty.planned, empty.offset_deg) == (2, 20, -5.0)
    assert empty.offset_source == "protocol" and empty.last_online_deg is None
    for reason in ("sooner than 2 s after the last pulse",) * 2 + (
        "the deadline passed before it reached the device",
    ):
        run._refuse(reason)
    run.online += [170.0, 195.0]
    p = run.progress()
    assert p.refused == {"too soon": 2, "deadline passed": 1}
    assert (p.last_target_deg, p.last_online_deg) == (180.0, 195.0)
    assert p.online_deg == {180.0: [170.0, 195.0]}
    run.online.append(181.0)
    assert p.online_deg[180.0] == [170.0, 195.0]  # a copy
    # A pulse withdrawn (a pause, a stalled stream) was not given.
    ctx.ledger.take_online_fields = lambda block, index: None
    run.dropped([(2, 2), (1, 0)], "stream stalled")
    assert run.progress().online_deg == {180.0: [170.0, 195.0]}
    assert run.progress().last_online_deg == 195.0
