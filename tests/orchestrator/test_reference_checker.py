"""stimtrain's safety check held to a second, simple checker (tests/safety_reference.py).

Property tests with hypothesis: every protocol ``validate`` accepts passes
the reference checker on its pulses (expanded here, independently, from
docs/protocols.md §3.1), and every pulse train the reference refuses is
refused by ``validate`` however it is written (a list, single pulses,
equal-intensity pairs).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stimtrain.cli import main

sys.path.insert(0, str(Path(__file__).parents[1]))
from safety_reference import judge  # noqa: E402

RMT = 50
LEAD_S, TAIL_S = 1.5, 1.0
FAST = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _delivered(pct: int) -> float:
    """The %RMT a written %RMT becomes once rounded down to whole %MSO."""
    return 100 * math.floor(pct * RMT / 100 + 1e-9) / RMT


def _validate(tmp_path, text: str, capsys) -> int:
    path = tmp_path / "p.yaml"
    path.write_text("stimtrain: 1\nname: reference\nblocks:\n" + text)
    code = main(["validate", "-q", str(path), "--rmt", str(RMT), "--rig", "sim"])
    capsys.readouterr()
    return code


# -- blocks as text, and their pulses as the docs say -----------------------------
single = st.tuples(
    st.just("single"),
    st.integers(2, 40),  # pulses
    st.integers(20, 3000),  # interval, ms
    st.integers(50, 150),  # %RMT
)
rtms = st.tuples(
    st.just("rtms"),
    st.integers(1, 30),  # Hz
    st.integers(2, 50),  # pulses per train
    st.integers(1, 4),  # trains
    st.integers(1, 30),  # inter-train interval, s
    st.integers(50, 150),
)
pulse_list = st.tuples(
    st.just("list"),
    st.lists(st.integers(10, 1500), min_size=1, max_size=30),  # gaps, ms
    st.integers(50, 150),
)
blocks = st.lists(st.one_of(single, rtms, pulse_list), min_size=1, max_size=2)


def _block(spec) -> tuple[str, list[float], float, int]:
    """YAML of one block, its pulse offsets (s), its length (s) and %RMT."""
    kind = spec[0]
    if kind == "single":
        _, n, ms, pct = spec
        text = (
            f"  - {{type: stimulate, pattern: single, intensity: {pct} %RMT, "
            f"pulses: {n}, interval: {ms} ms}}\n"
        )
        offsets = [LEAD_S + k * ms / 1e3 for k in range(n)]
        return text, offsets, offsets[-1] + ms / 1e3, pct
    if kind == "rtms":
        _, hz, n, trains, iti, pct = spec
        text = (
            f"  - {{type: stimulate, pattern: rtms, intensity: {pct} %RMT, "
            f"frequency: {hz} Hz, pulses_per_train: {n}, trains: {trains}, "
            f"inter_train_interval: {iti} s}}\n"
        )
        offsets = [
            LEAD_S + k * (n / hz + iti) + j / hz
            for k in range(trains)
            for j in range(n)
        ]
        return text, offsets, offsets[-1] + TAIL_S, pct
    _, gaps, pct = spec
    times = [0]
    for gap in gaps:
        times.append(times[-1] + gap)
    written = ", ".join(f"{t} ms" for t in times)
    text = (
        f"  - {{type: stimulate, pattern: list, intensity: {pct} %RMT, "
        f"times: [{written}]}}\n"
    )
    offsets = [LEAD_S + t / 1e3 for t in times]
    return text, offsets, offsets[-1] + TAIL_S, pct


@FAST
@given(blocks)
def test_every_protocol_validate_accepts_passes_the_reference(tmp_path, capsys, specs):
    text, pulses, start = "", [], 0.0
    for spec in specs:
        block, offsets, length, pct = _block(spec)
        text += block
        pulses += [(start + t, _delivered(pct)) for t in offsets]
        start += length
    if _validate(tmp_path, text, capsys) == 0:
        assert judge(pulses) == [], text


# -- one train, written three ways ------------------------------------------------
trains = st.tuples(
    st.integers(10, 950),  # interval, ms
    st.integers(1, 30),  # pairs of pulses (so a train of 2 n pulses)
    st.integers(45, 75).map(lambda half: 2 * half),  # %RMT (even: exact power)
)


@FAST
@given(trains)
def test_a_train_the_reference_refuses_is_refused_however_written(
    tmp_path, capsys, train
):
    ms, pairs, pct = train
    n = 2 * pairs
    pulses = [(k * ms / 1e3, float(pct)) for k in range(n)]
    if not judge(pulses):
        return
    times = ", ".join(f"{k * ms} ms" for k in range(n))
    ways = {
        "list": f"  - {{type: stimulate, pattern: list, intensity: {pct} %RMT, "
        f"times: [{times}]}}\n",
        "single": f"  - {{type: stimulate, pattern: single, intensity: {pct} %RMT, "
        f"pulses: {n}, interval: {ms} ms}}\n",
        "paired": f"  - {{type: stimulate, pattern: paired, paradigm: custom, "
        f"conditioning: {pct} %RMT, intensity: {pct} %RMT, isi: {ms} ms, "
        f"pairs: {pairs}, interval: {2 * ms} ms}}\n",
    }
    for way, text in ways.items():
        assert _validate(tmp_path, text, capsys) == 1, (way, judge(pulses))


def test_the_reference_itself():
    # The issue's examples, against the spec's numbers.
    hundred_hz = [(k * 0.01, 100.0) for k in range(20)]
    assert judge(hundred_hz) == ["100 Hz train"]
    clinical = [
        (k * 30 + j / 10, 120.0) for k in range(3) for j in range(40)
    ]  # 10 Hz, 4 s trains, 26 s apart
    assert judge(clinical) == []
    itbs = [
        (k * 10 + b / 5 + p / 50, 70.0)
        for k in range(2)
        for b in range(10)
        for p in range(3)
    ]
    assert judge(itbs) == []
    assert judge([(0.0, 130.0)]) == ["single pulse at 130.0 %RMT"]
