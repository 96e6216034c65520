"""Every YAML example in docs/protocols.md is true: it loads, checks and plans.

Each ```yaml block of the document is one complete file. Leading comment
lines may carry directions for this test (they are ordinary YAML comments for
the reader)::

    # file: fragments/rest.yaml   written under that name, so others can use it
    # rig: bistim                 sim (default), bistim, serial-only or a rig file
    # thresholds: rmt=45          instead of rmt=50 amt=40
    # limits: lab_limits.yaml     a lab limits file written by another example
    # participant: P02            draw counterbalanced orders for this ID
    # pulses: 600                 the plan's total pulse count
    # order: LINE                 a block order the plan records (exact text)
    # error: MESSAGE              one expected problem, in order (exact text)

Protocols (``stimtrain: 1`` with ``blocks:`` and a ``name``) are loaded with
``load_protocol_text`` and checked with ``check_protocol`` on the simulated
rig; fragments, rig, thresholds, limits and course files with their loaders.
An example with ``# error:`` lines must give exactly those messages.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from stimtrain.orchestrator.language.course_file import load_course
from stimtrain.orchestrator.language.errors import ProtocolError
from stimtrain.orchestrator.language.protocol import load_protocol_text
from stimtrain.orchestrator.language.rig import load_rig, simulated_rig
from stimtrain.orchestrator.language.thresholds import load_thresholds
from stimtrain.orchestrator.safety.rules import Thresholds, check_protocol, load_limits

DOC = Path(__file__).parents[2] / "docs" / "protocols.md"
FENCE = re.compile(r"^```yaml\n(.*?)^```$", re.M | re.S)
DIRECTION = re.compile(
    r"#\s*(file|rig|thresholds|limits|participant|pulses|order|error):\s*(.*?)\s*$"
)
DEFAULT_THRESHOLDS = Thresholds(rmt=50, amt=40)


@dataclasses.dataclass
class Example:
    """One YAML block of the document and its directions."""

    line: int
    text: str
    directions: dict[str, str]
    errors: list[str]
    orders: list[str] = dataclasses.field(default_factory=list)

    @property
    def name(self) -> str:
        return self.directions.get("file", "protocol.yaml")

    @property
    def data(self):
        return yaml.safe_load(self.text)

    @property
    def kind(self) -> str:
        data = self.data if isinstance(self.data, dict) else {}
        if "course" in data:
            return "course"
        if "stimulator" in data:
            return "rig"
        if "blocks" in data:
            return "protocol" if "name" in data else "fragment"
        if "rmt" in data or "amt" in data:
            return "thresholds"
        return "limits"

    def __str__(self) -> str:
        return f"docs/protocols.md:{self.line}"


def _examples() -> list[Example]:
    text = DOC.read_text(encoding="utf-8")
    out = []
    for match in FENCE.finditer(text):
        body = match.group(1)
        directions: dict[str, str] = {}
        lists: dict[str, list[str]] = {"error": [], "order": []}
        for line in body.splitlines():
            if not line.startswith("#"):
                break
            found = DIRECTION.match(line)
            if found is None:
                continue
            key, value = found.groups()
            if key in lists:
                lists[key].append(value)
            else:
                directions[key] = value
        line_no = text.count("\n", 0, match.start()) + 2
        out.append(Example(line_no, body, directions, lists["error"], lists["order"]))
    return out


EXAMPLES = _examples()


def _is_complete_protocol(ex: Example) -> bool:
    first = next(
        (ln for ln in ex.text.splitlines() if ln.strip() and not ln.startswith("#")),
        "",
    )
    return first.split("#")[0].strip() == "stimtrain: 1" and "blocks:" in ex.text


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A folder holding every example that names its file; the working folder."""
    for ex in EXAMPLES:
        if "file" in ex.directions:
            path = tmp_path / ex.directions["file"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(ex.text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _rig(ex: Example):
    """The rig an example names: a variant of the simulated rig, or a rig file."""
    name = ex.directions.get("rig", "sim")
    if name == "sim":
        return simulated_rig()
    if name == "bistim":
        return dataclasses.replace(simulated_rig(), stimulator_model="bistim")
    if name == "serial-only":
        return dataclasses.replace(
            simulated_rig(), stimulator_model="rapid2", trigger=None
        )
    return load_rig(name)


def _thresholds(ex: Example) -> Thresholds:
    if "thresholds" not in ex.directions:
        return DEFAULT_THRESHOLDS
    values = dict(kv.split("=") for kv in ex.directions["thresholds"].split())
    return Thresholds(**{k: float(v) for k, v in values.items()})


def _check_protocol(ex: Example) -> list[str]:
    """Load, check and plan a protocol example; its problems as messages."""
    try:
        protocol = load_protocol_text(
            ex.text, ex.name, participant=ex.directions.get("participant")
        )
    except ProtocolError as exc:
        return [str(p) for p in exc.problems]
    thresholds = _thresholds(ex)
    limits = load_limits(ex.directions.get("limits"))
    report = check_protocol(
        protocol, thresholds=thresholds, rig=_rig(ex), limits=limits
    )
    if not report.ok:
        return [str(p) for p in report.problems]
    plan = report.plan
    assert plan.limits_justifications == limits.justifications
    if "pulses" in ex.directions:
        assert plan.total_pulses == int(ex.directions["pulses"]), ex
    assert set(ex.orders) <= set(plan.order), ex
    return []


def _check_other(ex: Example) -> list[str]:
    """Load a fragment, rig, thresholds, course or limits example; its problems."""
    path = ex.name if "file" in ex.directions else None
    if path is None:
        path = f"{ex.kind}.yaml"
        Path(path).write_text(ex.text, encoding="utf-8")
    if ex.kind == "fragment":
        # A fragment is checked where it is used: inside a protocol.
        wrapper = f"stimtrain: 1\nname: uses {path}\nblocks:\n  - include: {path}\n"
        return _check_protocol(Example(ex.line, wrapper, {}, []))
    try:
        if ex.kind == "rig":
            load_rig(path)
        elif ex.kind == "thresholds":
            load_thresholds(path)
        elif ex.kind == "course":
            load_course(path)
        else:
            load_limits(path)
    except ProtocolError as exc:
        return [str(p) for p in exc.problems]
    return []


def test_the_document_has_examples_of_every_kind():
    kinds = {ex.kind for ex in EXAMPLES}
    assert kinds == {"protocol", "fragment", "rig", "thresholds", "course", "limits"}
    assert sum(_is_complete_protocol(ex) for ex in EXAMPLES) >= 20
    assert sum(bool(ex.errors) for ex in EXAMPLES) >= 10


@pytest.mark.parametrize("ex", EXAMPLES, ids=str)
def test_example_is_true(ex, folder):
    if ex.kind == "protocol":
        assert _is_complete_protocol(ex), f"{ex}: a protocol must start stimtrain: 1"
        messages = _check_protocol(ex)
    else:
        messages = _check_other(ex)
    assert messages == ex.errors, f"{ex}: {ex.kind} example"


def test_the_library_section_names_every_library_file():
    library = DOC.parents[1] / "protocols"
    section = DOC.read_text(encoding="utf-8").split("## 9 The protocol library")[1]
    named = set(re.findall(r"^\| `([\w/]+\.yaml)` \|", section, re.M))
    shipped = {str(p.relative_to(library)) for p in library.rglob("*.yaml")}
    assert named == shipped


@pytest.mark.parametrize(
    "ex",
    [ex for ex in EXAMPLES if not ex.errors and ex.kind != "limits"],
    ids=str,
)
def test_valid_example_passes_its_json_schema(ex):
    jsonschema = pytest.importorskip("jsonschema")
    from stimtrain.orchestrator.language.schema import SCHEMAS

    validator = jsonschema.Draft7Validator(SCHEMAS[ex.kind]())
    problems = [e.message for e in validator.iter_errors(ex.data)]
    assert problems == [], f"{ex}: an editor would flag this example"
