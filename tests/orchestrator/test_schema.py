"""The shipped JSON Schemas are current, valid, and agree with the loader."""

from pathlib import Path

import pytest
import yaml

from stimtrain.orchestrator.language.schema import SCHEMA_DIR, SCHEMAS, render

jsonschema = pytest.importorskip("jsonschema")
ROOT = Path(__file__).parents[2]
CORPUS = ROOT / "tests" / "corpus"


def _validator(name):
    schema = SCHEMAS[name]()
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_shipped_schema_is_current(name):
    shipped = (SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8")
    assert shipped == render(name), (
        "run: stimtrain schema --write orchestrator/data/schema"
    )


def test_library_files_validate_against_the_schemas():
    protocol = _validator("protocol")
    for path in sorted((ROOT / "protocols").glob("*.yaml")):
        errors = list(protocol.iter_errors(yaml.safe_load(path.read_text())))
        assert not errors, (path.name, [e.message for e in errors])
    fragment = _validator("fragment")
    for path in sorted((ROOT / "protocols" / "fragments").glob("*.yaml")):
        assert not list(fragment.iter_errors(yaml.safe_load(path.read_text())))
    course = _validator("course")
    for path in sorted((ROOT / "protocols" / "courses").glob("*.yaml")):
        assert not list(course.iter_errors(yaml.safe_load(path.read_text())))


# Structural mistakes the editor must flag as they are typed (the safety
# rules are beyond JSON Schema and only `stimtrain validate` reports them).
STRUCTURAL = [
    "invalid/unknown_block_type.yaml",
    "invalid/unknown_top_field.yaml",
    "invalid/single_frequency_field.yaml",
    "invalid/rest_missing_duration.yaml",
    "invalid/rest_bad_eyes.yaml",
    "invalid/missing_name.yaml",
    "invalid/no_blocks.yaml",
    "invalid/instructions_no_text.yaml",
]


@pytest.mark.parametrize("name", STRUCTURAL)
def test_schema_flags_structural_mistakes(name):
    data = yaml.safe_load((CORPUS / name).read_text())
    assert list(_validator("protocol").iter_errors(data))


def test_schema_describes_fields_for_completion():
    schema = SCHEMAS["protocol"]()
    single = schema["definitions"]["stimulate_single"]["properties"]
    assert "Interval between pulses." == single["interval"]["description"]
    assert single["jitter"]["default"] == "0 s"
    tbs = schema["definitions"]["stimulate_theta_burst"]["properties"]
    assert tbs["variant"]["anyOf"][0]["enum"] == ["iTBS", "cTBS", "custom"]
    rig = SCHEMAS["rig"]()
    models = rig["properties"]["stimulator"]["properties"]["model"]["enum"]
    assert "super_rapid2" in models and "bistim" in models
