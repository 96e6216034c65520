"""The protocol language: patterns, online TMS, structure, variables, includes."""

import textwrap
from collections import Counter

import numpy as np
import pytest

from stimtrain.orchestrator.language.errors import ProtocolError
from stimtrain.orchestrator.language.protocol import (
    PairedPulses,
    PulseList,
    StimulateBlock,
    TaskBlock,
    WaitBlock,
    load_protocol,
    load_protocol_text,
)
from stimtrain.orchestrator.language.rig import simulated_rig
from stimtrain.orchestrator.language.structure import balanced_latin_square_row
from stimtrain.orchestrator.language.thresholds import Thresholds
from stimtrain.orchestrator.safety.plan import compile_plan
from stimtrain.orchestrator.safety.rules import check_protocol

HEAD = "stimtrain: 1\nname: t\nseed: 7\n"


def _load(body: str, **kw):
    return load_protocol_text(HEAD + textwrap.dedent(body), "t.yaml", **kw)


def _problems(body: str, **kw) -> list[str]:
    with pytest.raises(ProtocolError) as info:
        _load(body, **kw)
    return [str(p) for p in info.value.problems]


REPEAT = """
blocks:
  - type: repeat
    label: conditions
    times: 3
    order: {order}
    blocks:
      - {{type: rest, label: A, duration: 1 s}}
      - {{type: rest, label: B, duration: 1 s}}
      - {{type: rest, label: C, duration: 1 s}}
      - {{type: rest, label: D, duration: 1 s}}
"""


def _labels(protocol):
    return [b.label.split(" ")[0] for b in protocol.blocks]


def test_repeat_fixed_unrolls_in_written_order():
    p = _load(REPEAT.format(order="fixed"))
    assert _labels(p) == list("ABCD") * 3
    assert [b.index for b in p.blocks] == list(range(12))
    assert p.blocks[5].label == "B (2/3)"
    assert p.order == ()


def test_repeat_random_is_seeded_and_recorded():
    a = _load(REPEAT.format(order="random"))
    b = _load(REPEAT.format(order="random"))
    assert _labels(a) == _labels(b)
    reps = [_labels(a)[i : i + 4] for i in (0, 4, 8)]
    assert all(sorted(r) == list("ABCD") for r in reps)
    assert len({tuple(r) for r in reps}) > 1  # not the same order every time
    assert len(a.order) == 3 and "random from seed 7" in a.order[0]
    other = load_protocol_text(
        HEAD.replace("seed: 7", "seed: 8")
        + textwrap.dedent(REPEAT.format(order="random")),
        "t.yaml",
    )
    assert _labels(other) != _labels(a)


def test_counterbalanced_order_is_a_balanced_latin_square():
    firsts = Counter()
    pairs = Counter()
    for pid in ("P01", "P02", "P03", "P04"):
        p = _load(REPEAT.format(order="counterbalanced"), participant=pid)
        first = _labels(p)[:4]
        firsts[first[0]] += 1
        pairs.update(zip(first, first[1:], strict=False))
        assert f"for {pid}" in p.order[0]
    # Over four participants each condition comes first once, and every
    # ordered pair of neighbours occurs exactly once (Williams design).
    assert set(firsts.values()) == {1}
    assert len(pairs) == 12 and set(pairs.values()) == {1}


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_latin_square_rows_are_permutations_and_balanced(n):
    period = n if n % 2 == 0 else 2 * n
    rows = [balanced_latin_square_row(n, r) for r in range(period)]
    assert all(sorted(r) == list(range(n)) for r in rows)
    # Each item appears in each position equally often.
    for pos in range(n):
        assert set(Counter(r[pos] for r in rows).values()) == {period // n}
    neighbours = Counter(p for r in rows for p in zip(r, r[1:], strict=False))
    assert len(set(neighbours.values())) == 1


def test_variables_keep_types_and_interpolate():
    p = _load(
        """
        variables: {n: 4, gap: 2 s, who: world}
        blocks:
          - {type: stimulate, pattern: single, intensity: 50 %MSO, pulses: "${n}", interval: "${gap}"}
          - {type: instructions, text: "hello ${who}", duration: 1 s}
        """
    )
    assert p.blocks[0].pattern.pulses == 4
    assert p.blocks[0].pattern.interval_s == 2.0
    assert p.blocks[1].text == "hello world"


def test_undefined_variable_is_located_at_its_use():
    msgs = _problems(
        """
        variables: {n: 4}
        blocks:
          - {type: rest, duration: "${lenght}"}
        """
    )
    assert msgs == [
        "t.yaml:7:28: error: blocks[0].duration: uses undefined variable 'lenght' "
        "(known: n) (got ${lenght})"
    ]


def test_include_splices_fragment_blocks_and_hashes_them(tmp_path):
    (tmp_path / "frag.yaml").write_text(
        "stimtrain: 1\nvariables: {d: 3 s}\nblocks:\n"
        "  - {type: rest, label: fr, duration: '${d}'}\n"
    )
    main = tmp_path / "main.yaml"
    main.write_text(
        HEAD + "variables: {d: 5 s}\nblocks:\n  - include: frag.yaml\n"
        "  - {type: rest, label: after, duration: 1 s}\n"
    )
    p = load_protocol(main)
    assert [b.label for b in p.blocks] == ["fr", "after"]
    assert p.blocks[0].duration_s == 5.0  # the protocol's value wins
    before = p.sha256
    (tmp_path / "frag.yaml").write_text(
        (tmp_path / "frag.yaml").read_text().replace("fr,", "fr2,")
    )
    assert load_protocol(main).sha256 != before


def test_include_errors_point_into_the_fragment(tmp_path):
    (tmp_path / "frag.yaml").write_text(
        "stimtrain: 1\nblocks:\n  - {type: rest, duration: 5}\n"
    )
    (tmp_path / "loop.yaml").write_text(
        "stimtrain: 1\nblocks:\n  - include: loop.yaml\n"
    )
    main = tmp_path / "main.yaml"
    main.write_text(
        HEAD + "blocks:\n  - include: frag.yaml\n  - include: loop.yaml\n"
        "  - include: missing.yaml\n"
    )
    with pytest.raises(ProtocolError) as info:
        load_protocol(main)
    msgs = [str(p) for p in info.value.problems]
    assert any(
        m.startswith(
            f"{tmp_path / 'frag.yaml'}:3:28: error: blocks[0].duration: needs a time unit"
        )
        for m in msgs
    ), msgs
    assert any(
        "includes itself (main.yaml -> loop.yaml -> loop.yaml)" in m for m in msgs
    ), msgs
    assert any(
        "main.yaml:7:14: error: blocks[2].include: must name an existing file" in m
        for m in msgs
    ), msgs


def test_paired_pulse_paradigms_are_checked():
    p = _load(
        """
        blocks:
          - {type: stimulate, pattern: paired, paradigm: SICI, conditioning: 80 %RMT,
             intensity: 120 %RMT, isi: 3 ms, pairs: 5, interval: 5 s}
        """
    )
    pat = p.blocks[0].pattern
    assert isinstance(pat, PairedPulses) and pat.n_pulses == 10 and pat.isi_s == 0.003
    msgs = _problems(
        """
        blocks:
          - {type: stimulate, pattern: paired, paradigm: ICF, conditioning: 110 %RMT,
             intensity: 120 %RMT, isi: 3 ms, pairs: 5, interval: 5 s}
        """
    )
    assert len(msgs) == 2
    assert "blocks[0].isi: ICF uses an ISI of 7 to 20 ms (got 3 ms)" in msgs[1]
    assert "ICF needs a subthreshold conditioning pulse" in msgs[0]


def _bistim_rig():
    from dataclasses import replace

    return replace(simulated_rig(), stimulator_model="bistim")


def test_paired_needs_a_paired_pulse_stimulator_unless_equal_and_slow():
    sici = _load(
        """
        blocks:
          - {type: stimulate, pattern: paired, paradigm: SICI, conditioning: 80 %RMT,
             intensity: 120 %RMT, isi: 3 ms, pairs: 5, interval: 5 s}
        """
    )
    th = Thresholds(rmt=50)
    refused = check_protocol(sici, thresholds=th, rig=simulated_rig())
    assert not refused.ok and "need a paired-pulse stimulator" in str(
        refused.problems[0]
    )
    ok = check_protocol(sici, thresholds=th, rig=_bistim_rig())
    assert ok.ok, ok.problems
    assert ok.plan.blocks[0].delivery == "paired"
    plan = ok.plan
    assert plan.blocks[0].pulses == 10 and len(plan.blocks[0].pulse_offsets_s) == 5
    assert plan.blocks[0].conditioning_power == 40 and plan.blocks[0].power == 60
    lici = _load(
        """
        blocks:
          - {type: stimulate, pattern: paired, paradigm: LICI, conditioning: 120 %RMT,
             intensity: 120 %RMT, isi: 100 ms, pairs: 5, interval: 6 s}
        """
    )
    report = check_protocol(lici, thresholds=th, rig=simulated_rig())
    assert report.ok, report.problems
    assert report.plan.blocks[0].delivery == "trigger"
    plan = report.plan
    offs = np.diff(plan.blocks[0].pulse_offsets_s)
    assert len(plan.blocks[0].pulse_offsets_s) == 10
    assert np.allclose(offs[::2], 0.1)


def test_pulse_list_is_a_train_when_faster_than_1_hz():
    slow = _load(
        "blocks:\n  - {type: stimulate, pattern: list, intensity: 100 %RMT, "
        "times: [0 s, 1.5 s, 4 s]}\n"
    )
    assert isinstance(slow.blocks[0].pattern, PulseList)
    report = check_protocol(slow, thresholds=Thresholds(rmt=50), rig=simulated_rig())
    assert report.ok and report.plan.blocks[0].delivery == "serial"
    # 20 pulses 50 ms apart = a 1 s train at 20 Hz, over the 0.55 s limit at 130 %RMT.
    times = ", ".join(f"{i * 50} ms" for i in range(20))
    fast = _load(
        "blocks:\n  - {type: stimulate, pattern: list, intensity: 130 %RMT, "
        f"times: [{times}]}}\n"
    )
    report = check_protocol(fast, thresholds=Thresholds(rmt=50), rig=simulated_rig())
    assert not report.ok
    assert "train duration (Wassermann 1998): must be at most 0.55 s (got 1 s)" in str(
        report.problems[0]
    )
    msgs = _problems(
        "blocks:\n  - {type: stimulate, pattern: list, intensity: 50 %MSO, "
        "times: [0 s, 2 s, 1 s]}\n"
    )
    assert msgs == [
        "t.yaml:5:76: error: blocks[0].times[2]: times must increase from pulse to "
        "pulse (got 1 s)"
    ]


def test_online_tms_selection_rules():
    p = _load(
        """
        blocks:
          - type: task
            task: flanker
            trials: 40
            tms: {at: stim_onset + 150 ms, intensity: 110 %RMT, trials: every 2nd}
          - type: task
            task: flanker
            trials: 40
            tms: {at: stim_onset + 100 ms, intensity: 110 %RMT, trials: 30 %,
                  conditions: [incongruent]}
        """
    )
    a, b = p.blocks
    assert isinstance(a, TaskBlock) and a.tms.delay_s == pytest.approx(0.15)
    assert a.n_pulses == 20 and b.n_pulses == 12
    assert a.tms.choose(list(range(1, 41)), np.random.default_rng(0)) == set(
        range(2, 41, 2)
    )
    chosen = b.tms.choose(list(range(1, 21)), np.random.default_rng(0))
    assert len(chosen) == 6 and chosen <= set(range(1, 21))
    assert p.n_pulses == 32
    report = check_protocol(p, thresholds=Thresholds(rmt=50), rig=simulated_rig())
    assert report.ok, report.problems
    assert [b.delivery for b in report.plan.blocks] == ["trigger", "trigger"]
    msgs = _problems(
        """
        blocks:
          - type: task
            task: flanker
            trials: 4
            tms: {at: stim_offset + 1 s, intensity: 0 %RMT, trials: sometimes}
        """
    )
    assert [m.split(": error: ")[1] for m in msgs] == [
        "blocks[0].tms.at: event must be one of stim_onset, cue, stop_signal, response "
        "(got stim_offset + 1 s)",
        "blocks[0].tms.intensity: must be greater than zero (got 0 %RMT)",
        "blocks[0].tms.trials: must be 'all', 'every N' (e.g. 'every 2nd') or a "
        "percentage (got sometimes)",
    ]


def test_online_pulses_count_towards_the_session_cap():
    p = _load(
        """
        blocks:
          - type: task
            task: flanker
            trials: 3001
            tms: {at: stim_onset + 150 ms, intensity: 100 %RMT}
        """
    )
    report = check_protocol(p, thresholds=Thresholds(rmt=50))
    assert any(
        "pulses per session: must be at most 3000 pulses (got 3001 pulses)" in str(p)
        for p in report.problems
    )


def test_per_day_cap_counts_earlier_pulses():
    p = _load(
        "blocks:\n  - {type: stimulate, pattern: single, intensity: 50 %MSO, "
        "pulses: 100, interval: 2 s}\n"
    )
    assert check_protocol(p, delivered_today=5900).ok
    report = check_protocol(p, delivered_today=5901)
    assert "pulses per day (5901 already delivered today): must be at most 6000" in str(
        report.problems[0]
    )


def test_wait_for_operator_block():
    p = _load(
        "blocks:\n  - {type: wait_for_operator, text: 'Coil on target?'}\n"
        "  - {type: rest, duration: 1 s}\n"
    )
    assert isinstance(p.blocks[0], WaitBlock)
    plan = compile_plan(p)
    assert plan.blocks[0].waits_for_operator and plan.blocks[0].duration_s == 0


def test_stimulate_blocks_inside_repeat_are_checked_once_each():
    p = _load(
        """
        blocks:
          - type: repeat
            times: 2
            blocks:
              - {type: stimulate, pattern: single, intensity: 130 %RMT, pulses: 3, interval: 2 s}
        """
    )
    report = check_protocol(p, thresholds=Thresholds(rmt=50))
    with pytest.raises(ProtocolError) as info:
        report.raise_if_unsafe()
    assert len(info.value.problems) == 1
    assert sum(isinstance(b, StimulateBlock) for b in p.blocks) == 2


def test_trains_run_on_the_unit_when_the_rig_has_no_trigger_line():
    p = _load(
        """
        blocks:
          - {type: stimulate, pattern: rtms, intensity: 90 %RMT, frequency: 10 Hz,
             pulses_per_train: 10, trains: 3, inter_train_interval: 5 s}
        """
    )
    th = Thresholds(rmt=50)
    serial_only = simulated_rig(trigger=False)
    report = check_protocol(p, thresholds=th, rig=serial_only)
    assert report.ok and report.plan.blocks[0].delivery == "device_train"
    # With a trigger line every pulse is host-timed instead.
    triggered = check_protocol(p, thresholds=th, rig=simulated_rig())
    assert triggered.plan.blocks[0].delivery == "trigger"
    plan = report.plan
    assert plan.blocks[0].pulses == 30 and len(plan.blocks[0].pulse_offsets_s) == 30
    tbs = _load(
        "blocks:\n  - {type: stimulate, pattern: theta_burst, variant: cTBS, "
        "intensity: 70 %RMT}\n"
    )
    refused = check_protocol(tbs, thresholds=th, rig=serial_only)
    assert "runs no theta bursts by itself" in str(refused.problems[0])


def test_task_params_are_checked_once_and_kept_complete():
    # The loader is the one place a protocol's task parameters are checked:
    # the block keeps them with the task's defaults filled in, and the plan's
    # trial times follow what was written.
    from stimtrain.tasks import get_task

    body = """
    blocks:
      - {{type: task, label: f, task: flanker, trials: 10, params: {{iti_s: {iti}}}}}
    """
    slow, fast = (_load(body.format(iti=iti)) for iti in (3.0, 0.5))
    block = slow.blocks[0]
    assert isinstance(block, TaskBlock)
    assert block.params == {**get_task("flanker").default_params, "iti_s": 3.0}
    rig = simulated_rig()
    times = [
        compile_plan(p, rig=rig, thresholds=Thresholds(rmt=50)).blocks[0].duration_s
        for p in (slow, fast)
    ]
    assert times[0] - times[1] == pytest.approx(10 * 2.5)
    assert _problems(body.format(iti=-1)) == [
        "t.yaml:6:71: error: blocks[0].params.iti_s: must be >= 0 (got -1)"
    ]
