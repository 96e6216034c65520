"""Property-based tests: no document makes the loader fail other than cleanly.

Random documents, random text and mutations of the library's own protocols go
through loading, the safety check and planning; the only exception allowed is
the project's :class:`ProtocolError` (which must point into a file).
"""

import copy
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stimtrain.orchestrator.language.errors import ProtocolError
from stimtrain.orchestrator.language.protocol import load_protocol_text
from stimtrain.orchestrator.language.rig import simulated_rig
from stimtrain.orchestrator.safety.rules import Thresholds, check_protocol

LIBRARY = Path(__file__).parents[2] / "protocols"
SOURCES = [
    yaml.safe_load(p.read_text())
    for p in sorted(LIBRARY.glob("*.yaml"))
    if "include:" not in p.read_text()
]
RIG = simulated_rig()
KEYS = [
    "type", "pattern", "intensity", "pulses", "interval", "jitter", "frequency",
    "trains", "times", "tms", "at", "trials", "blocks", "times", "order", "repeat",
    "variant", "isi", "conditioning", "paradigm", "duration", "variables", "task",
]  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "50 %RMT",
            "1e9 Hz",
            "-3 ms",
            "0 s",
            "nan s",
            "inf Hz",
            "${x}",
            "every 0",
            "101 %",
            "stim_onset + -5 ms",
            "iTBS",
            "rtms",
            "paired",
            "list",
            "repeat",
            "random",
            "counterbalanced",
            "SICI",
            "task",
            "flanker",
            "1 min",
        ]
    ),  # fmt: skip
    st.text(max_size=12),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(KEYS) | st.text(max_size=6), children, max_size=5
        ),
    ),
    max_leaves=25,
)


def _run(text: str) -> None:
    try:
        protocol = load_protocol_text(text, "fuzz.yaml", participant="P01")
        report = check_protocol(
            protocol, thresholds=Thresholds(rmt=50, amt=40), rig=RIG
        )
        assert report.plan is not None and len(report.plan.blocks) == len(
            protocol.blocks
        )
    except ProtocolError as exc:
        assert exc.problems and all(p.file == "fuzz.yaml" for p in exc.problems)


FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@FUZZ
@given(st.text(max_size=200))
def test_random_text(text):
    _run(text)


@FUZZ
@given(documents)
def test_random_documents(doc):
    _run(yaml.safe_dump({"stimtrain": 1, "name": "f", "blocks": doc}))
    _run(yaml.safe_dump(doc))


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


@FUZZ
@given(st.data())
def test_mutated_library_protocols(data):
    doc = copy.deepcopy(data.draw(st.sampled_from(SOURCES)))
    for _ in range(data.draw(st.integers(1, 4))):
        paths = [p for p in _paths(doc) if p]
        path = data.draw(st.sampled_from(paths))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        action = data.draw(st.sampled_from(["replace", "delete", "nest"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "nest":
            parent[path[-1]] = {"type": "repeat", "blocks": [parent[path[-1]]]}
        else:
            parent[path[-1]] = data.draw(documents)
    _run(yaml.safe_dump(doc))
