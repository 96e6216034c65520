"""Bounded before expanded, every number finite (orchestrator/language/bounds.py).

Each bound is hit by a real file and gives its exact located message; the
worst inputs are refused by the real ``stimtrain validate`` command in a
subprocess, quickly and in little memory, without a traceback.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest

from stimtrain.orchestrator.language.bounds import (
    MAX_BLOCKS,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_NODES,
    MAX_PULSES,
    MAX_PULSES_PER_BLOCK,
    MAX_TRIALS_PER_BLOCK,
    MAX_VALUES,
    count_text,
)
from stimtrain.orchestrator.language.errors import ProtocolError
from stimtrain.orchestrator.language.fields import finite_number
from stimtrain.orchestrator.language.protocol import load_protocol, load_protocol_text
from stimtrain.orchestrator.language.spec import number_range
from stimtrain.orchestrator.language.units import (
    UnitError,
    parse_frequency,
    parse_intensity,
    parse_time,
)
from stimtrain.orchestrator.language.yamlpos import load_yaml_file, load_yaml_text
from stimtrain.orchestrator.safety.limits import load_limits

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))

import bounded_input  # noqa: E402 - the benchmark's worst inputs and runner

HEAD = "stimtrain: 1\nname: t\n"
REST = "blocks:\n  - type: rest\n    duration: 1 s\n"


def problems(text: str, *, protocol: bool = True) -> list[str]:
    """The problem lines of loading ``text`` (as file t.yaml)."""
    with pytest.raises(ProtocolError) as info:
        if protocol:
            load_protocol_text(text, "t.yaml")
        else:
            load_yaml_text(text, "t.yaml")
    return [str(p) for p in info.value.problems]


def stimulate(pattern: str, **fields: object) -> str:
    lines = "".join(f"    {k}: {v}\n" for k, v in fields.items())
    return (
        HEAD + "blocks:\n  - type: stimulate\n"
        f"    pattern: {pattern}\n    intensity: 50 %MSO\n" + lines
    )


# --- YAML: aliases, nesting, nodes -------------------------------------------


def test_alias_bomb_refused_at_the_alias_that_crosses():
    lines = ["a0: &a0 [" + ", ".join(["x"] * 10) + "]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    # The mapping and a0..a4 build 123,456 values; a5's first alias builds
    # 111,111 more, passing 200,000.
    assert problems("\n".join(lines) + "\n", protocol=False) == [
        f"t.yaml:6:10: error: a5[0]: must not expand the file to more than "
        f"{MAX_VALUES} values (each alias repeats all it names) (got *a4)"
    ]


def test_aliases_within_the_bound_still_work():
    doc = load_yaml_text("a: &a [1, 2]\nb: *a\nc: {<<: {x: 1}, y: 2}\n")
    assert doc.data == {"a": [1, 2], "b": [1, 2], "c": {"x": 1, "y": 2}}
    # The value under an alias is located where it was written (unchanged).
    assert doc.where(("b", 1)) == (1, 11)


def test_alias_that_contains_itself():
    assert problems("a: &a [1, *a]\n", protocol=False) == [
        "t.yaml:1:11: error: a[1]: must not name a value that contains it (got *a)"
    ]


def test_merge_into_itself():
    assert problems("a: &a {x: 1, <<: *a}\n", protocol=False) == [
        "t.yaml:1:4: error: a: must not merge a mapping into itself (got a merge key)"
    ]


def _merge_level(k: int) -> str:
    if k == 0:
        return "&m0 {" + ", ".join(f"k{j}: 1" for j in range(10)) + "}"
    aliases = ", ".join([f"*m{k - 1}"] * 9)
    return f"&m{k} {{<<: [{_merge_level(k - 1)}, {aliases}]}}"


def test_merge_bomb_is_counted_before_it_is_flattened():
    # Anchors defined inside merge lists: PyYAML would flatten 10**9 pairs
    # before any key is built (and so before duplicate keys are noticed).
    text = "x: " + _merge_level(8) + "\n"
    assert problems(text, protocol=False) == [
        f"t.yaml:1:348: error: x: must not expand the file to more than "
        f"{MAX_VALUES} values (each alias repeats all it names) (got *m4)"
    ]


def test_merges_of_repeated_keys_refused():
    lines = ["m0: &m0 {" + ", ".join(f"k{j}: 1" for j in range(10)) + "}"]
    lines.append("m1: {<<: [" + ", ".join(["*m0"] * 10) + "]}")
    assert problems("\n".join(lines) + "\n", protocol=False) == [
        "t.yaml:1:10: error: m1.k0: each key may appear only once in a mapping (got k0)"
    ]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        # The document's mapping is the first level.
        ("x: " + "[" * 10_000 + "]" * 10_000 + "\n", "1:67"),
        ("x: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n", "1:256"),
        ("".join(" " * i + "a:\n" for i in range(100)) + " " * 100 + "a: 1\n", "65:65"),
    ],
    ids=["lists", "flow mappings", "block mappings"],
)
def test_nesting_refused_while_composing(text, where):
    assert problems(text, protocol=False) == [
        f"t.yaml:{where}: error: (document): must nest lists and mappings at most "
        f"{MAX_DEPTH} levels deep (got {MAX_DEPTH + 1} levels)"
    ]


def test_nesting_through_aliases():
    # Each anchor is 40 deep, within the bound; the alias makes it 80.
    deep = "[" * 40 + "1" + "]" * 40
    nested = "[" * 40 + "*a" + "]" * 40
    assert problems(f"a: &a {deep}\nb: {nested}\n", protocol=False) == [
        f"t.yaml:2:44: error: b{'[0]' * 40}: must nest lists and mappings at most "
        f"{MAX_DEPTH} levels deep (aliases included) (got *a)"
    ]


def test_unreadable_scalars_are_located():
    assert problems("x: " + "9" * 5000 + "\ny: 2020-13-45\n", protocol=False) == [
        "t.yaml:1:4: error: x: must be a whole number of at most 4300 digits "
        "(got 99999999999999999999… (5000 characters))"
    ]
    assert problems("y: 2020-13-45\n", protocol=False) == [
        "t.yaml:1:4: error: y: cannot be read as timestamp: month must be in "
        "1..12 (got 2020-13-45)"
    ]


# --- files -------------------------------------------------------------------


def test_file_too_large(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(HEAD + REST + "#" * MAX_FILE_BYTES)
    with pytest.raises(ProtocolError) as info:
        load_yaml_file(path)
    size = path.stat().st_size
    assert str(info.value) == (
        f"{path}:0:0: error: (file): must be at most {MAX_FILE_BYTES} bytes "
        f"(1 MiB) (got {size} bytes)"
    )


def test_file_at_the_bound_is_read(tmp_path):
    path = tmp_path / "full.yaml"
    text = HEAD + REST
    path.write_text(text + "#" * (MAX_FILE_BYTES - len(text)))
    assert load_yaml_file(path).data["name"] == "t"


def test_fifo_refused_without_blocking(tmp_path):
    path = tmp_path / "pipe.yaml"
    os.mkfifo(path)
    # In process: a blocking open would hang the test here.
    with pytest.raises(ProtocolError) as info:
        load_yaml_file(path)
    assert str(info.value) == (
        f"{path}:0:0: error: (file): must be a regular file (got a FIFO)"
    )


def test_device_refused():
    with pytest.raises(ProtocolError) as info:
        load_yaml_file("/dev/zero")
    assert str(info.value) == (
        "/dev/zero:0:0: error: (file): must be a regular file (got a character device)"
    )


def test_file_messages_unchanged(tmp_path):
    for path, rule, got in (
        (tmp_path, "must be a readable file", "Is a directory"),
        (
            tmp_path / "none.yaml",
            "must be a readable file",
            "No such file or directory",
        ),
    ):
        with pytest.raises(ProtocolError) as info:
            load_yaml_file(path)
        assert str(info.value) == f"{path}:0:0: error: (file): {rule} (got {got})"
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"name: \xff\n")
    with pytest.raises(ProtocolError) as info:
        load_yaml_file(binary)
    assert str(info.value).endswith("must be UTF-8 text (got binary data)")


def test_line_ends_read_as_text_mode_did(tmp_path):
    path = tmp_path / "crlf.yaml"
    path.write_bytes(b"stimtrain: 1\r\nname: t\rblocks: []\n")
    doc = load_yaml_file(path)
    assert doc.text == path.read_text(encoding="utf-8")
    assert doc.where(("blocks",)) == (3, 9)


# --- counts --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            stimulate("single", pulses=10**12, interval="1 s"),
            "t.yaml:7:13: error: blocks[0].pulses: must be at most 100000 "
            "(the most pulses in one block) (got 1000000000000)",
        ),
        (
            stimulate(
                "paired",
                conditioning="40 %MSO",
                isi="3 ms",
                pairs=50_001,
                interval="5 s",
            ),
            "t.yaml:9:12: error: blocks[0].pairs: must be at most 50000 (2 pulses "
            "each; one block may have at most 100000) (got 50001)",
        ),
        (
            stimulate(
                "rtms",
                frequency="1 Hz",
                pulses_per_train=1000,
                trains=1000,
                inter_train_interval="30 s",
            ),
            "t.yaml:9:13: error: blocks[0].trains: make 1000000 pulses with 1000 "
            "per train; one block may have at most 100000 (got 1000)",
        ),
        (
            stimulate("rtms", frequency="1 Hz", pulses_per_train=10**30),
            "t.yaml:8:23: error: blocks[0].pulses_per_train: must be at most 100000 "
            "(the most pulses in one block) (got 1000000000000000000000000000000)",
        ),
        (
            stimulate("rtms", frequency="1e200 Hz", train_duration="1e200 s"),
            "t.yaml:8:21: error: blocks[0].train_duration: holds more than 100000 "
            "pulses at 1e+200 Hz (the most in one block) (got 1e200 s)",
        ),
        (
            stimulate("theta_burst", variant="cTBS", pulses=10**12 + 1),
            "t.yaml:8:13: error: blocks[0].pulses: must be at most 100000 "
            "(the most pulses in one block) (got 1000000000001)",
        ),
        (
            HEAD + "blocks:\n  - type: task\n    task: flanker\n    trials: 10000000\n",
            "t.yaml:6:13: error: blocks[0].trials: must be at most 100000 "
            "(the most trials in one block) (got 10000000)",
        ),
    ],
    ids=[
        "single",
        "paired",
        "rtms trains",
        "rtms per train",
        "rtms overflow",
        "tbs",
        "task",
    ],
)
def test_counts_per_block(text, line):
    assert problems(text) == [line]


def test_counts_at_the_bounds_are_accepted():
    load_protocol_text(stimulate("single", pulses=MAX_PULSES_PER_BLOCK, interval="1 s"))
    text = (
        HEAD
        + f"blocks:\n  - type: task\n    task: flanker\n    trials: {MAX_TRIALS_PER_BLOCK}\n"
    )
    load_protocol_text(text)


def repeat(times: int, inner: str, indent: str = "  ") -> str:
    body = "".join(f"{indent}    {line}\n" for line in inner.splitlines())
    return (
        f"{indent}- type: repeat\n{indent}  times: {times}\n{indent}  blocks:\n{body}"
    )


def test_nested_repeats_refused_at_the_outermost_times():
    rest = "- type: rest\n  duration: 1 s"
    inner = repeat(10**9, repeat(10**9, rest, ""), "")
    text = HEAD + "blocks:\n" + REST.split("\n", 1)[1] + repeat(10**9, inner)
    assert problems(text) == [
        "t.yaml:7:12: error: blocks[1].times: makes about 1.00e27 blocks in all "
        f"once repeated; a protocol may have at most {MAX_BLOCKS} (got 1000000000)"
    ]


def test_blocks_at_the_bound_are_unrolled():
    rest = "- type: rest\n  duration: 1 s"
    protocol = load_protocol_text(HEAD + "blocks:\n" + repeat(MAX_BLOCKS, rest))
    assert len(protocol.blocks) == MAX_BLOCKS


def test_repeats_counted_through_includes(tmp_path):
    (tmp_path / "frag.yaml").write_text(
        "stimtrain: 1\nblocks:\n" + repeat(1000, "- type: rest\n  duration: 1 s")
    )
    path = tmp_path / "p.yaml"
    path.write_text(HEAD + "blocks:\n" + repeat(11, "- include: frag.yaml"))
    with pytest.raises(ProtocolError) as info:
        load_protocol(path)
    assert str(info.value) == (
        f"{path}:5:12: error: blocks[0].times: makes 11000 blocks in all once "
        f"repeated; a protocol may have at most {MAX_BLOCKS} (got 11)"
    )


def test_protocol_pulses_in_all():
    single = stimulate("single", pulses=MAX_PULSES_PER_BLOCK, interval="1 s")
    block = single.split("blocks:\n", 1)[1]
    # n full blocks reach the bound exactly; the block after a rest crosses it.
    n = MAX_PULSES // MAX_PULSES_PER_BLOCK
    text = HEAD + "blocks:\n" + block * n + REST.split("\n", 1)[1] + block
    assert problems(text) == [
        f"t.yaml:{4 + 5 * n + 2}:5: error: blocks[{n + 1}]: makes "
        f"{(n + 1) * MAX_PULSES_PER_BLOCK} pulses in all; "
        f"a protocol may have at most {MAX_PULSES} (got 100000 pulses)"
    ]


def test_count_text():
    assert count_text(123) == "123"
    assert count_text(10**27) == "about 1.00e27"
    assert count_text(10**5000 * 3 - 1) == "about 2.99e5000"


# --- finite numbers --------------------------------------------------------------


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (parse_time, "1e400 s"),
        (parse_time, "1e308 h"),
        (parse_frequency, "1e309 Hz"),
        (parse_frequency, "1e306 kHz"),
        (parse_intensity, "1e999 %RMT"),
    ],
)
def test_quantities_must_be_finite(parse, text):
    with pytest.raises(UnitError, match="^must be a finite number$"):
        parse(text)


def test_nan_and_inf_never_read_as_quantities():
    for text in ("nan s", "inf Hz", float("nan"), float("inf")):
        with pytest.raises(UnitError, match="with a unit"):
            parse_time(text)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_number_range_refuses_non_finite(value):
    with pytest.raises(UnitError, match="^must be a finite number$"):
        number_range(1, 100).parse(value)
    with pytest.raises(UnitError, match="^must be a finite number$"):
        number_range().parse(value)


def test_huge_integers():
    with pytest.raises(UnitError, match="^must be at most 100$"):
        number_range(1, 100).parse(10**400)
    with pytest.raises(UnitError, match=r"^must be a number within ±1\.8e308$"):
        finite_number(10**400)


def test_protocol_messages_for_non_finite_values():
    text = HEAD + "blocks:\n  - type: rest\n    duration: 1e400 s\n"
    assert problems(text) == [
        "t.yaml:5:15: error: blocks[0].duration: must be a finite number (got 1e400 s)"
    ]


def test_limits_must_be_finite(tmp_path):
    path = tmp_path / "lab.yaml"
    path.write_text(
        "max_rtms_frequency_hz: .inf\n"
        "min_inter_train_interval_s: .nan\n"
        "train_duration_table:\n"
        "  intensities_pct_mt: [100, .nan]\n"
        "  max_train_s:\n"
        "    .inf: [1, 2]\n"
    )
    with pytest.raises(ProtocolError) as info:
        load_limits(path)
    assert [str(p).split(": error: ", 1)[1] for p in info.value.problems] == [
        "max_rtms_frequency_hz: must be a finite number (got inf)",
        "min_inter_train_interval_s: must be a finite number (got nan)",
        "train_duration_table.intensities_pct_mt: must be an increasing list "
        "(got a list of 2)",
        "train_duration_table.max_train_s.inf: must be a frequency in Hz "
        "(a positive number) (got inf)",
    ]


# --- the worst inputs, through the real command ---------------------------------

WORST_LINES = {
    "alias bomb 10 x 10": ":9:12: error: x.a5[0]: must not expand the file to "
    f"more than {MAX_VALUES} values (each alias repeats all it names) (got *a4)",
    "repeat 10**9 nested 3 deep": ":5:12: error: blocks[0].times: makes about "
    f"1.00e27 blocks in all once repeated; a protocol may have at most {MAX_BLOCKS} "
    "(got 1000000000)",
    "100,000-deep nesting": ":3:67: error: (document): must nest lists and "
    f"mappings at most {MAX_DEPTH} levels deep (got {MAX_DEPTH + 1} levels)",
    "10**12 pulses": ":7:13: error: blocks[0].pulses: must be at most "
    f"{MAX_PULSES_PER_BLOCK} (the most pulses in one block) (got 1000000000000)",
    "50 MB file": f":0:0: error: (file): must be at most {MAX_FILE_BYTES} bytes "
    "(1 MiB) (got 52428869 bytes)",
    # Composing stops at the first node past the bound: seven nodes (the
    # mapping, three keys, two values, the list) come before the list's items.
    "1 MiB of tiny values": f":3:{5 + 2 * (MAX_NODES - 7)}: error: (document): "
    f"must hold at most {MAX_NODES} values (got more than {MAX_NODES})",
    "FIFO": ":0:0: error: (file): must be a regular file (got a FIFO)",
}


@pytest.mark.parametrize("name", list(bounded_input.WORST))
def test_worst_input_refused_by_validate(name, tmp_path):
    path = bounded_input.WORST[name](tmp_path)
    run = bounded_input.run_validate(path, timeout=60)
    assert run.status == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout == f"{path}{WORST_LINES[name]}\n"
    # Sanity bounds (benchmarks/bounded_input.py measures): the slowest, the
    # tiny values, takes about 2 s and 100 MiB.
    assert run.seconds < 10
    assert run.peak_mib < 300
