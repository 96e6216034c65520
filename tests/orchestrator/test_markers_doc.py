"""docs/markers.md names every event of the marker vocabulary, and only those."""

import re
from pathlib import Path

from stimtrain.vocabulary import EVENTS, OPTIONAL_FIELDS

DOC = Path(__file__).parents[2] / "docs" / "markers.md"


def test_every_event_is_documented_with_its_fields():
    rows = re.findall(
        r"^\| (`[a-z_]+`(?:, `[a-z_]+`)*) \| ([^|]*) \|", DOC.read_text(), re.M
    )
    documented = {}
    for names, fields in rows:
        for name in re.findall(r"`([a-z_]+)`", names):
            documented[name] = fields
    assert set(documented) == set(EVENTS)
    for event, (fields, _) in EVENTS.items():
        for field in fields:
            assert field in documented[event], (event, field)


def test_optional_fields_are_documented():
    """Fields only some markers of an event carry (a triggered pulse's phases)."""
    text = DOC.read_text()
    for event, fields in OPTIONAL_FIELDS.items():
        row = next(line for line in text.splitlines() if f"| `{event}` |" in line)
        for field in fields:
            assert field in row, (event, field)
