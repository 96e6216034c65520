"""JSON Schemas of protocol, fragment, rig, course and thresholds files.

Generated from the same field tables the loaders read with
(:mod:`~stimtrain.orchestrator.language.spec`), so an editor that validates and
completes a file as it is typed agrees with ``stimtrain validate`` about every
field, type, unit pattern, default and description. The schemas are shipped
in ``data/schema/`` (``stimtrain schema --write`` regenerates them; a test
checks the shipped copies are current). The safety check is not expressible
in JSON Schema: the schema catches typos, ``stimtrain validate`` the rest.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

from . import spec as s

SCHEMA_DIR = files("stimtrain.orchestrator") / "data" / "schema"
#: Draft-07: what editors' YAML language servers support best.
DIALECT = "http://json-schema.org/draft-07/schema#"
#: A whole value may be a ``${variable}`` (protocol files only).
_VARIABLE = {"type": "string", "pattern": r"\$\{[A-Za-z_][A-Za-z0-9_]*\}"}


def _record(
    spec: s.RecordSpec, *, allow_variables: bool = False, **extra_properties: dict
) -> dict:
    schema = spec.json_schema(**extra_properties)
    if allow_variables:
        for name, prop in schema["properties"].items():
            if name in extra_properties:
                continue
            doc = {k: prop.pop(k) for k in ("description", "default") if k in prop}
            schema["properties"][name] = {"anyOf": [prop, _VARIABLE], **doc}
    return schema


def _switch(key: str, cases: dict[str, str]) -> list[dict]:
    """``if key == value then $ref`` for each case (readable editor errors)."""
    return [
        {
            "if": {"properties": {key: {"const": value}}, "required": [key]},
            "then": {"$ref": f"#/definitions/{ref}"},
        }
        for value, ref in cases.items()
    ]


def _block_defs() -> dict:
    from .protocol import (
        BLOCK_SPECS,
        BLOCK_TYPES,
        HUNTING_SPECS,
        ONLINE_TMS_SPEC,
        PATTERN_SPECS,
        REPEAT_SPEC,
        TRIGGER_SPEC,
        TRIGGERED_SPEC,
    )

    defs: dict = {}
    for name, spec in {**BLOCK_SPECS, **HUNTING_SPECS}.items():
        extra: dict = {"type": {"const": name}}
        if name == "task":
            extra["tms"] = {"$ref": "#/definitions/online_tms"}
        defs[name] = _record(spec, allow_variables=True, **extra)
        if name == "task":
            # A built-in task with its trials, or a Builder experiment.
            defs[name]["oneOf"] = [
                {"required": ["task", "trials"]},
                {"required": ["builder"]},
            ]
    for name, spec in PATTERN_SPECS.items():
        defs[f"stimulate_{name}"] = _record(
            spec, allow_variables=True, type={"const": "stimulate"}
        )
    defs["stimulate_triggered"] = _record(
        TRIGGERED_SPEC,
        allow_variables=True,
        type={"const": "stimulate"},
        trigger={"$ref": "#/definitions/trigger"},
    )
    defs["trigger"] = _record(TRIGGER_SPEC, allow_variables=True)
    defs["stimulate"] = {
        "type": "object",
        "required": ["pattern"],
        # A trigger section makes the pulses phase-locked single pulses.
        "if": {"required": ["trigger"]},
        "then": {"$ref": "#/definitions/stimulate_triggered"},
        "else": {
            "allOf": _switch("pattern", {p: f"stimulate_{p}" for p in PATTERN_SPECS})
        },
    }
    defs["repeat"] = _record(
        REPEAT_SPEC,
        allow_variables=True,
        type={"const": "repeat"},
        blocks={"$ref": "#/definitions/blocks"},
    )
    defs["repeat"]["required"] = ["type", "blocks"]
    defs["online_tms"] = _record(ONLINE_TMS_SPEC, allow_variables=True)
    defs["include"] = {
        "type": "object",
        "description": "Splice the blocks of a fragment file in here.",
        "properties": {"include": {"type": "string", "minLength": 1}},
        "required": ["include"],
        "additionalProperties": False,
    }
    defs["block"] = {
        "type": "object",
        "properties": {"type": {"enum": list(BLOCK_TYPES)}},
        "required": ["type"],
        "allOf": _switch("type", {t: t for t in BLOCK_TYPES}),
    }
    defs["blocks"] = {
        "type": "array",
        "minItems": 1,
        "items": {
            "anyOf": [
                {"$ref": "#/definitions/include"},
                {"$ref": "#/definitions/block"},
            ]
        },
    }
    defs["variables"] = {
        "type": "object",
        "description": "Named values, used as ${name} in any field.",
        "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
        "additionalProperties": {"type": ["string", "number", "boolean"]},
    }
    return defs


def _document(title: str, body: dict, defs: dict | None = None) -> dict:
    out = {
        "$schema": DIALECT,
        "$id": f"https://stimtrain.dev/schema/{title}.json",
        "title": f"stimtrain {title} file",
        **body,
    }
    if defs:
        out["definitions"] = defs
    return out


def protocol_schema() -> dict:
    """JSON Schema of a protocol file."""
    from .protocol import PROTOCOL_SPEC, SAFETY_OPTIONS_SPEC

    body = _record(
        PROTOCOL_SPEC,
        safety=_record(SAFETY_OPTIONS_SPEC),
        variables={"$ref": "#/definitions/variables"},
        blocks={"$ref": "#/definitions/blocks"},
    )
    body["required"] = [*body.get("required", []), "blocks"]
    return _document("protocol", body, _block_defs())


def fragment_schema() -> dict:
    """JSON Schema of a fragment file (blocks for ``include``)."""
    from .protocol import FRAGMENT_SPEC

    body = _record(
        FRAGMENT_SPEC,
        description={"type": "string"},
        variables={"$ref": "#/definitions/variables"},
        blocks={"$ref": "#/definitions/blocks"},
    )
    body["required"] = [*body.get("required", []), "blocks"]
    return _document("fragment", body, _block_defs())


def rig_schema() -> dict:
    """JSON Schema of a rig file."""
    from .rig import RIG_SECTIONS, RIG_SPEC

    body = _record(RIG_SPEC, **{k: _record(v) for k, v in RIG_SECTIONS.items()})
    body["required"] = ["stimulator"]
    stim = body["properties"]["stimulator"]["properties"]["model"]
    from stimtrain.devices.stimulator import models

    stim["enum"] = list(models())
    return _document("rig", body)


def course_schema() -> dict:
    """JSON Schema of a course file."""
    from .course_file import COURSE_SPEC

    return _document("course", COURSE_SPEC.json_schema())


def thresholds_schema() -> dict:
    """JSON Schema of a participant's thresholds file."""
    from .thresholds import THRESHOLDS_SPEC

    return _document("thresholds", _record(THRESHOLDS_SPEC))


SCHEMAS = {
    "protocol": protocol_schema,
    "fragment": fragment_schema,
    "rig": rig_schema,
    "course": course_schema,
    "thresholds": thresholds_schema,
}


def render(name: str) -> str:
    """The schema ``name`` as the text shipped in ``data/schema/``."""
    return json.dumps(SCHEMAS[name](), indent=2, ensure_ascii=False) + "\n"


def write_schemas(folder: str | Path) -> list[Path]:
    """Write every schema as ``<name>.schema.json`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in SCHEMAS:
        path = folder / f"{name}.schema.json"
        path.write_text(render(name), encoding="utf-8")
        out.append(path)
    return out
